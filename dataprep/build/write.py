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
at about ``shard_bytes``. The folder's life cycle (``OUT.incomplete``, the rename, an output URL's
upload) is :mod:`dataprep.build.output_dir`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from dataprep.columns import INPUT_IDS, NUM_PAD, SHARD_PATTERN

_ARROW_TO_FEATURE = {
    pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64",
    pa.uint8(): "uint8", pa.uint16(): "uint16", pa.uint32(): "uint32", pa.uint64(): "uint64",
    pa.float32(): "float32", pa.float64(): "float64", pa.string(): "string", pa.large_string(): "large_string",
    pa.bool_(): "bool",
}


def content_tokens(batch: pa.RecordBatch) -> int:
    """Tokens in a batch of rows, less their trailing pad pieces (rows with no ``input_ids``, such as
    preference pairs, count the tokens of every list column)."""
    if INPUT_IDS not in batch.schema.names:
        lists = [c for c in batch.columns if pa.types.is_list(c.type)]
        return sum(int(c.offsets[-1].as_py() - c.offsets[0].as_py()) for c in lists)
    offsets = batch.column(INPUT_IDS).offsets
    return int(offsets[-1].as_py() - offsets[0].as_py()) - int(pc.sum(batch.column(NUM_PAD)).as_py() or 0)


def shard_digests(path: Path, *, block: int = 1 << 22) -> tuple[str, str]:
    """``(sha256, xxh3_128)`` of a shard in one read: sha256 for provenance, xxh3 so that
    ``validate`` can re-check checksums at memory speed (sha256 alone caps it at ~1.8 GB/s)."""
    sha, fast = hashlib.sha256(), xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            sha.update(chunk)
            fast.update(chunk)
    return sha.hexdigest(), fast.hexdigest()


def _file_facts(path: Path) -> dict[str, Any]:
    """A finished shard's bytes and digests, as the manifest lists them."""
    sha, fast = shard_digests(path)
    return {"bytes": path.stat().st_size, "sha256": sha, "xxh3_128": fast}


class _ShardStream:
    """An open shard: its bytes appended to the file and hashed (:func:`shard_digests`), in order, on
    a thread of its own. The file writes and hashlib release the GIL, so the thread that packs rows
    goes on packing while the last batch is copied into the page cache (on the bench corpus the
    writes were a quarter of that thread's time, and the digests, taken afterwards by reading every
    shard back, the last 0.3 s of a run with every other core idle). At most :data:`_PENDING`
    appends wait (memory stays flat); an error writing is raised by the next append or the sync.
    ``size``: the shard's bytes, counting those not yet written."""

    def __init__(self, fh: BinaryIO, *, size: int = 0) -> None:
        self._fh, self.size = fh, size
        self._sha, self._fast = hashlib.sha256(), xxhash.xxh3_128()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dataprep-shard-writer")
        self._pending: deque[Future] = deque()

    def append(self, data: Any, *, write: bool = True) -> None:
        """Append ``data`` (or, ``write=False``, only hash bytes the file already holds)."""
        if write:
            self.size += len(data)
        self._pending.append(self._pool.submit(self._append, data, write))
        while len(self._pending) > _PENDING:
            self._pending.popleft().result()

    def _append(self, data: Any, write: bool) -> None:
        if write:
            self._fh.write(data)
        self._sha.update(data)
        self._fast.update(data)

    def sync(self) -> None:
        """Every append written and flushed to disk."""
        while self._pending:
            self._pending.popleft().result()
        _sync(self._fh)

    def finish(self) -> tuple[int, str, str]:
        """Sync and close the shard: ``(bytes, sha256, xxh3_128)``; the thread ends."""
        self.sync()
        self._fh.close()
        self._pool.shutdown()
        return self.size, self._sha.hexdigest(), self._fast.hexdigest()

    def cancel(self) -> None:
        """Let go without finishing (a failed run): appends not begun are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._fh.close()
        except OSError:  # the buffered bytes cannot be written either (a full disk): they are lost anyway
            pass


_PENDING = 4  # record batches appended but not yet written and hashed


END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # an Arrow IPC stream's last message
SHARD_PREFIX = "shard-"  # a split writer's own shards while written: shard-00000.arrow.tmp, ...
TMP_SUFFIX = ".arrow.tmp"  # every shard's name until the split is closed and its shards get their final names


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path.tmp`` and rename it into place."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path.tmp``, flush it to disk, and rename it into place (durably)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        _sync(fh)
    os.replace(tmp, path)
    _sync_folder(path.parent)


def _sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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

    A shard is an Arrow IPC stream written message by message (schema, record batches,
    end-of-stream marker: the bytes ``pyarrow.ipc.new_stream`` writes), so that a resumed run can
    cut the open shard back to its last checkpoint and go on appending (:meth:`state`,
    :meth:`restore`). Use as a context manager; :meth:`close` returns one dict per shard.
    """

    def __init__(self, folder: Path, schema: pa.Schema, *, shard_bytes: int, batch_rows: int, prefix: str = SHARD_PREFIX):
        self.folder = folder
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.batch_rows = batch_rows
        self.prefix = prefix
        folder.mkdir(parents=True, exist_ok=True)
        self._known: dict[str, dict[str, Any]] = {}  # finished shards (file name -> bytes and digests, taken where written)
        self._paths: list[Path] = []
        self._rows: list[int] = []
        self._tokens: list[int] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._sink: _ShardStream | None = None  # the open shard

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
        if self._sink is None:
            self._open_shard()
        assert self._sink is not None
        self._sink.append(batch.serialize())
        self._rows[-1] += batch.num_rows
        self._tokens[-1] += content_tokens(batch)
        if self._sink.size >= self.shard_bytes:
            self._close_shard()

    def _open_shard(self) -> None:
        path = self.folder / f"{self.prefix}{len(self._paths):05d}{TMP_SUFFIX}"
        self._paths.append(path)
        self._rows.append(0)
        self._tokens.append(0)
        self._sink = _ShardStream(open(path, "wb"))
        self._sink.append(self.schema.serialize())

    def _close_shard(self) -> None:
        if self._sink is not None:
            self._sink.append(END_OF_STREAM)
            size, sha, fast = self._sink.finish()
            self._sink = None
            self._known[self._paths[-1].name] = {"bytes": size, "sha256": sha, "xxh3_128": fast}

    def discard(self) -> None:
        """Let go of the open shard without finishing it (the run failed; its folder goes or is resumed)."""
        if self._sink is not None:
            self._sink.cancel()
            self._sink = None

    def finish_files(self) -> list[dict[str, Any]]:
        """Write what is queued and close the last shard; return each shard written as
        :meth:`adopt` takes it (file name, rows, tokens, bytes, digests), the files keeping their
        temporary names. A segment's writer (:mod:`dataprep.build.segments`) ends so, digesting its
        shards where it wrote them; the split's writer takes them over in order."""
        if self._pending_rows:
            self._emit(self._pending_rows)
        self._close_shard()
        return [{"file": path.name, "rows": rows, "tokens": tokens, **(self._known.get(path.name) or _file_facts(path))}
                for path, rows, tokens in zip(self._paths, self._rows, self._tokens)]

    def adopt(self, shards: list[dict[str, Any]]) -> None:
        """Make finished shard files in this split's folder (:meth:`finish_files` of another writer)
        this split's next shards, in order. Only between whole shards: never while one is open or
        rows are queued."""
        if self._sink is not None or self._pending_rows:
            raise RuntimeError("a split writer adopts shards only between whole shards of its own")
        for shard in shards:
            self._paths.append(self.folder / shard["file"])
            self._rows.append(shard["rows"])
            self._tokens.append(shard["tokens"])
            self._known[shard["file"]] = {k: shard[k] for k in ("bytes", "sha256", "xxh3_128")}

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on exactly here, after flushing the open shard to
        disk: the shards so far (the open one's length), and the rows not yet written, as IPC."""
        if self._sink is not None:
            self._sink.sync()
        pending = pa.BufferOutputStream()
        with pa.ipc.new_stream(pending, self.schema) as writer:
            for batch in self._pending:
                writer.write_batch(batch)
        return {
            "shards": [p.name for p in self._paths],
            "rows": list(self._rows),
            "tokens": list(self._tokens),
            "open_bytes": None if self._sink is None else self._sink.size,
            "pending": pending.getvalue().to_pybytes(),
            "known": dict(self._known),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state`: cut the open shard back to its recorded length (a crash may
        have left more of it), remove shards begun after it, and queue the pending rows again."""
        names = set(state["shards"])
        for stale in self.folder.glob(f"*{TMP_SUFFIX}"):  # this writer's shards, and segments' (adopted or not)
            if stale.name not in names:
                stale.unlink()
        self._known = dict(state.get("known", {}))
        self._paths = [self.folder / name for name in state["shards"]]
        self._rows, self._tokens = list(state["rows"]), list(state["tokens"])
        if state["open_bytes"] is not None:
            fh = open(self._paths[-1], "r+b")
            fh.truncate(state["open_bytes"])
            self._sink = _ShardStream(fh, size=state["open_bytes"])
            while chunk := fh.read(1 << 22):  # the kept bytes, hashed again (the stream does not touch fh yet)
                self._sink.append(chunk, write=False)
            fh.seek(state["open_bytes"])
        self._pending = pa.ipc.open_stream(state["pending"]).read_all().to_batches()
        self._pending_rows = sum(b.num_rows for b in self._pending)

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
            known = self._known.get(tmp.name)
            os.replace(tmp, final)
            if known is None:
                known = _file_facts(final)
            shards.append({"file": final.name, "rows": self._rows[i], "tokens": self._tokens[i], **known})
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
