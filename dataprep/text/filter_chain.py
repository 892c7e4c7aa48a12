"""The document filters in their order (FineWeb's): the length rules of :mod:`dataprep.text.filters`,
then language identification (:mod:`dataprep.text.language`), then the quality rules
(:mod:`dataprep.text.quality`), each on what the earlier ones kept, each drop counted once under its
first reason. The language model and the quality rules are imported only when a recipe turns them on."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from dataprep.text.filters import FilterSpec, filter_mask


def keep_documents(texts: pa.Array, spec: FilterSpec, drops: Counter) -> tuple[pa.Array, np.ndarray]:
    """The documents of ``texts`` every filter of ``spec`` keeps, in order (the c4 quality rule
    rewrites a kept document to its kept lines), and their positions in ``texts``; each drop counted
    once, under its first reason."""
    kept, at, _ = keep_documents_with_languages(texts, spec, drops)
    return kept, at


def keep_documents_with_languages(texts: pa.Array, spec: FilterSpec,
                                  drops: Counter) -> tuple[pa.Array, np.ndarray, list[str] | None]:
    """:func:`keep_documents`, and each kept document's top language when ``spec`` filters by
    language (None otherwise)."""
    keep = filter_mask(texts, spec, drops)
    at = np.flatnonzero(keep)
    if len(at) < len(texts):  # most batches keep every document: no copy of their text then
        texts = texts.filter(pa.array(keep))
    languages = None
    if spec.languages is not None:
        languages = []
        if len(texts):
            from dataprep.text.language import language_mask

            keep, found = language_mask(texts, None if spec.languages == "all" else spec.languages, spec.language_threshold, drops)
            at, texts = at[keep], texts.filter(pa.array(keep))
            languages = [code for code, kept in zip(found, keep.tolist()) if kept]
    if spec.quality and len(texts):
        from dataprep.text.quality import apply_quality

        keep, texts = apply_quality(texts, spec.quality, drops)
        at = at[keep]
        languages = None if languages is None else [code for code, kept in zip(languages, keep.tolist()) if kept]
    return texts, at, languages
