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
"""

from __future__ import annotations

import json
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.dataset.manifest import Manifest
from dataprep.errors import DataprepError
from dataprep.read import FieldSpec, read_records, resolve_inputs
from dataprep.recipe import recipe_from_dict

MESSAGES = "messages"


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
    from transformers.utils.chat_template_utils import render_jinja_template

    text = Path(template).read_text()
    encoder = _reading_specials(encoder)
    try:
        recipe = recipe_from_dict(dict(manifest.recipe), base_dir=manifest.recipe_folder())
        files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    except DataprepError as exc:  # the sources moved, or were records in memory (the Python API)
        return [], Counter(), f"the source records cannot be read here ({str(exc).splitlines()[0][:160]})"
    variables = {**dict(recipe.sft.chat.kwargs), **specials}
    expected, unrendered = [], Counter()
    with _dated(text, datetime.strptime(str(recipe.sft.chat.date), "%Y-%m-%d")):
        for where, messages in _conversations(recipe, files, limit=limit):
            if any(m.get("tool_calls") or "train" in m or m.get("reasoning_content") for m in messages):
                unrendered["tool calls, train flags or reasoning (rendered by the recipe's chat options)"] += 1
                continue
            plain = [{"role": m["role"], "content": m["content"]} for m in messages]
            try:
                rendered, spans = render_jinja_template([plain], chat_template=text, return_assistant_tokens_mask=True, **variables)
            except Exception as exc:  # noqa: BLE001 - a template error is the user's template, reported per record
                unrendered[f"the template raised {type(exc).__name__}"] += 1
                continue
            encoding = encoder.encode(rendered[0], add_special_tokens=False)
            ids = np.array(encoding.ids, dtype=np.int64)
            starts = np.array([s for s, _ in encoding.offsets], dtype=np.int64)
            ends = np.array([e for _, e in encoding.offsets], dtype=np.int64)
            mask = np.zeros(len(ids), dtype=bool)
            for a, b in spans[0]:
                mask |= (starts < b) & (ends > a)
            first = int(np.argmax(mask)) if mask.any() else len(ids)
            expected.append(expected_type(where=where, ids=ids, mask=mask, prompt_tokens=first))
    return expected, unrendered, None


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
