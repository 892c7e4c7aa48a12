"""The fine-tuning task: labeled pairs or chats -> templated, tokenized rows with loss masks.

::

    read fields (main) -> [render template -> tokenize once with offsets -> mask -> overflow] (workers)
                       -> dedup -> split -> pack (none | bfd) -> write (main)

One example, GPT-2, ``prompt_completion`` (``1`` = target)::

    text             "Reverse: abc\\n"    "cba"  "<|endoftext|>"
    input_ids         ... 25 450 66 198   66 7012   50256
    assistant_masks    0  0   0  0   0     1   1      1

The target is the response **and the stop token that closes it**. The first token of every
example is never a target (nothing before it in the example predicts it), so packed examples
never train across an example boundary.

Modules: :mod:`.records` (what to read, record shapes), :mod:`.worker` (a chunk of records -> rendered,
tokenized, masked examples), this module (rows, packing, the manifest section, :class:`SftTask`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.dataset.manifest_tasks import Chat, Examples, Sft, TaskSections, Template
from dataprep.errors import ConfigError, TemplateError
from dataprep.pack.bfd import BfdPacker
from dataprep.pack.rows import PackedRows, PackStats
from dataprep.read import InputFile
from dataprep.recipe import Recipe
from dataprep.tasks.base import Plan, example_facts
from dataprep.tasks.sft.chat import ChatTemplate
from dataprep.tasks.sft.records import (
    CHAT,
    chat_template_of,
    chunk_reader,
    fields_for,
    iter_chunks,
    read_label_set,
    template_of,
)
from dataprep.tasks.bad_records import text_sha256
from dataprep.tasks.sft.worker import SYSTEM_NOT_RENDERED, UNRENDERED, UNRENDERED_PARTS, sft_worker

log = logging.getLogger("dataprep.sft")


FORMAT = "dataprep.sft/2"  # /2: seq_lengths, assistant_masks (were seq_lens, loss_mask) (#16)


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
    column = label_column(recipe)
    if column is not None:
        fields.append(pa.field(column, pa.list_(pa.int32()) if column == C.LABEL_IDS else pa.int32()))
    if recipe.output.labels:
        fields.append(pa.field(C.LABELS, pa.list_(pa.int32())))
    return pa.schema(fields)


def labels_of(rows: PackedRows) -> pa.ListArray:
    """``output.labels``: per token, the id where ``assistant_masks`` is 1, else ``IGNORE_INDEX``;
    each piece's first token and the pad piece are never labels (dataprep's collator agrees)::

        input_ids        5    6    7  8 |    9 10 11 |    0    0
        assistant_masks  0    0    1  1 |    0  1  1 |    0    0
        labels        -100 -100    7  8 | -100 10 11 | -100 -100
    """
    mask = rows.extras[C.LOSS_MASK].astype(bool)
    starts = np.concatenate(([0], np.cumsum(rows.seq_lens, dtype=np.int64)[:-1]))
    mask[starts[starts < len(mask)]] = False
    labels = np.where(mask, rows.input_ids, C.IGNORE_INDEX).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(rows.row_offsets.astype(np.int32)), pa.array(labels))


def label_column(recipe: Recipe) -> str | None:
    """The class-label column: ``label_ids`` (one per example) when packed, ``label_id`` when each
    row is one example; None when the recipe does not classify."""
    if recipe.sft.classification is None:
        return None
    return C.LABEL_IDS if recipe.packing.mode == "bfd" else C.LABEL_ID


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
        targets = labels_of(rows) if recipe.output.labels else None
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
        if targets is not None:
            arrays.append(targets)
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    return convert


def stop_token_ids(template: str | Mapping[str, Any], tokenizer, *, policy: str, chat: ChatTemplate | None = None) -> tuple[int, ...]:
    """The ids that may close an example's targets under ``template`` and the target ``policy``
    (the recipe's ``masking:``).

    Pair templates: the EOS id. ``chat``: EOS and the end-of-turn tokens the chat template
    closes assistant turns with (Phi-3: ``<|end|>``; gpt-oss: ``<|return|>``, ``<|end|>``,
    ``<|call|>``); none for ``masking: generation``. Recorded in the manifest so that
    ``validate`` can check every example's last target.
    """
    if template != CHAT:
        return (tokenizer.eos_id,) if tokenizer.eos_id is not None else ()
    if policy == "generation":  # the template's own blocks decide what ends a target
        return ()
    chat = chat if chat is not None else ChatTemplate.from_tokenizer(tokenizer)
    ids = [tokenizer.tokenizer.token_to_id(text) for text in chat.stop_tokens()]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def manifest_section(recipe: Recipe, stage, labels: tuple[str, ...] | None, tokenizer) -> Sft:
    """What a fine-tuning manifest adds: template, masking, stop ids, examples, targets, straddles, labels."""
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
    return Sft(
        template=Template(name=template.name if template else CHAT,
                          text_sha256=template.fingerprint if template else text_sha256(chat.source)),
        chat=None if chat is None else Chat(
            template_file=None if recipe.sft.chat.template is None else str(recipe.sft.chat.template),
            kwargs=dict(recipe.sft.chat.kwargs),
            date=recipe.sft.chat.date,
            reasoning=recipe.sft.chat.reasoning,
            stop_tokens=tuple(chat.stop_tokens()),
        ),
        masking=recipe.sft.target_policy,
        stop_token_ids=stop_token_ids(recipe.sft.template, tokenizer, policy=recipe.sft.target_policy, chat=chat),
        max_length=recipe.sft.max_length,
        overflow=recipe.sft.overflow,
        examples=Examples(
            truncated=stats["truncated"],
            truncated_tokens=stats["truncated_tokens"],
            with_boundary_straddle=stats["examples_with_straddle"],
            system_not_rendered=stats[SYSTEM_NOT_RENDERED],
            unrendered=unrendered,
        ),
        target_tokens=stats["target_tokens"],
        target_ratio=stats["target_tokens"] / content if content else 0.0,
        labels=None if labels is None else {label: i for i, label in enumerate(labels)},
        classification_train=None if recipe.sft.classification is None else recipe.sft.classification.train,
    )


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


class SftTask:
    """``task: sft``: examples rendered through a template into one sequence each, only the
    response tokens targets (:mod:`dataprep.tasks.sft`)."""

    name = "sft"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer, tmp: Path):
        return tokenizer

    def local_mode(self, recipe: Recipe) -> str:
        return "processes"  # templating and masks are Python that holds the GIL

    def plan(self, recipe: Recipe, tokenizer, files: list[InputFile]) -> Plan:
        labels = None
        if recipe.sft.classification is not None:
            labels = recipe.sft.classification.labels or read_label_set(recipe, files)
        return Plan(
            format=FORMAT,
            schema=row_schema(recipe),
            reader=chunk_reader(recipe),
            worker=(sft_worker, (recipe, tokenizer, files, labels)),
            make_packer=lambda: make_packer(recipe, tokenizer),
            to_batch=to_batch(recipe),
            dedup=recipe.filter.dedup == "exact",
            rows=example_facts(recipe, label_column=label_column(recipe)),
            manifest=lambda stage: TaskSections(sft=manifest_section(recipe, stage, labels, tokenizer)),
        )
