"""Parquet: ``SPLIT.parquet``, the rows as they are (every column, the dataset's own Arrow types).

Written a record batch at a time with ``pyarrow.parquet.ParquetWriter`` (zstd). Read with
``pyarrow.parquet.read_table``, ``polars.scan_parquet``, ``datasets.load_dataset("parquet",
data_files=...)``, DuckDB, Spark, ...
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from dataprep import columns as C
from dataprep.dataset.reader import Dataset
from dataprep.export.base import Exporter, Written
from dataprep.export.pieces import batches, list_parts


class Parquet(Exporter):
    name = "parquet"
    summary = "Parquet, one file per split (DEST/SPLIT.parquet), every column as it is"

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        table = ds.table(split)
        written = Written(files=[f"{split}.parquet"])
        with pq.ParquetWriter(dest / f"{split}.parquet", table.schema, compression="zstd") as writer:
            for batch in batches(ds, split):
                writer.write_batch(batch)
                offsets = list_parts(batch.column(C.INPUT_IDS))[1]
                written.rows += batch.num_rows
                written.tokens += int(offsets[-1] - offsets[0])
        return written
