"""The rows the packers produce: :class:`PackedRows`, re-cut by :class:`RowBlocks`, counted by :class:`PackStats`.

Rows are stored flat with offsets (the Arrow ``list`` layout), never one Python object per row or
token. Each row also lists its *pieces* (``seq_lens``), so a loader can keep attention inside
documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pyarrow as pa

from dataprep import columns

__all__ = ["PackedRows", "RowBlocks", "PackStats"]


@dataclass
class PackedRows:
    """Rows of packed tokens, stored flat with offsets (the Arrow ``list`` layout).

    Example, two rows of ``seq_len=4``, the second padded with ``pad_id=0``::

        input_ids   = [1 2 3 4 | 5 6 0 0]      row_offsets = [0, 4, 8]
        seq_lens    = [3 1     | 2 2    ]      seq_offsets = [0, 2, 4]
        num_pad     = [0, 2]                   (the trailing piece of row 1 is padding)
        extras["loss_mask"] = [1 1 1 1 | 1 1 0 0]

    Attributes:
        input_ids: int32, the tokens of all rows, one after another.
        row_offsets: int64, ``num_rows + 1``; row ``i`` is ``input_ids[row_offsets[i]:row_offsets[i+1]]``.
        seq_lens: int32, the piece lengths of all rows; the pieces of a row sum to its length.
        seq_offsets: int64, ``num_rows + 1``; the pieces of row ``i`` are
            ``seq_lens[seq_offsets[i]:seq_offsets[i+1]]``.
        num_pad: int32, per row, the length of its trailing pad piece (0 when it has none).
        extras: per-token arrays in the same flat layout as ``input_ids`` (e.g. ``loss_mask``).
    """

    input_ids: np.ndarray
    row_offsets: np.ndarray
    seq_lens: np.ndarray
    seq_offsets: np.ndarray
    num_pad: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        return len(self.row_offsets) - 1

    def row(self, i: int) -> np.ndarray:
        """Tokens of row ``i`` (a view)."""
        return self.input_ids[self.row_offsets[i] : self.row_offsets[i + 1]]

    def pieces(self, i: int) -> np.ndarray:
        """Piece lengths of row ``i`` (a view)."""
        return self.seq_lens[self.seq_offsets[i] : self.seq_offsets[i + 1]]

    @staticmethod
    def empty(extra_dtypes: dict[str, np.dtype] | None = None) -> PackedRows:
        """Zero rows, with one empty array per extra."""
        zero = np.zeros(1, dtype=np.int64)
        return PackedRows(
            input_ids=np.zeros(0, dtype=np.int32),
            row_offsets=zero,
            seq_lens=np.zeros(0, dtype=np.int32),
            seq_offsets=zero.copy(),
            num_pad=np.zeros(0, dtype=np.int32),
            extras={k: np.zeros(0, dtype=d) for k, d in (extra_dtypes or {}).items()},
        )

    @staticmethod
    def concat(parts: list[PackedRows], extra_dtypes: dict[str, np.dtype] | None = None) -> PackedRows:
        """Join the rows of ``parts``, in order.

        Args:
            parts: the blocks to join; they must carry the same extras.
            extra_dtypes: extras of the result when ``parts`` is empty.

        Returns:
            One block holding every row of ``parts``.
        """
        parts = [p for p in parts if p.num_rows] or parts[:1]
        if not parts:
            return PackedRows.empty(extra_dtypes)
        if len(parts) == 1:
            return parts[0]

        def offsets(name: str) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            shifts = np.cumsum([0] + [a[-1] for a in arrays[:-1]])
            return np.concatenate([arrays[0][:1]] + [a[1:] + s for a, s in zip(arrays, shifts)])

        return PackedRows(
            input_ids=np.concatenate([p.input_ids for p in parts]),
            row_offsets=offsets("row_offsets"),
            seq_lens=np.concatenate([p.seq_lens for p in parts]),
            seq_offsets=offsets("seq_offsets"),
            num_pad=np.concatenate([p.num_pad for p in parts]),
            extras={k: np.concatenate([p.extras[k] for p in parts]) for k in parts[0].extras},
        )

    def split(self, n: int) -> tuple[PackedRows, PackedRows]:
        """``(the first n rows, the rest)``, as views with offsets from 0."""
        r, q = int(self.row_offsets[n]), int(self.seq_offsets[n])

        def part(rows: slice, tokens: slice, pieces: slice, row_offsets: np.ndarray, seq_offsets: np.ndarray) -> PackedRows:
            return PackedRows(
                input_ids=self.input_ids[tokens], row_offsets=row_offsets - row_offsets[0],
                seq_lens=self.seq_lens[pieces], seq_offsets=seq_offsets - seq_offsets[0], num_pad=self.num_pad[rows],
                extras={k: v[tokens] for k, v in self.extras.items()},
            )

        head = part(slice(0, n), slice(0, r), slice(0, q), self.row_offsets[: n + 1], self.seq_offsets[: n + 1])
        tail = part(slice(n, None), slice(r, None), slice(q, None), self.row_offsets[n:], self.seq_offsets[n:])
        return head, tail

    def to_record_batch(self) -> pa.RecordBatch:
        """The rows as Arrow: ``PRETRAIN_ROW_SCHEMA`` columns, then one ``list`` column per extra.

        The value buffers are shared with the numpy arrays, not copied.

        Raises:
            ValueError: the block holds 2**31 tokens or more (``list`` offsets are int32).
        """
        if len(self.input_ids) >= 2**31 or len(self.seq_lens) >= 2**31:
            raise ValueError(f"{len(self.input_ids)} tokens do not fit int32 list offsets; emit smaller blocks")

        def as_list(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
            return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

        fields = list(columns.PRETRAIN_ROW_SCHEMA)
        arrays = [
            as_list(self.row_offsets, self.input_ids),
            as_list(self.seq_offsets, self.seq_lens),
            pa.array(self.num_pad),
        ]
        for name, values in self.extras.items():
            fields.append(pa.field(name, pa.list_(pa.from_numpy_dtype(values.dtype))))
            arrays.append(as_list(self.row_offsets, values))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


class RowBlocks:
    """Re-cuts a stream of row blocks into blocks of exactly ``size`` rows (the last one shorter).

    Seeded per-row work (static MLM masks, span corruption) draws one generator per block; cutting
    the blocks here makes them a function of the rows alone, not of the blocks a packer happens to
    emit (which follow the input chunking).
    """

    def __init__(self, size: int):
        self.size = size
        self.pending: list[PackedRows] = []  # joined only once they fill a block (one copy, not one per add)
        self.pending_rows = 0
        self.first = 0  # index of the next block's first row

    def add(self, rows: PackedRows, *, final: bool = False) -> Iterator[tuple[int, PackedRows]]:
        """``(first row, block)`` for every block ``rows`` completes; with ``final``, the rest too."""
        if rows.num_rows:
            self.pending.append(rows)
            self.pending_rows += rows.num_rows
        if self.pending_rows < self.size and not (final and self.pending_rows):
            return
        rest = PackedRows.concat(self.pending)
        while rest.num_rows >= self.size or (final and rest.num_rows):
            block, rest = rest.split(min(self.size, rest.num_rows))
            yield self.first, block
            self.first += block.num_rows
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows


@dataclass
class PackStats:
    """Counters of one packer, exact and independent of how input was split into ``add()`` calls.

    Attributes:
        seq_len: the packer's row length.
        documents: non-empty documents received.
        content_tokens: document tokens emitted in rows.
        pad_tokens: pad tokens emitted in rows.
        rows: rows emitted.
        dropped_tokens: tokens of the final partial row that ``wrap`` dropped.
        dropped_rows: partial rows dropped (0 or 1 per ``finish()``).
        split_documents: documents cut across rows (``wrap``) or into ``seq_len`` pieces (``bfd``).
    """

    seq_len: int
    documents: int = 0
    content_tokens: int = 0
    pad_tokens: int = 0
    rows: int = 0
    dropped_tokens: int = 0
    dropped_rows: int = 0
    split_documents: int = 0

    @property
    def efficiency(self) -> float:
        """Share of row capacity (``rows * seq_len``) holding document tokens; 0.0 with no rows."""
        return self.content_tokens / (self.rows * self.seq_len) if self.rows else 0.0

    def add(self, other: PackStats) -> None:
        """Add ``other``'s counters to these (a segment's packer's, to the split's); ``seq_len`` stays."""
        if other.seq_len != self.seq_len:
            raise ValueError(f"counters of {other.seq_len}-token rows added to those of {self.seq_len}-token rows")
        for f in fields(self):
            if f.name != "seq_len":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int | float]:
        """The counters and ``efficiency`` as a plain dict."""
        return {**asdict(self), "efficiency": self.efficiency}
