"""A preference dataset's pairs re-derived from its source records by another path: the ``masks``
check of a DPO run (:mod:`dataprep.train.dpo_checks`) compares the rows with this.

The producer (``dataprep.tasks.preference``) renders prompt + chosen and prompt + rejected with its
own template layer, tokenizes each once and cuts both where the response's first target token is.
This renders the same records again without that code, each sequence encoded once by the dataset's
own tokenizer (``tokenizers.Tokenizer``):

* ``template: text``: the prompt text and the response as one text, a token being the response's
  when its characters reach past the prompt, then the stop token (a BOS before, when the rows start
  with one), as :mod:`dataprep.train.reference` renders a pair template::

      "Q: 12+7\\nA: " + "19"  ->  Q : ␣ 1 2 + 7 \\n A : ␣ | 1 9 <eos>
                                  prompt_ids              | chosen_ids

* ``template: chat``: the prompt's messages and the response as the last assistant turn through a
  ``{% generation %}``-tagged template (:func:`dataprep.train.reference_chat.renderer`); the response
  is the tokens of the last generation span, through its closing stop token (what follows the stop
  is cut, as the rows cut it). Its generation prompt and whitespace after the stop are not compared
  (``not_compared``, as for fine-tuning): on either side of the cut, they cannot fail it.

Records are read as the build reads them (``dataprep.read.preference``: a transcripts pair's prompt
is that reader's longest common prefix), so what this proves is the rendering, the tokenization and
the cut between prompt and response. What it cannot render it says, never guesses: KTO data,
normalized text, a chat dataset without a tagged template, records with tools. Records the build
drops by its own rules (a token across the prompt's end under ``preference.boundary: drop``, prompt
tokens that differ between chosen and rejected, a bad pair) are counted by reason, not rendered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataprep.dataset.manifest import Manifest
from dataprep.read import FieldSpec, read_records, resolve_inputs
from dataprep.read import preference as R
from dataprep.recipe import Recipe
from dataprep.train import reference_chat
from dataprep.train.reference_sources import encode_completion, frame_specials, normalized, source_recipe

KTO_FORMAT = "dataprep.kto/1"
BOUNDARY_DROPPED = "a token spans the prompt's end (preference.boundary: drop drops the pair)"
PROMPTS_DIFFER = "the prompt's tokens differ between chosen and rejected (the build drops the pair)"
NO_RESPONSE = "the template marks no response"
TEXT_NEEDS_TEXT = "a conversation prompt with template: text (the build drops the pair)"
CHAT_OPTIONS = "tool calls or reasoning (rendered by the recipe's chat options)"


@dataclass
class Side:
    """One of a pair's two sequences as the reference renders it."""

    ids: np.ndarray   # int64: prompt + response, through the stop token
    mask: np.ndarray  # bool: the response's tokens that are compared
    not_compared: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> bool positions (chat conventions)

    @property
    def free(self) -> np.ndarray:
        """The positions not compared, on either side of the cut."""
        free = np.zeros(len(self.ids), dtype=bool)
        for positions in self.not_compared.values():
            free |= positions
        return free


@dataclass
class ExpectedPair:
    """One source record's pair as the reference renders it."""

    where: str  # "FILE line N"
    chosen: Side
    rejected: Side

    @property
    def not_compared(self) -> Counter:
        """Tokens not compared in both sequences, by reason (the not-compared after-stop tokens are cut)."""
        found: Counter = Counter()
        for side in (self.chosen, self.rejected):
            found.update({reason: int(positions.sum()) for reason, positions in side.not_compared.items()})
        return found


@dataclass
class PairRendering:
    """The sampled records rendered, or why none could be."""

    expected: list[ExpectedPair]
    skipped: str | None = None  # why the reference cannot render this dataset
    unrendered: Counter = field(default_factory=Counter)  # records not rendered, by reason
    max_length: int = 0


def why_not(manifest: Manifest, chat_template: str | None) -> str | None:
    """Why the reference cannot render this dataset's pairs, or None when it can."""
    if manifest.format == KTO_FORMAT:
        return "KTO data: single labelled responses, no pairs"
    if manifest.sft is None:
        return f"{manifest.task} data has no responses to re-render"
    if manifest.recipe.get("template", "chat") == "chat":
        return normalized(manifest) or reference_chat.why_not(chat_template)
    return normalized(manifest)


def render(manifest: Manifest, encoder: Any, *, stop_id: int, bos_id: int | None, limit: int,
           chat_template: str | None = None) -> PairRendering:
    """The first ``limit`` readable records of the dataset's inputs, each pair rendered and tokenized.

    ``encoder``: the dataset's ``tokenizers.Tokenizer``; ``chat_template``: a generation-tagged template
    (chat data).
    """
    skipped = why_not(manifest, chat_template)
    if skipped is not None:
        return PairRendering([], skipped=skipped)
    recipe = source_recipe(manifest)
    if isinstance(recipe, str):
        return PairRendering([], skipped=recipe)
    options = manifest.recipe.get("preference") or {}
    shape, drop_merged = options.get("shape", "conversation"), options.get("boundary", "drop") == "drop"
    chat = manifest.recipe.get("template", "chat") == "chat"
    out = PairRendering([], max_length=manifest.sft.max_length)
    if chat:
        context = reference_chat.renderer(recipe, encoder, template=str(chat_template), specials=frame_specials(manifest),
                                          stops=set(manifest.stop_ids or ()), last_only=True)
    else:
        context = nullcontext(lambda prompt, response: _text_side(encoder, prompt, response, stop_id=stop_id, bos_id=bos_id,
                                                                  drop_merged=drop_merged))
    with context as encode:
        for where, record, roles in _records(recipe, shape, limit=limit):
            got = _pair(record, roles, shape, encode if not chat else _chat_side(encode, shape))
            if isinstance(got, str):
                out.unrendered[got] += 1
                continue
            out.expected.append(ExpectedPair(where, *got))
    return out


def _pair(record: dict[str, Any], roles: Any, shape: str, side: Callable[..., Side | str]) -> tuple[Side, Side] | str:
    """(chosen, rejected) of one record, or why it is not rendered."""
    pair = R.read_transcripts(record) if shape == "transcripts" else R.read_pair(record, roles)
    if isinstance(pair, tuple):
        return f"not a pair ({pair[0]})"
    if record.get("tools"):
        return "tools (rendered by the recipe's chat options)"
    prompt = pair.prompt if pair.prompt is not None else pair.prompt_text
    chosen, rejected = side(prompt, pair.chosen), side(prompt, pair.rejected)
    for got in (chosen, rejected):
        if isinstance(got, str):
            return got
    cuts = [int(np.argmax(s.mask | s.free)) if s.mask.any() else -1 for s in (chosen, rejected)]
    if -1 in cuts:
        return NO_RESPONSE
    if cuts[0] != cuts[1] or not np.array_equal(chosen.ids[: cuts[0]], rejected.ids[: cuts[1]]):
        return PROMPTS_DIFFER
    return chosen, rejected


def _text_side(encoder: Any, prompt: str | list[dict], response: str, *, stop_id: int, bos_id: int | None,
               drop_merged: bool) -> Side | str:
    """prompt + response encoded once; the response is every token reaching past the prompt, then the stop token."""
    if not isinstance(prompt, str):
        return TEXT_NEEDS_TEXT
    ids, mask, straddles = encode_completion(encoder, prompt, response, stop_id=stop_id, bos_id=bos_id)
    if drop_merged and straddles:
        return BOUNDARY_DROPPED
    return Side(ids, mask)


def _chat_side(encode: Callable[[list[dict]], Any], shape: str) -> Callable[[Any, str], Side | str]:
    """A function from (prompt messages or text, response) to the chat template's :class:`Side`.

    A text prompt is one user turn (a transcript its turns), and its response is stripped: the
    build's reading of such pairs (``dataprep.read.preference``)."""

    def side(prompt: Any, response: str) -> Side | str:
        if isinstance(prompt, str):
            prompt = R.transcript_prompt(prompt) if shape == "transcripts" else [{"role": "user", "content": prompt}]
            if isinstance(prompt, tuple):
                return f"not a pair ({prompt[0]})"
            response = response.strip()
        if any(m.get("tool_calls") or m.get("reasoning_content") for m in prompt):
            return CHAT_OPTIONS
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        got = encode([*messages, {"role": "assistant", "content": response}])
        if isinstance(got, str):
            return got
        ids, mask, free = got
        if not mask.any():
            return NO_RESPONSE
        end = int(np.flatnonzero(mask)[-1]) + 1  # the rows end at the stop: what follows is cut
        return Side(ids[:end], mask[:end], {reason: p[:end] for reason, p in free.items() if p[:end].any()})

    return side


def _records(recipe: Recipe, shape: str, *, limit: int) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(location, {field: parsed JSON}, the input's role map) of the first ``limit`` readable records."""
    import json

    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    names = ("chosen", "rejected") if shape == "transcripts" else ("prompt", "chosen", "rejected", "tools")
    produced = 0
    for index, file in enumerate(files):
        mapping = recipe.sft.fields[file.entry] if recipe.sft and file.entry < len(recipe.sft.fields) else None
        fields = {name: FieldSpec((mapping or {})[name].path if name in (mapping or {}) else name, kind="json",
                                  required=name != "tools") for name in names}
        for batch in read_records(file, index, fields=fields, batch_size=256, on_error="skip", drops=Counter()):
            columns = {name: batch.column(name).to_pylist() for name in names}
            for i, line in enumerate(batch.column("line").to_pylist()):
                record = {name: None if columns[name][i] is None else json.loads(columns[name][i]) for name in names}
                yield f"{file.path} line {line}", record, file.spec.role_map
                produced += 1
                if produced >= limit:
                    return
