"""``bfd`` packing (fine-tuning): best-fit decreasing over a bounded buffer, no document straddles two rows.

The rows depend only on the stream of documents, not on how that stream was split into
``add()`` calls: concatenating every returned :class:`~dataprep.pack.rows.PackedRows` gives the
same rows.
"""

from __future__ import annotations

import bisect

import numpy as np

from dataprep.errors import ConfigError
from dataprep.pack.layout import build_rows, check_batch, check_extra_dtypes, check_seq_len, gather_ranges
from dataprep.pack.rows import PackedRows, PackStats

__all__ = ["BfdPacker"]


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
        self.seq_len = check_seq_len(seq_len)
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
        self.extra_dtypes = check_extra_dtypes(extra_dtypes)
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
        tokens, doc_lens, extras = check_batch(tokens, doc_lens, extras, self.extra_dtypes)
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
        order = np.argsort(-lens, kind="stable")
        bins: list[list[int]] = []
        room: list[int] = []
        # (room left, bin id) as one int, room << shift | id, sorted: the best fit is the first that
        # fits (the least room, then the oldest bin); ints compare at half the cost of tuples
        shift = len(lens).bit_length()
        free: list[int] = []
        for i, n in zip(order.tolist(), lens[order].tolist()):
            k = bisect.bisect_left(free, n << shift)
            if k < len(free):
                b = free.pop(k) & ((1 << shift) - 1)
                bins[b].append(i)
            else:
                b = len(bins)
                bins.append([i])
                room.append(L)
            room[b] -= n
            if room[b]:
                bisect.insort(free, room[b] << shift | b)
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
        content = gather_ranges(tokens, content_index_starts, piece_lens)
        rows = build_rows(
            content,
            {k: gather_ranges(v, content_index_starts, piece_lens) for k, v in extras.items()},
            piece_lens,
            np.array([len(items) for items in emit], dtype=np.int64),
            seq_len=L,
            pad_id=self.pad_id if self.pad_rows else None,
        )
        # What stays: the kept rows' items, in arrival order, as the buffer's only chunk.
        kept_lens = lens[kept_items]
        kept_starts = starts[kept_items]
        self._tokens = [gather_ranges(tokens, kept_starts, kept_lens)]
        self._lens = [kept_lens]
        self._extras = {k: [gather_ranges(v, kept_starts, kept_lens)] for k, v in extras.items()}
        self._buffered = int(kept_lens.sum())
        self.stats.rows += rows.num_rows
        self.stats.content_tokens += len(content)
        self.stats.pad_tokens += int(rows.num_pad.sum())
        return rows
