"""The pipeline hooks for ``objective: mlm | span_corruption`` and ``task: fewshot``.

Each reuses the common run (chunks -> workers -> ordered stage -> manifest) and contributes a
:class:`~dataprep.tasks.base.Plan`: MLM and span corruption keep the pretraining chunk worker
(normalize, filter, tokenize) and change packing and the rows; few-shot extends the
fine-tuning worker (see :mod:`dataprep.tasks.fewshot`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dataprep import columns as C
from dataprep.tasks import pretrain
from dataprep.read import InputFile
from dataprep.recipe import Recipe
from dataprep.text.tokenizer import LoadedTokenizer

log = logging.getLogger("dataprep.objectives")

CLM, MLM, SPAN = "clm", "mlm", "span_corruption"


def uses_hooks(recipe: Recipe) -> bool:
    """The recipe needs a plan from this module rather than the plain pretraining / fine-tuning one."""
    return recipe.task == "fewshot" or (recipe.task == "pretrain" and recipe.objective != CLM)


def prepare_tokenizer(recipe: Recipe, tokenizer: LoadedTokenizer, tmp: Path) -> LoadedTokenizer:
    """Add what the objective needs to the tokenizer and save it: span corruption's sentinels,
    or the mask token of a tokenizer this recipe trains (a loaded one must have its own).

    A tokenizer that gained tokens is saved in the output's ``tokenizer/`` folder (as a trained
    one is), and carries ``added_tokens`` for the manifest.
    """
    if recipe.task != "pretrain" or recipe.objective == CLM:
        return tokenizer
    if recipe.objective == SPAN:
        from dataprep.tasks import span

        wanted = span.sentinel_names(recipe, tokenizer)
    else:
        wanted = [recipe.mlm.mask_token or "<mask>"] if recipe.tokenizer.train is not None else []
    extended, added = add_special_tokens(tokenizer, wanted)
    if added or recipe.tokenizer.train is not None:
        extended.save(tmp / C.TOKENIZER_DIR)
    if added:
        log.info("added %d special token(s) (%s ... %s) to the tokenizer; saved in %s/", len(added), added[0], added[-1], C.TOKENIZER_DIR)
    return extended


def add_special_tokens(tokenizer: LoadedTokenizer, names: list[str]) -> tuple[LoadedTokenizer, list[str]]:
    """``tokenizer`` with every one of ``names`` (those missing are added as special tokens, so
    text can never produce them); and the names that were added."""
    from tokenizers import AddedToken, Tokenizer

    missing = [n for n in names if tokenizer.tokenizer.token_to_id(n) is None]
    if not missing:
        return tokenizer, []
    inner = Tokenizer.from_str(tokenizer.tokenizer.to_str())
    inner.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in missing])
    extended = LoadedTokenizer(inner, tokens=tokenizer.tokens, sources=tokenizer.sources, source=tokenizer.source, files=tokenizer.files,
                               add_bos=tokenizer.add_bos, add_eos=tokenizer.add_eos,
                               split_special_tokens=tokenizer.split_special_tokens, added_tokens=missing)
    return extended, missing


def plan_for(recipe: Recipe, tokenizer: LoadedTokenizer, files: list[InputFile]) -> Any:
    """The :class:`~dataprep.tasks.base.Plan` of an objective or few-shot recipe."""
    from dataprep.tasks.base import Plan

    if recipe.task == "fewshot":
        from dataprep.tasks import fewshot

        return Plan(**fewshot.plan_parts(recipe, tokenizer, files))
    if recipe.objective == MLM:
        from dataprep.tasks import mlm

        parts = mlm.plan_parts(recipe, tokenizer)
    else:
        from dataprep.tasks import span

        parts = span.plan_parts(recipe, tokenizer)
    return Plan(
        format=parts["format"],
        schema=parts["schema"],
        reader=pretrain.chunk_reader(recipe),
        worker=(pretrain.chunk_worker, (recipe, parts["tokenizer"])),
        make_packer=parts["make_packer"],
        to_batch=parts.get("to_batch", lambda rows: rows.to_record_batch()),
        dedup=recipe.filter.dedup == "exact",
        manifest=parts["manifest"],
        mode="threads",
    )
