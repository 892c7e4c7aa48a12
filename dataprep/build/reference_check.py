"""The tokenizer check at the start of a run: a few of the run's own texts encoded by ``tokenizer.json``
and by the installed transformers (:mod:`dataprep.text.reference`), with a warning when they differ."""

from __future__ import annotations

import json
import logging
from typing import Any

from dataprep.text.reference import TOKENIZERS, Difference, checkable, warn_if_transformers_differs
from dataprep.text.tokenizer import LoadedTokenizer

log = logging.getLogger("dataprep.reference")


def check_run(tokenizer: LoadedTokenizer, recipe: Any, files: list) -> Difference | None:
    """The check at the start of a run: :func:`warn_if_transformers_differs` on a few of the run's
    own texts, when the recipe keeps ``reference: tokenizers``, transformers is installed and the
    tokenizer is a ``tokenizer.json`` folder (nothing is read otherwise)."""
    if recipe.tokenizer.reference != TOKENIZERS or not checkable(tokenizer):
        return None
    # pretraining never encodes with specials matched again: its copy is not kept (Gemma 3's: ~240 MB)
    return warn_if_transformers_differs(tokenizer, sample_texts(recipe, files), keep=recipe.task != "pretrain")


def sample_texts(recipe: Any, files: list, *, n: int = 8) -> list[str]:
    """Up to ``n`` texts from the first records of a recipe's inputs: pretraining documents as the
    run cleans them; fine-tuning text fields and message contents."""
    import itertools
    from collections import Counter

    from dataprep.tasks import pretrain
    from dataprep.tasks.sft.records import iter_chunks

    out: list[str] = []
    try:
        if recipe.task == "pretrain":
            return list(itertools.islice(pretrain.iter_clean_texts(files, recipe), n))
        for _, batch in iter_chunks(files, recipe, Counter(), Counter()):
            for column in batch.columns:
                for value in column.to_pylist()[:n]:
                    out.extend(_strings(value))
            break
    except Exception as exc:  # a bad input fails the run itself, with its own message; the check just has less
        log.debug("tokenizer reference check: no sample texts (%s)", exc)
    return [t for t in out if t.strip()][:n]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        if value[:1] in "[{":  # a messages column holds JSON
            try:
                return _strings(json.loads(value))
            except ValueError:
                pass
        return [value]
    if isinstance(value, dict):  # a message: its content, not its role
        return [s for k, v in value.items() if k not in ("role", "from") for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
