"""Per-language documents and tokens as per-document counters (a run's ``doc_stats``), so they are
summed over exactly the documents written, after dedup and the mixture's draw, like every other stat;
:func:`per_language` turns the summed counters into the manifest's ``counts.languages``. Kept apart from
:mod:`dataprep.text.language`, which imports the identification model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DOCUMENTS = "language_documents:"  # + code: 1 for each written document of that language
TOKENS = "language_tokens:"  # + code: its tokens


def language_stats(languages: Sequence[str], lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Per-document counters for ``languages`` (each kept document's top language) and their ``lengths``."""
    codes = np.asarray(languages, dtype=object)
    stats = {}
    for code in sorted(set(languages)):
        mine = codes == code
        stats[DOCUMENTS + code] = mine.astype(np.int64)
        stats[TOKENS + code] = np.where(mine, lengths, 0).astype(np.int64)
    return stats


def per_language(stats: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{code: {"documents": n, "tokens": t}}`` from summed stats, most tokens first."""
    found = {name[len(DOCUMENTS):]: {"documents": n, "tokens": stats.get(TOKENS + name[len(DOCUMENTS):], 0)}
             for name, n in stats.items() if name.startswith(DOCUMENTS) and n}
    return dict(sorted(found.items(), key=lambda kv: (-kv[1]["tokens"], kv[0])))
