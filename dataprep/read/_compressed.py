"""Opening an input as decompressed bytes, where a damaged container is a file error.

A .gz or .zst file that is cut short or corrupt raises :class:`~dataprep.errors.InputError`
for the whole file, whatever ``on_error`` says: the damage is in the container, not in a
record, so it is never counted as ``malformed_json`` or ``invalid_utf8``. Local files and
URLs go through the same decompressors here (a URL is read as raw bytes), so both give the
same errors::

    two-frame .zst cut inside frame 2   ->  "truncated: the zstd stream ends inside a frame (frame 2)"
    .zst with a bad block or checksum   ->  "corrupt zstd data in frame 1: ... Data corruption detected"
    .gz cut short                       ->  "truncated: the gzip stream ends inside a member"
    .gz with a bad CRC or deflate data  ->  "corrupt gzip data: CRC check failed ..."
    an empty .gz / .zst                 ->  "empty: a compressed file holds at least one frame or member"

zstd frames are decompressed one at a time (``decompressobj``), so the end of the input is
checked against the end of the last frame: ``stream_reader(read_across_frames=True)``
returns what it has and stops silently when the last frame is cut. Corruption is found
when the compressed data cannot be decoded or when a checksum does not match (gzip always
has one; zstd frames have one when written by the ``zstd`` tool, its default); bytes that
decode and carry no checksum cannot be told from the original. The records before the
damage have been handed on by then: the error stops the read.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import TYPE_CHECKING, BinaryIO

import zstandard

from dataprep import storage
from dataprep.errors import InputError

if TYPE_CHECKING:
    from ._file import InputFile

BLOCK = 1 << 20  # read size for files and decompressors
_ZSTD_IN = 1 << 15  # compressed bytes per zstd step: each step's output stays small, even at a 26x ratio

_FIX = {
    "zstd": "the file is damaged or incomplete: download or copy it again (`zstd -t FILE` checks a .zst file)",
    "gzip": "the file is damaged or incomplete: download or copy it again (`gzip -t FILE` checks a .gz file)",
}


def open_decompressed(file: InputFile) -> BinaryIO:
    """Binary stream of the file's bytes (local or a URL), decompressed, read in large blocks."""
    raw: BinaryIO = storage.open_input(file.url) if file.url else open(file.path, "rb", buffering=0)
    if file.compression is None:
        return io.BufferedReader(raw, buffer_size=BLOCK)
    stream = _Zstd(raw, file.location) if file.compression == "zstd" else _Gzip(raw, file.location)
    return io.BufferedReader(stream, buffer_size=BLOCK)


class PieceStream(io.RawIOBase):
    """A raw binary stream whose bytes come a piece at a time from ``_more()`` (b"" at the end),
    over a ``source`` stream it closes."""

    def __init__(self, source: BinaryIO):
        self.source = source
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            out = self._more()
            if not out:
                return 0
            self.pending = memoryview(out)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self.source.close()
        super().close()

    def _more(self) -> bytes:
        raise NotImplementedError


class _Decompressed(PieceStream):
    """Decompressed bytes; a damaged container raises :class:`InputError` naming the file."""

    kind = ""

    def __init__(self, source: BinaryIO, location: str):
        super().__init__(source)
        self.location = location

    def damaged(self, what: str) -> InputError:
        return InputError(self.location, None, what, _FIX[self.kind])

    def empty(self) -> InputError:
        return self.damaged(f"empty: a compressed file holds at least one {self.kind} frame or member; this one has no bytes")


class _Zstd(_Decompressed):
    """zstd frames one after another; the input must end exactly where a frame ends."""

    kind = "zstd"

    def __init__(self, source: BinaryIO, location: str):
        super().__init__(source, location)
        self.context = zstandard.ZstdDecompressor()
        self.frame = None  # decompressobj of the frame being read; None between frames
        self.unit = 0  # frames started, so the one being read (1-based)
        self.started = False  # any input read at all

    def _more(self) -> bytes:
        while True:
            data = self.source.read(_ZSTD_IN)
            if not data:
                if not self.started:
                    raise self.empty()
                if self.frame is not None:
                    raise self.damaged(f"truncated: the zstd stream ends inside a frame (frame {self.unit})")
                return b""
            self.started = True
            out = self._feed(data)
            if out:
                return out

    def _feed(self, data: bytes) -> bytes:
        """Decompress ``data``, starting a new frame wherever one ends."""
        parts = []
        while data:
            if self.frame is None:
                self.frame, self.unit = self.context.decompressobj(), self.unit + 1
            try:
                parts.append(self.frame.decompress(data))
            except zstandard.ZstdError as exc:
                raise self.damaged(f"corrupt zstd data in frame {self.unit}: {exc}") from exc
            if not self.frame.eof:
                break
            data, self.frame = self.frame.unused_data, None
        return b"".join(parts)


class _Gzip(_Decompressed):
    """gzip members one after another (``gzip`` checks each member's CRC and length)."""

    kind = "gzip"

    def __init__(self, source: BinaryIO, location: str):
        super().__init__(source, location)
        self.reader = gzip.GzipFile(fileobj=_Counted(source, self), mode="rb")
        self.started = False

    def _more(self) -> bytes:
        try:
            out = self.reader.read(BLOCK)
        except EOFError as exc:
            raise self.damaged("truncated: the gzip stream ends inside a member") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise self.damaged(f"corrupt gzip data: {exc}") from exc
        if not out and not self.started:
            raise self.empty()
        return out


class _Counted:
    """The compressed source as :class:`gzip.GzipFile` reads it; notes that input was seen."""

    def __init__(self, source: BinaryIO, owner: _Gzip):
        self.source, self.owner = source, owner

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data:
            self.owner.started = True
        return data
