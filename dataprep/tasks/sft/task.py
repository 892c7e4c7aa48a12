"""The fine-tuning pipeline: labeled pairs or chats -> templated, tokenized rows with loss masks.

::

    read fields (main) -> [render template -> tokenize once with offsets -> mask -> overflow] (workers)
                       -> dedup -> split -> pack (none | bfd) -> write (main)

One example, GPT-2, ``prompt_completion`` (``1`` = target)::

    text       "Reverse: abc\\n"    "cba"  "<|endoftext|>"
    input_ids   ... 25 450 66 198   66 7012   50256
    loss_mask    0  0   0  0   0     1   1      1

The target is the response **and the stop token that closes it**. The first token of every
example is never a target (nothing before it in the example predicts it), so packed examples
never train across an example boundary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.read import chunks
from dataprep import columns as C
from dataprep.tasks.sft.chat import ChatTemplate, TemplateRaised
from dataprep.errors import ConfigError, InputError
from dataprep.text.filters import content_hashes, validation_flags
from dataprep.tasks.sft.loss_mask import Encoded, EncodedBatch, encode_batch_flat
from dataprep.text.normalize import normalize_array
from dataprep.tasks.base import ChunkResult
from dataprep.pack.packers import BfdPacker, PackedRows, PackStats
from dataprep.read import FieldSpec, InputFile, read_records
from dataprep.recipe import Recipe
from dataprep.tasks.sft.templates import PairTemplate, RecordProblem, Rendered, TemplateError, get_template

log = logging.getLogger("dataprep.sft")

CHAT = "chat"
LABEL = "label"
MESSAGES = "messages"
# Chat record fields beside (or instead of) messages.
SYSTEM, TOOLS = "system", "tools"
INSTRUCTION, INPUT, OUTPUT, HISTORY = "instruction", "input", "output", "history"
LINE_FORMATS = ("jsonl", "txt", "tsv", "csv")

# Drop reasons added by this stage (the readers and templates add their own).
TOO_LONG = "too_long"
RESPONSE_TOO_LONG = "response_too_long"
NO_TARGET = "no_target"
UNKNOWN_LABEL = "unknown_label"
TEMPLATE_RAISED = "template_raised"
SPECIAL_TOKEN_TEXT = "special_token_text"

# Examples whose record holds a system prompt that a pair template has no place for (a warning).
SYSTEM_NOT_RENDERED = "system_not_rendered"
# Examples with a message part the chat template does not print (a warning per part).
UNRENDERED, UNRENDERED_PARTS = "unrendered_", ("content", "reasoning", "tool_calls", "system")


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
                f"inputs[{index}].fields names {name!r}, which the template does not use; "
                f"its fields are {sorted(defaults)}"
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


class SftWorker:
    """Renders, tokenizes and masks one chunk (built once per worker process)."""

    def __init__(self, recipe: Recipe, tokenizer, files: list[InputFile], labels: tuple[str, ...] | None):
        assert recipe.sft is not None
        self.recipe = recipe
        self.sft = recipe.sft
        self.tokenizer = tokenizer
        self.files = files
        self.pair = template_of(recipe)
        if self.pair is not None and self.sft.masking == "generation":
            raise ConfigError("masking: generation reads a chat template's {% generation %} blocks; it needs template: chat")
        self.chat = chat_template_of(recipe, tokenizer) if self.pair is None else None
        if self.chat is not None and self.sft.masking == "generation" and not self.chat.has_generation_tags:
            raise ConfigError(
                "masking: generation needs a chat template with {% generation %} ... {% endgeneration %} blocks; set "
                "chat.template to a generation-tagged training template, or use masking: all_assistant"
            )
        self.stop_text = tokenizer.tokens.get("eos")
        if self.pair is not None and not self.stop_text:
            raise ConfigError("the tokenizer has no EOS token to close responses; set `tokenizer.eos_token`")
        self.label_ids = None if labels is None else {label: i for i, label in enumerate(labels)}
        self.special_text = _special_pattern(tokenizer) if self.sft.special_text == "error" else None
        # validate --recipe: bad records are collected here as (file, location, reason, message, fix)
        self.sink: list[tuple[str, str, str, str, str]] | None = None
        self.drop_samples: list[tuple[str, str, str]] = []  # this chunk's first skipped records: (location, reason, message)

    def _take_samples(self) -> list[tuple[str, str, str]]:
        samples, self.drop_samples = self.drop_samples, []
        return samples

    def _check_special_text(self, record: Mapping[str, Any]) -> None:
        """A record's own text must not hold a special token's text (``special_text: error``)."""
        for name, value in record.items():
            for text in _strings(value):
                found = self.special_text.search(text)
                if found:
                    raise RecordProblem(
                        SPECIAL_TOKEN_TEXT,
                        f"field {name!r} holds {found.group()!r}, the text of a special token: it would encode as "
                        "that token (a stop or turn marker) inside the example",
                    )

    def __call__(self, item: tuple[int, pa.RecordBatch]) -> ChunkResult:
        index, batch = item
        file = self.files[index]
        drops: Counter = Counter()
        columns = self._columns(batch, file.entry)
        lines = batch.column(C.LINE).to_pylist()
        rendered, label_ids, kept_lines, unseen_system = [], [], [], []
        for row, line in enumerate(lines):
            record = {name: values[row] for name, values in columns.items()}
            try:
                label = self._label(record[LABEL]) if self.label_ids is not None else None
                rendered.append(self._render(record))
            except RecordProblem as problem:
                self._bad(file, line, problem.reason, problem.message, drops)
                continue
            label_ids.append(label)
            kept_lines.append(line)
            unseen_system.append(int(self.pair is not None and bool(record.get(SYSTEM))))
        encoded = encode_batch_flat(self.tokenizer, rendered)
        extra = {SYSTEM_NOT_RENDERED: np.asarray(unseen_system, dtype=np.int64)}
        for part in UNRENDERED_PARTS:  # examples where the chat template printed none of that part
            extra[f"{UNRENDERED}{part}"] = np.fromiter((part in r.unrendered for r in rendered), dtype=np.int64, count=len(rendered))
        return self._fit_batch(index, file, encoded, rendered, label_ids, kept_lines, drops, extra_stats=extra)

    def _fit_batch(self, source, file, enc: EncodedBatch, rendered, label_ids, lines, drops, *,
                   extra_stats: Mapping[str, np.ndarray] | None = None,
                   extra_columns: Mapping[str, np.ndarray] | None = None) -> ChunkResult:
        """:meth:`_fit` for a whole chunk: vectorised for the examples that fit as they are (nearly
        all), ``_fit`` itself, in input order, for the few with no target or over ``max_length``.

        ``extra_stats`` (per-example counters, summed in the manifest) and ``extra_columns``
        (per-example values, carried to every token as extras) let a task built on this one
        (few-shot) add its own, filtered like everything else to the examples kept."""
        lengths, offsets = enc.lengths, enc.offsets
        mask = enc.mask.copy()
        mask[offsets[:-1][lengths > 0]] = 0  # nothing in an example predicts its first token
        cumulative = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
        targets = cumulative[offsets[1:]] - cumulative[offsets[:-1]]
        stats = {
            "truncated": np.zeros(len(enc), dtype=np.int64),
            "truncated_tokens": np.zeros(len(enc), dtype=np.int64),
            "straddles": enc.straddles.copy(),
            "examples_with_straddle": (enc.straddles > 0).astype(np.int64),
            "target_tokens": targets,
            **(extra_stats or {}),
        }
        problems = np.flatnonzero((targets == 0) | (lengths > self.sft.max_length))
        keep = np.ones(len(enc), dtype=bool)
        keep[problems] = False
        replaced: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in problems.tolist():
            result = self._fit(enc[i], file, lines[i], drops)
            if result is not None:
                keep[i] = True
                replaced[i] = result[:2]
                for name, value in result[2].items():
                    stats[name][i] = value
        if replaced:  # truncated examples: rebuild the token arrays example by example
            pieces = [
                replaced[i] if i in replaced else (enc.ids[offsets[i] : offsets[i + 1]], mask[offsets[i] : offsets[i + 1]])
                for i in np.flatnonzero(keep).tolist()
            ]
            out_lengths = np.fromiter((len(p[0]) for p in pieces), dtype=np.int64, count=len(pieces))
            tokens = np.concatenate([p[0] for p in pieces]).astype(np.int32, copy=False)
            out_mask = np.concatenate([p[1] for p in pieces]).astype(np.uint8, copy=False)
        else:
            per_token = np.repeat(keep, lengths)
            out_lengths, tokens, out_mask = lengths[keep], enc.ids[per_token], mask[per_token]
        hashes = content_hashes([rendered[i].text for i in np.flatnonzero(keep).tolist()])
        extras = {C.LOSS_MASK: out_mask}
        if self.label_ids is not None:
            extras[C.LABEL_ID] = np.repeat(np.asarray(label_ids, dtype=np.int32)[keep], out_lengths)
        for name, values in (extra_columns or {}).items():
            extras[name] = np.repeat(np.asarray(values)[keep], out_lengths)
        return ChunkResult(
            hashes=hashes,
            validation=validation_flags(hashes, fraction=self.recipe.split.validation, salt=self.recipe.split.salt),
            tokens=tokens,
            lengths=out_lengths,
            source=source,
            extras=extras,
            doc_stats={name: values[keep] for name, values in stats.items()},
            drops=drops,
            drop_samples=self._take_samples(),
        )

    # --- per record ----------------------------------------------------------------------

    def _columns(self, batch: pa.RecordBatch, entry: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name, spec in fields_for(self.recipe, entry).items():
            column = batch.column(name)
            if spec.kind == "text":
                out[name] = normalize_array(column, self.recipe.normalize).to_pylist()
            elif spec.kind == "messages":
                out[name] = [json.loads(v) for v in column.to_pylist()]
            else:
                out[name] = column.to_pylist()
        return out

    def _render(self, record: Mapping[str, Any]):
        if self.special_text is not None:
            self._check_special_text(record)
        if self.pair is not None:
            return self._render_pair(record)
        messages, tools = conversation(record)
        try:
            return self.chat.render_with_targets(
                messages, tools=tools, policy=self.sft.masking, reasoning=self.sft.chat.reasoning
            )
        except TemplateRaised as exc:
            raise RecordProblem(TEMPLATE_RAISED, f"the chat template refused this conversation: {exc}") from exc

    def _render_pair(self, record: Mapping[str, Any]) -> Rendered:
        """A pair template's example, after the record's ``history`` turns rendered through the same
        template (their responses are targets under ``all_assistant`` and ``all``)."""
        current = self.pair.render(record, stop_text=self.stop_text, policy=self.sft.masking)
        history = _json_value(record.get(HISTORY), HISTORY) or []
        if not history:
            return current
        turn = self.pair.turn_fields
        if turn is None:
            raise RecordProblem(
                "unsupported_by_template",
                f"the record has a history, but template {self.pair.name!r} has no single prompt and response field to "
                "render earlier turns with; use template: chat, or unmap history",
            )
        texts, targets, offset = [], [], 0
        for k, pair in enumerate(history):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RecordProblem("bad_type", f"history[{k}] must be a [user, assistant] pair of strings, got {pair!r:.80}")
            earlier = self.pair.render(dict(zip(turn, pair)), stop_text=self.stop_text, policy=self.sft.masking)
            if self.sft.masking in ("all_assistant", "all"):
                targets += [(a + offset, b + offset) for a, b in earlier.targets]
            texts.append(earlier.text)
            offset += len(earlier.text)
        if self.sft.masking == "all":
            targets = [(0, offset)]
        targets += [(a + offset, b + offset) for a, b in current.targets]
        return Rendered("".join(texts) + current.text, tuple(targets), offset + current.prompt_end)

    def _label(self, value: str) -> int:
        if value not in self.label_ids:
            known = ", ".join(list(self.label_ids)[:10])
            raise RecordProblem(UNKNOWN_LABEL, f"label {value!r} is not one of the labels ({known})")
        return self.label_ids[value]

    def _bad(self, file: InputFile, line: int, reason: str, message: str, drops: Counter) -> None:
        """A bad record: raise with its file, record and fix (``on_error: raise``), count it under
        ``reason`` (``skip``), or hand it to :attr:`sink` (``validate --recipe``)."""
        strict = self.recipe.on_error == "raise"
        if reason == UNKNOWN_LABEL:
            strict = self.sft.classification is not None and self.sft.classification.unknown_label == "error"
        fix = _FIXES.get(reason, "fix the record, map the right field under `fields:`, or set `on_error: skip` to count such records as dropped")
        if self.sink is not None:
            self.sink.append((file.location, location(file, line), reason, message, fix))
            return
        if strict:
            raise InputError(file.location, location(file, line), message, fix)
        drops[reason] += 1
        if len(self.drop_samples) < DROP_SAMPLES:
            self.drop_samples.append((location(file, line), reason, message))

    def _fit(self, enc: Encoded, file: InputFile, line: int, drops: Counter):
        """Apply the length policy; returns (ids, mask, per-example stats) or None when dropped."""
        ids, mask = enc.ids, enc.mask.copy()
        truncated = 0
        mask[:1] = 0  # nothing in the example predicts its first token
        if not mask.any():
            self._bad(file, line, NO_TARGET, "the example has no target token after tokenization", drops)
            return None
        limit = self.sft.max_length
        if len(ids) > limit:
            over = len(ids) - limit
            if self.sft.overflow == "error":
                self._bad(file, line, TOO_LONG, f"example is {len(ids)} tokens, over max_length {limit}", drops)
                return None
            if self.sft.overflow == "drop":
                drops[TOO_LONG] += 1
                return None
            # truncate_prompt: cut the prompt from the left, keep a leading BOS, never cut a target.
            keep_head = 1 if self.tokenizer.bos_id is not None and ids[0] == self.tokenizer.bos_id else 0
            first_target = int(np.argmax(mask))
            if keep_head + over > first_target - 1:  # at least one prompt token must remain before the targets
                self._bad(
                    file, line, RESPONSE_TOO_LONG,
                    f"example is {len(ids)} tokens and its response alone needs {len(ids) - first_target + 1 + keep_head}; max_length is {limit}",
                    drops,
                )
                return None
            ids = np.concatenate([ids[:keep_head], ids[keep_head + over :]])
            mask = np.concatenate([mask[:keep_head], mask[keep_head + over :]])
            truncated = over
        stats = {
            "truncated": int(truncated > 0),
            "truncated_tokens": truncated,
            "straddles": enc.straddles,
            "examples_with_straddle": int(enc.straddles > 0),
            "target_tokens": int(mask.sum()),
        }
        return ids, mask, stats

_SKIP = "or `on_error: skip` to count such records as dropped"
DROP_SAMPLES = 3  # skipped records whose location a chunk result carries (for the end-of-run messages)
_FIXES = {
    UNKNOWN_LABEL: "add the label to `classification.labels`, or set `classification.unknown_label: drop`",
    TOO_LONG: "raise `max_length`, or set `overflow: drop` or `overflow: truncate_prompt`",
    RESPONSE_TOO_LONG: "raise `max_length`: the response alone does not fit, and it is never cut",
    SPECIAL_TOKEN_TEXT: "remove or escape that text in the record, set `special_text: keep` to encode it as "
    f"the special token, {_SKIP}",
    "unsupported_by_template": f"use a chat template that renders them (`chat.template:`), unmap that field, {_SKIP}",
    TEMPLATE_RAISED: f"fix the conversation as the template's message says, {_SKIP}",
    "template_failed": f"give the template messages in the shape it expects (see its source), {_SKIP}",
    "target_not_found": "use a template that renders every assistant turn's content, or `masking: generation` with a "
    f"generation-tagged template (`chat.template:`), {_SKIP}",
    "no_end_of_turn": f"use a template that closes assistant turns with an end-of-turn or EOS token, {_SKIP}",
    "unknown_role": f"map the dataset's roles under the input's `roles:` (e.g. human: user, gpt: assistant), {_SKIP}",
}


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
        for k, pair in enumerate(_json_value(record.get(HISTORY), HISTORY) or []):
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
    tools = _json_value(record.get(TOOLS), TOOLS)
    if isinstance(tools, Mapping):
        tools = [tools]
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise RecordProblem("bad_type", f"tools must be a list of tool schemas (objects), got {str(tools)[:80]!r}")
    return messages, tools or None


def _json_value(value: Any, name: str) -> Any:
    """A ``json``-kind field: its JSON text parsed, and a JSON string holding JSON parsed again."""
    if value is None:
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
            raise ConfigError(f"chat.template: cannot read {spec.template} ({exc.strerror or exc})") from exc
    return ChatTemplate.from_tokenizer(tokenizer, source=source, variables=dict(spec.kwargs), date=spec.date)


def bad_records(
    recipe: Recipe, tokenizer, files: list[InputFile], counts: dict[str, int] | None = None
) -> Iterator[tuple[str, str, str, str, str]]:
    """Every record of ``files`` that ``run`` would reject after reading it, as
    ``(file, location, reason, message, fix)``, found by ``run``'s own reader and worker (render,
    tokenize, mask, fit): ``validate --recipe`` and ``run`` share one definition of a bad record.
    Records the reader rejects come first within each chunk's file position, then the worker's.
    ``counts[file]`` is set to the records read from each file."""
    cls = recipe.sft.classification
    labels = None if cls is None else (cls.labels or read_label_set(recipe, files))
    worker = SftWorker(recipe, tokenizer, files, labels)
    worker.sink = found = []
    reader = chunks.ChunkReader(
        lambda index, file, drops: read_records(
            file, index, fields=fields_for(recipe, file.entry), batch_size=recipe.output.chunk_records,
            on_error="skip", drops=drops, sink=found,
        ),
        max_bytes=recipe.output.chunk_bytes,
    )
    for index, file in enumerate(files):
        read = Counter()
        for item in reader.file_chunks(index, file, read_drops=Counter(), counts=read):
            worker(item)
            yield from found
            found.clear()
        yield from found  # the reader's rejects after the file's last chunk
        found.clear()
        if counts is not None:
            counts[file.location] = read["records_read"]


def sft_worker(recipe: Recipe, tokenizer, files: list[InputFile], labels: tuple[str, ...] | None) -> SftWorker:
    return SftWorker(recipe, tokenizer, files, labels)


class OnePerRow:
    """``packing: none``: each example is its own row (no padding), with the packer interface."""

    def __init__(self, *, max_length: int, extra_dtypes: dict[str, np.dtype]):
        self.extra_dtypes = extra_dtypes
        # efficiency is reported against padding every row to max_length, the naive layout
        self.stats = PackStats(seq_len=max_length)

    def add(self, tokens: np.ndarray, lengths: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> PackedRows:
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        self.stats.documents += len(lengths)
        self.stats.rows += len(lengths)
        self.stats.content_tokens += int(lengths.sum())
        return PackedRows(
            input_ids=tokens.astype(np.int32, copy=False),
            row_offsets=offsets,
            seq_lens=lengths.astype(np.int32),
            seq_offsets=np.arange(len(lengths) + 1, dtype=np.int64),
            num_pad=np.zeros(len(lengths), dtype=np.int32),
            extras=dict(extras or {}),
        )

    def finish(self) -> PackedRows:
        return PackedRows.empty(self.extra_dtypes)


def row_schema(recipe: Recipe) -> pa.Schema:
    """Arrow schema of the rows this recipe writes."""
    fields = [
        pa.field(C.INPUT_IDS, pa.list_(C.TOKEN_TYPE)),
        pa.field(C.SEQ_LENS, pa.list_(pa.int32())),
        pa.field(C.NUM_PAD, pa.int32()),
        pa.field(C.LOSS_MASK, pa.list_(pa.uint8())),
    ]
    if recipe.sft.classification is not None:
        packed = recipe.packing.mode == "bfd"
        fields.append(pa.field(C.LABEL_IDS if packed else C.LABEL_ID, pa.list_(pa.int32()) if packed else pa.int32()))
    return pa.schema(fields)


def make_packer(recipe: Recipe, tokenizer):
    """The packer for ``packing.mode`` (``none`` or ``bfd``); bfd never splits an example."""
    dtypes = {C.LOSS_MASK: np.dtype(np.uint8)}
    if recipe.sft.classification is not None:
        dtypes[C.LABEL_ID] = np.dtype(np.int32)
    if recipe.packing.mode == "none":
        return OnePerRow(max_length=recipe.sft.max_length, extra_dtypes=dtypes)
    if recipe.sft.max_length > recipe.packing.seq_len:
        raise ConfigError(
            f"max_length {recipe.sft.max_length} is longer than packing.seq_len {recipe.packing.seq_len}: "
            "an example could not fit a row; lower max_length or raise packing.seq_len"
        )
    return BfdPacker(
        seq_len=recipe.packing.seq_len,
        buffer_tokens=recipe.packing.buffer_tokens,
        pad_id=tokenizer.pad_id,
        pad_rows=recipe.packing.pad_rows,
        split_long=False,
        extra_dtypes=dtypes,
    )


def to_batch(recipe: Recipe):
    """Packed rows -> the Arrow batch of :func:`row_schema` (per-token labels become per-example)."""
    schema = row_schema(recipe)

    def convert(rows: PackedRows) -> pa.RecordBatch:
        labels = rows.extras.pop(C.LABEL_ID, None)
        batch = rows.to_record_batch()
        arrays = list(batch.columns)
        if labels is not None:
            # the label of each example = the label at its first token (pad pieces excluded)
            starts = np.concatenate(([0], np.cumsum(rows.seq_lens)[:-1])).astype(np.int64)
            per_piece = labels[np.minimum(starts, max(len(labels) - 1, 0))] if len(labels) else labels
            if recipe.packing.mode == "none":
                arrays.append(pa.array(per_piece.astype(np.int32)))
            else:
                is_pad = np.zeros(len(rows.seq_lens), dtype=bool)
                last = rows.seq_offsets[1:] - 1
                is_pad[last[rows.num_pad > 0]] = True
                counts = np.diff(rows.seq_offsets) - (rows.num_pad > 0)
                offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
                arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(per_piece[~is_pad].astype(np.int32))))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    return convert


def stop_token_ids(template: str | Mapping[str, Any], tokenizer, *, masking: str, chat: ChatTemplate | None = None) -> tuple[int, ...]:
    """The ids that may close an example's targets under ``template`` and ``masking``.

    Pair templates: the EOS id. ``chat``: EOS and the end-of-turn tokens the chat template
    closes assistant turns with (Phi-3: ``<|end|>``; gpt-oss: ``<|return|>``, ``<|end|>``,
    ``<|call|>``); none for ``masking: generation``. Recorded in the manifest so that
    ``validate`` can check every example's last target.
    """
    if template != CHAT:
        return (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    if masking == "generation":  # the template's own blocks decide what ends a target
        return ()
    chat = chat if chat is not None else ChatTemplate.from_tokenizer(tokenizer)
    ids = [tokenizer.tokenizer.token_to_id(text) for text in chat.stop_tokens()]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def manifest_section(recipe: Recipe, stage, labels: tuple[str, ...] | None, tokenizer) -> dict[str, Any]:
    """What a fine-tuning manifest adds: template, masking, examples, targets, straddles, labels."""
    template = template_of(recipe)
    chat = chat_template_of(recipe, tokenizer) if template is None else None
    content = sum(p["content_tokens"] for p in stage.pack_stats().values())
    stats = stage.stats
    if stats["examples_with_straddle"]:
        name = template.name if template else CHAT
        log.warning(
            "template %r: %d example(s) have a token straddling the prompt/response boundary "
            "(e.g. a template ending in a space merged into the response's first token); "
            "such tokens are targets",
            name,
            stats["examples_with_straddle"],
        )
    if stats[SYSTEM_NOT_RENDERED]:
        log.warning(
            "%d example(s) hold a `system` prompt that template %r has no place for; it is not in their text. "
            "Fix: use `template: chat` to render it through the tokenizer's chat template, or drop the field",
            stats[SYSTEM_NOT_RENDERED], template.name,
        )
    unrendered = {part: stats[f"{UNRENDERED}{part}"] for part in UNRENDERED_PARTS if stats[f"{UNRENDERED}{part}"]}
    if unrendered:
        log.warning(
            "the chat template does not print every part of the records (examples affected: %s): it drops them by "
            "design (e.g. gpt-oss keeps reasoning and the first tool call only on the turns it chooses). They are not in "
            "the training text. Fix: use a template that renders them (`chat.template:`), or accept it; counted in "
            "the manifest under sft.examples.unrendered",
            ", ".join(f"{part} {n}" for part, n in unrendered.items()),
        )
    return {
        "template": {
            "name": template.name if template else CHAT,
            "text_sha256": template.fingerprint if template else _sha(chat.source),
        },
        "chat": None if chat is None else {
            "template_file": None if recipe.sft.chat.template is None else str(recipe.sft.chat.template),
            "kwargs": dict(recipe.sft.chat.kwargs),
            "date": recipe.sft.chat.date,
            "reasoning": recipe.sft.chat.reasoning,
            "stop_tokens": list(chat.stop_tokens()),
        },
        "masking": recipe.sft.masking,
        "stop_token_ids": list(stop_token_ids(recipe.sft.template, tokenizer, masking=recipe.sft.masking, chat=chat)),
        "max_length": recipe.sft.max_length,
        "overflow": recipe.sft.overflow,
        "examples": {
            "truncated": stats["truncated"],
            "truncated_tokens": stats["truncated_tokens"],
            "with_boundary_straddle": stats["examples_with_straddle"],
            "system_not_rendered": stats[SYSTEM_NOT_RENDERED],
            "unrendered": unrendered,
        },
        "target_tokens": stats["target_tokens"],
        "target_ratio": stats["target_tokens"] / content if content else 0.0,
        "labels": None if labels is None else {label: i for i, label in enumerate(labels)},
        "classification_train": None if recipe.sft.classification is None else recipe.sft.classification.train,
    }


def _special_pattern(tokenizer) -> re.Pattern[str] | None:
    """Any special token's text (longest first), or None when the tokenizer has none."""
    texts = {t.content for t in tokenizer.tokenizer.get_added_tokens_decoder().values() if t.special and t.content}
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))) if texts else None


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a field value (text, or chat messages: lists of role/content dicts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = [
    "TemplateError",
    "chunk_reader",
    "fields_for",
    "iter_chunks",
    "make_packer",
    "manifest_section",
    "read_label_set",
    "row_schema",
    "sft_worker",
    "to_batch",
]
