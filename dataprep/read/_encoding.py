"""Text encodings: the ``encoding:`` option, telling a file's codec from its bytes, and the fix to suggest.

``encoding:`` takes ``utf-8`` (the default), ``auto`` or any text codec Python knows
(``utf-8-sig``, ``latin-1``, ``cp1252``, ``utf-16``, ``utf-32``, ``gb18030``, ...); the
file's codec is recorded under its Python name (``latin-1`` -> ``iso8859-1``).

``auto`` is decided once per file, before reading, from its first :data:`SAMPLE` bytes
(decompressed), so a run is deterministic; the rules, first match wins::

    FF FE 00 00 / 00 00 FE FF          utf-32      (byte-order mark)
    FF FE / FE FF                      utf-16      (byte-order mark)
    61 00 62 00 ... (zeros at odd bytes) utf-16-le (the zero bytes of ASCII text in UTF-16;
                                                    likewise -be, utf-32-le / -be)
    EF BB BF                           utf-8-sig   (the mark is dropped, in txt too)
    valid UTF-8 (ASCII too)            utf-8
    anything else                      charset-normalizer's best guess

charset-normalizer ranks codecs that read a sample about equally well in no useful order
(cp1250, cp850 or cp775 before cp1252 for German, Spanish and English text); among those
within a small margin of its best, the common Western codecs win: cp1252, then latin-1.
Measured on XQuAD paragraphs (1, 5, 40 and 240 of them per language) written in 13 codecs:
127 of 154 samples read back exactly, every Latin-1 and cp1252 one among them; the misses
are samples with a handful of non-ASCII bytes (English in koi8-r or big5, German in cp1250 or cp850,
short Turkish in cp1254). A guess is a guess: the codec used is recorded per file, and
``encoding: <codec>`` is the way to be sure. A file whose first bytes are ASCII and whose
later bytes are not takes utf-8, and those later records are ``invalid_utf8``.
The same rules suggest the fix when a file read as UTF-8 is not (:func:`suggest_fix`).
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from dataprep.errors import InputError

from ._compressed import open_decompressed

if TYPE_CHECKING:
    from ._file import InputFile

SAMPLE = 1 << 18  # bytes of a file that `auto` and the suggested fix look at
_STEPS = 20  # chunks of the sample charset-normalizer reads (its default, 5, misjudged 1 MiB of English cp1252)
_PREFERRED = ("cp1252", "latin_1")  # preferred among codecs that read a sample about as well
_CHAOS, _COHERENCE = 0.06, 0.05  # "about as well": this much more chaos, this much less coherence
_WIDE_PROBE = 4096  # bytes the zero-byte pattern of UTF-16/32 is looked for in
_BOMS = (  # (mark, codec, byte order); longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "le"),
    (codecs.BOM_UTF32_BE, "utf-32", "be"),
    (codecs.BOM_UTF16_LE, "utf-16", "le"),
    (codecs.BOM_UTF16_BE, "utf-16", "be"),
)
_ZERO_PATTERNS = (  # (codec, offsets mod 4 that are mostly zero, in words); the others almost never are
    ("utf-32-le", (1, 2, 3), "bytes 2-4 of each group of 4 are"),
    ("utf-32-be", (0, 1, 2), "bytes 1-3 of each group of 4 are"),
    ("utf-16-le", (1, 3), "the second byte of each pair is"),
    ("utf-16-be", (0, 2), "the first byte of each pair is"),
)
NAMES = "utf-8, utf-8-sig, latin-1, cp1252, utf-16, utf-32, another codec Python knows, or auto"


def canonical(name: str) -> str | None:
    """Python's name for a text codec (``latin-1`` -> ``iso8859-1``), None if there is no such text codec."""
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError):
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


def wide_codec(head: bytes) -> tuple[str, str] | None:
    """``(codec, evidence)`` when ``head`` is UTF-16 or UTF-32: by its byte-order mark
    (``utf-16``, ``utf-32``) or by the zero bytes ASCII text has there (``utf-16-le`` ...)."""
    for bom, name, _ in _BOMS:
        if head.startswith(bom):
            return name, f"it starts with the {name.upper()} byte-order mark {bom.hex(' ').upper()}"
    probe = head[:_WIDE_PROBE]
    probe = probe[: len(probe) - len(probe) % 4]
    if len(probe) < 16:
        return None
    quarters = len(probe) // 4
    zeros = [probe[i::4].count(0) / quarters for i in range(4)]  # share of zero bytes at each offset mod 4

    def pattern(many: tuple[int, ...]) -> bool:
        return all(zeros[i] >= 0.3 if i in many else zeros[i] <= 0.05 for i in range(4))

    for name, many, where in _ZERO_PATTERNS:
        if pattern(many):
            return name, f"in its first {len(probe)} bytes, {where} mostly zero, as in {name.upper()} text"
    return None


def misread_wide(head: bytes, codec: str) -> tuple[str, str] | None:
    """``(codec to set, evidence)`` when ``head`` is UTF-16/32 that ``codec`` would read as other text.

    Another codec reads ASCII in UTF-16 as text with NULs between the letters, without
    one error; a UTF-16 codec of the wrong byte order reads it as CJK. ``utf-16`` and
    ``utf-32`` read a byte-order mark and, without one, little-endian (Python's order here).
    """
    found = wide_codec(head)
    if found is None:
        return None
    name, evidence = found
    bom = next((order for mark, _, order in _BOMS if head.startswith(mark)), None)
    family = codec[:6] if codec.startswith(("utf-16", "utf-32")) else codec
    if family != name[:6]:
        return found
    if bom is not None and codec == name:  # utf-16 / utf-32 read their mark
        return None
    order = bom or name[-2:]
    return None if codec.endswith(f"-{order}") or (codec == family and order == "le" and bom is None) else found


def detect(sample: bytes) -> str | None:
    """The codec ``sample`` (a file's first bytes) is most likely in, by the rules above; None if none fits."""
    wide = wide_codec(sample)
    if wide is not None:
        return wide[0]
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample)  # a character cut at the sample's end is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = []
    if len(sample) >= SAMPLE and b"\n" in sample:  # cut where no multibyte character is cut in two
        matches = list(from_bytes(sample[: sample.rindex(b"\n") + 1], steps=_STEPS))
    matches = matches or list(from_bytes(sample, steps=_STEPS))
    if not matches:
        return None
    best = matches[0]
    close = [m for m in matches if m.chaos <= best.chaos + _CHAOS and m.coherence >= best.coherence - _COHERENCE]
    for name in _PREFERRED:
        if any(name in m.could_be_from_charset for m in close):
            return canonical(name)
    return canonical(best.encoding)


def suggest_fix(head: bytes, bad: bytes, codec: str) -> str:
    """What to set when a file read as ``codec`` has bytes that codec rejects.

    Args:
        head: The file's first bytes (up to :data:`SAMPLE`), decompressed, not transcoded.
        bad: The record that failed, as the reader saw it (used when ``head`` looks fine).
        codec: The input's codec.
    """
    guess = detect(head)
    if guess in (None, "utf-8", "utf-8-sig", codec) and bad:
        guess = detect(bad)
    if guess is None or guess in ("utf-8", "utf-8-sig") or guess == codec:
        return "set `encoding:` on this input to the file's codec (e.g. `encoding: cp1252`), or `encoding: auto` to detect it"
    return f"the file looks like {guess}: set `encoding: {guess}` on this input (or `encoding: auto`)"


def read_head(file: InputFile) -> bytes:
    """The first :data:`SAMPLE` bytes of the file, decompressed, not transcoded."""
    with open_decompressed(file) as fh:
        return fh.read(SAMPLE)


def detect_file(file: InputFile) -> str:
    """``encoding: auto``: the file's codec, from its first bytes.

    Raises:
        InputError: No codec reads the file's first bytes as text (or it cannot be read).
    """
    codec = detect(read_head(file))
    if codec is None:
        message = f"`encoding: auto` cannot tell the text encoding of this file from its first {SAMPLE} bytes"
        raise InputError(file.location, None, message, "set `encoding:` on this input to the file's codec, e.g. `encoding: cp1252`")
    return codec
