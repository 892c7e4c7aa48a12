"""Pack tokenized documents into training rows: ``wrap`` (pretraining) and ``bfd`` (fine-tuning).

Both packers take batches of documents as a flat token array plus document lengths (BOS/EOS
already included) and return :class:`PackedRows`: flat arrays with offsets, never one Python
object per row or token. Each row also lists its *pieces* (``seq_lens``), so a loader can keep
attention inside documents.

``wrap`` concatenates the documents and cuts every ``seq_len`` tokens; a document may run on
into the next row, also across ``add()`` calls. ``bfd`` never lets a document straddle two rows;
it fills rows by best-fit-decreasing over a bounded buffer, and pads each row when asked.

The output of both depends only on the stream of documents, not on how that stream was split
into ``add()`` calls: concatenating every returned :class:`PackedRows` gives the same rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from dataprep import columns
from dataprep.errors import ConfigError

REMAINDERS = ("drop", "pad")


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

    def as_dict(self) -> dict[str, int | float]:
        """The counters and ``efficiency`` as a plain dict."""
        return {**asdict(self), "efficiency": self.efficiency}


def _check_seq_len(seq_len: int) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ConfigError(f"packing seq_len must be a positive integer, got {seq_len!r}")
    return int(seq_len)


def _check_extra_dtypes(extra_dtypes: dict[str, np.dtype] | None) -> dict[str, np.dtype]:
    dtypes = {str(k): np.dtype(v) for k, v in (extra_dtypes or {}).items()}
    reserved = {columns.INPUT_IDS, columns.SEQ_LENS, columns.NUM_PAD} & dtypes.keys()
    if reserved:
        raise ConfigError(f"extra column name(s) {sorted(reserved)} clash with packed row columns; rename them")
    return dtypes


def _check_batch(
    tokens: np.ndarray,
    doc_lens: np.ndarray,
    extras: dict[str, np.ndarray] | None,
    extra_dtypes: dict[str, np.dtype],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Normalize one ``add()`` batch: int32 tokens, int64 lengths, extras in their dtypes."""
    tokens = np.asarray(tokens)
    doc_lens = np.asarray(doc_lens)
    if tokens.ndim != 1 or doc_lens.ndim != 1:
        raise ValueError("tokens and doc_lens must be 1-D arrays")
    if len(doc_lens) and not np.issubdtype(doc_lens.dtype, np.integer):
        raise ValueError(f"doc_lens must be integers, got {doc_lens.dtype}")
    doc_lens = doc_lens.astype(np.int64, copy=False)
    if len(doc_lens) and doc_lens.min() < 0:
        raise ValueError("doc_lens must not be negative")
    if int(doc_lens.sum()) != len(tokens):
        raise ValueError(f"doc_lens sum to {int(doc_lens.sum())} but there are {len(tokens)} tokens")
    extras = extras or {}
    if extras.keys() != extra_dtypes.keys():
        raise ValueError(f"extras {sorted(extras)} do not match the packer's extra_dtypes {sorted(extra_dtypes)}")
    out = {}
    for name, dtype in extra_dtypes.items():
        values = np.asarray(extras[name]).astype(dtype, copy=False)
        if values.shape != tokens.shape:
            raise ValueError(f"extra {name!r} has shape {values.shape}, tokens have {tokens.shape}")
        out[name] = values
    return tokens.astype(np.int32, copy=False), doc_lens, out


# Ranges at least this long on average are joined as views by one concatenate (memcpy each);
# shorter ones through one fancy-index gather, whose int64 index costs more than the copy.
_SLICE_COPY_MIN_MEAN = 64


def _gather_ranges(values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``concat(values[s:s+n] for s, n in zip(starts, lens))``."""
    total = int(lens.sum())
    if len(lens) and total >= _SLICE_COPY_MIN_MEAN * len(lens):
        # one concatenate of views: a single C call, so a thread sharing the GIL never waits
        # between slices (a copy per slice re-takes the GIL each time)
        return np.concatenate([values[s : s + n] for s, n in zip(starts.tolist(), lens.tolist())])
    out_starts = np.cumsum(lens) - lens
    index = np.repeat(starts - out_starts, lens) + np.arange(int(lens.sum()), dtype=np.int64)
    return values[index]


def _build_rows(
    content: np.ndarray,
    extras: dict[str, np.ndarray],
    piece_lens: np.ndarray,
    pieces_per_row: np.ndarray,
    *,
    seq_len: int,
    pad_id: int | None,
) -> PackedRows:
    """Rows from content pieces laid out row after row; with ``pad_id``, pad each row to ``seq_len``.

    Pads are filled with ``pad_id`` in ``input_ids`` and 0 in extras, and are a trailing piece.
    """
    seq_offsets = np.concatenate([[0], np.cumsum(pieces_per_row)]).astype(np.int64)
    content_offsets = np.concatenate([[0], np.cumsum(piece_lens)]).astype(np.int64)[seq_offsets]
    fills = np.diff(content_offsets)
    if pad_id is None:
        return PackedRows(
            input_ids=content,
            row_offsets=content_offsets.astype(np.int64),
            seq_lens=piece_lens.astype(np.int32),
            seq_offsets=seq_offsets,
            num_pad=np.zeros(len(fills), dtype=np.int32),
            extras=extras,
        )
    pads = seq_len - fills
    n_rows = len(fills)
    if seq_len >= _SLICE_COPY_MIN_MEAN:  # long rows: each row's content then its pad tail, one concatenate
        bounds = content_offsets.tolist()

        def laid_out(values: np.ndarray, fill: int) -> np.ndarray:
            tail = np.full(seq_len, fill, dtype=values.dtype)
            parts = []
            for a, b in zip(bounds, bounds[1:]):
                parts.append(values[a:b])
                parts.append(tail[: seq_len - (b - a)])
            return np.concatenate(parts) if parts else np.empty(0, dtype=values.dtype)

        input_ids = laid_out(content.astype(np.int32, copy=False), pad_id)
        out_extras = {name: laid_out(values, 0) for name, values in extras.items()}
    else:
        input_ids = np.full(n_rows * seq_len, pad_id, dtype=np.int32)
        out_extras = {name: np.zeros(n_rows * seq_len, dtype=values.dtype) for name, values in extras.items()}
        # Destination of each content token: its row's start in the padded layout, plus its place in the row.
        dest = np.repeat(np.arange(n_rows, dtype=np.int64) * seq_len - content_offsets[:-1], fills)
        dest += np.arange(len(content), dtype=np.int64)
        input_ids[dest] = content
        for name, values in extras.items():
            out_extras[name][dest] = values
    has_pad = pads > 0
    seq_lens = np.insert(piece_lens, seq_offsets[1:][has_pad], pads[has_pad])
    seq_offsets = seq_offsets + np.concatenate([[0], np.cumsum(has_pad)])
    return PackedRows(
        input_ids=input_ids,
        row_offsets=np.arange(n_rows + 1, dtype=np.int64) * seq_len,
        seq_lens=seq_lens.astype(np.int32),
        seq_offsets=seq_offsets.astype(np.int64),
        num_pad=pads.astype(np.int32),
        extras=out_extras,
    )


class WrapPacker:
    """Concatenate documents and cut every ``seq_len`` tokens (pretraining packing).

    A document may continue into the next row, across ``add()`` calls. ``seq_lens`` lists the
    document pieces of each row, so boundaries survive the cut. ``seq_len=4``::

        docs        [a a a] [b b] [c c c c c]
        rows        [a a a b] [b c c c] [c c]   <- the remainder, dropped or padded by finish()
        seq_lens    [3 1]     [1 3]     [2]
        pad (pad_id=P):                 [c c P P]   seq_lens [2 2], num_pad 2

    Args:
        seq_len: tokens per row.
        remainder: what ``finish()`` does with the last partial row: ``"drop"`` or ``"pad"``.
        pad_id: the pad token; required with ``remainder="pad"``.
        extra_dtypes: per-token arrays passed to ``add()`` and carried with the tokens.

    Raises:
        ConfigError: ``seq_len`` is not positive, ``remainder`` is unknown, or padding lacks ``pad_id``.
    """

    def __init__(
        self,
        *,
        seq_len: int,
        remainder: str = "drop",
        pad_id: int | None = None,
        extra_dtypes: dict[str, np.dtype] | None = None,
    ):
        self.seq_len = _check_seq_len(seq_len)
        if remainder not in REMAINDERS:
            raise ConfigError(f"packing remainder {remainder!r} is not one of {list(REMAINDERS)}")
        if remainder == "pad" and pad_id is None:
            raise ConfigError(
                'packing.remainder: pad needs a pad token and the tokenizer names none: set `tokenizer.pad_token` '
                "(e.g. its EOS or an unused special token; pads are never targets), or use remainder: drop"
            )
        self.remainder = remainder
        self.pad_id = pad_id
        self.extra_dtypes = _check_extra_dtypes(extra_dtypes)
        self.stats = PackStats(seq_len=self.seq_len)
        self._reset_carry()

    def _reset_carry(self) -> None:
        # The partial row after the last add(): its tokens and its pieces, each the end of a document.
        self._carry = np.zeros(0, dtype=np.int32)
        self._carry_lens = np.zeros(0, dtype=np.int64)
        self._carry_extras = {k: np.zeros(0, dtype=d) for k, d in self.extra_dtypes.items()}

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> PackedRows:
        """Add a batch of whole documents; return the rows completed so far.

        Args:
            tokens: the documents' tokens, one after another.
            doc_lens: the length of each document; zero-length documents are ignored.
            extras: one array per ``extra_dtypes`` name, aligned with ``tokens``.

        Returns:
            The rows completed by this batch (every one ``seq_len`` long), possibly none.

        Raises:
            ValueError: the arrays disagree in length or extras do not match ``extra_dtypes``.
        """
        tokens, doc_lens, extras = _check_batch(tokens, doc_lens, extras, self.extra_dtypes)
        doc_lens = doc_lens[doc_lens > 0]
        self.stats.documents += len(doc_lens)
        L = self.seq_len
        # The carried pieces act as documents in front of this batch: the cuts come out the same.
        all_tokens = np.concatenate([self._carry, tokens])
        all_extras = {k: np.concatenate([self._carry_extras[k], v]) for k, v in extras.items()}
        lens = np.concatenate([self._carry_lens, doc_lens])
        ends = np.cumsum(lens)
        starts = ends - lens
        # A document is cut when a row end lies strictly inside it; every such row end is emitted
        # now. A carried piece is shorter than a row and starts one, so it is never counted twice.
        self.stats.split_documents += int(np.count_nonzero(starts // L != (ends - 1) // L))
        n_rows = len(all_tokens) // L
        if n_rows == 0:
            self._carry, self._carry_lens, self._carry_extras = all_tokens, lens, all_extras
            return PackedRows.empty(self.extra_dtypes)
        boundary = n_rows * L
        row_ends = np.arange(1, n_rows + 1, dtype=np.int64) * L
        cuts = np.union1d(ends[ends <= boundary], row_ends)
        rest = ends > boundary
        self._carry = all_tokens[boundary:].copy()
        self._carry_extras = {k: v[boundary:].copy() for k, v in all_extras.items()}
        self._carry_lens = np.diff(ends[rest], prepend=boundary)
        self.stats.rows += n_rows
        self.stats.content_tokens += boundary
        return PackedRows(
            input_ids=all_tokens[:boundary],
            row_offsets=np.concatenate([[0], row_ends]),
            seq_lens=np.diff(cuts, prepend=0).astype(np.int32),
            seq_offsets=np.concatenate([[0], np.searchsorted(cuts, row_ends) + 1]).astype(np.int64),
            num_pad=np.zeros(n_rows, dtype=np.int32),
            extras={k: v[:boundary] for k, v in all_extras.items()},
        )

    def finish(self) -> PackedRows:
        """Drop or pad the last partial row; the packer is empty afterwards.

        Returns:
            The padded last row (``remainder="pad"``), or no rows.
        """
        n = len(self._carry)
        out = PackedRows.empty(self.extra_dtypes)
        if n and self.remainder == "drop":
            self.stats.dropped_tokens += n
            self.stats.dropped_rows += 1
        elif n:
            out = _build_rows(
                self._carry,
                self._carry_extras,
                self._carry_lens,
                np.array([len(self._carry_lens)]),
                seq_len=self.seq_len,
                pad_id=self.pad_id,
            )
            self.stats.rows += 1
            self.stats.content_tokens += n
            self.stats.pad_tokens += self.seq_len - n
        self._reset_carry()
        return out


class BfdPacker:
    """Best-fit-decreasing packing over a bounded buffer; documents never straddle rows (fine-tuning).

    Documents gather in a buffer until it holds ``buffer_tokens``; then the buffered items are
    sorted by length (longest first, ties in arrival order) and each goes into the open row with
    the least room that fits it, else into a new row. Rows come out in the order they were opened,
    pieces in the order they were placed. The least-filled rows, up to ``buffer_tokens // 4``
    tokens, go back to the buffer for another round; ``finish()`` emits everything.
    ``seq_len=8``, items ``A=5 B=3 C=6 D=2 E=4`` (arrival order)::

        sorted      C6 A5 E4 B3 D2
        rows        [C C C C C C D D]         seq_lens [6 2]
                    [A A A A A B B B]         seq_lens [5 3]
                    [E E E E P P P P]         seq_lens [4 4], num_pad 4   (pad_rows, pad_id=P)

    Args:
        seq_len: the longest row.
        buffer_tokens: tokens to gather before packing a round; larger packs tighter.
        pad_id: the pad token; required with ``pad_rows``.
        pad_rows: pad every row to ``seq_len`` (a trailing piece, ``num_pad`` set); else rows
            are as long as their content.
        split_long: cut documents longer than ``seq_len`` into ``seq_len`` pieces plus a remainder;
            else such a document raises ``ConfigError``.
        extra_dtypes: per-token arrays passed to ``add()`` and carried with the tokens.

    Raises:
        ConfigError: ``seq_len`` or ``buffer_tokens`` is not positive, or ``pad_rows`` lacks ``pad_id``.
    """

    def __init__(
        self,
        *,
        seq_len: int,
        buffer_tokens: int,
        pad_id: int | None = None,
        pad_rows: bool = True,
        split_long: bool = True,
        extra_dtypes: dict[str, np.dtype] | None = None,
    ):
        self.seq_len = _check_seq_len(seq_len)
        if isinstance(buffer_tokens, bool) or not isinstance(buffer_tokens, (int, np.integer)) or buffer_tokens < 1:
            raise ConfigError(f"packing buffer_tokens must be a positive integer, got {buffer_tokens!r}")
        if pad_rows and pad_id is None:
            raise ConfigError(
                "packing.pad_rows needs a pad token and the tokenizer names none: set `tokenizer.pad_token` "
                "(e.g. its EOS or an unused special token; pads are never targets), or set packing.pad_rows: false"
            )
        self.buffer_tokens = int(buffer_tokens)
        self.pad_id = pad_id
        self.pad_rows = pad_rows
        self.split_long = split_long
        self.extra_dtypes = _check_extra_dtypes(extra_dtypes)
        self.stats = PackStats(seq_len=self.seq_len)
        # The buffer: chunks of items in arrival order (tokens, item lengths, extras).
        self._tokens: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []
        self._extras: dict[str, list[np.ndarray]] = {k: [] for k in self.extra_dtypes}
        self._buffered = 0

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> PackedRows:
        """Add a batch of whole documents; return the rows of every round the buffer filled.

        Args:
            tokens: the documents' tokens, one after another.
            doc_lens: the length of each document; zero-length documents are ignored.
            extras: one array per ``extra_dtypes`` name, aligned with ``tokens``.

        Returns:
            The rows packed by this batch, possibly none.

        Raises:
            ConfigError: a document is longer than ``seq_len`` and ``split_long`` is off.
            ValueError: the arrays disagree in length or extras do not match ``extra_dtypes``.
        """
        tokens, doc_lens, extras = _check_batch(tokens, doc_lens, extras, self.extra_dtypes)
        doc_lens = doc_lens[doc_lens > 0]
        self.stats.documents += len(doc_lens)
        L = self.seq_len
        n_pieces = -(-doc_lens // L)  # ceil
        long = n_pieces > 1
        if long.any():
            if not self.split_long:
                i = int(np.argmax(long))
                raise ConfigError(
                    f"a document has {int(doc_lens[i])} tokens, more than packing seq_len {L}, and "
                    "split_long is off (fine-tuning examples are not split): raise seq_len, set "
                    "split_long, or filter long examples out first"
                )
            self.stats.split_documents += int(np.count_nonzero(long))
            item_lens = np.full(int(n_pieces.sum()), L, dtype=np.int64)
            item_lens[np.cumsum(n_pieces) - 1] = doc_lens - (n_pieces - 1) * L
        else:
            item_lens = doc_lens
        doc_ends = np.cumsum(doc_lens)
        item_ends = np.cumsum(n_pieces)
        out = []
        doc, tok, item = 0, 0, 0
        # Rounds start when the buffer reaches buffer_tokens at a document end, wherever add() calls split.
        while doc < len(doc_lens):
            j = int(np.searchsorted(doc_ends, tok + self.buffer_tokens - self._buffered))
            last = min(j, len(doc_lens) - 1)
            tok_end, item_end = int(doc_ends[last]), int(item_ends[last])
            self._tokens.append(tokens[tok:tok_end])
            self._lens.append(item_lens[item:item_end])
            for k, v in extras.items():
                self._extras[k].append(v[tok:tok_end])
            self._buffered += tok_end - tok
            doc, tok, item = last + 1, tok_end, item_end
            if j < len(doc_lens):
                out.append(self._flush(final=False))
        return PackedRows.concat(out, self.extra_dtypes)

    def finish(self) -> PackedRows:
        """Pack and emit everything still buffered; the packer is empty afterwards."""
        return self._flush(final=True)

    def _flush(self, *, final: bool) -> PackedRows:
        """Run one BFD round over the buffer; keep the least-filled rows unless ``final``."""
        if not self._buffered:
            return PackedRows.empty(self.extra_dtypes)
        L = self.seq_len
        tokens = np.concatenate(self._tokens)
        lens = np.concatenate(self._lens)
        extras = {k: np.concatenate(v) for k, v in self._extras.items()}
        starts = np.cumsum(lens) - lens
        lens_list = lens.tolist()
        bins: list[list[int]] = []
        room: list[int] = []
        free: list[tuple[int, int]] = []  # (room left, bin id), sorted: the best fit is the first that fits
        for i in np.argsort(-lens, kind="stable").tolist():
            n = lens_list[i]
            k = bisect.bisect_left(free, (n, -1))
            if k < len(free):
                _, b = free.pop(k)
                bins[b].append(i)
            else:
                b = len(bins)
                bins.append([i])
                room.append(L)
            room[b] -= n
            if room[b]:
                bisect.insort(free, (room[b], b))
        fills = L - np.array(room, dtype=np.int64)
        keep = np.zeros(len(bins), dtype=bool)
        if not final:
            by_fill = np.argsort(fills, kind="stable")
            n_keep = int(np.searchsorted(np.cumsum(fills[by_fill]), self.buffer_tokens // 4, side="right"))
            keep[by_fill[:n_keep]] = True
        kept_items = np.array(sorted(i for b in np.flatnonzero(keep).tolist() for i in bins[b]), dtype=np.int64)
        emit = [bins[b] for b in np.flatnonzero(~keep).tolist()]
        order = np.array([i for items in emit for i in items], dtype=np.int64)
        piece_lens = lens[order]
        content_index_starts = starts[order]
        content = _gather_ranges(tokens, content_index_starts, piece_lens)
        rows = _build_rows(
            content,
            {k: _gather_ranges(v, content_index_starts, piece_lens) for k, v in extras.items()},
            piece_lens,
            np.array([len(items) for items in emit], dtype=np.int64),
            seq_len=L,
            pad_id=self.pad_id if self.pad_rows else None,
        )
        # What stays: the kept rows' items, in arrival order, as the buffer's only chunk.
        kept_lens = lens[kept_items]
        kept_starts = starts[kept_items]
        self._tokens = [_gather_ranges(tokens, kept_starts, kept_lens)]
        self._lens = [kept_lens]
        self._extras = {k: [_gather_ranges(v, kept_starts, kept_lens)] for k, v in extras.items()}
        self._buffered = int(kept_lens.sum())
        self.stats.rows += rows.num_rows
        self.stats.content_tokens += len(content)
        self.stats.pad_tokens += int(rows.num_pad.sum())
        return rows
