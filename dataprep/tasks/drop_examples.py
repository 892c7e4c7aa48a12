"""A few documents of each drop reason, kept for the report (``counts.dropped_examples``): the filters
count their drops per chunk in bulk, so the first dropped documents of a chunk are judged again one at
a time, by the same filter chain, to learn each one's reason. Judging a document alone gives its reason
in the chunk: every filter rule looks at one document."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from dataprep.text.filter_chain import keep_documents
from dataprep.text.filters import FilterSpec

EXAMPLE_CHARS = 200  # a dropped document's text as the report shows it, at most
JUDGED_PER_CHUNK = 32  # dropped documents of a chunk judged one by one
PER_REASON = 3  # examples kept per reason, per chunk and per run


def shorten(text: str, width: int = EXAMPLE_CHARS) -> str:
    """``text`` on one line, cut to ``width`` characters (an ellipsis marks the cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def filter_examples(texts: pa.Array, kept_at: np.ndarray, locations: list[str], spec: FilterSpec) -> list[tuple[str, str, str]]:
    """``(reason, location, text)`` for up to :data:`PER_REASON` dropped documents of each reason among the
    first :data:`JUDGED_PER_CHUNK` that ``spec``'s filters dropped from normalized ``texts`` (``kept_at``:
    the rows they kept)."""
    dropped = np.setdiff1d(np.arange(len(texts)), kept_at)[:JUDGED_PER_CHUNK]
    found: list[tuple[str, str, str]] = []
    per_reason: Counter = Counter()
    for i in dropped.tolist():
        reasons: Counter = Counter()
        keep_documents(texts.slice(i, 1), spec, reasons)
        for reason in reasons:  # exactly one: the document's first failed rule
            if per_reason[reason] < PER_REASON:
                per_reason[reason] += 1
                found.append((reason, locations[i], shorten(texts[i].as_py() or "")))
    return found
