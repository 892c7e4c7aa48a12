"""What both packers share: checking their options and ``add()`` batches, and laying content
pieces out into rows (:func:`build_rows`), padded to ``seq_len`` when asked.
"""

from __future__ import annotations

import numpy as np

from dataprep import columns
from dataprep.errors import ConfigError
from dataprep.pack.rows import PackedRows

__all__ = ["check_seq_len", "check_extra_dtypes", "check_batch", "gather_ranges", "gather_documents", "build_rows"]


def check_seq_len(seq_len: int) -> int:
    """``seq_len`` as an int; :class:`ConfigError` unless it is a positive integer."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ConfigError(f"packing seq_len must be a positive integer, got {seq_len!r}")
    return int(seq_len)


def check_extra_dtypes(extra_dtypes: dict[str, np.dtype] | None) -> dict[str, np.dtype]:
    """name -> numpy dtype; :class:`ConfigError` when a name is one of the packed row columns."""
    dtypes = {str(k): np.dtype(v) for k, v in (extra_dtypes or {}).items()}
    reserved = {columns.INPUT_IDS, columns.SEQ_LENS, columns.NUM_PAD} & dtypes.keys()
    if reserved:
        raise ConfigError(f"extra column name(s) {sorted(reserved)} clash with packed row columns; rename them")
    return dtypes


def check_batch(
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


def gather_ranges(values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``concat(values[s:s+n] for s, n in zip(starts, lens))``."""
    total = int(lens.sum())
    if len(lens) and total >= _SLICE_COPY_MIN_MEAN * len(lens):
        # one concatenate of views: a single C call, so a thread sharing the GIL never waits
        # between slices (a copy per slice re-takes the GIL each time)
        return np.concatenate([values[s : s + n] for s, n in zip(starts.tolist(), lens.tolist())])
    out_starts = np.cumsum(lens) - lens
    index = np.repeat(starts - out_starts, lens) + np.arange(int(lens.sum()), dtype=np.int64)
    return values[index]


def gather_documents(tokens: np.ndarray, lengths: np.ndarray, docs: np.ndarray | None,
                     extras: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The documents ``docs`` (bool per document; None: all) of a flat encoding, by their ranges:
    ``(tokens, lengths, extras)``. Copies only the chosen documents' tokens, never a mask over all of them."""
    if docs is None:
        return tokens, lengths, extras
    at = np.flatnonzero(docs)
    starts, kept = (np.cumsum(lengths) - lengths)[at], lengths[at]
    return gather_ranges(tokens, starts, kept), kept, {k: gather_ranges(v, starts, kept) for k, v in extras.items()}


def build_rows(
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
