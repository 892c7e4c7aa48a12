"""Check 7 (and the look-ups of check 8): the examples and documents of a split, by content.

A *unit* is what must not appear in both splits: a fine-tuning example or a ``bfd`` piece (one
piece each), a preference row's prompt (pairs are split by prompt), or a ``wrap`` document (the
tokens up to and including each EOS that ends a piece, carried across rows, batches and shards).
Without ``add_eos`` a ``wrap`` dataset has no document marks, so its pieces are the units (a
document cut by a row end then counts as two).

Hashing every unit from Python costs about a microsecond each, too slow for millions of short
examples, so the check runs in two steps:

1. a vectorized 64-bit *key* per unit from its length and 4 tokens sampled at fixed fractions
   of it (first, 1/3, 2/3, last): a few gathers per batch, no per-unit Python;
2. a full ``xxh3_128`` of the tokens (and of the loss mask) only for *watched* units: every
   unit of the smaller split, whose keys are then watched in the larger split, plus the units
   ``--recheck-sources`` looks for. Equal digests are findings; equal keys alone never are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import xxhash

from .check_rows import RowBatch
from .check_tokens import Pieces
from .findings import EXAMPLES, Finding

_MIX = np.uint64(0xBF58476D1CE4E5B9)
_SALTS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64)
_FRACTIONS = np.arange(len(_SALTS), dtype=np.int64)  # samples at 0, 1/3, 2/3, 3/3 of a unit
_OFFSETS = (_FRACTIONS.astype(np.uint64) + np.uint64(1)) * _SALTS
ALL = None  # watch every unit


def unit_keys(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit keys from each unit's length and 4 of its tokens (first, at 1/3, at 2/3, last).

    A key only decides which units get a full digest, so 4 samples are plenty; each is a gather
    at a random place in the batch, the cost of this function."""
    lengths = np.asarray(lengths, dtype=np.int64)
    at = np.asarray(starts, dtype=np.int64)[:, None] + (lengths - 1)[:, None] * _FRACTIONS // (len(_SALTS) - 1)
    mixed = ids[at].astype(np.uint64)  # (units, 4); a negative id wraps, which is fine for a key
    mixed *= _SALTS
    mixed += _OFFSETS
    mixed ^= mixed >> np.uint64(29)
    mixed *= _MIX
    key = functools.reduce(np.bitwise_xor, mixed.T)  # column by column: ~6x faster than reducing axis 1
    key ^= lengths.astype(np.uint64) * _MIX
    key ^= key >> np.uint64(31)
    key *= _MIX
    return key


def key_of(tokens: np.ndarray) -> int:
    """The key of one unit given its tokens."""
    return int(unit_keys(tokens, np.zeros(1, np.int64), np.array([len(tokens)]))[0])


def digest(tokens) -> bytes:
    """The full content digest of a unit's tokens (or mask), as stored bytes."""
    return xxhash.xxh3_128_digest(tokens)


@dataclass
class Hashed:
    """Full digests of watched units, with where each starts (shard file, row, position) and its length."""

    digests: list[bytes] = field(default_factory=list)
    masks: list[bytes | None] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    partial: list[bool] = field(default_factory=list)  # a split's unfinished last document

    def add_many(self, file: str, keys, digests, masks, rows, positions, lengths, partial: bool = False) -> None:
        n = len(digests)
        self.digests += digests
        self.masks += masks if masks is not None else [None] * n
        self.files += [file] * n
        self.rows += list(rows)
        self.positions += list(positions)
        self.lengths += list(lengths)
        self.keys += list(keys)
        self.partial += [partial] * n

    def extend(self, other: Hashed) -> None:
        for name in ("digests", "masks", "files", "rows", "positions", "lengths", "keys", "partial"):
            getattr(self, name).extend(getattr(other, name))

    def place(self, i: int) -> str:
        return f"{self.files[i]} row {self.rows[i]} position {self.positions[i]}"


class ShardUnits:
    """Collects one shard's units, batch by batch, in row order.

    Args:
        file: The shard, for places.
        documents: ``wrap`` with EOS: units are EOS-ended documents carried across batches;
            else each content piece is a unit.
        eos: The EOS id (documents mode).
        watch: Keys whose units get full digests (sorted uint64); ``ALL`` for every unit.
    """

    def __init__(self, file: str, *, documents: bool, eos: int | None, watch: np.ndarray | None):
        self.file = file
        self.documents = documents
        self.eos = eos
        self.watch = watch
        self.hashed = Hashed()
        self.units = 0
        # documents mode: the shard's first document began before it (its head); the open one runs on
        self.head = bytearray()
        self.head_closed = False
        self.open = bytearray()
        self.open_place: tuple[int, int] | None = None

    def _watched(self, keys: np.ndarray) -> np.ndarray:
        if self.watch is ALL:
            return np.arange(len(keys))
        if not len(self.watch):
            return np.zeros(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.watch, keys), len(self.watch) - 1)  # watch is sorted
        return np.flatnonzero(self.watch[at] == keys)

    def _hash(self, ids: np.ndarray, mask: np.ndarray | None, starts: np.ndarray, ends: np.ndarray, keys: np.ndarray, row: np.ndarray, pos: np.ndarray) -> None:
        chosen = self._watched(keys)
        if not len(chosen):
            return
        a, b = starts[chosen].tolist(), ends[chosen].tolist()
        digests = [xxhash.xxh3_128_digest(ids[x:y]) for x, y in zip(a, b)]
        masks = None if mask is None else [xxhash.xxh3_128_digest(mask[x:y]) for x, y in zip(a, b)]
        self.hashed.add_many(self.file, keys[chosen].tolist(), digests, masks, row[chosen].tolist(), pos[chosen].tolist(), (ends - starts)[chosen].tolist())

    def add_lists(self, ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> None:
        """One unit per row of a list column (``ids`` from ``offsets``; ``rows``: each row's index in
        the shard): preference prompts, so that no validation prompt is a training one. An empty
        list is no unit (the row checks report it)."""
        starts, ends = offsets[:-1], offsets[1:]
        some = np.flatnonzero(ends > starts)
        starts, ends = starts[some], ends[some]
        keys = unit_keys(ids, starts, ends - starts)
        self.units += len(keys)
        self._hash(ids, None, starts, ends, keys, np.asarray(rows)[some], np.zeros(len(some), dtype=np.int64))

    def add(self, rows: RowBatch, pieces: Pieces) -> None:
        content = np.flatnonzero(~pieces.pad)
        if not self.documents:
            starts, ends = pieces.start[content], pieces.end[content]
            keys = unit_keys(rows.ids, starts, ends - starts)
            self.units += len(keys)
            r = pieces.row[content]
            self._hash(rows.ids, rows.mask, starts, ends, keys, rows.row[r], starts - rows.starts[r])
            return
        # the content stream of the batch (pad pieces removed), and each stream token's flat position
        if pieces.pad.any():
            lens = pieces.end[content] - pieces.start[content]
            flat = np.repeat(pieces.start[content] - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()), dtype=np.int64)
            stream = rows.ids[flat]
        else:
            flat, stream = None, rows.ids
        ends_doc = content[rows.ids[pieces.end[content] - 1] == self.eos]
        ends = pieces.end[ends_doc]
        if flat is not None:
            ends = np.searchsorted(flat, ends - 1) + 1
        if not len(ends):
            self._continue(stream.tobytes(), rows, flat, 0)
            return
        self._close(stream[: ends[0]].tobytes(), rows, flat)
        starts = ends[:-1]
        if len(starts):
            keys = unit_keys(stream, starts, ends[1:] - starts)
            self.units += len(keys)
            at = starts if flat is None else flat[starts]
            row, pos = rows.where(at)
            self._hash(stream, None, starts, ends[1:], keys, row, pos)
        if int(ends[-1]) < len(stream):
            self._continue(stream[int(ends[-1]) :].tobytes(), rows, flat, int(ends[-1]))

    def _place(self, rows: RowBatch, flat: np.ndarray | None, stream_pos: int) -> tuple[int, int]:
        at = stream_pos if flat is None else int(flat[stream_pos])
        row, pos = rows.where(np.array([at]))
        return int(row[0]), int(pos[0])

    def _continue(self, data: bytes, rows: RowBatch, flat, at: int) -> None:
        if not self.head_closed:
            self.head += data
            return
        if self.open_place is None:
            self.open_place = self._place(rows, flat, at)
        self.open += data

    def _close(self, data: bytes, rows: RowBatch, flat) -> None:
        if not self.head_closed:
            self.head += data
            self.head_closed = True
            return
        place = self.open_place if self.open_place is not None else self._place(rows, flat, 0)
        self.emit(bytes(self.open) + data, *place)
        self.open, self.open_place = bytearray(), None

    def emit(self, doc: bytes, row: int, position: int, *, file: str | None = None, partial: bool = False, into: Hashed | None = None) -> None:
        """A unit known by its bytes (one that crossed a batch or shard boundary)."""
        tokens = np.frombuffer(doc, dtype=np.int32)
        self.units += 1
        if not len(tokens):
            return
        key = key_of(tokens)
        if self.watch is ALL or len(self._watched(np.array([key], dtype=np.uint64))):
            (into or self.hashed).add_many(file or self.file, [key], [xxhash.xxh3_128_digest(tokens)], None, [row], [position], [len(tokens)], partial)


def merge_documents(shards: list[ShardUnits]) -> Hashed:
    """Join the shards of one split in order: each shard's head closes the document the
    previous shard left open; the split's last open document is a (partial) unit too."""
    out = Hashed()
    running = bytearray()
    start: tuple[str, int, int] | None = None  # (file, row, position) where the running document began
    for shard in shards:
        out.extend(shard.hashed)
        if not shard.documents:
            continue
        if start is None and (shard.head or shard.head_closed):
            start = (shard.file, 0, 0)
        if not shard.head_closed:
            running += shard.head
            continue
        doc = bytes(running) + bytes(shard.head)
        if doc and start is not None:
            shard.emit(doc, start[1], start[2], file=start[0], into=out)
        running = bytearray(shard.open)
        start = (shard.file, *shard.open_place) if shard.open_place else None
    if running and shards and start is not None:
        shards[-1].emit(bytes(running), start[1], start[2], file=start[0], partial=True, into=out)
    return out


def overlap(small: Hashed, small_split: str, large: Hashed, large_split: str, *, kind: str = "split_overlap",
            describe: Callable[[str, int, int, str], str] | None = None) -> Iterator[Finding]:
    """Units in both splits (equal token digests; every unit of ``small`` was hashed).

    ``kind`` and ``describe(validation file, row, tokens, train place) -> why`` word the finding
    for units other than examples and documents (preference prompts)."""
    index: dict[bytes, int] = {}
    for i, (d, partial) in enumerate(zip(small.digests, small.partial)):
        if not partial:
            index.setdefault(d, i)
    found = []
    for j, (d, partial) in enumerate(zip(large.digests, large.partial)):
        i = index.get(d)
        if i is not None and not partial:
            found.append((i, j))
    shown = found[: EXAMPLES * 4]
    for i, j in shown:
        (v, vi), (t, ti) = ((small, i), (large, j)) if small_split == "validation" else ((large, j), (small, i))
        why = f"the same {v.lengths[vi]:,} tokens as train {t.place(ti)}"
        if describe is not None:
            why = describe(v.files[vi], v.rows[vi], v.lengths[vi], t.place(ti))
        yield Finding(kind, why, file=v.files[vi], split="validation", row=v.rows[vi], position=v.positions[vi])
    if len(found) > len(shown):
        rest = len(found) - len(shown)
        yield Finding(kind, f"{rest:,} more units in both splits", split="validation", count=rest)
