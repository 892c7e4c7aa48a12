"""Checks 5 and 6, per batch of structurally sound rows: document and example boundaries.

Every row is a run of *pieces* (``seq_lengths``): document pieces (pretraining) or whole
examples (fine-tuning), then the pad piece when ``num_pad > 0``. Piece starts and ends are
flat positions from one cumulative sum, so each rule is a gather or a comparison::

    input_ids  a a a E | b b E | c c      (E = EOS, seq_len 8, wrap)
    seq_lengths [4, 3, 2]  piece ends 3, 6, 8   -> pieces 0 and 1 end documents: ids[3], ids[6] == E

**Which pretraining pieces end a document** (and so must end with EOS when ``add_eos``):

- ``wrap`` cuts the token stream every ``seq_len`` tokens, so a piece that another piece
  follows in its row ended a document; the row's last content piece ended at the cut, which
  may fall inside a document or exactly at its end, and the row cannot tell which: it is
  exempt. In a padded row (``remainder: pad``, the split's last row) every content piece ends
  a document, because only whole documents were left to pad.
- ``bfd`` keeps documents whole; only a document longer than ``seq_len`` is cut into pieces
  of exactly ``seq_len`` plus a shorter remainder. So every content piece shorter than
  ``seq_len`` ends a document; a full-row piece is exempt.

With ``split_special_tokens`` (the default), special-token text inside a document stays
text, so the special ids appear only where the pipeline put them: EOS only as a piece's last
token (or in the pad piece when pad is EOS), BOS only as a piece's first token and only with
``add_bos``, the pad id only in the pad piece. Any other occurrence means ``seq_lengths`` no
longer matches the documents (or the tokens were changed). A *doubled BOS* is a piece that
starts with two BOS.

Fine-tuning (each content piece is one example): at least one target; no target at the
example's first position (nothing in the example predicts it); the last target is a stop
token (see :mod:`.contract`); ``assistant_masks`` is 0 or 1; label ids in range, one per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .check_rows import RowBatch, Scope
from .contract import Contract


@dataclass
class Pieces:
    """Flat geometry of the pieces of sound rows."""

    start: np.ndarray  # flat position of each piece's first token
    end: np.ndarray  # one past its last token
    row: np.ndarray  # index into the batch's rows of each piece
    pad: np.ndarray  # bool: the trailing pad piece
    last_content: np.ndarray  # bool: the row's last non-pad piece

    @staticmethod
    def of(rows: RowBatch) -> Pieces:
        cumulative = np.concatenate(([0], np.cumsum(rows.seq_lens)))
        per_row = np.diff(rows.seq_starts)
        row = np.repeat(np.arange(rows.n, dtype=np.int64), per_row)
        pad = np.zeros(len(rows.seq_lens), dtype=bool)
        has_pad = rows.num_pad > 0
        pad[rows.seq_starts[1:][has_pad] - 1] = True
        last_content = np.zeros(len(rows.seq_lens), dtype=bool)
        last_index = rows.seq_starts[1:] - 1 - has_pad
        last_content[last_index[last_index >= rows.seq_starts[:-1]]] = True
        return Pieces(start=cumulative[:-1], end=cumulative[1:], row=row, pad=pad, last_content=last_content)

    def where(self, rows: RowBatch, k: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard row, position in row) of flat positions inside pieces ``k``."""
        r = self.row[k]
        return rows.row[r], flat - rows.starts[r]

    def index_of(self, rows: RowBatch, k: np.ndarray) -> np.ndarray:
        """Piece number within its row."""
        return k - rows.seq_starts[self.row[k]]


def check_pretrain(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope, counts: dict[int, int] | None = None) -> None:
    """Document boundaries (EOS, BOS), doubled BOS, special ids out of place.

    ``counts``: occurrences of each special id in the batch, from the file scan; when they
    match what the pieces account for, the full searches are skipped.
    """
    ids = rows.ids
    content = ~pieces.pad
    if c.add_eos and c.eos_id is not None:
        if c.packing == "wrap":
            padded_row = rows.num_pad[pieces.row] > 0
            ends_doc = content & (~pieces.last_content | padded_row)
        else:
            ends_doc = content & (pieces.end - pieces.start < c.seq_len)
        k = np.flatnonzero(ends_doc)
        last = pieces.end[k] - 1
        miss = ids[last] != c.eos_id
        k, last = k[miss], last[miss]
        row, pos = pieces.where(rows, k, last)
        values, number = ids[last], pieces.index_of(rows, k)
        scope.flag("missing_eos", row, pos, lambda i: f"piece {int(number[i])} ends a document but its last token is {int(values[i])}, not EOS {c.eos_id}")
    if c.add_bos and c.bos_id is not None and c.packing == "wrap":
        # every piece after the first in a row starts a document
        k = np.flatnonzero(content & (np.arange(len(content)) > rows.seq_starts[pieces.row]))
        k = k[ids[pieces.start[k]] != c.bos_id]
        row, pos = pieces.where(rows, k, pieces.start[k])
        values, number = ids[pieces.start[k]], pieces.index_of(rows, k)
        scope.flag("missing_bos", row, pos, lambda i: f"piece {int(number[i])} starts a document but its first token is {int(values[i])}, not BOS {c.bos_id}")
    doubled = check_doubled_bos(rows, pieces, c, scope)
    if c.split_special_tokens:
        _check_stray(rows, pieces, c, scope, doubled, counts or {})


def check_doubled_bos(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope) -> np.ndarray:
    """Pieces starting with BOS, BOS; returns the flat positions of the second BOS."""
    if c.bos_id is None:
        return np.zeros(0, dtype=np.int64)
    k = np.flatnonzero(~pieces.pad & (pieces.end - pieces.start >= 2))
    k = k[(rows.ids[pieces.start[k]] == c.bos_id) & (rows.ids[pieces.start[k] + 1] == c.bos_id)]
    second = pieces.start[k] + 1
    row, pos = pieces.where(rows, k, second)
    number = pieces.index_of(rows, k)
    scope.flag("doubled_bos", row, pos, lambda i: f"piece {int(number[i])} starts with BOS {c.bos_id} twice")
    return second


def special_ids(c: Contract) -> tuple[int, ...]:
    """The ids :func:`check_pretrain` wants counted by the file scan."""
    if c.task != "pretrain" or not c.split_special_tokens:
        return ()
    ids = [c.eos_id, c.bos_id if c.bos_id != c.eos_id else None, None if c.pad_is_special_elsewhere else c.pad_id]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def _check_stray(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope, doubled: np.ndarray, counts: dict[int, int]) -> None:
    """Special ids where the pipeline never puts them (see the module docstring)."""
    ids = rows.ids
    piece_end = pieces.end
    content = ~pieces.pad
    pad_tokens = int(rows.num_pad.sum())

    def locate(flat: np.ndarray) -> np.ndarray:
        return np.searchsorted(piece_end, flat, side="right")

    def accounted(token: int, allowed: int) -> bool:
        return counts.get(token) == allowed

    eos_allowed = int(np.count_nonzero(ids[piece_end[content] - 1] == c.eos_id)) + (pad_tokens if c.pad_id == c.eos_id else 0) if c.eos_id is not None else 0
    if c.eos_id is not None and not accounted(c.eos_id, eos_allowed):
        flat = np.flatnonzero(ids == c.eos_id)
        k = locate(flat)
        stray = (flat != piece_end[k] - 1) & ~pieces.pad[k]
        flat, k = flat[stray], k[stray]
        row, pos = pieces.where(rows, k, flat)
        number = pieces.index_of(rows, k)
        scope.flag("eos_inside_piece", row, pos, lambda i: f"EOS {c.eos_id} inside piece {int(number[i])}, not at its end: seq_lengths does not match the documents")
    bos_allowed = 0
    if c.bos_id is not None:
        starts_bos = int(np.count_nonzero(ids[pieces.start[content]] == c.bos_id)) if c.add_bos else 0
        bos_allowed = starts_bos + len(doubled) + (pad_tokens if c.pad_id == c.bos_id else 0)
    if c.bos_id is not None and c.bos_id != c.eos_id and not accounted(c.bos_id, bos_allowed):
        flat = np.flatnonzero(ids == c.bos_id)
        k = locate(flat)
        allowed = pieces.pad[k] | (c.add_bos & (flat == pieces.start[k]))
        flat, k = flat[~allowed & ~np.isin(flat, doubled)], k[~allowed & ~np.isin(flat, doubled)]
        row, pos = pieces.where(rows, k, flat)
        number = pieces.index_of(rows, k)
        why = "not at its start" if c.add_bos else "but the recipe adds no BOS (add_bos: false)"
        scope.flag("stray_bos", row, pos, lambda i: f"BOS {c.bos_id} in piece {int(number[i])}, {why}")
    if c.pad_id is not None and not c.pad_is_special_elsewhere and not accounted(c.pad_id, pad_tokens):
        flat = np.flatnonzero(ids == c.pad_id)
        k = locate(flat)
        flat, k = flat[~pieces.pad[k]], k[~pieces.pad[k]]
        row, pos = pieces.where(rows, k, flat)
        number = pieces.index_of(rows, k)
        scope.flag("pad_in_content", row, pos, lambda i: f"pad id {c.pad_id} in piece {int(number[i])}; pad tokens belong only to the trailing pad piece")


def check_sft(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope) -> int:
    """Fine-tuning rules; returns the number of target tokens in content pieces."""
    ids, mask = rows.ids, rows.mask
    assert mask is not None
    if len(mask) and int(mask.max()) > 1:
        bad = np.flatnonzero(mask > 1)
        row, pos = rows.where(bad)
        values = mask[bad]
        scope.flag("loss_mask_value", row, pos, lambda i: f"assistant_masks is {int(values[i])}; it is 0 or 1")
    content = np.flatnonzero(~pieces.pad)
    targets = np.flatnonzero(mask)
    k_of = np.searchsorted(pieces.end, targets, side="right")
    in_content = ~pieces.pad[k_of]
    targets, k_of = targets[in_content], k_of[in_content]  # targets in padding were reported with the structure
    per_piece = np.bincount(k_of, minlength=len(pieces.start))
    none = content[per_piece[content] == 0]
    row, pos = pieces.where(rows, none, pieces.start[none])
    number, lens = pieces.index_of(rows, none), pieces.end[none] - pieces.start[none]
    scope.flag("no_target", row, pos, lambda i: f"example {int(number[i])} ({int(lens[i])} tokens) has no target token")
    first = content[mask[pieces.start[content]] != 0]
    row, pos = pieces.where(rows, first, pieces.start[first])
    number = pieces.index_of(rows, first)
    scope.flag("target_at_start", row, pos, lambda i: f"the first token of example {int(number[i])} is a target; nothing in the example predicts it")
    if c.stop_ids is not None and len(targets):
        is_last = np.concatenate((k_of[1:] != k_of[:-1], [True]))
        last, k = targets[is_last], k_of[is_last]
        wrong = ~np.isin(ids[last], np.asarray(c.stop_ids, dtype=ids.dtype))
        last, k = last[wrong], k[wrong]
        row, pos = pieces.where(rows, k, last)
        number, values = pieces.index_of(rows, k), ids[last]
        stops = ", ".join(map(str, c.stop_ids))
        scope.flag("last_target_not_stop", row, pos, lambda i: f"the last target of example {int(number[i])} is id {int(values[i])}; it must be its stop token ({stops}, {c.stop_source})")
    check_doubled_bos(rows, pieces, c, scope)
    _check_labels(rows, pieces, c, scope)
    return len(targets)


def _check_labels(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope) -> None:
    limit = c.num_labels
    if rows.label_id is not None and limit:
        bad = np.flatnonzero((rows.label_id < 0) | (rows.label_id >= limit))
        values = rows.label_id[bad]
        scope.flag("label_out_of_range", rows.row[bad], None, lambda i: f"label_id {int(values[i])} is not one of the {limit} labels")
    if rows.label_ids is not None and rows.label_starts is not None:
        examples = np.bincount(pieces.row[~pieces.pad], minlength=rows.n)
        counts = np.diff(rows.label_starts)
        bad = np.flatnonzero(counts != examples)
        got, want = counts[bad], examples[bad]
        scope.flag("label_count", rows.row[bad], None, lambda i: f"{int(got[i])} label_ids for {int(want[i])} examples")
        if limit:
            flat = np.flatnonzero((rows.label_ids < 0) | (rows.label_ids >= limit))
            r = np.searchsorted(rows.label_starts, flat, side="right") - 1
            values = rows.label_ids[flat]
            scope.flag("label_out_of_range", rows.row[r], None, lambda i: f"label id {int(values[i])} is not one of the {limit} labels")
