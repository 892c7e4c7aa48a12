"""``normalize.fix_mojibake``: text that was UTF-8 decoded as Windows-1252 or Latin-1 (``CafÃ©``,
``donâ€™t``) turned back into what was written, by ``ftfy.fix_encoding`` (Speer 2019; the ``mojibake``
extra): it undoes only such encoding mix-ups, never quotes, widths or HTML entities as ``ftfy.fix_text``
would. Only documents ftfy's own badness heuristic flags are passed to it (ASCII and clean text are never
touched, which keeps the cost near zero on clean corpora), and each changed document is counted."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.errors import ConfigError

FIXED_STAT = "mojibake_fixed"  # per document: 1 when its text was repaired


def fix_mojibake(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """``texts`` with mojibake repaired, and a per-text 0/1 array of the ones changed.

    Raises:
        ConfigError: ftfy is not installed (the fix names the extra).
    """
    try:
        from ftfy import fix_encoding
        from ftfy.badness import is_bad
    except ImportError as exc:
        raise ConfigError("normalize.fix_mojibake needs ftfy", "pip install 'dataprep[mojibake]'") from exc
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    changed = np.zeros(len(texts), dtype=np.int64)
    suspect = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(texts), True).to_numpy(zero_copy_only=False))
    if not len(suspect):
        return texts, changed
    values = texts.to_pylist()
    for i in suspect.tolist():
        text = values[i]
        if is_bad(text):
            fixed = fix_encoding(text)
            if fixed != text:
                values[i], changed[i] = fixed, 1
    if not changed.any():
        return texts, changed
    return pa.array(values, type=texts.type), changed
