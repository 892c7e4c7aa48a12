"""The document filters in their order (FineWeb's): the length rules of :mod:`dataprep.text.filters`,
then language identification (:mod:`dataprep.text.language`), then the quality rules
(:mod:`dataprep.text.quality`), each on what the earlier ones kept, each drop counted once under its
first reason. The language model and the quality rules are imported only when a recipe turns them on."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from dataprep.text.filters import FilterSpec, filter_mask


def keep_documents(texts: pa.Array, spec: FilterSpec, drops: Counter) -> pa.Array:
    """The documents of ``texts`` every filter of ``spec`` keeps, in order (the c4 quality rule
    rewrites a kept document to its kept lines); each drop counted once, under its first reason."""
    texts = texts.filter(pa.array(filter_mask(texts, spec, drops)))
    if spec.languages is not None and len(texts):
        from dataprep.text.language import language_mask

        keep, _ = language_mask(texts, None if spec.languages == "all" else spec.languages, spec.language_threshold, drops)
        texts = texts.filter(pa.array(keep))
    if spec.quality and len(texts):
        from dataprep.text.quality import apply_quality

        _, texts = apply_quality(texts, spec.quality, drops)
    return texts
