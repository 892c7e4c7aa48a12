"""Where inputs and outputs live: local paths, or URLs of any pyarrow or fsspec filesystem.

A recipe's ``inputs[].path`` and ``--out`` may be URLs (``s3://bucket/corpus/*.jsonl.zst``,
``gs://...``, ``hdfs://...``, ``abfs://...``, ``file:///mnt/data``; any other scheme an installed
fsspec implementation knows). pyarrow's own filesystems are used when they know the scheme;
otherwise fsspec's, wrapped in ``pyarrow.fs.PyFileSystem``. Credentials come from the
environment, as those libraries read them.

The process that runs ``dataprep run`` reads the inputs, streaming (on ``--engine ray`` the
Ray workers do, each its own files, so the URLs must open on every node), and writes the
output. An output URL is built in a local staging folder and uploaded when the run succeeds,
``manifest.json`` last: object stores have no atomic rename, so a dataset is complete exactly
when its manifest is there.

``memory://`` (fsspec's in-process filesystem, where :func:`dataprep.build` stages in-memory
inputs) hands every opener the one shared file object, seeked to 0: two readers at once (the
input digest thread and the reader) would move each other's position and read a mix of the
file. Each open of a memory file is therefore a reader of its own over a copy of the bytes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from functools import lru_cache
from typing import BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs

from .errors import ConfigError, InputError, OutputError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BLOCK = 1 << 22


def is_url(path: object) -> bool:
    """Whether ``path`` is ``scheme://...`` rather than a local path."""
    return bool(_URL.match(str(path)))


def resolve(url: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``url`` and the path inside it.

    Raises:
        ConfigError: no installed filesystem knows the scheme (the message names the package).
    """
    scheme = url.split("://", 1)[0].lower()
    try:
        return pafs.FileSystem.from_uri(url)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        pyarrow_error = exc
    try:
        fs = _fsspec(scheme)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"{url}: no filesystem for {scheme}:// ({pyarrow_error}; fsspec: {exc}); install the fsspec "
            f"implementation for it (s3fs for s3://, gcsfs for gs://, adlfs for abfs://), or give a local path"
        ) from exc
    return fs, url.split("://", 1)[1]


@lru_cache(maxsize=None)
def _fsspec(scheme: str) -> pafs.FileSystem:
    import fsspec  # a dependency of `datasets`

    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme)))


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def info(url: str) -> pafs.FileInfo:
    fs, path = resolve(url)
    return fs.get_file_info(path)


def list_files(url: str) -> list[str]:
    """Every file under the folder ``url``, recursively, as URLs, sorted."""
    fs, root = resolve(url)
    scheme = url.split("://", 1)[0]
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    # some filesystems answer "/bucket/key" for "bucket": compare without the leading slash
    rel = sorted(i.path.lstrip("/")[len(root.strip("/")) + 1 :] for i in found if i.type == pafs.FileType.File)
    return [f"{scheme}://{root.rstrip('/')}/{r}" for r in rel]


def open_input(url: str, *, compression: str | None = None) -> BinaryIO:
    """A buffered binary stream of ``url``, decompressed when ``compression`` (gzip, zstd) is given."""
    if _is_memory(url):
        source = _memory_reader(url)
        return pa.CompressedInputStream(source, compression) if compression else source
    fs, path = resolve(url)
    try:
        return fs.open_input_stream(path, compression=compression, buffer_size=_BLOCK)
    except (OSError, ValueError) as exc:
        raise InputError(url, None, f"cannot open: {exc}", "check the URL and the credentials in the environment") from exc


def open_random(url: str):
    """A seekable file of ``url`` (parquet and Arrow readers need one)."""
    if _is_memory(url):
        return _memory_reader(url)
    fs, path = resolve(url)
    try:
        return fs.open_input_file(path)
    except (OSError, ValueError) as exc:
        raise InputError(url, None, f"cannot open: {exc}", "check the URL and the credentials in the environment") from exc


def _is_memory(url: str) -> bool:
    return url.split("://", 1)[0].lower() == "memory"


def _memory_reader(url: str) -> pa.BufferReader:
    """A reader of its own over a copy of a memory file's bytes (never the shared file object)."""
    import fsspec

    try:
        return pa.BufferReader(fsspec.filesystem("memory").cat_file(url.split("://", 1)[1]))
    except (OSError, ValueError) as exc:  # FileNotFoundError is an OSError
        raise InputError(url, None, f"cannot open: {exc!r}", "a memory:// input lives only in the process that "
                         "wrote it, while it is there") from exc


def size(url: str) -> int:
    return int(info(url).size or 0)


def sha256(url: str, *, stop: threading.Event | None = None) -> str:
    with open_input(url) as fh:
        return sha256_stream(fh, stop=stop)


def sha256_file(path, *, block: int = 1 << 22, stop: threading.Event | None = None) -> str:
    """SHA-256 of a local file, read in blocks."""
    with open(path, "rb") as fh:
        return sha256_stream(fh, block=block, stop=stop)


class HashingStopped(Exception):
    """Raised by a hash whose ``stop`` was set: its result is no longer wanted (the run failed)."""


def sha256_stream(fh: BinaryIO, *, block: int = _BLOCK, stop: threading.Event | None = None) -> str:
    """SHA-256 of what is left in an open binary stream, read ``block`` bytes at a time.

    Raises:
        HashingStopped: ``stop`` was set (checked before each block).
    """
    digest = hashlib.sha256()
    while not (stop is not None and stop.is_set()) and (chunk := fh.read(block)):
        digest.update(chunk)
    if stop is not None and stop.is_set():
        raise HashingStopped
    return digest.hexdigest()


def check_output(url: str, *, overwrite: bool, manifest: str) -> None:
    """Refuse an existing output unless ``overwrite``, and never delete what is not a dataset."""
    target = info(url)
    if target.type == pafs.FileType.NotFound:
        return
    if not overwrite:
        raise OutputError(f"{url} already exists; pass --overwrite to replace it, or choose another --out")
    if info(join(url, manifest)).type != pafs.FileType.File:
        raise OutputError(
            f"{url} exists and is not a dataprep dataset (no {manifest}); refusing to delete it even with "
            "--overwrite: remove it yourself or choose another --out"
        )


def upload(folder: str, url: str, *, last: str) -> None:
    """Copy the local ``folder`` to ``url`` (replacing what is there), the file ``last`` at the end."""
    fs, dest = resolve(url)
    local = pafs.LocalFileSystem()
    try:
        if fs.get_file_info(dest).type != pafs.FileType.NotFound:
            fs.delete_dir(dest)
        fs.create_dir(dest, recursive=True)
        for item in sorted(local.get_file_info(pafs.FileSelector(folder, recursive=True)), key=lambda i: i.path):
            rel = item.path[len(folder.rstrip("/")) + 1 :]
            if item.type == pafs.FileType.Directory:
                fs.create_dir(f"{dest}/{rel}", recursive=True)
            elif rel != last:
                pafs.copy_files(item.path, f"{dest}/{rel}", source_filesystem=local, destination_filesystem=fs)
        pafs.copy_files(f"{folder}/{last}", f"{dest}/{last}", source_filesystem=local, destination_filesystem=fs)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot upload the dataset to {url}: {exc}; the run's output is still in {folder}") from exc
