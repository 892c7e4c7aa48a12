"""In-memory inputs for :func:`dataprep.build`: records, a ``datasets.Dataset``, an Arrow table.

A run reads files, so each kind becomes one input the readers already know, and every record
keeps a location that says which one it is::

    inputs=                     read as                                       a record's location
    [{...}, {...}, ...]         memory://dataprep-inputs/records-1000-<sha>.json  record 4 (= inputs[4])
    datasets.Dataset            its own cache files (format arrow), as they are    row 4 of that file
      (loaded from files)         on disk: nothing is copied
    datasets.Dataset (other),   memory://dataprep-inputs/<kind>-<id>-1000-rows.arrow  row 4 (= inputs[4])
      pyarrow.Table, polars       (an Arrow IPC stream, written batch by batch)

Records are written as one JSON array, so they are read by the very reader a ``.json`` file
gets (the same fields, the same bad-record rules, the same token ids). A ``datasets.Dataset``
is Arrow already: one whose rows are exactly its cache files (no ``select``/``shuffle`` indices,
no in-memory change) is read from those files in place; any other is streamed as Arrow batches
(``with_format("arrow")``), never through Python dicts.

Why ``memory://`` (fsspec's in-process filesystem, which ``dataprep.storage`` already reads):
the manifest and every message then name the data by what it was, ``records-1000-<sha>`` or the
dataset's fingerprint, not by a temporary file that is gone after the run; the name carries the
content's SHA-256 (or the ``datasets`` fingerprint), so the recipe hash changes with the data.
The files live only while :func:`staged` is open, in this process: the ``local`` engine reads
inputs here, and ``--engine ray`` (whose workers read their own inputs) is refused for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dataprep.errors import ConfigError, InputError

ROOT = "memory://dataprep-inputs"
_BATCH = 10_000
_KEEP = ("replace_schema_metadata",)  # in-memory steps datasets records that leave the file's rows as they are


@contextlib.contextmanager
def staged(inputs: Any, options: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The recipe ``inputs:`` entries that read ``inputs`` (with the input ``options`` of the
    recipe: ``text_field``, ``roles``, ...); the memory files are removed on exit.

    Raises:
        ConfigError: ``inputs`` is of a kind this cannot read (the message lists the kinds).
        InputError: a record that is not a mapping or cannot be written as JSON.
    """
    options = {k: v for k, v in options.items() if k not in ("path", "format", "encoding")}
    written: list[str] = []
    try:
        yield [{**options, **spec} for spec in _specs(inputs, written)]
    finally:
        if written:
            fs = _memory()
            for url in written:
                fs.rm(url.split("://", 1)[1])


def is_memory(path: str) -> bool:
    return str(path).startswith(ROOT + "/")


def _specs(inputs: Any, written: list[str]) -> list[dict[str, Any]]:
    kind = type(inputs).__module__.split(".")[0]
    if kind == "datasets":
        return _hf_specs(inputs, written)
    if kind == "pyarrow" or hasattr(inputs, "to_arrow"):
        import pyarrow as pa

        table = inputs.to_arrow() if hasattr(inputs, "to_arrow") else inputs
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not isinstance(table, pa.Table):
            raise ConfigError(f"inputs is a {type(inputs).__name__}; an Arrow input must be a pyarrow.Table or RecordBatch")
        digest = _stream_digest(table.to_batches())
        name = f"table-{table.num_rows}-rows-{digest[:12]}.arrow"
        return [{"path": _write_arrow(name, table.schema, table.to_batches(), written), "format": "arrow"}]
    if isinstance(inputs, (str, bytes, Path, Mapping)) or not isinstance(inputs, Iterable):
        raise ConfigError(
            f"inputs is a {type(inputs).__name__}; pass a list of records (dicts), a datasets.Dataset, a pyarrow.Table "
            "or a polars DataFrame",
            fix="for files, name them in the recipe's `inputs:` (or with overrides=['inputs.0.path=...'])",
        )
    return [_records_spec(list(inputs), written)]


def _records_spec(records: list[Any], written: list[str]) -> dict[str, Any]:
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError("inputs", f"record {i}", f"is a {type(record).__name__}, not a mapping of fields",
                             "pass one dict per record")
    try:
        data = json.dumps(records, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        i, exc = _first_unwritable(records)
        raise InputError("inputs", f"record {i}", f"cannot be written as JSON ({exc})",
                         "give field values as str, int, float, bool, None, lists and dicts") from None
    name = f"records-{len(records)}-{hashlib.sha256(data).hexdigest()[:12]}.json"
    url = f"{ROOT}/{name}"
    with _memory().open(url.split("://", 1)[1], "wb") as fh:
        fh.write(data)
    written.append(url)
    return {"path": url, "format": "json"}


def _first_unwritable(records: list[Any]) -> tuple[int, Exception]:
    for i, record in enumerate(records):
        try:
            json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            return i, exc
    return len(records), ValueError("unknown")


def _hf_specs(ds: Any, written: list[str]) -> list[dict[str, Any]]:
    if not hasattr(ds, "cache_files") or not hasattr(ds, "with_format"):
        splits = list(ds) if isinstance(ds, Mapping) else []
        raise ConfigError(f"inputs is a {type(ds).__name__}; pass one datasets.Dataset",
                          fix=f"choose a split, e.g. inputs=ds[{splits[0]!r}]" if splits else "pass a datasets.Dataset")
    files = _mapped_files(ds)
    if files is not None:
        return [{"path": f, "format": "arrow"} for f in files]
    arrow = ds.with_format("arrow")
    name = f"datasets-{getattr(ds, '_fingerprint', None) or 'dataset'}-{len(ds)}-rows.arrow"
    batches = (b for t in arrow.iter(batch_size=_BATCH) for b in t.to_batches())
    return [{"path": _write_arrow(name, arrow.data.schema.remove_metadata(), batches, written), "format": "arrow"}]


def _mapped_files(ds: Any) -> list[str] | None:
    """The cache files whose rows are exactly ``ds``'s, in order; None when it is anything else
    (indices from select/shuffle, a slice, columns changed in memory, an in-memory table)."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    if getattr(ds, "_indices", None) is not None or not ds.cache_files:
        return None
    table = ds.data
    rows = table.blocks if isinstance(table, ConcatenationTable) else [[table]]
    if any(len(row) != 1 for row in rows):  # columns joined side by side
        return None
    blocks = [row[0] for row in rows]
    if not all(isinstance(b, MemoryMappedTable) and all(r[0] in _KEEP for r in b.replays) for b in blocks):
        return None
    paths = [b.path for b in blocks]
    if paths != [f["filename"] for f in ds.cache_files] or sum(b.num_rows for b in blocks) != len(ds):
        return None
    return paths


def _write_arrow(name: str, schema: Any, batches: Iterable[Any], written: list[str]) -> str:
    import pyarrow as pa

    url = f"{ROOT}/{name}"
    with _memory().open(url.split("://", 1)[1], "wb") as fh:
        with pa.ipc.new_stream(fh, schema) as writer:
            for batch in batches:
                writer.write_batch(batch.replace_schema_metadata(None) if batch.schema.metadata else batch)
    written.append(url)
    return url


def _stream_digest(batches: list[Any]) -> str:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    if batches:
        with pa.ipc.new_stream(sink, batches[0].schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _memory():
    import fsspec  # a dependency of datasets, which dataprep depends on

    return fsspec.filesystem("memory")
