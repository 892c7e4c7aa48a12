"""Fine-tuning records: which fields each input is read with, chunks of them, and a chat record's
messages and tools as its template is given them."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataprep.errors import ConfigError, RecordProblem
from dataprep.read import EMPTY, FieldSpec, InputFile, read_records
from dataprep.read import chunks
from dataprep.recipe import Recipe
from dataprep.tasks.sft.chat import ChatTemplate
from dataprep.tasks.sft.templates import PairTemplate, get_template

log = logging.getLogger("dataprep.sft")


CHAT = "chat"
LABEL = "label"
MESSAGES = "messages"
# Chat record fields beside (or instead of) messages.
SYSTEM, TOOLS = "system", "tools"
INSTRUCTION, INPUT, OUTPUT, HISTORY = "instruction", "input", "output", "history"
LINE_FORMATS = ("jsonl", "txt", "tsv", "csv")


def location(file: InputFile, line: int) -> str:
    """How the readers number a record of this file: ``line N``, ``record N`` or ``row N``."""
    if file.format in LINE_FORMATS:
        return f"line {line}"
    return f"record {line}" if file.format == "json" else f"row {line}"


def template_of(recipe: Recipe) -> PairTemplate | None:
    """The recipe's pair template, or None for the tokenizer's chat template."""
    assert recipe.sft is not None
    return None if recipe.sft.template == CHAT else get_template(recipe.sft.template)


def fields_for(recipe: Recipe, index: int) -> dict[str, FieldSpec]:
    """Template field -> where it is in the records of recipe input ``index`` (``InputFile.entry``).

    Defaults: a field of the same name (optional fields such as Alpaca's ``input`` may be
    absent); ``messages`` for chat. A recipe's ``fields:`` overrides by name.

    Raises:
        ConfigError: ``fields:`` names a field the template does not use.
    """
    assert recipe.sft is not None
    template = template_of(recipe)
    explicit = recipe.sft.fields[index] if index < len(recipe.sft.fields) else None
    if template is None:
        if explicit and (INSTRUCTION in explicit or OUTPUT in explicit):  # Alpaca-shaped records through the chat template
            defaults = {
                INSTRUCTION: FieldSpec(INSTRUCTION), INPUT: FieldSpec(INPUT, required=False),
                OUTPUT: FieldSpec(OUTPUT), HISTORY: FieldSpec(HISTORY, kind="json", required=False),
            }
        else:
            defaults = {MESSAGES: FieldSpec(MESSAGES, kind="messages")}
        # Read whenever present: a system prompt or tool list beside the conversation is never dropped.
        defaults[SYSTEM] = FieldSpec(SYSTEM, kind="any", required=False)
        defaults[TOOLS] = FieldSpec(TOOLS, kind="json", required=False)
    else:
        defaults = {name: FieldSpec(name) for name in sorted(template.required_fields)}
        defaults.update({name: FieldSpec(name, required=False) for name in sorted(template.optional_fields)})
        # Read whenever present, so they are rendered (history) or reported (system), never dropped unseen.
        defaults.setdefault(HISTORY, FieldSpec(HISTORY, kind="json", required=False))
        defaults.setdefault(SYSTEM, FieldSpec(SYSTEM, kind="any", required=False))
        if LABEL in defaults:
            defaults[LABEL] = FieldSpec(defaults[LABEL].path, kind="any")
    for name, spec in (explicit or {}).items():
        if name not in defaults:
            raise ConfigError(
                f"inputs[{index}].fields names {name!r}, which the template does not use; its fields are {sorted(defaults)}",
                fix=f"map only those fields under inputs[{index}].fields, or choose the template that uses {name!r}",
            )
        defaults[name] = spec
    return defaults


def read_label_set(recipe: Recipe, files: list[InputFile]) -> tuple[str, ...]:
    """The sorted set of labels in the data (``classification.labels: null``)."""
    labels: set[str] = set()
    for index, file in enumerate(files):
        spec = fields_for(recipe, file.entry)[LABEL]
        for batch in read_records(file, index, fields={LABEL: spec}, batch_size=8192, on_error="skip", drops=Counter()):
            labels.update(batch.column(LABEL).to_pylist())
    labels.discard("")
    return tuple(sorted(labels))


def chunk_reader(recipe: Recipe) -> chunks.ChunkReader:
    """How fine-tuning reads its chunks: the recipe's fields as ``(file index, batch)``."""
    return chunks.ChunkReader(partial(_read_file, recipe), max_bytes=recipe.output.chunk_bytes)


def _read_file(recipe: Recipe, index: int, file: InputFile, drops: Counter) -> Iterator[pa.RecordBatch]:
    return read_records(
        file, index, fields=fields_for(recipe, file.entry), batch_size=recipe.output.chunk_records,
        on_error=recipe.on_error, drops=drops,
    )


def iter_chunks(files: list[InputFile], recipe: Recipe, read_drops: Counter, counts: Counter) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Every input record, in input order, as ``(file index, batch)`` (:func:`chunk_reader`)."""
    return chunk_reader(recipe).chunks(files, read_drops=read_drops, counts=counts)


def conversation(record: Mapping[str, Any]) -> tuple[list[dict], list | None]:
    """A chat record's messages and tools, as the chat template is given them.

    ``messages`` (already parsed), or Alpaca fields: ``history`` pairs become earlier
    user/assistant turns, then ``instruction`` (+ a newline and ``input`` when there is one) as
    the user turn and ``output`` as the assistant's. A top-level ``system`` string becomes the
    first message; ``tools`` (a list, or a JSON string of one, as real datasets store it) goes
    to the template.

    Raises:
        RecordProblem: ``bad_type`` for history or tools of the wrong shape, ``conflicting_system``
            for a top-level system prompt beside a different system message.
    """
    if MESSAGES in record:
        messages = list(record[MESSAGES])
    else:
        messages = []
        for k, pair in enumerate(json_value(record.get(HISTORY), HISTORY) or []):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RecordProblem("bad_type", f"history[{k}] must be a [user, assistant] pair of strings, got {pair!r:.80}")
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        user = record[INSTRUCTION] + (f"\n{record[INPUT]}" if record.get(INPUT) else "")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": record[OUTPUT]}]
    system = record.get(SYSTEM)
    if system:
        first = messages[0] if messages else {}
        if isinstance(first, Mapping) and first.get("role") == "system":
            if first.get("content") != system:
                raise RecordProblem(
                    "conflicting_system",
                    "the record has a top-level system prompt and a different system message; map only one of them",
                )
        else:
            messages.insert(0, {"role": "system", "content": system})
    tools = json_value(record.get(TOOLS), TOOLS)
    if isinstance(tools, Mapping):
        tools = [tools]
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise RecordProblem("bad_type", f"tools must be a list of tool schemas (objects), got {str(tools)[:80]!r}")
    return messages, tools or None


def absent(value: Any) -> bool:
    """A ``json``-kind field's value that stands for an absent optional field (read as JSON ``null``)."""
    return value is None or value == EMPTY["json"]


def json_value(value: Any, name: str) -> Any:
    """A ``json``-kind field: its JSON text parsed, and a JSON string holding JSON parsed again."""
    if absent(value):  # no parse per record
        return None
    try:
        value = json.loads(value) if isinstance(value, str) else value
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            value = json.loads(value)
    except json.JSONDecodeError as exc:
        raise RecordProblem("bad_type", f"field {name!r} is a string that is not valid JSON ({exc})") from exc
    return None if value in ("", None) else value


def chat_template_of(recipe: Recipe, tokenizer) -> ChatTemplate:
    """The recipe's chat template: ``chat.template`` or the tokenizer's own, with ``chat.kwargs``
    and the fixed ``chat.date``.

    Raises:
        ConfigError: ``chat.template`` cannot be read.
        TemplateError: No chat template, or it does not compile.
    """
    spec = recipe.sft.chat
    source = None
    if spec.template is not None:
        try:
            source = Path(spec.template).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"chat.template: cannot read {spec.template} ({exc.strerror or exc})",
                              fix="point `chat.template` at a readable Jinja file") from exc
    return ChatTemplate.from_tokenizer(tokenizer, source=source, variables=dict(spec.kwargs), date=spec.date)
