"""Atomic dataset output in the ``datasets.save_to_disk`` layout.

::

    OUT.incomplete/              <- everything is written here first
      dataset_dict.json          {"splits": ["train", "validation"]}
      train/data-00000-of-00002.arrow, ..., state.json, dataset_info.json
      validation/...
      tokenizer/                 (only when the recipe trained one)
      manifest.json              <- written last
    OUT.incomplete -> OUT        <- renamed into place only on success

A folder without ``manifest.json`` is not a dataset. Shards are Arrow IPC streams, rolled
at about ``shard_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from . import storage
from .columns import INCOMPLETE_SUFFIX, INPUT_IDS, MANIFEST_FILE, NUM_PAD, SHARD_PATTERN
from .errors import OutputError

_ARROW_TO_FEATURE = {
    pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64",
    pa.uint8(): "uint8", pa.uint16(): "uint16", pa.uint32(): "uint32", pa.uint64(): "uint64",
    pa.float32(): "float32", pa.float64(): "float64", pa.string(): "string", pa.large_string(): "large_string",
    pa.bool_(): "bool",
}


def content_tokens(batch: pa.RecordBatch) -> int:
    """Tokens in a batch of rows, less their trailing pad pieces."""
    offsets = batch.column(INPUT_IDS).offsets
    return int(offsets[-1].as_py() - offsets[0].as_py()) - int(pc.sum(batch.column(NUM_PAD)).as_py() or 0)


def sha256_file(path: Path, *, block: int = 1 << 22) -> str:
    with open(path, "rb") as fh:
        return storage.sha256_stream(fh, block=block)


def shard_digests(path: Path, *, block: int = 1 << 22) -> tuple[str, str]:
    """``(sha256, xxh3_128)`` of a shard in one read: sha256 for provenance, xxh3 so that
    ``validate`` can re-check checksums at memory speed (sha256 alone caps it at ~1.8 GB/s)."""
    sha, fast = hashlib.sha256(), xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            sha.update(chunk)
            fast.update(chunk)
    return sha.hexdigest(), fast.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path.tmp`` and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def features_of(schema: pa.Schema) -> dict[str, Any]:
    """The ``datasets`` Features JSON for an Arrow schema of scalars and lists of scalars."""

    def feature(t: pa.DataType) -> dict[str, Any]:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return {"feature": feature(t.value_type), "_type": "List"}
        return {"dtype": _ARROW_TO_FEATURE[t], "_type": "Value"}

    return {f.name: feature(f.type) for f in schema}


def batch_rows(*, seq_len: int, batch_tokens: int, shard_bytes: int) -> int:
    """Rows per Arrow record batch: ``batch_tokens`` token slots, and at most 1/16 of a shard
    (taking 4 bytes a token), so that small shards still roll between batches."""
    return max(1, min(batch_tokens, shard_bytes // 64) // max(seq_len, 1))


class SplitWriter:
    """Writes one split's shards; rolls to a new shard past ``shard_bytes``.

    Rows arrive in batches of any size (one per packed chunk) and are written in record batches
    of exactly ``batch_rows`` rows (the last one shorter), so a shard's bytes depend on its rows
    alone, never on how the input was chunked. Few large record batches also keep readers fast:
    ``validate`` does a fixed amount of numpy work per batch besides its pass over the tokens.
    Use as a context manager; :meth:`close` returns one dict per shard.
    """

    def __init__(self, folder: Path, schema: pa.Schema, *, shard_bytes: int, batch_rows: int):
        self.folder = folder
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.batch_rows = batch_rows
        folder.mkdir(parents=True, exist_ok=True)
        self._paths: list[Path] = []
        self._rows: list[int] = []
        self._tokens: list[int] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_shard()

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue ``batch``'s rows; write every full record batch they complete."""
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.batch_rows:
            self._emit(self.batch_rows)

    def _emit(self, rows: int) -> None:
        """Write the first ``rows`` queued rows as one record batch (always a fresh copy, so the
        bytes do not depend on which incoming batches they came from)."""
        queued = pa.Table.from_batches(self._pending, schema=self.schema)
        batch = pa.concat_batches(queued.slice(0, rows).to_batches())
        self._pending = queued.slice(rows).to_batches()
        self._pending_rows -= rows
        if self._writer is None:
            self._open_shard()
        assert self._writer is not None and self._sink is not None
        self._writer.write_batch(batch)
        self._rows[-1] += batch.num_rows
        self._tokens[-1] += content_tokens(batch)
        if self._sink.tell() >= self.shard_bytes:
            self._close_shard()

    def _open_shard(self) -> None:
        path = self.folder / f"shard-{len(self._paths):05d}.arrow.tmp"
        self._paths.append(path)
        self._rows.append(0)
        self._tokens.append(0)
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def close(self) -> list[dict[str, Any]]:
        """Finish the split: final shard names, ``state.json``, ``dataset_info.json``.

        A split with no rows still gets one empty shard, so it loads as an empty dataset.
        """
        if self._pending_rows:
            self._emit(self._pending_rows)
        self._close_shard()
        if not self._paths:
            self._open_shard()
            self._close_shard()
        count = len(self._paths)
        shards = []
        for i, tmp in enumerate(self._paths):
            final = self.folder / SHARD_PATTERN.format(index=i, count=count)
            os.replace(tmp, final)
            sha, fast = shard_digests(final)
            shards.append(
                {
                    "file": final.name,
                    "rows": self._rows[i],
                    "tokens": self._tokens[i],
                    "bytes": final.stat().st_size,
                    "sha256": sha,
                    "xxh3_128": fast,
                }
            )
        fingerprint = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()[:16]
        write_json_atomic(
            self.folder / "state.json",
            {
                "_data_files": [{"filename": s["file"]} for s in shards],
                "_fingerprint": fingerprint,
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": self.folder.name,
            },
        )
        write_json_atomic(
            self.folder / "dataset_info.json",
            {"citation": "", "description": "", "features": features_of(self.schema), "homepage": "", "license": ""},
        )
        return shards


class DatasetDir:
    """The output folder's life cycle: ``OUT.incomplete`` while running, ``OUT`` on success."""

    def __init__(self, out: Path, *, overwrite: bool):
        self.out = Path(out)
        self.tmp = self.out.with_name(self.out.name + INCOMPLETE_SUFFIX)
        if self.out.exists():
            if not overwrite:
                raise OutputError(f"{self.out} already exists; pass --overwrite to replace it, or choose another --out")
            if not (self.out / MANIFEST_FILE).is_file():
                raise OutputError(
                    f"{self.out} exists and is not a dataprep dataset (no {MANIFEST_FILE}); "
                    "refusing to delete it even with --overwrite: remove it yourself or choose another --out"
                )
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # left by a run that died: never a dataset
        self.tmp.mkdir(parents=True)

    def commit(self, manifest: dict[str, Any], splits: list[str]) -> None:
        write_json_atomic(self.tmp / "dataset_dict.json", {"splits": splits})
        write_json_atomic(self.tmp / MANIFEST_FILE, manifest)  # last: its presence marks a whole dataset
        if self.out.exists():
            old = self.out.with_name(self.out.name + ".old" + INCOMPLETE_SUFFIX)
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.out, old)
            os.replace(self.tmp, self.out)
            shutil.rmtree(old)
        else:
            os.replace(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class UploadedDatasetDir:
    """:class:`DatasetDir` for an output URL: built in a local staging folder, uploaded on success
    with ``manifest.json`` last (object stores cannot rename a folder; the manifest's presence is
    what marks a whole dataset, as ``validate`` reads it)."""

    def __init__(self, url: str, *, overwrite: bool):
        self.url, self.overwrite = url.rstrip("/"), overwrite
        storage.check_output(self.url, overwrite=overwrite, manifest=MANIFEST_FILE)
        self.tmp = Path(tempfile.mkdtemp(prefix="dataprep-staging-"))

    def commit(self, manifest: dict[str, Any], splits: list[str]) -> None:
        write_json_atomic(self.tmp / "dataset_dict.json", {"splits": splits})
        write_json_atomic(self.tmp / MANIFEST_FILE, manifest)
        storage.check_output(self.url, overwrite=self.overwrite, manifest=MANIFEST_FILE)  # still ours to replace
        self._keep = True  # a failed upload leaves the finished dataset here (the error says where)
        storage.upload(str(self.tmp), self.url, last=MANIFEST_FILE)
        self._keep = False
        shutil.rmtree(self.tmp)

    def abort(self) -> None:
        if not getattr(self, "_keep", False):
            shutil.rmtree(self.tmp, ignore_errors=True)


def open_output(out: str | Path, *, overwrite: bool) -> DatasetDir | UploadedDatasetDir:
    """Where a run writes: a local folder (renamed into place) or a URL (uploaded)."""
    return UploadedDatasetDir(str(out), overwrite=overwrite) if storage.is_url(out) else DatasetDir(Path(out), overwrite=overwrite)
