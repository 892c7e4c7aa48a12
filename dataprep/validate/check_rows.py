"""Checks 2 to 4, per record batch: column types, token ids below the vocab, row structure.

A batch becomes flat numpy views of its Arrow buffers (:class:`RowBatch`, zero copy), and each
check is a handful of whole-array operations: no Python loop per row or token.

Structure, per row: at least one token; no longer than ``seq_len`` (exactly ``seq_len`` for
``wrap`` and padded ``bfd``); pieces (``seq_lengths``) positive and summing to the row length;
``assistant_masks`` as long as ``input_ids``; ``num_pad`` either 0 or the length of the last piece,
whose tokens are all the pad id. Rows that break the structure are reported and left out of
the token-level checks, whose geometry would be meaningless for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns as C
from ..schema import load_schema
from .contract import Contract
from .findings import EXAMPLES, Finding
from .scan import TokenSummary


@dataclass
class Scope:
    """Findings of one shard, with at most ``EXAMPLES`` exact ones per kind and a count for the rest."""

    file: str
    split: str
    findings: list[Finding] = field(default_factory=list)
    seen: Counter = field(default_factory=Counter)
    shown: Counter = field(default_factory=Counter)

    def flag(self, kind: str, rows: np.ndarray, positions: np.ndarray | None, message: Callable[[int], str]) -> None:
        """Report ``len(rows)`` occurrences; ``message(i)`` explains occurrence ``i``."""
        n = len(rows)
        if not n:
            return
        self.seen[kind] += n
        take = min(n, EXAMPLES - self.shown[kind])
        for i in range(max(take, 0)):
            position = None if positions is None else int(positions[i])
            self.findings.append(Finding(kind, message(i), file=self.file, split=self.split, row=int(rows[i]), position=position))
        self.shown[kind] += max(take, 0)

    def add(self, finding: Finding) -> None:
        self.seen[finding.kind] += finding.count
        self.shown[finding.kind] += finding.count
        self.findings.append(finding)

    def close(self) -> list[Finding]:
        for kind, n in self.seen.items():
            if n > self.shown[kind]:
                rest = n - self.shown[kind]
                self.findings.append(Finding(kind, f"{rest:,} more like the above in this shard", file=self.file, split=self.split, count=rest))
                self.shown[kind] = n
        return self.findings


def _list(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets from 0) of a list array, as numpy views."""
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    return values, (offsets - offsets[0]).astype(np.int64)


@dataclass
class RowBatch:
    """One record batch as flat arrays. ``row`` maps each row to its index in the shard."""

    row: np.ndarray  # int64 shard row index per row
    ids: np.ndarray  # flat tokens
    starts: np.ndarray  # int64, rows + 1
    seq_lens: np.ndarray  # int64, flat
    seq_starts: np.ndarray  # int64, rows + 1
    num_pad: np.ndarray  # int64 per row
    mask: np.ndarray | None = None  # flat uint8
    mask_starts: np.ndarray | None = None
    label_id: np.ndarray | None = None  # per row
    label_ids: np.ndarray | None = None  # flat, per example
    label_starts: np.ndarray | None = None
    labels: np.ndarray | None = None  # flat int32 (mlm static, span_corruption)
    labels_starts: np.ndarray | None = None
    query_start: np.ndarray | None = None  # per row (fewshot)

    @property
    def n(self) -> int:
        return len(self.row)

    @staticmethod
    def from_batch(batch: pa.RecordBatch, first_row: int) -> RowBatch:
        ids, starts = _list(batch.column(C.INPUT_IDS))
        seq_lens, seq_starts = _list(batch.column(C.SEQ_LENS))
        rows = RowBatch(
            row=np.arange(first_row, first_row + batch.num_rows, dtype=np.int64),
            ids=ids,
            starts=starts,
            seq_lens=seq_lens.astype(np.int64),
            seq_starts=seq_starts,
            num_pad=batch.column(C.NUM_PAD).to_numpy(zero_copy_only=False).astype(np.int64),
        )
        names = batch.schema.names
        if C.LOSS_MASK in names:
            rows.mask, rows.mask_starts = _list(batch.column(C.LOSS_MASK))
        if C.LABEL_ID in names:
            rows.label_id = batch.column(C.LABEL_ID).to_numpy(zero_copy_only=False)
        if C.LABEL_IDS in names:
            rows.label_ids, rows.label_starts = _list(batch.column(C.LABEL_IDS))
        if C.LABELS in names:
            rows.labels, rows.labels_starts = _list(batch.column(C.LABELS))
        if C.QUERY_START in names:
            rows.query_start = batch.column(C.QUERY_START).to_numpy(zero_copy_only=False).astype(np.int64)
        return rows

    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def where(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard row, position in row) of flat token positions."""
        r = np.searchsorted(self.starts, flat, side="right") - 1
        return self.row[r], flat - self.starts[r]

    def take(self, keep: np.ndarray) -> RowBatch:
        """The rows where ``keep`` is True (copies)."""
        def gather(values: np.ndarray | None, starts: np.ndarray | None):
            if values is None or starts is None:
                return values, starts
            lens = np.diff(starts)[keep]
            begin = starts[:-1][keep]
            index = np.repeat(begin - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()), dtype=np.int64)
            return values[index], np.concatenate(([0], np.cumsum(lens))).astype(np.int64)

        ids, starts = gather(self.ids, self.starts)
        seq_lens, seq_starts = gather(self.seq_lens, self.seq_starts)
        mask, mask_starts = gather(self.mask, self.mask_starts)
        label_ids, label_starts = gather(self.label_ids, self.label_starts)
        labels, labels_starts = gather(self.labels, self.labels_starts)
        return replace(
            self, row=self.row[keep], ids=ids, starts=starts, seq_lens=seq_lens, seq_starts=seq_starts,
            num_pad=self.num_pad[keep], mask=mask, mask_starts=mask_starts,
            label_id=None if self.label_id is None else self.label_id[keep], label_ids=label_ids, label_starts=label_starts,
            labels=labels, labels_starts=labels_starts, query_start=None if self.query_start is None else self.query_start[keep],
        )


# --- check 2: columns and types ------------------------------------------------------------


def expected_columns(c: Contract) -> dict[str, str]:
    """Column -> Arrow type (as Arrow prints it) for this dataset, from the row schema's ``x-arrow-type``."""
    schema = load_schema(c.schema_name)
    properties = schema["properties"]
    names = list(schema["required"]) + ([c.label_column] if c.label_column else []) + ([C.LABELS] if c.labels else [])
    return {name: properties[name]["x-arrow-type"] for name in names}


def check_schema(schema: pa.Schema, c: Contract, scope: Scope) -> bool:
    """The shard's Arrow schema against the row schema; False when rows cannot be checked."""
    expected = expected_columns(c)
    actual = {f.name: str(f.type) for f in schema}
    ok = True
    for name, arrow_type in expected.items():
        if name not in actual:
            scope.add(Finding("row_schema", f"column {name!r} ({arrow_type}) is missing; columns are {list(actual)}", file=scope.file, split=scope.split))
            ok = False
        elif actual[name] != arrow_type:
            scope.add(Finding("row_schema", f"column {name!r} is {actual[name]}, expected {arrow_type}", file=scope.file, split=scope.split))
            ok = False
    for name in actual.keys() - expected.keys():
        scope.add(Finding("row_schema", f"unexpected column {name!r} ({actual[name]}); {c.schema_name} rows have {list(expected)}", file=scope.file, split=scope.split))
    if list(actual)[: len(expected)] != list(expected) and ok:
        scope.add(Finding("row_schema", f"columns are in the order {list(actual)}, expected {list(expected)}", file=scope.file, split=scope.split))
    return ok


def check_nulls(batch: pa.RecordBatch, first_row: int, scope: Scope) -> bool:
    """No nulls anywhere (rows or list items); False when there are."""
    ok = True
    for name, column in zip(batch.schema.names, batch.columns):
        nulls = column.null_count + (column.values.null_count if hasattr(column, "values") else 0)
        if nulls:
            bad = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
            rows = bad + first_row if len(bad) else np.array([first_row])
            scope.flag("null_value", rows, None, lambda i: f"column {name!r} holds nulls; every value must be set")
            ok = False
    return ok


# --- check 3: token ids ----------------------------------------------------------------------


def check_vocab(rows: RowBatch, c: Contract, scope: Scope, summary: TokenSummary | None = None) -> None:
    """Every id in [0, vocab_size): the max of the ids viewed as unsigned (negatives become huge),
    from the file scan when there was one; the bad ids are located only when it is too big."""
    if not len(rows.ids):
        return
    unsigned = rows.ids.view(np.uint32)
    if (summary.max if summary is not None else int(unsigned.max())) < c.vocab_size:
        return
    bad = np.flatnonzero(unsigned >= c.vocab_size)
    row, pos = rows.where(bad)
    values = rows.ids[bad]
    scope.flag("token_out_of_vocab", row, pos, lambda i: f"id {int(values[i])} is not in [0, vocab_size {c.vocab_size})")


# --- check 4: row structure ------------------------------------------------------------------


def check_structure(rows: RowBatch, c: Contract, scope: Scope) -> np.ndarray:
    """Row lengths, pieces, mask length and the pad piece; returns True per structurally sound row."""
    lengths = rows.lengths()
    good = lengths > 0
    scope.flag("row_empty", rows.row[~good], None, lambda i: "the row has no tokens")
    long = lengths > c.seq_len
    scope.flag("row_too_long", rows.row[long], None, _msg(lengths[long], lambda n: f"{n:,} tokens, longer than seq_len {c.seq_len:,}"))
    good &= ~long
    if c.fixed_length:
        short = (lengths < c.seq_len) & (lengths > 0)
        scope.flag("row_length", rows.row[short], None, _msg(lengths[short], lambda n: f"{n:,} tokens; every row of this dataset ({c.packing}) is seq_len {c.seq_len:,}"))
        good &= ~short
    # pieces: positive, summing to the row length
    bad_piece = np.flatnonzero(rows.seq_lens <= 0)
    if len(bad_piece):
        piece_row = np.searchsorted(rows.seq_starts, bad_piece, side="right") - 1
        values = rows.seq_lens[bad_piece]
        scope.flag("seq_lens_value", rows.row[piece_row], None, lambda i: f"piece {int(bad_piece[i] - rows.seq_starts[piece_row[i]])} has length {int(values[i])}; pieces are at least 1 token")
        good[piece_row] = False
    cumulative = np.concatenate(([0], np.cumsum(rows.seq_lens)))
    sums = cumulative[rows.seq_starts[1:]] - cumulative[rows.seq_starts[:-1]]
    off = sums != lengths
    scope.flag("seq_lens_sum", rows.row[off], None, _msg2(sums[off], lengths[off], lambda s, n: f"seq_lengths sum to {s:,} but the row has {n:,} tokens"))
    good &= ~off
    if rows.mask_starts is not None:
        mask_lengths = np.diff(rows.mask_starts)
        off = mask_lengths != lengths
        scope.flag("loss_mask_length", rows.row[off], None, _msg2(mask_lengths[off], lengths[off], lambda m, n: f"assistant_masks has {m:,} values for {n:,} tokens"))
        good &= ~off
    if c.labels and rows.labels_starts is not None:
        _check_labels(rows, lengths, scope)
    good &= _check_pad_piece(rows, c, scope, good)
    return good


def _check_labels(rows: RowBatch, lengths: np.ndarray, scope: Scope) -> None:
    """sft with ``output.labels``: ``labels`` are the ids where ``assistant_masks`` is 1, IGNORE_INDEX elsewhere."""
    got = np.diff(rows.labels_starts)
    off = got != lengths
    scope.flag("labels_length", rows.row[off], None, lambda i: "labels is not as long as input_ids")
    if rows.mask is None or len(rows.mask) != len(rows.ids):
        return
    # the values of every row whose labels have the right length (a short row hides no other row's error)
    keep = ~np.repeat(off, lengths)
    labels = rows.labels[~np.repeat(off, got)]
    expected = np.where(rows.mask[keep] != 0, rows.ids[keep], C.IGNORE_INDEX)
    bad = np.flatnonzero(labels != expected)
    wrong = np.flatnonzero(keep)[bad]  # positions in the batch's input_ids
    row, pos = rows.where(wrong)
    scope.flag("labels_value", row, pos, lambda i: f"labels has {int(labels[bad[i]])} where assistant_masks and input_ids give {int(expected[bad[i]])}")


def _check_pad_piece(rows: RowBatch, c: Contract, scope: Scope, good: np.ndarray) -> np.ndarray:
    ok = np.ones(rows.n, dtype=bool)
    num_pad = rows.num_pad
    lengths = rows.lengths()
    bad = (num_pad < 0) | (num_pad >= np.maximum(lengths, 1))
    scope.flag("num_pad", rows.row[bad], None, _msg2(num_pad[bad], lengths[bad], lambda p, n: f"num_pad is {p:,} for a row of {n:,} tokens"))
    ok &= ~bad
    padded = np.flatnonzero((num_pad > 0) & ok & good & (np.diff(rows.seq_starts) > 0))
    if not len(padded):
        return ok
    last_piece = rows.seq_lens[rows.seq_starts[padded + 1] - 1]
    off = last_piece != num_pad[padded]
    scope.flag("pad_piece", rows.row[padded[off]], None, _msg2(last_piece[off], num_pad[padded[off]], lambda p, n: f"the last piece has {p:,} tokens but num_pad is {n:,}: pad tokens must form the trailing piece"))
    ok[padded[off]] = False
    padded = padded[~off]
    if not len(padded) or c.pad_id is None:
        return ok
    lens = num_pad[padded]
    begin = rows.starts[padded + 1] - lens
    flat = np.repeat(begin - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()), dtype=np.int64)
    wrong = flat[rows.ids[flat] != c.pad_id]
    if len(wrong):
        row, pos = rows.where(wrong)
        values = rows.ids[wrong]
        scope.flag("pad_token", row, pos, lambda i: f"id {int(values[i])} in the pad piece; pad tokens are {c.pad_id}")
        ok[np.searchsorted(rows.starts, wrong, side="right") - 1] = False
    if rows.mask is not None:
        targets = flat[rows.mask[flat] != 0]
        row, pos = rows.where(targets)
        scope.flag("target_in_padding", row, pos, lambda i: "a pad token is marked as a target")
    return ok


def _msg(values: np.ndarray, text: Callable[[int], str]) -> Callable[[int], str]:
    return lambda i: text(int(values[i]))


def _msg2(a: np.ndarray, b: np.ndarray, text: Callable[[int, int], str]) -> Callable[[int], str]:
    return lambda i: text(int(a[i]), int(b[i]))


def row_stats(rows: RowBatch) -> dict[str, Any]:
    return {"rows": rows.n, "tokens": int(len(rows.ids) - rows.num_pad.sum())}
