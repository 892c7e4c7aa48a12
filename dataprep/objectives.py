"""The pipeline hooks for ``objective: mlm | span_corruption`` and ``task: fewshot``.

Each reuses the common run (chunks -> workers -> ordered stage -> manifest) and contributes a
:class:`~dataprep.pipeline.Plan`: MLM and span corruption keep the pretraining chunk worker
(normalize, filter, tokenize) and change packing and the rows; few-shot extends the
fine-tuning worker (see :mod:`dataprep.fewshot`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import columns as C
from . import pretrain
from .read import InputFile
from .recipe import Recipe
from .tokenizer import LoadedTokenizer

log = logging.getLogger("dataprep.objectives")

CLM, MLM, SPAN = "clm", "mlm", "span_corruption"


def uses_hooks(recipe: Recipe) -> bool:
    """The recipe needs a plan from this module rather than the plain pretraining / fine-tuning one."""
    return recipe.task == "fewshot" or (recipe.task == "pretrain" and recipe.objective != CLM)


def prepare_tokenizer(recipe: Recipe, tokenizer: LoadedTokenizer, tmp: Path) -> LoadedTokenizer:
    """Add what the objective needs to the tokenizer (span corruption's sentinels) and save it.

    A tokenizer that gained tokens is saved in the output's ``tokenizer/`` folder (as a trained
    one is), and carries ``added_tokens`` for the manifest.
    """
    if recipe.task != "pretrain" or recipe.objective != SPAN:
        return tokenizer
    from . import span

    extended, added = span.with_sentinels(recipe, tokenizer)
    if added or recipe.tokenizer.train is not None:
        extended.save(tmp / C.TOKENIZER_DIR)
    extended.added_tokens = added  # type: ignore[attr-defined]
    if added:
        log.info("added %d sentinel tokens (%s ... %s) to the tokenizer; saved in %s/", len(added), added[0], added[-1], C.TOKENIZER_DIR)
    return extended


def plan_for(recipe: Recipe, tokenizer: LoadedTokenizer, files: list[InputFile]) -> Any:
    """The :class:`~dataprep.pipeline.Plan` of an objective or few-shot recipe."""
    from .pipeline import Plan

    if recipe.task == "fewshot":
        from . import fewshot

        return Plan(**fewshot.plan_parts(recipe, tokenizer, files))
    if recipe.objective == MLM:
        from . import mlm

        parts = mlm.plan_parts(recipe, tokenizer)
    else:
        from . import span

        parts = span.plan_parts(recipe, tokenizer)
    return Plan(
        format=parts["format"],
        schema=parts["schema"],
        chunks=lambda drops, counts: pretrain.iter_chunks(files, recipe, drops, counts),
        worker=(pretrain.chunk_worker, (recipe, parts["tokenizer"])),
        make_packer=parts["make_packer"],
        to_batch=parts.get("to_batch", lambda rows: rows.to_record_batch()),
        dedup=recipe.filter.dedup == "exact",
        manifest=parts["manifest"],
        mode="threads",
    )
