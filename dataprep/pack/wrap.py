"""``wrap`` packing (pretraining): concatenate the documents and cut every ``seq_len`` tokens.

A document may run on into the next row, also across ``add()`` calls; the rows depend only on
the stream of documents, not on how that stream was split into ``add()`` calls.
"""

from __future__ import annotations

import numpy as np

from dataprep.errors import ConfigError
from dataprep.pack.layout import build_rows, check_batch, check_extra_dtypes, check_seq_len
from dataprep.pack.rows import PackedRows, PackStats

__all__ = ["WrapPacker", "REMAINDERS"]

REMAINDERS = ("drop", "pad")


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
        self.seq_len = check_seq_len(seq_len)
        if remainder not in REMAINDERS:
            raise ConfigError(f"packing remainder {remainder!r} is not one of {list(REMAINDERS)}")
        if remainder == "pad" and pad_id is None:
            raise ConfigError(
                'packing.remainder: pad needs a pad token and the tokenizer names none: set `tokenizer.pad_token` '
                "(e.g. its EOS or an unused special token; pads are never targets), or use remainder: drop"
            )
        self.remainder = remainder
        self.pad_id = pad_id
        self.extra_dtypes = check_extra_dtypes(extra_dtypes)
        self.stats = PackStats(seq_len=self.seq_len)
        self._reset_carry()

    def _reset_carry(self) -> None:
        # The partial row after the last add(): its tokens and its pieces, each the end of a document.
        self._carry = np.zeros(0, dtype=np.int32)
        self._carry_lens = np.zeros(0, dtype=np.int64)
        self._carry_extras = {k: np.zeros(0, dtype=d) for k, d in self.extra_dtypes.items()}

    @property
    def carry_tokens(self) -> int:
        """Tokens of the partial row :meth:`add` holds for the next rows."""
        return len(self._carry)

    def start_with(self, tokens: np.ndarray, piece_lens: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> None:
        """Begin from another packer's partial row (``tokens``, fewer than ``seq_len``, in pieces each the
        end of a document, as :meth:`add` carries them): the rows that follow are the ones that packer
        would have emitted. Packing a stream in segments (:mod:`dataprep.build.segments`) gives each
        segment the partial row the segments before it leave, which the ordered stage works out from
        the documents' lengths alone."""
        tokens = np.asarray(tokens, dtype=np.int32)
        piece_lens = np.asarray(piece_lens, dtype=np.int64)
        if len(tokens) >= self.seq_len or int(piece_lens.sum()) != len(tokens):
            raise ValueError(f"a partial row holds fewer than seq_len ({self.seq_len}) tokens, in pieces that sum "
                             f"to them; got {len(tokens)} tokens in pieces summing to {int(piece_lens.sum())}")
        extras = extras or {}
        if set(extras) != set(self.extra_dtypes):
            raise ValueError(f"extras {sorted(extras)} do not match the packer's {sorted(self.extra_dtypes)}")
        self._carry, self._carry_lens = tokens, piece_lens
        self._carry_extras = {k: np.asarray(v, dtype=self.extra_dtypes[k]) for k, v in extras.items()}

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
        tokens, doc_lens, extras = check_batch(tokens, doc_lens, extras, self.extra_dtypes)
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
            out = build_rows(
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
