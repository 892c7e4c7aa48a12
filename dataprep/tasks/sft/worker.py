"""The fine-tuning chunk worker: records -> rendered (pair or chat template, targets chosen by the
target policy), tokenized once with offsets into ids and a loss mask, fitted to ``max_length``; every record that is not written is counted under its
reason, with its location."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.errors import ConfigError, RecordProblem, TemplateRaised
from dataprep.read import InputFile
from dataprep.recipe import Recipe
from dataprep.tasks.bad_records import (
    NO_TARGET,
    RESPONSE_TOO_LONG,
    TEMPLATE_RAISED,
    TOO_LONG,
    UNKNOWN_LABEL,
    RecordWorker,
)
from dataprep.tasks.base import ChunkResult
from dataprep.tasks.decontamination import drop_contaminated, index_for
from dataprep.tasks.sft.loss_mask import Encoded, EncodedBatch, encode_batch_flat
from dataprep.tasks.sft.records import (
    HISTORY,
    LABEL,
    SYSTEM,
    absent,
    json_value,
    chat_template_of,
    conversation,
    fields_for,
    template_of,
)
from dataprep.tasks.sft.templates import Rendered
from dataprep.text.filters import content_hashes, validation_flags
from dataprep.text.normalize import normalize_array

log = logging.getLogger("dataprep.sft")


# Examples whose record holds a system prompt that a pair template has no place for (a warning).
SYSTEM_NOT_RENDERED = "system_not_rendered"
# Examples with a message part the chat template does not print (a warning per part).
UNRENDERED, UNRENDERED_PARTS = "unrendered_", ("content", "reasoning", "tool_calls", "system")


class SftWorker(RecordWorker):
    """Renders, tokenizes and masks one chunk (built once per worker process)."""

    def __init__(self, recipe: Recipe, tokenizer, files: list[InputFile], labels: tuple[str, ...] | None):
        assert recipe.sft is not None
        super().__init__(recipe, tokenizer, files, special_text=recipe.sft.special_text)
        self.sft = recipe.sft
        self.target_policy = self.sft.target_policy  # which text is a target (the recipe's `masking:`)
        self.pair = template_of(recipe)
        if self.pair is not None and self.target_policy == "generation":
            raise ConfigError("masking: generation reads a chat template's {% generation %} blocks, which a pair template "
                              "has none of", fix="set `template: chat` with a generation-tagged `chat.template`, or another masking")
        self.chat = chat_template_of(recipe, tokenizer) if self.pair is None else None
        if self.chat is not None and self.target_policy == "generation" and not self.chat.has_generation_tags:
            raise ConfigError(
                "masking: generation needs a chat template with {% generation %} ... {% endgeneration %} blocks",
                fix="set chat.template to a generation-tagged training template, or use masking: all_assistant",
            )
        self.stop_text = tokenizer.tokens.get("eos")
        if self.pair is not None and not self.stop_text:
            raise ConfigError("the tokenizer has no EOS token to close responses", fix="set `tokenizer.eos_token`")
        self.label_ids = None if labels is None else {label: i for i, label in enumerate(labels)}
        self.decontamination = index_for(recipe)  # decontaminate: the evaluation sets' n-grams (None: none)
    def __call__(self, item: tuple[int, pa.RecordBatch]) -> ChunkResult:
        index, batch = item
        file = self.files[index]
        drops: Counter = Counter()
        columns = self._columns(batch, file.entry)
        lines = batch.column(C.LINE).to_pylist()
        rendered, label_ids, kept_lines, unseen_system = [], [], [], []
        names = list(columns)
        suspects = self._special_suspects(columns)  # else no record holds a special token's text
        at_once = self._pairs_at_once(columns, len(lines)) if not suspects else [None] * len(lines)
        systems = columns.get(SYSTEM) or [None] * len(lines)
        for line, values, done, system in zip(lines, zip(*columns.values()) if columns else [()] * len(lines), at_once, systems):
            if done is not None:  # rendered with the chunk's other pairs: no problem to report, no label
                rendered.append(done)
                label_ids.append(None)
                kept_lines.append(line)
                unseen_system.append(int(bool(system)))
                continue
            record = dict(zip(names, values))
            try:
                label = self._label(record[LABEL]) if self.label_ids is not None else None
                rendered.append(self._render(record, check_special=suspects))
            except RecordProblem as problem:
                self._bad(file, line, problem.reason, problem.message, drops)
                continue
            label_ids.append(label)
            kept_lines.append(line)
            unseen_system.append(int(self.pair is not None and bool(record.get(SYSTEM))))
        contaminated: list[tuple[str, str, str]] = []
        if self.decontamination is not None and rendered:  # the example as it will be trained on
            keep = drop_contaminated(self.decontamination, [r.text for r in rendered],
                                     [f"{file.location} line {line}" for line in kept_lines], drops, contaminated)
            if not keep.all():
                rendered, label_ids, kept_lines, unseen_system = (
                    [v for v, k in zip(values, keep.tolist()) if k] for values in (rendered, label_ids, kept_lines, unseen_system))
        encoded = encode_batch_flat(self.tokenizer, rendered)
        extra = {SYSTEM_NOT_RENDERED: np.asarray(unseen_system, dtype=np.int64)}
        for part in UNRENDERED_PARTS:  # examples where the chat template printed none of that part
            extra[f"{UNRENDERED}{part}"] = np.fromiter((part in r.unrendered for r in rendered), dtype=np.int64, count=len(rendered))
        result = self._fit_batch(index, file, encoded, rendered, label_ids, kept_lines, drops, extra_stats=extra)
        result.contaminated = contaminated
        return result

    def examples(self, batch: pa.RecordBatch, entry: int) -> list[Rendered]:
        """The batch's examples that render, quietly (a record that does not is skipped, neither
        counted nor logged): the sample fine-tuning's engine probe encodes both ways."""
        columns = self._columns(batch, entry)
        names, out = list(columns), []
        for values in zip(*columns.values()) if columns else [()] * batch.num_rows:
            try:
                out.append(self._render(dict(zip(names, values))))
            except RecordProblem:
                continue
        return out

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

    def _pairs_at_once(self, columns: Mapping[str, list[Any]], n: int) -> list[Rendered | None]:
        """The chunk's pair-template examples rendered a column at a time (:meth:`PairTemplate.render_all`),
        as :meth:`_render` renders them: None for each record :meth:`_render` must take (one with
        earlier turns or a problem), and for all of them with a chat template or labels."""
        if self.pair is None or self.label_ids is not None:
            return [None] * n
        out = self.pair.render_all(columns, n, stop_text=self.stop_text, policy=self.target_policy)
        for i, history in enumerate(columns.get(HISTORY) or ()):
            if not absent(history):
                out[i] = None
        return out

    def _render(self, record: Mapping[str, Any], *, check_special: bool = True):
        if check_special:
            self._check_special_text(record)
        if self.pair is not None:
            return self._render_pair(record)
        messages, tools = conversation(record)
        try:
            return self.chat.render_with_targets(
                messages, tools=tools, policy=self.target_policy, reasoning=self.sft.chat.reasoning
            )
        except TemplateRaised as exc:
            raise RecordProblem(TEMPLATE_RAISED, f"the chat template refused this conversation: {exc}") from exc

    def _render_pair(self, record: Mapping[str, Any]) -> Rendered:
        """A pair template's example, after the record's ``history`` turns rendered through the same
        template (their responses are targets under ``all_assistant`` and ``all``)."""
        current = self.pair.render(record, stop_text=self.stop_text, policy=self.target_policy)
        history = json_value(record.get(HISTORY), HISTORY) or []
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
            earlier = self.pair.render(dict(zip(turn, pair)), stop_text=self.stop_text, policy=self.target_policy)
            if self.target_policy in ("all_assistant", "all"):
                targets += [(a + offset, b + offset) for a, b in earlier.targets]
            texts.append(earlier.text)
            offset += len(earlier.text)
        if self.target_policy == "all":
            targets = [(0, offset)]
        targets += [(a + offset, b + offset) for a, b in current.targets]
        return Rendered("".join(texts) + current.text, tuple(targets), offset + current.prompt_end)

    def _label(self, value: str) -> int:
        if value not in self.label_ids:
            known = ", ".join(list(self.label_ids)[:10])
            raise RecordProblem(UNKNOWN_LABEL, f"label {value!r} is not one of the labels ({known})")
        return self.label_ids[value]

    def _strict(self, reason: str) -> bool:
        if reason == UNKNOWN_LABEL:  # the classification options decide, not on_error
            return self.sft.classification is not None and self.sft.classification.unknown_label == "error"
        return super()._strict(reason)

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


def sft_worker(recipe: Recipe, tokenizer, files: list[InputFile], labels: tuple[str, ...] | None) -> SftWorker:
    return SftWorker(recipe, tokenizer, files, labels)
