"""What a fine-tuning dataset's targets must be, re-derived from its source records by another path.

The trainer's data proofs (:mod:`dataprep.train.data_proofs`) compare the rows with this. It shares
no code with the producer (``dataprep.tasks.sft``): only the template's *text* is looked up by
name. A pair-template record renders with ``str.format``; the full text is encoded once by the
dataset's own tokenizer (``tokenizers.Tokenizer.encode``, special-token strings recognised, as
``apply_chat_template`` does); a token is a target when its characters reach past the prompt;
the stop token is appended as a target (a BOS before, when the dataset frames with one)::

    "Q: 12+7\\nA: " + "19"   ->  ids  Q : ␣ 1 2 + 7 \\n A : ␣ 1 9 <eos>
                              mask 0 0 0 0 0 0 0 0  0 0 0 1 1   1

Chat records go through a ``{% generation %}``-tagged template instead (:mod:`reference_chat`).
What it cannot render it says, never guesses: a chat without such a template, classification
labels, target policies other than ``completion``, normalized text, and a record with earlier
turns (``history``) are reported as the reason the proof is skipped or the record is not rendered.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dataprep.dataset.manifest import Manifest
from dataprep.read import FieldSpec, read_records, resolve_inputs
from dataprep.recipe import Recipe
from dataprep.train.reference_sources import encode_completion, frame_specials, normalized, source_recipe

HISTORY = "history"


@dataclass
class Expected:
    """One source record as the reference renders it."""

    where: str          # "FILE line N"
    ids: np.ndarray     # int64
    mask: np.ndarray    # bool: a training target
    prompt_tokens: int  # tokens before the first target


@dataclass
class Rendering:
    """The sampled records rendered, or why none could be."""

    expected: list[Expected]
    skipped: str | None = None     # why the reference cannot render this dataset
    unrendered: Counter | None = None  # records it could not render, by reason
    max_length: int = 0
    overflow: str = "error"


def _template_text(spec: object) -> tuple[str, str, str | None] | None:
    """(prompt, response, prompt_no_input) of a pair template: inline, or by name (its text only)."""
    if isinstance(spec, dict):
        return spec["prompt"], spec["response"], spec.get("prompt_no_input")
    if spec == "chat":
        return None
    from dataprep.tasks.sft.templates import get_template  # the template table: text, not rendering code

    template = get_template(str(spec))
    return template.prompt, template.response, template.prompt_no_input


def _fields(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def why_not(manifest: Manifest) -> str | None:
    """Why the reference cannot render this dataset's records, or None when it can."""
    recipe, sft = manifest.recipe, manifest.sft
    if sft is None:
        return f"{manifest.task} data has no response to re-render"
    if recipe.get("classification") is not None:
        return "classification data: the label check compares label ids with their target text instead"
    if sft.masking != "completion":
        return f"masking: {sft.masking}: the reference renders completion targets only"
    return normalized(manifest)


def render(manifest: Manifest, encoder: object, *, stop_id: int, bos_id: int | None, limit: int,
           chat_template: str | None = None) -> Rendering:
    """The first ``limit`` readable records of the dataset's inputs, rendered and tokenized.

    ``encoder`` is the dataset's ``tokenizers.Tokenizer`` (specials recognised in the text).
    ``chat_template``: a ``{% generation %}``-tagged template for chat data (:mod:`reference_chat`).
    """
    sft = manifest.sft
    if sft is not None and manifest.recipe.get("template") == "chat" and manifest.recipe.get("classification") is None:
        return _render_chat(manifest, encoder, chat_template=chat_template, limit=limit)
    skipped = why_not(manifest)
    if skipped is not None:
        return Rendering([], skipped=skipped)
    prompt_text, response_text, no_input = _template_text(manifest.recipe["template"])
    recipe = source_recipe(manifest)
    if isinstance(recipe, str):
        return Rendering([], skipped=recipe)
    expected, unrendered = [], Counter()
    optional = set(_fields(prompt_text)) - set(_fields(no_input)) if no_input is not None else set()
    names = {name: name not in optional for name in _fields(prompt_text) + _fields(response_text)}
    for where, record in _records(recipe, names, limit=limit):
        if record.get(HISTORY) not in (None, "", "[]", "null"):
            unrendered["history (earlier turns)"] += 1
            continue
        blank = {name for name, value in record.items() if not str(value).strip()}
        prompt = no_input if no_input is not None and blank & optional else prompt_text
        p, r = prompt.format(**record), response_text.format(**record)
        ids, mask, _ = encode_completion(encoder, p, r, stop_id=stop_id, bos_id=bos_id)
        first = int(np.argmax(mask))
        expected.append(Expected(where=where, ids=ids, mask=mask, prompt_tokens=first))
    return Rendering(expected, unrendered=unrendered, max_length=sft.max_length, overflow=sft.overflow)


def _render_chat(manifest: Manifest, encoder: object, *, chat_template: str | None, limit: int) -> Rendering:
    """Chat records through a generation-tagged template, or why they cannot be."""
    from dataprep.train import reference_chat

    sft = manifest.sft
    skipped = reference_chat.why_not(chat_template)
    if skipped is None and sft.masking != "all_assistant":
        skipped = f"masking: {sft.masking}: a generation-tagged template marks every assistant turn (all_assistant)"
    if skipped is not None:
        return Rendering([], skipped=skipped)
    expected, unrendered, skipped = reference_chat.render(manifest, encoder, template=str(chat_template), specials=frame_specials(manifest),
                                                          limit=limit, expected_type=Expected)
    return Rendering(expected, skipped=skipped, unrendered=unrendered, max_length=sft.max_length, overflow=sft.overflow)


def _records(recipe: Recipe, names: dict[str, bool], *, limit: int) -> Iterator[tuple[str, dict[str, str]]]:
    """(location, {field: text}) of the first ``limit`` readable records, in input order.

    ``names``: template field -> required (a record without it is not readable, as for the run)."""
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    produced = 0
    for index, file in enumerate(files):
        mapping = recipe.sft.fields[file.entry] if recipe.sft and file.entry < len(recipe.sft.fields) else None
        fields = {name: (mapping or {}).get(name, FieldSpec(name, required=required)) for name, required in names.items()}
        fields.setdefault(HISTORY, FieldSpec(HISTORY, kind="json", required=False))
        for batch in read_records(file, index, fields=fields, batch_size=256, on_error="skip", drops=Counter()):
            columns = {name: batch.column(name).to_pylist() for name in fields}
            lines = batch.column("line").to_pylist()
            for i, line in enumerate(lines):
                yield f"{file.path} line {line}", {name: columns[name][i] or "" for name in fields}
                produced += 1
                if produced >= limit:
                    return
