"""MosaicML streaming (MDS): ``SPLIT/`` holds shards and ``index.json`` written by ``MDSWriter``.

One MDS sample per dataset row, every column kept: token lists as ``ndarray:<dtype>`` (so
``input_ids``, ``assistant_masks``, ``labels`` come back as numpy arrays of the dataset's own types),
scalars (``num_pad``, ``label_id``, ...) as their integer type. The shards carry mosaicml-streaming's
own hashes (``sha1`` and ``xxh64``, checked by its reader with ``validate_hash``). Read with
``streaming.StreamingDataset(local="DEST/train", shuffle=False)``.

Needs ``pip install mosaicml-streaming``. Its package ``__init__`` imports its vision datasets,
which import torchvision; MDS needs none of them. Where torchvision is missing (a CPU-only torch
has none that loads), :func:`import_streaming` lets ``streaming`` import without them.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.dataset.reader import Dataset
from dataprep.errors import ConfigError
from dataprep.export.base import Exporter, Written
from dataprep.export.pieces import batches, list_parts

HASHES = ["sha1", "xxh64"]
SHARD_BYTES = 1 << 26  # MDSWriter's default size_limit (64 MiB)
_ROWS_PER_SLICE = 1024


def import_streaming():
    """The ``streaming`` package (mosaicml-streaming), importable without torchvision."""
    try:
        import streaming
    except ModuleNotFoundError as exc:
        if exc.name == "streaming":
            raise ConfigError(
                "--to mds needs the mosaicml-streaming package, which is not installed",
                fix="pip install mosaicml-streaming (or choose --to parquet / jsonl)",
            ) from exc
        if exc.name != "torchvision":
            raise
        # streaming/__init__ imports streaming.vision (torchvision datasets) before its MDS code:
        # an empty stand-in lets the rest import; streaming.vision itself stays unusable
        sys.modules["streaming.vision"] = types.ModuleType("streaming.vision")
        import streaming
    return streaming


def mds_encoding(t: pa.DataType) -> str:
    """The MDS column encoding of an Arrow column type."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"ndarray:{t.value_type.to_pandas_dtype().__name__}"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype()).name
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    raise ConfigError(f"a column of Arrow type {t} has no MDS encoding here", fix="export it with --to parquet")


class Mds(Exporter):
    name = "mds"
    summary = "MosaicML streaming shards (DEST/SPLIT/, MDSWriter with sha1 + xxh64; StreamingDataset(local=DEST/SPLIT))"

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        streaming = import_streaming()
        table = ds.table(split)
        columns = {f.name: mds_encoding(f.type) for f in table.schema}
        written = Written(extra={"columns": columns, "hashes": HASHES})
        folder = dest / split
        with streaming.MDSWriter(out=str(folder), columns=columns, hashes=HASHES, size_limit=SHARD_BYTES) as writer:
            for batch in batches(ds, split):
                for start in range(0, batch.num_rows, _ROWS_PER_SLICE):
                    part = batch.slice(start, _ROWS_PER_SLICE)
                    for sample in _samples(part):
                        writer.write(sample)
                    offsets = list_parts(part.column(C.INPUT_IDS))[1]
                    written.rows += part.num_rows
                    written.tokens += int(offsets[-1] - offsets[0])
        written.files = sorted(str(p.relative_to(dest)) for p in folder.iterdir())
        return written


def _samples(part: pa.RecordBatch):
    """One dict per row: list columns as numpy slices of their values, scalars as Python numbers."""
    lists, scalars = {}, {}
    for name, column in zip(part.schema.names, part.columns):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lists[name] = list_parts(column)
        else:
            scalars[name] = column.to_pylist()
    for i in range(part.num_rows):
        sample = {name: values[offsets[i] : offsets[i + 1]] for name, (values, offsets) in lists.items()}
        sample.update({name: values[i] for name, values in scalars.items()})
        yield sample
