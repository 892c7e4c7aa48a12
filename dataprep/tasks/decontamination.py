"""A recipe's ``decontaminate:`` in the chunk workers: the evaluation sets' n-gram index
(:mod:`dataprep.text.decontaminate`) built once per process, and the documents (pretraining) or
rendered examples (fine-tuning) that share an n-gram with an item dropped as ``contaminated``, each
match kept as ``(set, item, location)`` for the run's side file and per-set counts.

The workers judge what the model would train on: a pretraining document after normalization and the
filters, a fine-tuning example as its template renders it (prompt and response together).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataprep.text.decontaminate import CONTAMINATED, NGRAM, DecontaminationIndex, EvalSetSpec, load_index

if TYPE_CHECKING:
    from dataprep.recipe import Recipe

SIDE_FILE = "contamination.jsonl"  # in the dataset folder: one line per dropped document, its set and item


def eval_sets(recipe: Recipe) -> tuple[EvalSetSpec, ...]:
    """The recipe's evaluation sets (none: no decontamination)."""
    return tuple(EvalSetSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()})
                 for spec in recipe.resolved.get("decontaminate") or ())


def index_for(recipe: Recipe) -> DecontaminationIndex | None:
    """The recipe's index (None without ``decontaminate:``), built once per process and recipe."""
    specs = eval_sets(recipe)
    if not specs:
        return None
    options = recipe.resolved.get("decontamination") or {}
    return _index(specs, recipe.base_dir, options.get("ngram", NGRAM), options.get("min_words"))


@functools.lru_cache(maxsize=4)
def _index(specs: tuple[EvalSetSpec, ...], base_dir: Path, n: int, min_words: int | None) -> DecontaminationIndex:
    from dataprep.dataset.reader import open_dataset

    return load_index(specs, base_dir=base_dir, n=n, min_words=min_words, open_dataset=open_dataset)


def drop_contaminated(index: DecontaminationIndex, texts: Sequence[str], locations: Sequence[str], drops: Counter,
                      found: list[tuple[str, str, str]]) -> np.ndarray:
    """Keep-mask over ``texts``: False where a text shares an n-gram with an evaluation item; each
    such text counted under ``contaminated`` and appended to ``found`` as ``(set, item, location)``."""
    matches = index.match(list(texts))
    keep = np.fromiter((m is None for m in matches), dtype=bool, count=len(matches))
    for match, where in zip(matches, locations):
        if match is not None:
            found.append((match[0], match[1], where))
    if not keep.all():
        drops[CONTAMINATED] += int((~keep).sum())
    return keep
