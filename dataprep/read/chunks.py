"""Input chunks: every record of every input file, in input order, in batches of at most
``chunk_records`` records and ``chunk_bytes`` bytes of text.

A chunk never spans two files and its size depends only on the file, so the partition of
work is a function of the inputs alone: never of the worker count or the cluster size.
It also means a file's chunks can be read on their own (:meth:`ChunkReader.file_chunks`):
``--engine ray`` reads each file on a worker.
The byte bound keeps memory flat: the chunks in flight hold their texts and encodings, and a
chunk of 2,048 records that happens to hold a dozen books would otherwise set the peak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.read import InputFile

ReadFile = Callable[[int, InputFile, Counter], Iterator[pa.RecordBatch]]


@dataclass(frozen=True)
class ChunkReader:
    """How a task reads its chunks, one file at a time.

    Picklable (``read_file`` is a module-level function or a partial of one), so the chunks of a
    file can be read where they are worked on: in this process (``--engine local``) or by a Ray
    worker that reads only its own file (``--engine ray``).

    Attributes:
        read_file: ``(index, file, drops) -> batches``; counts unreadable records into ``drops``.
        max_bytes: cut each batch so a chunk holds at most this many bytes of string columns
            (a record larger than that is a chunk of its own); None: no bound.
        skip: chunks already worked by the run a resumed run continues, per file: they are read
            (so every count stays whole) but not yielded.
    """

    read_file: ReadFile
    max_bytes: int | None = None
    skip: tuple[tuple[int, int], ...] = ()  # (file index, chunks): read and counted, not yielded (a resumed run)

    def chunks(self, files: list[InputFile], *, read_drops: Counter, counts: Counter,
               by_input: dict[int, Counter] | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(file index, batch)`` for every input record, in input order.

        Args:
            files: the resolved inputs.
            read_drops: unreadable records by reason, summed over all files.
            counts: ``records_read`` is incremented for every record seen, readable or not.
            by_input: file index -> that file's ``records_read`` and unreadable records by reason,
                set when the file has been read to its end.
        """
        for index, file in enumerate(files):
            yield from self.file_chunks(index, file, read_drops=read_drops, counts=counts, by_input=by_input)

    def file_chunks(self, index: int, file: InputFile, *, read_drops: Counter, counts: Counter,
                    by_input: dict[int, Counter] | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
        """:meth:`chunks` of the one input ``files[index]``; its counts are complete when this ends."""
        before = Counter(read_drops)
        readable = 0
        skip = dict(self.skip).get(index, 0)
        for batch in self.read_file(index, file, read_drops):
            counts["records_read"] += batch.num_rows
            readable += batch.num_rows
            for piece in split_by_bytes(batch, self.max_bytes):
                if skip:
                    skip -= 1
                    continue
                yield index, piece
        dropped = read_drops - before
        counts["records_read"] += dropped.total()  # unreadable records were read too
        if by_input is not None:
            by_input[index] = Counter({RECORDS_READ: readable + dropped.total(), **dropped})


RECORDS_READ = "records_read"


def split_by_bytes(batch: pa.RecordBatch, max_bytes: int | None) -> Iterator[pa.RecordBatch]:
    """Consecutive slices of ``batch`` of at most ``max_bytes`` bytes of its string columns each."""
    strings = [c for c in batch.columns if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
    if max_bytes is None or not strings or batch.num_rows <= 1:
        yield batch
        return
    sizes = sum(pc.fill_null(pc.binary_length(c), 0).to_numpy(zero_copy_only=False).astype(np.int64) for c in strings)
    ends = np.cumsum(sizes)
    if ends[-1] <= max_bytes:
        yield batch
        return
    start = 0
    while start < batch.num_rows:
        before = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, before + max_bytes, side="right")), start + 1)
        yield batch.slice(start, stop - start)
        start = stop
