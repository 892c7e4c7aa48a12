"""Chunks on Ray Data: one read task per input file, one block per chunk, one result per block.

::

    ChunkSource: read task i (any worker)           ChunkWorker (actor, one per CPU)
    reader.file_chunks(i, files[i])   --block-->    fn = setup(*args)  (once per actor)
    one block per chunk, in file order              fn(chunk) -> the block with its result

A chunk never spans files and its size depends only on its file (:mod:`dataprep.read.chunks`), so a
worker reads just its own file's chunks and the partition follows the inputs, never the cluster.
Every block is a one-row Arrow table, so Ray Data can neither split nor merge a chunk:

=================  ============================================================================
``source``         the input file's index
``chunk``          the chunk, as an Arrow IPC stream (null on a block that carries only counts)
``records_read``   records read since the file's previous block, readable or not
``read_drops``     unreadable records since then, by reason (JSON object; ``on_error: skip``)
``position``       the reader's byte position in its file (null: unknown, e.g. a URL)
``file_done``      the file's last block: its counts are complete (one is sent even when no
                   record of the file was readable)
=================  ============================================================================

:class:`ChunkWorker` replaces ``chunk`` with ``result``: the pickled
:class:`~dataprep.tasks.base.ChunkResult` (null when there was no chunk). This module imports Ray;
:mod:`dataprep.build.engine_ray` imports it only once Ray is known to be installed.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from dataprep.read.chunks import ChunkReader
from dataprep.build.progress import read_position
from dataprep.read import InputFile

SOURCE, CHUNK, RESULT = "source", "chunk", "result"
RECORDS, DROPS, POSITION, FILE_DONE = "records_read", "read_drops", "position", "file_done"


class ChunkSource(Datasource):
    """The inputs as a Ray Data source: one read task per input file, yielding one block per chunk.

    Args:
        reader: the task's chunk reader (picklable; runs on the workers).
        files: the resolved inputs; every worker must be able to open them (a shared
            filesystem, or URLs).
    """

    def __init__(self, reader: ChunkReader, files: list[InputFile]):
        super().__init__()
        self.reader = reader
        self.files = files

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # compressed inputs and chunk_bytes make any guess wrong

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
        # One task per file whatever `parallelism` asks: the partition is the recipe's, not Ray's.
        return [
            ReadTask(
                partial(read_blocks, self.reader, index, file),
                BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=(file.location,)),
            )
            for index, file in enumerate(self.files)
        ]


def read_blocks(reader: ChunkReader, index: int, file: InputFile) -> Iterator[pa.Table]:
    """The read task of ``files[index]``: one block per chunk; the last one says the file is done."""
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


class ChunkWorker:
    """The ``map_batches`` function: builds the chunk function once per worker, then works chunks.

    Args:
        setup: builds the chunk function (``setup(*setup_args)``), once per actor.
        setup_args: its arguments (the recipe, the loaded tokenizer, ...).
    """

    def __init__(self, setup: Callable[..., Callable[[Any], Any]], setup_args: tuple[Any, ...]):
        # One worker per CPU already: the tokenizer's own thread pool would only oversubscribe.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.fn = setup(*setup_args)

    def __call__(self, blocks: pa.Table) -> pa.Table:
        sources, chunks = blocks.column(SOURCE), blocks.column(CHUNK)
        results = [
            None if not chunks[i].is_valid
            else pickle.dumps(self.fn((sources[i].as_py(), _from_ipc(chunks[i].as_buffer()))), protocol=5)
            for i in range(blocks.num_rows)
        ]
        return blocks.drop_columns([CHUNK]).append_column(RESULT, pa.array(results, pa.large_binary()))


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
    """The blocks in a table of :class:`ChunkWorker` output, in order."""
    for row in table.to_pylist():
        yield Delivered(
            source=row[SOURCE],
            result=None if row[RESULT] is None else pickle.loads(row[RESULT]),
            records_read=row[RECORDS],
            read_drops=Counter(json.loads(row[DROPS])),
            position=row[POSITION],
            file_done=row[FILE_DONE],
        )


def _to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _from_ipc(buffer: pa.Buffer) -> pa.RecordBatch:
    return pa.ipc.open_stream(buffer).read_next_batch()
