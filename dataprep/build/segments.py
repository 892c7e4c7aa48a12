"""Pack and write the train split in segments, beside the ordered stage instead of in it.

Without segments the ordered stage (:mod:`dataprep.build.ordered`) touches every token: it gathers
the kept documents, packs them, builds Arrow batches, writes and digests the shards, in one thread,
for every worker. At the fast encode engine's speed that single stage caps a run at a couple of
workers (``benchmarks/ordered_stage.py``). With ``packing.segment_tokens`` the ordered stage keeps
only what needs the input order, per document: dedup (first occurrence wins), the split, the
counts. The train split's documents are handed on in *segments*: whole chunks, closed as soon as
they hold ``segment_tokens`` kept tokens, so segment boundaries are a function of the data and the
recipe, never of the worker count. Each segment is gathered, packed, written to its own shard
files and digested by :func:`pack_segment` on a pool of threads (numpy, Arrow, file writes and
hashing release the GIL); the stage adopts the finished shards in segment order::

    ordered stage (per document): dedup -> split -> validation packed here | train -> segment k
    segment threads (per token):  gather -> pack -> Arrow batches -> shard files -> digests
    ordered stage: adopt segment k's shards after segment k-1's

``wrap`` rows are exactly the rows of one stream: a segment starts from the partial row the
segments before it leave (:meth:`~dataprep.pack.wrap.WrapPacker.start_with`), which the stage
works out from the documents' lengths and the last few hundred tokens (:func:`next_carry`), so no
segment waits for another; every count (``split_documents`` included) is the one stream's. Only
the shard files differ: each segment writes its own. ``bfd`` packs each segment on its own (its
rounds carry their least-filled rows into the next: a segment ends with a final round).

The validation split (a small share) is packed by the stage as before. A checkpoint is taken
only between segments, once the ones in flight are written (:meth:`Segments.idle`), so a resumed
run cuts the same segments.

Where segments run is the engine's choice: on this process's threads (:class:`ThreadRunner`, the
local engine), or on the runner an engine offers (:meth:`Segments.use`, which the run calls with
the engine's offer before the first piece): ``--engine ray`` packs them as Ray tasks that read the chunks' tokens from the object
store blocks they arrived in, so the driver never touches a token
(:class:`dataprep.build.ray_chunks.RaySegments`). Such an engine finishes its segments when its
input ends (:meth:`Segments.finish`, then a no-op for the stage), while it can still run them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from dataprep.build.write import SplitWriter
from dataprep.pack.layout import gather_documents, gather_ranges
from dataprep.pack.rows import PackStats

__all__ = ["SegmentSpec", "Piece", "Segments", "pack_segment", "next_carry", "SEGMENT_PREFIX", "ThreadRunner"]

SEGMENT_PREFIX = "segment-"  # segment k's shards while the run lasts: segment-000007-00000.arrow.tmp

Carry = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # a partial row: tokens, piece lengths, extras


@dataclass(frozen=True)
class SegmentSpec:
    """What :func:`pack_segment` needs besides its documents (the same for every segment).

    Attributes:
        folder: the split's folder; segment shards are written there under :data:`SEGMENT_PREFIX` names.
        schema, to_batch, make_packer: the task's row schema, rows -> Arrow batch, packer factory.
        shard_bytes, batch_rows: as the split's own writer rolls shards and cuts record batches.
        unk_id: the unknown-token id counted among the written tokens (None: not counted).
        wrap: the packer is a ``wrap`` packer (segments continue one stream); else each segment is finished.
    """

    folder: Path
    schema: pa.Schema
    make_packer: Callable[[], Any]
    to_batch: Callable[[Any], pa.RecordBatch]
    shard_bytes: int
    batch_rows: int
    unk_id: int | None
    wrap: bool


@dataclass
class Piece:
    """One chunk's documents in a segment: the chunk's tokens as the worker sent them, and which
    documents are this split's kept ones (``docs``; None: all of them)."""

    source: int
    tokens: np.ndarray
    lengths: np.ndarray
    docs: np.ndarray | None
    extras: dict[str, np.ndarray]

    def kept_lengths(self) -> np.ndarray:
        return self.lengths if self.docs is None else self.lengths[self.docs]


@dataclass
class SegmentOut:
    """What one segment wrote: its shards (as :meth:`SplitWriter.adopt` takes them), its packer's
    counts, unknown-token ids per input, and (``wrap``) the partial row its packer left."""

    shards: list[dict[str, Any]]
    stats: PackStats
    unknown: Counter
    carry_tokens: int


def pack_segment(spec: SegmentSpec, index: int, carry: Carry | None, pieces: list[Piece], final: bool) -> SegmentOut:
    """Gather, pack and write segment ``index`` (runs on a segment thread).

    ``carry``: the partial row the segments before it left (``wrap``). ``final``: the run's last
    segment, whose packer finishes (``wrap``: the last partial row is dropped or padded); ``bfd``
    segments always finish.
    """
    unknown: Counter = Counter()
    parts = []
    for piece in pieces:
        tokens, lengths, extras = gather_documents(piece.tokens, piece.lengths, piece.docs, piece.extras)
        if spec.unk_id is not None:
            unknown[piece.source] += int(np.count_nonzero(tokens == spec.unk_id))
        parts.append((tokens, lengths, extras))
    packer = spec.make_packer()
    if carry is not None and len(carry[0]):
        packer.start_with(*carry)
    writer = SplitWriter(spec.folder, spec.schema, shard_bytes=spec.shard_bytes, batch_rows=spec.batch_rows,
                         prefix=f"{SEGMENT_PREFIX}{index:06d}-")
    try:
        if parts:
            tokens = np.concatenate([p[0] for p in parts])
            lengths = np.concatenate([p[1] for p in parts])
            extras = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
            _write(writer, spec, packer.add(tokens, lengths, extras or None))
        if final or not spec.wrap:
            _write(writer, spec, packer.finish())
        shards = writer.finish_files()
    except BaseException:
        writer.discard()
        raise
    return SegmentOut(shards, packer.stats, unknown, packer.carry_tokens if spec.wrap else 0)


def _write(writer: SplitWriter, spec: SegmentSpec, rows: Any) -> None:
    if rows.num_rows:
        writer.write(spec.to_batch(rows))


class Pending(Protocol):
    """A segment handed to a runner (a :class:`~concurrent.futures.Future`, or a Ray task's)."""

    def done(self) -> bool: ...
    def result(self) -> SegmentOut: ...
    def cancel(self) -> bool: ...


class Runner(Protocol):
    """Where segments are packed: ``capacity`` at once, each by :func:`pack_segment` (or its equal)."""

    capacity: int

    def submit(self, spec: SegmentSpec, index: int, carry: Carry | None, pieces: list[Piece], final: bool) -> Pending: ...
    def close(self) -> None: ...


class ThreadRunner:
    """Segments on this process's threads (the local engine): numpy, Arrow, file writes and hashing
    release the GIL, but their per-token CPU is this process's."""

    def __init__(self, workers: int):
        self.capacity = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, spec: SegmentSpec, index: int, carry: Carry | None, pieces: list[Piece], final: bool) -> Pending:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="dataprep-segment")
        return self._pool.submit(pack_segment, spec, index, carry, pieces, final)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def next_carry(carry: Carry, pieces: list[Piece], seq_len: int) -> Carry:
    """The partial row a ``wrap`` stream leaves after ``carry`` and then ``pieces``' documents: its last
    ``(len(carry) + tokens) % seq_len`` tokens, in pieces each the end of a document, as
    :class:`~dataprep.pack.wrap.WrapPacker` would carry it. Touches those tokens only."""
    tokens, lens, extras = carry
    total = sum(int(p.kept_lengths().sum()) for p in pieces)
    need = (len(tokens) + total) % seq_len
    if need == 0:
        return tokens[:0], lens[:0], {k: v[:0] for k, v in extras.items()}
    parts: list[Carry] = []
    if need > total:  # the whole stream since the last row end: the old partial row and every document
        parts.append(carry)
        need = total
    tail: list[Carry] = []
    for piece in reversed(pieces):
        if need == 0:
            break
        kept = np.flatnonzero(piece.docs) if piece.docs is not None else np.arange(len(piece.lengths))
        if not len(kept):
            continue
        ends = np.cumsum(piece.lengths)[kept]
        kept_lens = piece.lengths[kept]
        back = np.cumsum(kept_lens[::-1])  # tokens of the last 1, 2, ... kept documents
        n = min(int(np.searchsorted(back, need)) + 1, len(kept_lens))  # documents reaching back `need` tokens
        take_lens = kept_lens[len(kept_lens) - n:].copy()
        take_ends = ends[len(kept_lens) - n:]
        have = int(take_lens.sum())
        if have > need:  # the first one is cut: only its end is carried
            take_lens[0] -= have - need
        starts = take_ends - take_lens
        tail.append((gather_ranges(piece.tokens, starts, take_lens), take_lens.astype(np.int64),
                     {k: gather_ranges(v, starts, take_lens) for k, v in piece.extras.items()}))
        need -= int(take_lens.sum())
    parts.extend(reversed(tail))
    return (np.concatenate([p[0] for p in parts]).astype(np.int32), np.concatenate([p[1] for p in parts]),
            {k: np.concatenate([p[2][k] for p in parts]) for k in extras})


class Segments:
    """The ordered stage's side of segments: collect the train split's documents, hand each full
    segment to a runner (threads, or the engine's: :meth:`use`), adopt the shards in segment order.

    Args:
        spec: what every segment is packed and written with.
        segment_tokens: a segment closes after the chunk that brings it to this many kept tokens.
        seq_len: the rows' length (``wrap``: where the partial row ends).
        extra_dtypes: the per-token arrays the packer carries (an empty partial row has them too).
        writer: the split's writer; it adopts each segment's shards.
        workers: segments packed at once on threads; at most twice as many in flight (an engine's
            runner says its own ``capacity``).

    ``on_unknown`` is told each segment's unknown-token ids per input, in segment order (the ordered
    stage that owns it counts them with the rest).
    """

    def __init__(self, spec: SegmentSpec, *, segment_tokens: int, seq_len: int, extra_dtypes: dict[str, np.dtype],
                 writer: SplitWriter, workers: int):
        self.spec = spec
        self.segment_tokens = segment_tokens
        self.seq_len = seq_len
        self.writer = writer
        self.workers = max(1, workers)
        self.on_unknown: Callable[[Counter], None] = lambda unknown: None
        self.stats = PackStats(seq_len=seq_len)  # summed over the finished segments
        self.index = 0  # the next segment's number
        self.carry: Carry = (np.zeros(0, np.int32), np.zeros(0, np.int64),
                             {k: np.zeros(0, d) for k, d in extra_dtypes.items()})
        self.pieces: list[Piece] = []
        self.held = 0  # kept tokens in self.pieces
        self.pending: deque[tuple[Pending, int]] = deque()  # in segment order: (its result, the carry it must leave)
        self.runner: Runner | None = None  # chosen when the first piece arrives: where the pieces live
        self.finished = False

    def use(self, runner: Any) -> None:
        """Pack the segments with an engine's ``runner`` (``--engine ray``: Ray tasks) instead of this
        process's threads, before the first one: an object with :class:`Runner`'s methods and
        ``attach(segments)``, which returns the runner to use (None: threads after all). None: no
        runner offered (the local engine), threads."""
        if runner is None:
            return
        if self.runner is not None:
            raise RuntimeError("segments choose their runner once, before the first piece")
        engine = runner.attach(self)
        self.runner = engine if engine is not None else ThreadRunner(self.workers)

    def add(self, piece: Piece) -> None:
        """Add one chunk's documents; a segment they fill is handed to the runner."""
        if self.runner is None:
            self.runner = self._choose_runner()
        self.pieces.append(piece)
        self.held += int(piece.kept_lengths().sum())
        if self.held >= self.segment_tokens:
            self._submit(final=False)

    def idle(self) -> bool:
        """No documents collected for the next segment: a checkpoint may be taken (after :meth:`drain`)."""
        return not self.pieces

    def poll(self) -> None:
        """Adopt the segments that are written, in order, without waiting."""
        while self.pending and self.pending[0][0].done():
            self._adopt(*self.pending.popleft())

    def drain(self) -> None:
        """Wait for every segment handed out, and adopt them."""
        while self.pending:
            self._adopt(*self.pending.popleft())

    def finish(self) -> None:
        """Hand out the last segment (``wrap``: with the run's last partial row) and adopt every one.
        Once only: an engine's runner finishes its segments when its input ends, the stage again later."""
        if self.finished:
            return
        if self.pieces or (self.spec.wrap and len(self.carry[0])):
            self._submit(final=True)
        self.drain()
        self.finished = True

    def close(self) -> None:
        """Stop the runner (a failed run: segments not yet begun are cancelled)."""
        for pending, _ in self.pending:
            pending.cancel()
        if self.runner is not None:
            self.runner.close()

    def _choose_runner(self) -> Runner:
        """This process's threads: no engine offered a runner (:meth:`use`) before the first piece."""
        return ThreadRunner(self.workers)

    def _submit(self, *, final: bool) -> None:
        carry = self.carry if self.spec.wrap else None
        if self.spec.wrap:
            self.carry = next_carry(self.carry, self.pieces, self.seq_len)
        if self.runner is None:  # the last segment of a run whose train split got no piece
            self.runner = self._choose_runner()
        pending = self.runner.submit(self.spec, self.index, carry, self.pieces, final)
        self.pending.append((pending, 0 if final else len(self.carry[0])))
        self.index += 1
        self.pieces, self.held = [], 0
        while len(self.pending) > 2 * self.runner.capacity:  # bounded memory: wait for the oldest
            self._adopt(*self.pending.popleft())

    def _adopt(self, future: Pending, carry_tokens: int) -> None:
        out: SegmentOut = future.result()
        if out.carry_tokens != carry_tokens:  # the stage's partial row and the packer's must agree
            raise RuntimeError(f"segment packing left {out.carry_tokens} tokens in its partial row where the "
                               f"ordered stage worked out {carry_tokens}: a bug in dataprep, please report it")
        self.writer.adopt(out.shards)
        self.stats.add(out.stats)
        self.on_unknown(out.unknown)

    _STATE = ("stats", "index", "carry")

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (only when :meth:`idle` and drained)."""
        if self.pieces or self.pending:
            raise RuntimeError("a checkpoint is taken between segments only")
        return {name: getattr(self, name) for name in self._STATE}

    def restore(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name])
