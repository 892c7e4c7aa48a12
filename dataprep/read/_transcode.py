"""Reading a file in another encoding as UTF-8 bytes, so that every text reader stays as it is.

::

    utf-16 file   FF FE 61 00 0A 00 E9 00 0A 00   ->   61 0A C3 A9 0A   ("a\\n", "\\u00e9\\n")
    cp1252 file   93 68 69 94 0A                  ->   E2 80 9C 68 69 E2 80 9D 0A   ("\\u201chi\\u201d\\n")

Lines stay lines: every codec here decodes a line break to the one character ``\\n``,
which UTF-8 writes as the byte ``0A``, so the line numbers readers count are the file's
(in UTF-16 a line break is ``0A 00``, never split on the byte alone). The stream is
decoded incrementally, one block at a time, so memory stays flat.

Bytes the codec rejects (``81`` in cp1252, a lone surrogate in UTF-16, a character cut off
at the end) become *marks*: each byte ``b`` is written as U+DC00+b, which comes out as
``ED B0..B3 xx``, a sequence that is never valid UTF-8. The reader's own UTF-8 check
then finds the bad record on its line (``invalid_utf8``), and :func:`unmark` gives back
the original bytes for the message.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO

from ._compressed import BLOCK, PieceStream

_MARK = "dataprep-mark"


def _mark(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : exc.end]), exc.end


codecs.register_error(_MARK, _mark)


class Transcoded(PieceStream):
    """The UTF-8 bytes of ``source`` (a binary stream in ``codec``); bytes ``codec`` rejects are marked."""

    def __init__(self, source: BinaryIO, codec: str):
        super().__init__(source)
        self.decoder = codecs.getincrementaldecoder(codec)(errors=_MARK)
        self.done = False

    def _more(self) -> bytes:
        while not self.done:  # a block may decode to nothing yet (a character cut at its end)
            data = self.source.read(BLOCK)
            self.done = not data
            out = self.decoder.decode(data, final=self.done).encode("utf-8", "surrogatepass")
            if out:
                return out
        return b""


def unmark(data: bytes, start: int) -> bytes | None:
    """The original bytes behind the marks at ``data[start:]``; None if there is no mark there."""
    out = bytearray()
    while start + 3 <= len(data) and data[start] == 0xED and 0xB0 <= data[start + 1] <= 0xB3:
        out.append(((data[start + 1] & 0x03) << 6) | (data[start + 2] & 0x3F))
        start += 3
    return bytes(out) if out else None
