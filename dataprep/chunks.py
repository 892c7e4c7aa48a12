"""Input chunks: every record of every input file, in input order, in batches of ``chunk_records``.

A chunk never spans two files and its size depends only on the file, so the partition of
work is a function of the inputs alone: never of the worker count or the cluster size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pyarrow as pa

from .read import InputFile

ReadFile = Callable[[int, InputFile, Counter], Iterator[pa.RecordBatch]]


def iter_chunks(
    files: list[InputFile], read_file: ReadFile, *, read_drops: Counter, counts: Counter
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Yield ``(file index, batch)`` for every input record, in input order.

    Args:
        files: the resolved inputs.
        read_file: ``(index, file, drops) -> batches``; counts unreadable records into ``drops``.
        read_drops: unreadable records by reason, summed over all files.
        counts: ``records_read`` is incremented for every record seen, readable or not.
    """
    for index, file in enumerate(files):
        before = sum(read_drops.values())
        for batch in read_file(index, file, read_drops):
            counts["records_read"] += batch.num_rows
            yield index, batch
        counts["records_read"] += sum(read_drops.values()) - before  # unreadable records were read too
