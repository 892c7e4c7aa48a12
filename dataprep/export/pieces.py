"""Rows -> content tokens, their pieces, and whole documents: what token-only formats write.

A row is ``input_ids`` cut into pieces by ``seq_lengths``, the last piece the pad when ``num_pad``
is set. Exporters that write tokens drop the pads and keep the pieces' content, batch by batch::

    rows        [a a a b] [b c c c] [c c P P]      (wrap, seq_len 4; P = pad, num_pad 2)
    seq_lengths [3 1]     [1 3]     [2 2]
    content     a a a b b c c c c c                 pieces 3 1 1 3 2 (the pad piece dropped)

Documents are what Megatron indexes (one Megatron document per dataprep document), so that its
shuffler moves whole documents. How they sit in the rows is the manifest's ``rows.layout``:

* ``stream`` (wrap): documents run on across rows. Inside a row a piece boundary is a document
  boundary; at a row's end the document goes on into the next row unless its last token is the
  EOS every document ends with (``rows.ends_with_eos``) or the next row starts with the BOS every
  document starts with (``rows.starts_with_bos``). With neither, nothing tells a document that
  ends exactly at a row's end from one that runs on, so those are joined (the exporter warns,
  and counts the documents it found against the manifest's).
* ``pieces`` (bfd, mlm), ``examples``: every piece is one document (or example). A document bfd
  cut (``rows.cut_documents``) has pieces placed apart in different rows, and the rows do not
  say which pieces belong together: each piece is then its own document (the exporter warns).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.dataset.manifest import Manifest
from dataprep.dataset.manifest_parts import STREAM
from dataprep.dataset.reader import Dataset


@dataclass(frozen=True)
class Content:
    """One record batch's content: the tokens without pads, and the pieces they form.

    Attributes:
        tokens: every content token, row after row (int32).
        piece_lens: the length of each content piece, in order (int64); they sum to ``len(tokens)``.
        row_last: whether each piece is the last content piece of its row.
        rows: rows in the batch.
    """

    tokens: np.ndarray
    piece_lens: np.ndarray
    row_last: np.ndarray
    rows: int


def list_parts(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)`` of a list column: row ``i`` is ``values[offsets[i]:offsets[i+1]]``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.values.to_numpy(zero_copy_only=False), column.offsets.to_numpy()


def content(batch: pa.RecordBatch) -> Content:
    """The content tokens and pieces of ``batch`` (trailing pad pieces dropped)."""
    values, offsets = list_parts(batch.column(C.INPUT_IDS))
    lens, len_offsets = list_parts(batch.column(C.SEQ_LENS))
    num_pad = batch.column(C.NUM_PAD).to_numpy(zero_copy_only=False).astype(np.int64)
    row_lens = np.diff(offsets).astype(np.int64)
    fill = row_lens - num_pad
    if num_pad.any():  # keep each row's first `fill` tokens
        starts = np.repeat(offsets[:-1].astype(np.int64) - np.concatenate([[0], np.cumsum(fill)[:-1]]), fill)
        tokens = values[starts + np.arange(int(fill.sum()), dtype=np.int64)]
    else:
        tokens = values[offsets[0] : offsets[-1]]
    pieces = lens[len_offsets[0] : len_offsets[-1]].astype(np.int64)
    per_row = np.diff(len_offsets).astype(np.int64)
    ends = np.cumsum(per_row)  # one past each row's last piece, in `pieces`
    padded = num_pad > 0
    keep = np.ones(len(pieces), dtype=bool)
    keep[ends[padded] - 1] = False  # the pad piece is the row's last
    content_per_row = per_row - padded
    pieces = pieces[keep]
    row_last = np.zeros(len(pieces), dtype=bool)
    last = np.cumsum(content_per_row) - 1
    row_last[last[content_per_row > 0]] = True
    return Content(tokens=tokens.astype(np.int32, copy=False), piece_lens=pieces, row_last=row_last, rows=batch.num_rows)


def batches(ds: Dataset, split: str) -> Iterator[pa.RecordBatch]:
    """The record batches of ``split`` as the shards hold them (memory-mapped, nothing copied)."""
    yield from ds.table(split).to_batches()


class Documents:
    """Join content pieces into documents across batches, as the module docstring says.

    Feed each batch's :class:`Content` to :meth:`add`, which returns the lengths of the documents
    that end before or in it; :meth:`finish` returns the last one's.
    """

    def __init__(self, manifest: Manifest):
        rows, tokenizer = manifest.rows, manifest.tokenizer
        self.stream = rows.layout == STREAM
        self.eos = tokenizer.eos_id if rows.ends_with_eos else None
        self.bos = tokenizer.bos_id if rows.starts_with_bos else None
        self.open = 0  # tokens of the document still running at the end of the last batch
        self.last_token = -1  # the last content token of the last batch (-1: none yet)

    def add(self, c: Content) -> np.ndarray:
        if len(c.piece_lens) == 0:
            return np.empty(0, dtype=np.int64)
        cum = np.cumsum(c.piece_lens)
        first = cum - c.piece_lens  # where each piece starts in c.tokens
        starts = np.ones(len(cum), dtype=bool)
        if self.stream:  # a row's first piece starts a document only after an EOS, or at a BOS
            row_first = np.concatenate([[True], c.row_last[:-1]])
            after_eos = np.concatenate([[self.last_token], c.tokens[cum[:-1] - 1]]) == self.eos if self.eos is not None else False
            at_bos = c.tokens[first] == self.bos if self.bos is not None else False
            starts[row_first] = (np.zeros(len(cum), dtype=bool) | after_eos | at_bos)[row_first]
        self.last_token = int(c.tokens[cum[-1] - 1])
        bounds = first[starts]
        if len(bounds) == 0:
            self.open += int(cum[-1])
            return np.empty(0, dtype=np.int64)
        head = self.open + int(bounds[0])  # the document open before the first start, if any
        lengths = np.concatenate([[head] if head else [], np.diff(bounds)]).astype(np.int64)
        self.open = int(cum[-1] - bounds[-1])
        return lengths

    def finish(self) -> np.ndarray:
        lengths = np.array([self.open] if self.open else [], dtype=np.int64)
        self.open = 0
        return lengths
