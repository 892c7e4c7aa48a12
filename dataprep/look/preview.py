"""What ``run`` would make of a recipe's first records, without writing anything.

Each record goes through the task's own chunk worker on its own, so a recipe author sees
exactly the rows ``run`` would write, in seconds::

    read the first K records (the recipe's reader, fields, on_error)
      -> for each record alone: SftWorker / pretrain.chunk_worker  (render, tokenize, mask, overflow)
      -> RowView (ids, loss mask) | "dropped: <reason>" | "run would stop here: <error>"

Nothing is re-implemented here: the rendering, masking and length policy are the pipeline's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from dataprep import columns as C
from dataprep.errors import ConfigError, InputError
from dataprep.recipe import Recipe
from dataprep.look.inspect import RowView


def rows_from_recipe(recipe: Recipe, *, source: str | Path | None = None, head: int = 3) -> list[RowView]:
    """Render, tokenize and mask the first ``head`` records as ``run`` would, writing nothing.

    Each record goes through the task's own chunk worker (:class:`dataprep.tasks.sft.task.SftWorker` or
    :func:`dataprep.tasks.pretrain.chunk_worker`) on its own, so every shown row is exactly what
    ``run`` makes of that record; a dropped record is shown with its reason, and an error
    that would stop ``run`` is shown in its place.

    Args:
        recipe: a loaded recipe.
        source: read this file with the recipe's first input's settings (fields, format)
            instead of the recipe's inputs.
        head: how many records.

    Raises:
        ConfigError: the recipe trains its tokenizer (there is none to render with yet).
    """
    from dataprep.tasks import pretrain
    from dataprep.tasks.sft.records import iter_chunks, location, read_label_set
    from dataprep.tasks.sft.worker import SftWorker
    from dataprep.read import resolve_inputs
    from dataprep.text.tokenizer import load_tokenizer

    if recipe.tokenizer.train is not None:
        raise ConfigError(
            "the recipe trains its tokenizer on the whole corpus, so there is none to render with yet; "
            "build the dataset and inspect it (`dataprep inspect OUT`), or name a tokenizer "
            "(`--tokenizer OUT/tokenizer`, or `tokenizer.path` in the recipe)"
        )
    if source is not None:
        first = dataclasses.replace(recipe.inputs[0], path=str(Path(source).resolve()))
        changes = {"inputs": (first,)}
        if recipe.sft is not None:
            changes["sft"] = dataclasses.replace(recipe.sft, fields=recipe.sft.fields[:1])
        recipe = dataclasses.replace(recipe, **changes)
    recipe = dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, chunk_records=max(1, head)))
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    tokenizer = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    if recipe.task == "sft":
        labels = None
        if recipe.sft.classification is not None:
            labels = recipe.sft.classification.labels or read_label_set(recipe, files)
        worker, chunks = SftWorker(recipe, tokenizer, files, labels), iter_chunks
    elif recipe.task == "fewshot":  # demonstrations come from the whole train split: read it first
        from dataprep.tasks import fewshot

        labels, chunks = None, iter_chunks
        worker = fewshot.FewshotWorker(recipe, tokenizer, files, fewshot.build_pool(recipe, tokenizer, files))
    else:
        labels, worker, chunks = None, pretrain.chunk_worker(recipe, tokenizer), pretrain.iter_chunks
    read_drops: Counter = Counter()
    out: list[RowView] = []
    seen: set[bytes] = set()
    for index, batch in chunks(files, recipe, read_drops, Counter()):
        lines = batch.column(C.LINE).to_pylist()
        for i, line in enumerate(lines):
            if len(out) >= head:
                break
            title = f"{files[index].path.name} {location(files[index], line)}"
            try:
                result = worker((index, batch.slice(i, 1)))
            except InputError as exc:
                out.append(RowView(title, np.zeros(0, np.int64), None, [], notes=[f"run would stop here: {exc}"]))
                continue
            out.append(_record_row(title, result, labels, recipe, seen))
        if len(out) >= head:
            break
    if read_drops:
        note = ", ".join(f"{k} {v}" for k, v in sorted(read_drops.items()))
        out.append(RowView("records skipped while reading", np.zeros(0, np.int64), None, [], notes=[note]))
    return out


def _record_row(title: str, result, labels, recipe, seen: set[bytes]) -> RowView:
    if not result.hashes:
        reasons = ", ".join(sorted(result.drops)) or "filtered"
        return RowView(title, np.zeros(0, np.int64), None, [], notes=[f"dropped: {reasons}"])
    notes = [f"split: {'validation' if result.validation[0] else 'train'}"]
    if recipe.filter.dedup == "exact":
        if result.hashes[0] in seen:
            notes.append("dropped by run: duplicate of an earlier record")
        seen.add(result.hashes[0])
    stats = {name: int(values[0]) for name, values in result.doc_stats.items()}
    if stats.get("truncated"):
        notes.append(f"prompt truncated by {stats['truncated_tokens']} tokens (overflow: truncate_prompt)")
    if "shots" in stats:
        notes.append(f"{stats['shots']} demonstration(s) in context")
    if stats.get("straddles"):
        notes.append(f"{stats['straddles']} target token(s) straddle the prompt/response boundary")
    label = None
    if C.LABEL_ID in result.extras and labels is not None:
        label = labels[int(result.extras[C.LABEL_ID][0])]
    return RowView(
        title=title,
        ids=result.tokens.astype(np.int64),
        mask=result.extras.get(C.LOSS_MASK),
        seq_lens=[int(result.lengths[0])],
        labels=[label],
        notes=notes,
    )
