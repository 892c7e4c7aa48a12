"""Text normalization over whole Arrow arrays (pyarrow compute kernels, no Python loop per document).

Steps run in a fixed order, each optional (``normalize:`` in the recipe)::

    strip_bom -> newlines -> control_chars -> unicode (NFC/NFKC) -> collapse_spaces -> max_blank_lines -> strip

``normalize_text`` is the same pipeline for one string, for tests and ``inspect``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class NormalizeSpec:
    """A recipe's ``normalize:`` section."""

    unicode: str = "NFC"
    newlines: bool = True
    strip_bom: bool = True
    control_chars: bool = True
    strip: bool = True
    collapse_spaces: bool = False
    max_blank_lines: int | None = None
    pii: tuple[str, ...] = ()  # kinds redacted last (normalize.pii: {kind: redact}): email, ip, phone (text/pii.py)
    fix_mojibake: bool = False  # first, pretraining: text/mojibake.py (ftfy.fix_encoding on flagged documents)


# C0 controls except \t (09) and \n (0A), plus DEL and the C1 block. \r is handled by `newlines`.
_CONTROL = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}]"


def normalize_array(texts: pa.Array | pa.ChunkedArray, spec: NormalizeSpec) -> pa.Array:
    """Normalize every string of ``texts`` as ``spec`` says. Nulls stay null.

    A step that finds nothing to change in a batch is skipped: a scan of the bytes (numpy over the
    batch's own values) says whether a carriage return or a control character may be there, and
    which strings Unicode normalization may change, at a fraction of the cost of a copy.
    """
    out = texts
    if spec.strip_bom and pc.any(pc.starts_with(out, "\ufeff")).as_py():  # the check is 10x cheaper than the copy
        out = pc.replace_substring_regex(out, pattern=r"^\x{FEFF}", replacement="")
    if spec.newlines and any((values == 13).any() for values in _value_bytes(out)):
        out = pc.replace_substring(out, pattern="\r\n", replacement="\n")
        out = pc.replace_substring(out, pattern="\r", replacement="\n")
    if spec.control_chars and _may_have_control(out):
        out = pc.replace_substring_regex(out, pattern=_CONTROL, replacement="")
    if spec.unicode != "none":
        out = _unicode_normalize(out, spec.unicode)
    if spec.collapse_spaces:
        out = pc.replace_substring_regex(out, pattern=r"[ \t]+", replacement=" ")
    if spec.max_blank_lines is not None:
        # k blank lines = k+1 consecutive newlines (whitespace-only lines count as blank).
        keep = spec.max_blank_lines + 1
        out = pc.replace_substring_regex(out, pattern=r"\n(?:[ \t]*\n){%d,}" % keep, replacement="\n" * keep)
    if spec.strip:
        out = pc.utf8_trim_whitespace(out)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return out


def _value_bytes(texts: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """The UTF-8 bytes of the strings, one array per chunk: a slice's own bytes, not its parent's
    (a null's bytes, if any, come along: a scan may then say yes where nothing is, never no where
    something is)."""
    chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
    out = []
    for chunk in chunks:
        if len(chunk) == 0 or chunk.buffers()[2] is None:
            continue
        kind = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=kind)[chunk.offset : chunk.offset + len(chunk) + 1]
        out.append(np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]])
    return out


def _may_have_control(texts: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a character of :data:`_CONTROL` may be in ``texts``: a C0 byte other than tab, LF
    and CR, DEL, or U+0080-U+009F (0xC2 then 0x80-0x9F: 0xC2 is always a lead byte in UTF-8)."""
    for values in _value_bytes(texts):
        low = values[values < 0x20]
        if ((low != 9) & (low != 10) & (low != 13)).any() or (values == 0x7F).any():
            return True
        lead = np.flatnonzero(values[:-1] == 0xC2) + 1
        if ((values[lead] >= 0x80) & (values[lead] <= 0x9F)).any():
            return True
    return False


# The first UTF-8 byte of the first character each form may change (U+0300 for NFC, U+00C0 for NFD,
# U+00A0 for the compatibility forms): a string whose bytes are all below it is already normalized
# (no character below it decomposes, and none is the second of a pair that composes).
_FIRST_CHANGED = {"NFC": 0xCC, "NFD": 0xC3, "NFKC": 0xC2, "NFKD": 0xC2}


def _unicode_normalize(texts: pa.Array | pa.ChunkedArray, form: str) -> pa.Array | pa.ChunkedArray:
    """Unicode normalization (Python's ``unicodedata``) applied only to the strings it changes.

    Most text is already NFC: the strings that may hold a character the form changes (for NFC a
    character of :func:`_nfc_unsafe`; else a byte of :data:`_FIRST_CHANGED` or above) go through
    Python's quick check (``unicodedata.is_normalized``), and only those it finds are normalized and
    put back in place.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    rows = _rows_nfc_may_change(texts) if form == "NFC" else _rows_with_byte(texts, _FIRST_CHANGED.get(form, 0x80))
    if not len(rows):
        return texts
    values = texts.take(pa.array(rows)).to_pylist()
    todo = [(i, text) for i, text in zip(rows.tolist(), values) if text is not None and not unicodedata.is_normalized(form, text)]
    if not todo:
        return texts
    # Python's unicodedata decides and normalizes every string, whatever share of the batch needs it:
    # Arrow's utf8_normalize (utf8proc) knows a later Unicode than Python's (NFKC maps 167 code points
    # unassigned in Python 3.11's 14.0), so choosing it for a mostly unnormalized batch made a document's
    # text depend on the batch it fell in, i.e. on the chunking.
    mask = np.zeros(len(texts), dtype=bool)
    mask[[i for i, _ in todo]] = True
    normalized = pa.array([unicodedata.normalize(form, text) for _, text in todo], texts.type)
    return pc.replace_with_mask(texts, pa.array(mask), normalized)


def _rows_with_byte(texts: pa.Array, at_least: int) -> np.ndarray:
    """The rows of ``texts`` (one chunk) with a byte ``>= at_least`` among their bytes."""
    [values] = _value_bytes(texts) or [np.empty(0, dtype=np.uint8)]
    if not len(values):
        return np.empty(0, dtype=np.int64)
    kind = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(texts.buffers()[1], dtype=kind)[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)
    rows = np.flatnonzero(np.diff(offsets) > 0)
    highest = np.maximum.reduceat(values, offsets[rows] - offsets[0])  # each row's bytes (empty rows hold none)
    return rows[highest >= at_least]


def _rows_nfc_may_change(texts: pa.Array) -> np.ndarray:
    """The rows of ``texts`` (one chunk) holding a character NFC may change (:func:`_nfc_unsafe`):
    the code point of every lead byte from 0xCC (U+0300) on, looked up; any beyond the BMP counts."""
    [values] = _value_bytes(texts) or [np.empty(0, dtype=np.uint8)]
    at = np.flatnonzero(values >= 0xCC)  # lead bytes only: continuation bytes are 0x80-0xBF
    if not len(at):
        return np.empty(0, dtype=np.int64)
    lead = values[at].astype(np.int32)
    second = np.take(values, at + 1, mode="clip").astype(np.int32) & 0x3F
    third = np.take(values, at + 2, mode="clip").astype(np.int32) & 0x3F
    code = np.where(lead < 0xE0, ((lead & 0x1F) << 6) | second, ((lead & 0x0F) << 12) | (second << 6) | third)
    unsafe = np.ones(len(at), dtype=bool)  # four-byte characters (beyond the BMP) are looked at
    bmp = lead < 0xF0
    unsafe[bmp] = _nfc_unsafe()[code[bmp]]
    kind = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(texts.buffers()[1], dtype=kind)[texts.offset : texts.offset + len(texts) + 1].astype(np.int64)
    return np.unique(np.searchsorted(offsets[1:] - offsets[0], at[unsafe], side="right"))


_NFC_UNSAFE: list[np.ndarray] = []  # built on first use


def _nfc_unsafe() -> np.ndarray:
    """Per BMP code point, whether NFC may change a text that holds it: Python's quick check says
    yes at once for a text of the others (combining class 0, unchanged alone, never the second of
    a pair that composes, assigned). Built from ``unicodedata`` on first use (~0.03 s), so it agrees
    with the ``is_normalized`` it spares; an unassigned code point counts as one NFC may change."""
    if not _NFC_UNSAFE:
        seconds = set()
        for cp in range(0x10000):
            parts = unicodedata.decomposition(chr(cp)).split()
            if len(parts) == 2 and not parts[0].startswith("<"):
                seconds.add(int(parts[1], 16))
        table = np.zeros(0x10000, dtype=bool)
        for cp in range(0x10000):
            c = chr(cp)
            table[cp] = (cp in seconds or unicodedata.combining(c) != 0 or unicodedata.category(c) == "Cn"
                         or unicodedata.normalize("NFC", c) != c)
        table[0x1161:0x1176] = table[0x11A8:0x11C3] = True  # Hangul vowels and final consonants compose
        table[0xD800:0xE000] = False  # surrogates: never in UTF-8
        _NFC_UNSAFE.append(table)
    return _NFC_UNSAFE[0]


def normalize_text(text: str, spec: NormalizeSpec) -> str:
    """Normalize one string exactly as :func:`normalize_array` would."""
    return normalize_array(pa.array([text], pa.large_string()), spec)[0].as_py()
