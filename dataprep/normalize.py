"""Text normalization over whole Arrow arrays (pyarrow compute kernels, no Python loop per document).

Steps run in a fixed order, each optional (``normalize:`` in the recipe)::

    strip_bom -> newlines -> control_chars -> unicode (NFC/NFKC) -> collapse_spaces -> max_blank_lines -> strip

``normalize_text`` is the same pipeline for one string, for tests and ``inspect``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .recipe import NormalizeSpec

# C0 controls except \t (09) and \n (0A), plus DEL and the C1 block. \r is handled by `newlines`.
_CONTROL = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}-\x{9F}]"


def normalize_array(texts: pa.Array | pa.ChunkedArray, spec: NormalizeSpec) -> pa.Array:
    """Normalize every string of ``texts`` as ``spec`` says. Nulls stay null."""
    out = texts
    if spec.strip_bom and pc.any(pc.starts_with(out, "\ufeff")).as_py():  # the check is 10x cheaper than the copy
        out = pc.replace_substring_regex(out, pattern=r"^\x{FEFF}", replacement="")
    if spec.newlines:
        out = pc.replace_substring(out, pattern="\r\n", replacement="\n")
        out = pc.replace_substring(out, pattern="\r", replacement="\n")
    if spec.control_chars:
        out = pc.replace_substring_regex(out, pattern=_CONTROL, replacement="")
    if spec.unicode != "none":
        out = pc.utf8_normalize(out, form=spec.unicode)
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


def normalize_text(text: str, spec: NormalizeSpec) -> str:
    """Normalize one string exactly as :func:`normalize_array` would."""
    return normalize_array(pa.array([text], pa.large_string()), spec)[0].as_py()
