"""The Python API: build, open, validate and inspect datasets from a script or a notebook.

``import dataprep`` gives these four functions (the package imports this module only when one of
them is first used, so ``import dataprep`` loads no tokenizer, torch or Ray)::

    import dataprep

    manifest = dataprep.build_dataset("recipes/demo-sft.yaml", "out/demo-sft", workers=2, overwrite=True)
    manifest.counts.rows.train                 # the typed manifest (dataprep.dataset.manifest.Manifest)

    ds = dataprep.open_dataset("out/demo-sft")
    ds.table("train")                          # pyarrow, memory-mapped
    ds.polars("train"), ds.lazy("train")       # polars DataFrame / LazyFrame
    ds.torch("train")                          # map-style rows for a torch DataLoader
    ds.tokenizer()                             # the copy inside the dataset (OUT/tokenizer)

    report = dataprep.validate_dataset("out/demo-sft")  # .ok, .findings, .notes, .to_text()
    print(dataprep.inspect_dataset("out/demo-sft", rows=[0]))

A recipe is a YAML path, a dict (relative paths in it are taken from the current folder) or a
:class:`~dataprep.recipe.Recipe`. ``inputs=`` builds from records in memory, a
``datasets.Dataset``, a pyarrow Table or a polars DataFrame instead of the recipe's files
(:mod:`dataprep.api._inputs` says how each is read and named in the manifest).

Worker processes never run the caller's script again (:mod:`dataprep.build.engine`), so a plain
script needs no ``if __name__ == "__main__":`` guard, and a notebook works as well.
Errors are the typed exceptions of :mod:`dataprep.errors` (``except dataprep.errors.DataprepError``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataprep.dataset.reader import Dataset as _Dataset

if TYPE_CHECKING:
    from dataprep.dataset.manifest import Manifest
    from dataprep.recipe import Recipe
    from dataprep.train.loader import ArrowRows
    from dataprep.validate.findings import Findings

__all__ = ["Dataset", "build_dataset", "inspect_dataset", "open_dataset", "validate_dataset"]


class Dataset(_Dataset):
    """A built dataset, opened (:func:`open_dataset`): :class:`dataprep.dataset.reader.Dataset` (manifest,
    ``table``, ``polars``, ``lazy``, ``tokenizer``) plus :meth:`torch`."""

    def torch(self, split: str = "train", *, columns: Sequence[str] | None = None) -> ArrowRows:
        """The rows of ``split`` as a map-style torch Dataset (memory-mapped; ``rows[i]`` is a dict of
        numpy views), for ``torch.utils.data.DataLoader`` with :class:`dataprep.train.loader.Collator`.

        Example::

            from torch.utils.data import DataLoader
            from dataprep.train.loader import Collator
            rows = dataprep.open_dataset("out/demo-sft").torch("train")
            batch = next(iter(DataLoader(rows, batch_size=8, collate_fn=Collator())))
        """
        from dataprep.train.loader import ArrowRows

        return ArrowRows(self, split, columns=columns)


def build_dataset(
    recipe: str | Path | Mapping[str, Any] | Recipe,
    out: str | Path,
    *,
    inputs: Any = None,
    overrides: Sequence[str] = (),
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool | None = False,
    engine: str = "local",
    address: str | None = None,
    resume: bool = False,
) -> Manifest:
    """Build the dataset ``recipe`` describes at ``out`` (as ``dataprep run``); return its manifest.

    Args:
        recipe: a recipe YAML path, a dict (as the YAML would parse; relative paths from the current
            folder) or a :class:`~dataprep.recipe.Recipe`.
        out: the output folder; it appears only when the build succeeds.
        inputs: build from these instead of the recipe's input files: a list of records (dicts), a
            ``datasets.Dataset``, a pyarrow Table or a polars DataFrame. The recipe's one
            ``inputs:`` entry, if any, gives the field options (``text_field``, ``roles``, ...).
        overrides: ``key.path=value`` strings, as ``--set`` (``["packing.seq_len=512"]``).
        workers: chunks worked on at once (default: all cores); the output does not depend on it.
        overwrite: replace an existing dataset at ``out``.
        progress: show a progress bar (None: when stderr is a terminal).
        engine, address, resume: as ``dataprep run --engine/--address/--resume``.

    Returns:
        The manifest written (typed: ``m.counts.rows.train``, ``m.splits.train.shards``).

    Raises:
        RecipeError: the recipe breaks its schema (every problem listed).
        ConfigError: options that cannot work together (``inputs=`` with a recipe of several
            inputs, or with ``engine="ray"``), an ``inputs=`` of a kind this cannot read.
        DataprepError: whatever ``dataprep run`` raises (bad records with their location, tokenizer
            problems, an output that exists without ``overwrite``).

    Example::

        m = dataprep.build_dataset({"task": "sft", "template": "alpaca", "tokenizer": {"path": "tok/"},
                            "inputs": [{"path": "data.json"}]}, "out/alpaca", workers=2)
        m = dataprep.build_dataset("recipes/alpaca.yaml", "out/mine", inputs=[{"instruction": "Hi", "input": "", "output": "Hello"}] * 50)
    """
    from dataprep.build.run import run
    from dataprep.dataset.manifest import Manifest

    kwargs = dict(workers=workers, overwrite=overwrite, progress=progress, engine=engine, address=address, resume=resume)
    if inputs is None:
        return Manifest.from_dict(run(_recipe(recipe, overrides), out, **kwargs))
    from dataprep.api._inputs import staged
    from dataprep.errors import ConfigError
    from dataprep.recipe import recipe_from_dict

    data, base_dir, source = _recipe_data(recipe)
    data.setdefault("inputs", None)
    data["inputs"] = data["inputs"] or [{"path": "<inputs=>"}]  # the schema wants one; replaced below
    first = recipe_from_dict(data, base_dir=base_dir, source=source, overrides=overrides)
    entries = first.resolved["inputs"]
    if len(entries) > 1:
        raise ConfigError(f"{source}: the recipe names {len(entries)} inputs; with inputs= it may name one, whose "
                          "options (text_field, roles, ...) apply to them", fix="keep one entry in the recipe's `inputs:`")
    if engine == "ray":
        raise ConfigError("inputs= lives in this process, and Ray workers read their own inputs",
                          fix="use engine='local', or write the records to a file the recipe names")
    with staged(inputs, entries[0]) as specs:
        resolved = copy.deepcopy(dict(first.resolved))
        resolved["inputs"] = specs
        return Manifest.from_dict(run(recipe_from_dict(resolved, base_dir=base_dir, source=source), out, **kwargs))


def open_dataset(out: str | Path) -> Dataset:
    """Open a built dataset: its typed manifest, splits as Arrow/polars/torch rows, its tokenizer.

    Raises:
        InputError: ``out`` holds no dataset (no ``manifest.json``), or its manifest is unreadable.
        ManifestError: the manifest does not match its schema (every key named).

    Example::

        ds = dataprep.open_dataset("out/demo-sft")
        ds.polars("train").select(pl.col("input_ids").list.len().max())
    """
    from dataprep.dataset.manifest import Manifest

    return Dataset(path=Path(out), manifest=Manifest.load(out))


def validate_dataset(out: str | Path, *, recheck: int = 0, full_hash: bool = False, max_errors: int = 50) -> Findings:
    """Check a built dataset as ``dataprep validate`` does; nothing raises for bad data.

    Returns:
        The findings (``.ok``, ``.findings``, ``.counts``, ``.notes``, ``.stats``, ``.to_text()``).

    Example::

        report = dataprep.validate_dataset("out/demo-sft")
        assert report.ok, report.to_text()
    """
    from dataprep.validate import validate_dataset as check

    return check(out, recheck=recheck, full_hash=full_hash, max_errors=max_errors)


def inspect_dataset(out: str | Path, *, split: str = "train", rows: Sequence[int] = (), random: int | None = None,
            seed: int = 0, head: int = 3, show_ids: bool = False) -> str:
    """Rows of a built dataset as tokens, as ``dataprep inspect`` prints them without colour
    (targets in ``⟦ ⟧``, special tokens in ``⟨ ⟩``, ``│`` between tokens).

    Args:
        rows: these row numbers; else ``random`` rows (seeded), else the first ``head``.

    Example::

        print(dataprep.inspect_dataset("out/demo-sft", rows=[0, 5], show_ids=True))
    """
    from dataprep.look import inspect as view

    ds = open_dataset(out)
    n = ds.table(split).num_rows
    if n == 0:
        return f"{out}: split {split!r} has no rows"
    shown = view.rows_from_dataset(ds, split, view.pick_rows(n, rows=rows, random=random, seed=seed, head=head))
    return "\n".join(view.iter_formatted(shown, ds.tokenizer(), color=False, boundaries=True, show_ids=show_ids))


# --- helpers ---------------------------------------------------------------------------------


def _recipe(recipe: Any, overrides: Sequence[str]) -> Recipe:
    from dataprep.recipe import Recipe, load_recipe, recipe_from_dict

    if isinstance(recipe, Recipe) and not overrides:
        return recipe
    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe, overrides)
    data, base_dir, source = _recipe_data(recipe)
    return recipe_from_dict(data, base_dir=base_dir, source=source, overrides=overrides)


def _recipe_data(recipe: Any) -> tuple[dict[str, Any], Path, str]:
    """The recipe as a dict to change (a copy), its folder, and what messages call it."""
    from dataprep.errors import ConfigError
    from dataprep.recipe import Recipe, load_recipe, parse_yaml

    if isinstance(recipe, Recipe):
        return copy.deepcopy(dict(recipe.resolved)), recipe.base_dir, "<recipe>"
    if isinstance(recipe, Mapping):
        return copy.deepcopy(dict(recipe)), Path.cwd(), "<recipe dict>"
    if isinstance(recipe, (str, Path)):
        import yaml

        path = Path(recipe)
        try:
            data = parse_yaml(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            load_recipe(path)  # raises the RecipeError that names the problem
            raise
        if not isinstance(data, dict):
            load_recipe(path)
        return data, path.resolve().parent, str(path)
    raise ConfigError(f"recipe is a {type(recipe).__name__}; pass a YAML path, a dict or a dataprep.recipe.Recipe")
