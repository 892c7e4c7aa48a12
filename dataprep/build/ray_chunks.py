"""Chunks on plain Ray actors: file readers yield one block per chunk, chunk workers one result per block.

::

    FileReader (actor, num_cpus=0)                  ChunkWorker (actor, one per CPU)
    read(i, files[i], k): block k of file i  -->    fn = setup(*args)  (once per actor)
    reader.file_chunks(i, files[i]), in order       work(block) -> the block with its result

A chunk never spans files and its size depends only on its file (:mod:`dataprep.read.chunks`), so a
reader reads just its own file's chunks and the partition follows the inputs, never the cluster.
The driver's loop (:mod:`dataprep.build.ray_feed`) asks for blocks, hands them to the workers and
collects the results in input order. A block is an Arrow table of a few consecutive chunks of one
file (:class:`FileReader`'s ``per_block``), one row each:

=================  ============================================================================
``source``         the input file's index
``chunk``          the chunk, as an Arrow IPC stream (null on a block that carries only counts)
``records_read``   records read since the file's previous block, readable or not
``read_drops``     unreadable records since then, by reason (JSON object; ``on_error: skip``)
``position``       the reader's byte position in its file (null: unknown, e.g. a URL)
``file_done``      the file's last block: its counts are complete (one is sent even when no
                   record of the file was readable)
=================  ============================================================================

:class:`ChunkWorker` replaces ``chunk`` with ``result`` and ``buffers``: the
:class:`~dataprep.tasks.base.ChunkResult` pickled with protocol 5, its small objects in ``result``
and its arrays' memory out of band, in ``buffers`` (each 64-byte aligned, their ``[start, end)``
in ``buffer_bounds``; all null when there was no chunk). The driver reads the block in its node's
object store where it lies and unpickles the result onto views of it (:func:`delivered`): the
tokens are never copied in the driver (``tests/test_engine_ray.py`` checks their addresses).

With ``packing.segment_tokens`` the train split's segments are Ray tasks (:class:`RaySegments`)
given the result blocks' ObjectRefs: they read the tokens from the same blocks, so the driver handles
documents only, never tokens.

This module imports Ray; :mod:`dataprep.build.engine_ray` imports it only once Ray is known to be installed.
"""

from __future__ import annotations

import json
import logging
import pickle
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.util.scheduling_strategies

from dataprep.build.segments import Carry, Piece, SegmentOut, SegmentSpec, pack_segment
from dataprep.errors import DataprepError, EngineError
from dataprep.text.encode_parallel import encode_serially_in_this_process
from dataprep.read.chunks import ChunkReader
from dataprep.build.progress import read_position
from dataprep.read import InputFile

log = logging.getLogger("dataprep.engine")

SOURCE, CHUNK, RESULT, BUFFERS, BOUNDS = "source", "chunk", "result", "buffers", "buffer_bounds"
RECORDS, DROPS, POSITION, FILE_DONE = "records_read", "read_drops", "position", "file_done"
ALIGN = 64  # each out-of-band buffer starts at a multiple of this in its block: aligned numpy views
MORE, LAST, PAST = 0, 1, 2  # a read's state: a block and more to come, the file's last block, no block


def read_blocks(reader: ChunkReader, index: int, file: InputFile) -> Iterator[pa.Table]:
    """The rows of ``files[index]``: one-row tables, one per chunk; the last one says the file is done."""
    drops: Counter = Counter()
    counts: Counter = Counter()
    sent_drops: Counter = Counter()
    sent_records = 0

    def block(chunk: pa.RecordBatch | None, *, done: bool) -> pa.Table:
        nonlocal sent_records
        new_drops = drops - sent_drops
        table = pa.table({
            SOURCE: pa.array([index], pa.int32()),
            CHUNK: pa.array([None if chunk is None else _to_ipc(chunk)], pa.large_binary()),
            RECORDS: pa.array([counts["records_read"] - sent_records], pa.int64()),
            DROPS: pa.array([json.dumps(dict(new_drops))], pa.string()),
            POSITION: pa.array([None if file.url else read_position(file.path)], pa.int64()),
            FILE_DONE: pa.array([done]),
        })
        sent_drops.update(new_drops)
        sent_records = counts["records_read"]
        return table

    held = None  # one chunk held back, so the file's last block can say so
    for _, chunk in reader.file_chunks(index, file, read_drops=drops, counts=counts):
        if held is not None:
            yield block(held, done=False)
        held = chunk
    yield block(held, done=True)


class FileReader:
    """The reader actor: block ``k`` of input ``index``: the file's next ``per_block`` chunks, one row each.

    Any number of files, each read once, in order: Ray runs one caller's calls to an actor in the
    order they were made, so the driver may queue the next few reads of a file at once. A read
    whose number is not the next one (the actor died and was restarted, its open files lost) reads
    the file again from its start, skipping the chunks already sent: a file's chunks are a function
    of the file, so the retry sends the same ones.

    Args:
        reader: the task's chunk reader (picklable; runs here, on a worker).
        files: the resolved inputs.
        per_block: chunks in a block (the file's last block may hold fewer): the driver's cost is
            per block, the chunks (and so the output) stay the recipe's.
    """

    def __init__(self, reader: ChunkReader, files: list[InputFile], per_block: int):
        self.reader, self.files, self.per_block = reader, files, per_block
        self.open: dict[int, tuple[Iterator[pa.Table], int]] = {}  # file index -> its rows, the next block's number
        self.ended: set[int] = set()  # files whose last block was sent: a read queued after it sends nothing

    @ray.method(num_returns=2)
    def read(self, index: int, k: int) -> tuple[pa.Table | None, int]:
        """``(block, state)``: block ``k`` and :data:`MORE` or :data:`LAST`; ``(None, PAST)`` after the last one."""
        if index in self.ended:
            return None, PAST
        rows, at = self.open.pop(index, (None, 0))
        if rows is None or at != k:
            rows = read_blocks(self.reader, index, self.files[index])
            for _ in range(k * self.per_block):
                next(rows)
        block = [row for _, row in zip(range(self.per_block), rows)]
        if not block:
            self.ended.add(index)
            return None, PAST
        if block[-1].column(FILE_DONE)[0].as_py():
            self.ended.add(index)
            return pa.concat_tables(block), LAST
        self.open[index] = (rows, k + 1)
        return pa.concat_tables(block), MORE


class ChunkWorker:
    """The chunk actor: builds the chunk function once (on its first chunk), then works blocks.

    The setup arguments (the recipe, the loaded tokenizer: megabytes) are put in the object store
    once for every actor and come with each call as a reference in a list (which Ray leaves as it
    is): an actor restarted after a crash sets up again from them on its next chunk, where
    constructor arguments in the object store may be gone by then (Ray says so at every start).

    Args:
        setup: builds the chunk function (``setup(*setup_args)``).
    """

    def __init__(self, setup: Callable[..., Callable[[Any], Any]]):
        encode_serially_in_this_process()  # one worker per CPU already
        self.setup = setup
        self.fn: Callable[[Any], Any] | None = None

    def work(self, blocks: pa.Table, setup_args: list[Any]) -> pa.Table:
        """``blocks`` with each row's chunk replaced by its result (``result``, ``buffers``, ``buffer_bounds``);
        ``setup_args``: ``[ObjectRef of the setup arguments]``."""
        if self.fn is None:
            self.fn = self.setup(*ray.get(setup_args[0]))
        sources, chunks = blocks.column(SOURCE), blocks.column(CHUNK)
        pickled = [
            None if not chunks[i].is_valid else _dumps(self.fn((sources[i].as_py(), _from_ipc(chunks[i].as_buffer()))))
            for i in range(blocks.num_rows)
        ]
        small = pa.array([p and p[0] for p in pickled], pa.large_binary())
        return blocks.drop_columns([CHUNK]).append_column(RESULT, small).append_column(BUFFERS, _buffers_column(pickled)) \
            .append_column(BOUNDS, pa.array([p and p[2] for p in pickled], pa.list_(pa.int64())))


def _dumps(result: Any) -> tuple[bytes, list[memoryview], list[int]]:
    """``result`` pickled (protocol 5): the small objects, its arrays' memory, and where each array
    goes in the row's buffer (``[start, end)`` pairs, each start a multiple of :data:`ALIGN`)."""
    views: list[pickle.PickleBuffer] = []
    small = pickle.dumps(result, protocol=5, buffer_callback=views.append)
    raw = [view.raw() for view in views]
    bounds, end = [], 0
    for memory in raw:
        start = _aligned(end)
        end = start + memory.nbytes
        bounds += [start, end]
    return small, raw, bounds


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _buffers_column(pickled: list[tuple[bytes, list[memoryview], list[int]] | None]) -> pa.Array:
    """The rows' array memory as one large_binary array, each row's start aligned: one copy per token."""
    offsets, end = [0], 0
    for p in pickled:
        if p is not None and p[2]:
            end = _aligned(end) + p[2][-1]
        offsets.append(end)
    data = np.zeros(end, np.uint8)
    for p, start in zip(pickled, offsets):
        if p is not None and p[2]:
            start = _aligned(start)
            for memory, lo, hi in zip(p[1], p[2][::2], p[2][1::2]):
                data[start + lo:start + hi] = np.frombuffer(memory, np.uint8)
    starts = [_aligned(o) if p is not None and p[2] else o for p, o in zip(pickled, offsets)]
    valid = pa.array([p is not None for p in pickled]).buffers()[1] if None in pickled else None
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(pickled), [valid, pa.py_buffer(np.array(starts + [end], np.int64)), pa.py_buffer(data)],
        null_count=pickled.count(None))


@dataclass
class Delivered:
    """One block of results, back on the driver."""

    source: int
    result: Any  # the ChunkResult, or None for a block that carries only counts
    records_read: int
    read_drops: Counter
    position: int | None
    file_done: bool


def delivered(table: pa.Table) -> Iterator[Delivered]:
    """The blocks in a table of :class:`ChunkWorker` output, in order; each result's arrays are views
    of the table's memory (read-only: an object store block is)."""
    counts = table.select([SOURCE, RECORDS, DROPS, POSITION, FILE_DONE]).to_pylist()
    for i, row in enumerate(counts):
        yield Delivered(
            source=row[SOURCE],
            result=result_at(table, i),
            records_read=row[RECORDS],
            read_drops=Counter(json.loads(row[DROPS])),
            position=row[POSITION],
            file_done=row[FILE_DONE],
        )


def result_at(table: pa.Table, row: int) -> Any:
    """Row ``row``'s ChunkResult (None: no chunk), unpickled onto views of the table's buffers, no copy."""
    small = table.column(RESULT)[row]
    if not small.is_valid:
        return None
    memory = _value(table.column(BUFFERS), row)
    bounds = table.column(BOUNDS)[row].values.to_numpy().tolist()
    return pickle.loads(small.as_buffer(), buffers=[memory.slice(start, stop - start)
                                                    for start, stop in zip(bounds[::2], bounds[1::2])])


def _value(column: pa.ChunkedArray, row: int) -> pa.Buffer:
    """Row ``row`` of a large_binary column as a slice of the column's buffer (``scalar.as_buffer()`` copies)."""
    for chunk in column.chunks:
        if row < len(chunk):
            _, offsets, values = chunk.buffers()
            start, stop = np.frombuffer(offsets, np.int64)[chunk.offset + row:][:2].tolist()
            return values.slice(start, stop - start)
        row -= len(chunk)
    raise IndexError(row)


class RaySegments:
    """Segments (:mod:`dataprep.build.segments`) as Ray tasks: the driver sends each piece's block
    ObjectRef, the task reads the chunk's tokens from the block (a view, on the driver's node), packs,
    writes and digests, and returns the shard list and counts. The driver never touches a token.

    The tasks are pinned to the driver's node: they write the shards into the run's own folder,
    which only that node is sure to reach (a cluster node's blocks come over Ray's object transfer,
    not through the driver process). They take no CPU slot (``num_cpus=0``): the chunk workers hold
    every one for the whole run; up to ``2 * capacity`` are in flight (the driver node's CPUs, at
    most the cluster's CPU count the run uses), as :class:`~dataprep.build.segments.Segments` bounds them.

    A piece whose block is not known (its tokens came from elsewhere) is sent by value: Ray copies
    its tokens once into the object store.
    """

    def __init__(self, cpus: int, max_retries: int):
        node = ray.get_runtime_context().get_node_id()
        here = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), cpus)
        self.capacity = max(1, min(cpus, int(here)))
        self.origins: dict[int, tuple[Any, int, weakref.ref]] = {}  # id(result.tokens) -> (block ref, row, the array)
        self.attached: list[Any] = []
        self.specs: dict[int, tuple[SegmentSpec, Any]] = {}  # id(spec) -> (spec, its ObjectRef): sent once
        self.sent = Counter()  # results "delivered"; pieces sent "by_block" (ObjectRef) or "by_value" (tokens copied); "tasks"
        self.task = ray.remote(_pack_remote).options(
            num_cpus=0, max_retries=max_retries,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node, soft=False))

    def register(self, result: Any, block: Any, row: int) -> None:
        """``result`` (delivered from row ``row`` of block ``block``) may be sent as that block's ref."""
        if result is None:
            return
        key = id(result.tokens)
        self.sent["delivered"] += 1
        self.origins[key] = (block, row, weakref.ref(result.tokens))
        weakref.finalize(result.tokens, self.origins.pop, key, None)  # forgotten with its array

    def attach(self, segments: Any) -> RaySegments:
        self.attached.append(segments)
        return self

    def end_of_input(self) -> None:
        """Finish the attached segments while Ray still runs (the engine shuts it down after)."""
        for segments in self.attached:
            segments.finish()

    def submit(self, spec: SegmentSpec, index: int, carry: Carry | None, pieces: list[Piece], final: bool) -> RayPending:
        if id(spec) not in self.specs:
            self.specs[id(spec)] = (spec, ray.put(spec))
        blocks: list[Any] = []
        sent: list[Any] = []
        for piece in pieces:
            origin = self.origins.get(id(piece.tokens))
            if origin is None or origin[2]() is not piece.tokens:
                sent.append(piece)  # by value
                self.sent["by_value"] += 1
                continue
            self.sent["by_block"] += 1
            block, row, _ = origin
            at = next((i for i, b in enumerate(blocks) if b is block), None)
            if at is None:
                at = len(blocks)
                blocks.append(block)
            sent.append((at, row, piece.source, piece.lengths, piece.docs))
        self.sent["tasks"] += 1
        return RayPending(self.task.remote(self.specs[id(spec)][1], index, carry, sent, final, *blocks))

    def close(self) -> None:
        self.origins.clear()
        self.attached.clear()


def _pack_remote(spec: SegmentSpec, index: int, carry: Carry | None, sent: list[Any], final: bool, *blocks: pa.Table) -> SegmentOut:
    """The segment task: its pieces' tokens read from their blocks (views), then :func:`pack_segment`."""
    pieces = []
    for item in sent:
        if isinstance(item, Piece):
            pieces.append(item)
            continue
        at, row, source, lengths, docs = item
        result = result_at(blocks[at], row)
        pieces.append(Piece(source, result.tokens, lengths, docs, result.extras))
    return pack_segment(spec, index, carry, pieces, final)


class RayPending:
    """A segment task in flight, as :class:`~dataprep.build.segments.Segments` waits for it."""

    def __init__(self, ref: Any):
        self.ref = ref

    def done(self) -> bool:
        return bool(ray.wait([self.ref], timeout=0, fetch_local=False)[0])

    def result(self) -> SegmentOut:
        try:
            return ray.get(self.ref)
        except ray.exceptions.RayTaskError as err:  # what pack_segment raised (a full disk: an OSError), unchanged
            cause = getattr(err, "cause", None)
            if isinstance(cause, (DataprepError, OSError, RuntimeError)):
                raise cause from None
            raise
        except ray.exceptions.RayError as err:  # its worker died more often than max_retries, ...
            raise EngineError(f"a segment task failed on Ray: {err}\n  fix: check the driver node's memory "
                              "(`ray status`, `ray logs`), or lower packing.segment_tokens") from err

    def cancel(self) -> bool:
        if ray.is_initialized():
            ray.cancel(self.ref)
        return True


def _to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _from_ipc(buffer: pa.Buffer) -> pa.RecordBatch:
    return pa.ipc.open_stream(buffer).read_next_batch()
