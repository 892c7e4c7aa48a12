"""A chat dataset's targets re-derived by another path: a ``{% generation %}``-tagged chat template.

The producer renders chats with its own chat layer (``dataprep.tasks.sft``). This renders the
same source records with ``transformers``' Jinja renderer
(``transformers.utils.chat_template_utils.render_jinja_template``, the function behind
``apply_chat_template(..., return_assistant_tokens_mask=True)``), which returns the text and the
character spans inside ``{% generation %}`` tags. The text is then encoded by the dataset's own
tokenizer (``tokenizers.Tokenizer``, specials recognised); a token is a target when its characters
overlap a generation span. Encoding with the dataset's tokenizer rather than ``AutoTokenizer``
keeps the comparison about the *targets*: transformers 5 gives other ids than ``tokenizer.json``
for some tokenizers (Phi-3), which the producer reports on its own.

The template is the user's (``TrainConfig.reference_chat_template`` or the ``chat_template`` argument):
a training variant of the model's template, e.g. ``../shared/data/chat_templates/phi3_training.jinja``.
Without one, or without transformers, the proof is skipped with the reason.

It is given what the recipe gave the producer's template, as *data*: the recipe's ``chat.kwargs``
(``reasoning_effort``, ...) and its ``chat.date`` as what ``strftime_now`` prints. gpt-oss writes
the date into its system block, and transformers' ``strftime_now`` prints today's, so no record built
on another day would be found. transformers passes template arguments through as plain data (a
function becomes a string), so the date goes in as the global of transformers' compiled template
for this text (``_compile_jinja_template``, cached by text), set only while these records render.

Conventions differ where the model's output does not depend on them, so two kinds of reference
targets are *not compared* (:data:`GENERATION_PROMPT`, :data:`AFTER_STOP`; neither side can make
them fail, and the proof reports how many):

* the template's generation prompt at the start of a generation span (DeepSeek-V3 marks
  ``<｜Assistant｜>``, gpt-oss ``<|start|>assistant``): inference prints it (``add_generation_prompt``),
  the model never writes it. It is what ``add_generation_prompt=True`` adds after a user turn, or
  its longest prefix that ends at an added token (DeepSeek-V3's prompt goes on with ``<think>\n``);
* whitespace after the span's closing stop token (Gemma 3 marks the ``\n`` after
  ``<end_of_turn>``; Phi-3's ``<|end|>`` token takes its ``\n`` in): generation stops before it.

Only positions the reference marks can be excused: a dataset that trains a generation prompt its
reference does not mark (Llama 3's ``\n\n``) still fails.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.dataset.manifest import Manifest
from dataprep.read import FieldSpec, read_records, resolve_inputs
from dataprep.train.reference_sources import source_recipe

MESSAGES = "messages"
GENERATION_PROMPT = "generation prompt"  # reasons a reference target is not compared (see the module docstring)
AFTER_STOP = "whitespace after the stop"


def why_not(template: str | Path | None) -> str | None:
    """Why chat records cannot be re-rendered here, or None."""
    if template is None:
        return ("chat template: give a {% generation %}-tagged copy of the model's template to re-render the "
                "records (--set reference_chat_template=PATH, e.g. ../shared/data/chat_templates/phi3_training.jinja)")
    if not Path(template).is_file():
        return f"reference_chat_template: {template} is not a file"
    if "{% generation" not in Path(template).read_text() and "{%- generation" not in Path(template).read_text():
        return f"reference_chat_template: {template} has no {{% generation %}} tags, so it cannot say what is trained"
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return "chat template: the independent renderer needs transformers (pip install transformers)"
    return None


def render(manifest: Manifest, encoder: Any, *, template: str | Path, specials: dict[str, str], limit: int,
           expected_type: Any) -> tuple[list[Any], Counter, str | None]:
    """(expected examples, records not rendered by reason, why none could be) for the first ``limit`` records."""
    recipe = source_recipe(manifest)
    if isinstance(recipe, str):
        return [], Counter(), recipe
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    expected_type = _with_not_compared(expected_type)
    expected, unrendered = [], Counter()
    with renderer(recipe, encoder, template=template, specials=specials, stops=set(manifest.stop_ids or ())) as encode:
        for where, messages in _conversations(recipe, files, limit=limit):
            if any(m.get("tool_calls") or "train" in m or m.get("reasoning_content") for m in messages):
                unrendered["tool calls, train flags or reasoning (rendered by the recipe's chat options)"] += 1
                continue
            got = encode([{"role": m["role"], "content": m["content"]} for m in messages])
            if isinstance(got, str):
                unrendered[got] += 1
                continue
            ids, mask, free = got
            first = int(np.argmax(mask)) if mask.any() else len(ids)
            expected.append(expected_type(where=where, ids=ids, mask=mask, prompt_tokens=first,
                                          not_compared={k: v for k, v in free.items() if v.any()}))
    return expected, unrendered, None


Encoded = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # ids, targets compared, not compared by reason


@contextmanager
def renderer(recipe: Any, encoder: Any, *, template: str | Path, specials: dict[str, str], stops: set[int],
             last_only: bool = False) -> Iterator[Callable[[list[dict]], Encoded | str]]:
    """Inside: a function from plain messages to ``(ids, mask, not compared)`` (:func:`encode_spans`), or
    the reason the template could not render them. ``last_only``: the final assistant turn's
    generation span and any after it (Phi-3 marks the EOS it appends after the last turn) are the
    target, earlier turns' are context (a preference pair's response after its prompt's turns)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    text = Path(template).read_text()
    encoder = _reading_specials(encoder)
    variables = {**dict(recipe.sft.chat.kwargs), **specials}
    added = set(encoder.get_added_tokens_decoder())

    def encode(messages: list[dict]) -> Encoded | str:
        try:
            rendered, spans = render_jinja_template([messages], chat_template=text, return_assistant_tokens_mask=True, **variables)
        except Exception as exc:  # noqa: BLE001 - a template error is the user's template, reported per record
            return f"the template raised {type(exc).__name__}"
        turns = sum(m["role"] == "assistant" for m in messages)  # one span each, then what the template adds
        marked = spans[0][max(turns - 1, 0) if len(spans[0]) >= turns else -1:] if last_only else spans[0]
        return encode_spans(rendered[0], marked, encoder, prompts=prompts, stops=stops)

    with _dated(text, datetime.strptime(str(recipe.sft.chat.date), "%Y-%m-%d")):
        prompts = _generation_prompts(text, variables, encoder, added)
        yield encode


def encode_spans(rendered: str, spans: list[tuple[int, int]], encoder: Any, *, prompts: list[str], stops: set[int]) -> Encoded:
    """``rendered`` encoded once: a token is a target when its characters overlap a span; a span's
    generation prompt (one of ``prompts``) and whitespace after its closing stop token are not compared."""
    encoding = encoder.encode(rendered, add_special_tokens=False)
    ids = np.array(encoding.ids, dtype=np.int64)
    starts = np.array([s for s, _ in encoding.offsets], dtype=np.int64)
    ends = np.array([e for _, e in encoding.offsets], dtype=np.int64)
    mask = np.zeros(len(ids), dtype=bool)
    free = {GENERATION_PROMPT: np.zeros(len(ids), dtype=bool), AFTER_STOP: np.zeros(len(ids), dtype=bool)}
    for a, b in spans:
        inside = (starts < b) & (ends > a)
        mask |= inside
        head = next((len(p) for p in prompts if rendered.startswith(p, a) and a + len(p) <= b), 0)
        free[GENERATION_PROMPT] |= inside & (starts >= a) & (ends <= a + head)
        body = a + len(rendered[a:b].rstrip())
        closing = np.flatnonzero(inside & (ends == body))
        if body < b and len(closing) and int(ids[closing[-1]]) in stops:
            free[AFTER_STOP] |= inside & (starts >= body) & (ends <= b)
    excused = free[GENERATION_PROMPT] | free[AFTER_STOP]
    return ids, mask & ~excused, free


def _generation_prompts(text: str, variables: dict[str, Any], encoder: Any, added: set[int]) -> list[str]:
    """What ``add_generation_prompt`` prints after a user turn, and its prefixes that end at an added
    token, longest first (none when the template cannot render a lone user turn). Compared by tokens:
    Phi-3 prints its EOS after a last user turn instead, and ``<|endoftext|>`` shares ``<|`` with ``<|assistant|>``."""
    from transformers.utils.chat_template_utils import render_jinja_template

    probe = [{"role": "user", "content": "Hi"}]
    try:
        texts = [render_jinja_template([probe], chat_template=text, **{**variables, "add_generation_prompt": flag})[0][0]
                 for flag in (False, True)]
    except Exception:  # noqa: BLE001 - then nothing is excused as a generation prompt
        return []
    without, with_ = (encoder.encode(t, add_special_tokens=False) for t in texts)
    same = next((i for i, (x, y) in enumerate(zip(without.ids, with_.ids)) if x != y), min(len(without.ids), len(with_.ids)))
    if same == len(with_.ids):
        return []
    start = with_.offsets[same][0]
    prompt = texts[1][start:]
    ends = {with_.offsets[i][1] - start for i in range(same, len(with_.ids)) if with_.ids[i] in added}
    return sorted({prompt[:e] for e in ends if e > 0} | {prompt}, key=len, reverse=True)


@functools.cache
def _with_not_compared(base: type) -> type:
    """``base`` (the caller's ``Expected``: this module does not import it) with ``not_compared``: the
    reference's targets left out of ``mask`` and not compared, a bool mask over ``ids`` per reason."""
    return dataclasses.make_dataclass("ChatExpected", [("not_compared", dict, dataclasses.field(default_factory=dict))],
                                      bases=(base,))


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> its copy that reads specials


def _reading_specials(encoder: Any) -> Any:
    """``encoder`` when it reads the template's special tokens as tokens, else a copy that does, made
    once per encoder (copying a 262k-token vocabulary such as Gemma 3's takes seconds)."""
    if not encoder.encode_special_tokens:
        return encoder
    copy = _COPIES.get(encoder)
    if copy is None:
        copy = type(encoder).from_str(encoder.to_str())
        copy.encode_special_tokens = False
        _COPIES[encoder] = copy
    return copy


@contextmanager
def _dated(template: str, day: datetime) -> Iterator[None]:
    """While inside, transformers' compiled ``template`` prints ``day`` where it calls ``strftime_now``."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    names = _compile_jinja_template(template).globals
    previous = names.get("strftime_now")
    names["strftime_now"] = lambda format: day.strftime(format)
    try:
        yield
    finally:
        names["strftime_now"] = previous


def _conversations(recipe: Any, files: list[Any], *, limit: int):
    """(location, canonical messages) of the first ``limit`` readable records, in input order."""
    produced = 0
    for index, file in enumerate(files):
        mapping = recipe.sft.fields[file.entry] if recipe.sft and file.entry < len(recipe.sft.fields) else None
        spec = (mapping or {}).get(MESSAGES, FieldSpec(MESSAGES, kind="messages"))
        for batch in read_records(file, index, fields={MESSAGES: spec}, batch_size=256, on_error="skip", drops=Counter()):
            for line, value in zip(batch.column("line").to_pylist(), batch.column(MESSAGES).to_pylist()):
                yield f"{file.path} line {line}", json.loads(value)
                produced += 1
                if produced >= limit:
                    return
