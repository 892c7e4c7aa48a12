"""``validate``, ``inspect`` and ``report``: proving and looking at inputs and built datasets."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from dataprep.cli.app import PathOrURL, cli


@cli.command()
@click.argument("paths", nargs=-1, type=PathOrURL(exists=True))
@click.option("--as", "kind", type=click.Choice(["text", "instruction", "prompt-completion", "chat", "classification"]), help="PATHS are raw input files of this record kind, judged by run's readers.")
@click.option("--field", "fields", multiple=True, metavar="NAME=PATH", help="With --as: where a field is in your records, e.g. --field messages=conversations. Repeatable.")
@click.option("--recipe", "-r", type=click.Path(exists=True, dir_okay=False), help="Check every input this recipe reads, with its field mapping and template (no PATHS).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --recipe: override a recipe value. Repeatable.")
@click.option("--max-errors", type=click.IntRange(min=1), default=50, show_default=True, help="Findings to show; raw inputs stop being read after this many.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: the whole report as one JSON object.")
@click.option("--recheck-sources", "recheck", is_flag=True, help="Dataset: also re-make a sample of source records with the recipe and tokenizer and find them in the rows.")
@click.option("--sample", default="200", show_default=True, metavar="N|all", help="With --recheck-sources: records to re-make, or all of them.",
              callback=lambda ctx, param, value: "all" if value == "all" else click.IntRange(min=1).convert(value, param, ctx))
@click.option("--seed", type=int, default=0, show_default=True, help="With --recheck-sources: seeds the sample.")
@click.option("--sha256", "full_hash", is_flag=True, help="Dataset: verify shard sha256 even when the manifest records the faster xxh3_128.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None, help="Dataset: threads reading shards (default: cores, at most 4).")
def validate(paths: tuple[str, ...], kind: str | None, fields: tuple[str, ...], recipe: str | None, overrides: tuple[str, ...], max_errors: int, fmt: str, recheck: bool, sample: int, seed: int, full_hash: bool, workers: int | None) -> int:
    """Prove a dataset before training, or check raw inputs before a run.

    A DATASET folder (one `run` wrote): the manifest, every shard's size and checksum, row
    types, token ids, row structure, document or example boundaries, stop tokens, and no
    example in both splits. Raw inputs (--as KIND or --recipe): judged by run's own code (its
    readers; with --recipe also its task's worker): file, line, run's reason and fix.

    Exit status: 0 clean, 1 findings, 2 usage errors.

    Example:

    \b
        dataprep validate out/demo-sft
        dataprep validate out/demo-sft --recheck-sources --sample 100 --format json
        dataprep validate data/chat.jsonl --as chat --field messages=conversations
        dataprep validate --recipe recipes/chat.yaml --max-errors 20
    """
    from dataprep.validate import validate_dataset, validate_inputs

    dataset = len(paths) == 1 and Path(paths[0]).is_dir() and kind is None and recipe is None
    if dataset:
        if fields or overrides:
            raise click.UsageError("--field and --set describe raw inputs; a dataset is checked against its manifest")
        report = validate_dataset(paths[0], max_errors=max_errors, full_hash=full_hash, workers=workers or 0, recheck=sample if recheck else 0, seed=seed)
    else:
        if recheck or full_hash:
            raise click.UsageError("--recheck-sources and --sha256 apply to a dataset folder")
        if (kind is None) == (recipe is None):
            raise click.UsageError("give one DATASET folder, or raw inputs with --as KIND (or --recipe R.yaml)")
        if recipe is not None and paths:
            raise click.UsageError("--recipe checks the recipe's own inputs: drop PATHS, or use --as KIND")
        if fields and kind is None:
            raise click.UsageError("--field renames fields of --as KIND records; a recipe has its own fields")
        mapping = dict(item.split("=", 1) for item in fields if "=" in item)
        if len(mapping) != len(fields):
            raise click.UsageError("--field takes NAME=PATH, e.g. --field messages=conversations")
        if recipe is not None:
            from dataprep.recipe import load_recipe

            report = validate_inputs(recipe=load_recipe(recipe, overrides), max_errors=max_errors)
        else:
            if not paths:
                raise click.UsageError("name the files to check with --as")
            report = validate_inputs(paths, kind=kind, fields=mapping, max_errors=max_errors)
    click.echo(json.dumps(report.as_dict(), indent=2) if fmt == "json" else report.to_text())
    return 0 if report.ok else 1


@cli.command("inspect")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--recipe", "-r", type=click.Path(dir_okay=False), help="PATH is a source file: render and mask its first records as `run` would with this recipe, and say why it would drop any of them (reason, the rule's detail, the text), writing nothing (no PATH: the recipe's inputs).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --recipe: override a recipe value. Repeatable.")
@click.option("--split", default="train", show_default=True, help="The dataset split to show.")
@click.option("--row", "rows", type=click.IntRange(min=0), multiple=True, metavar="N", help="Show row N. Repeatable.")
@click.option("--random", "random_k", type=click.IntRange(min=1), metavar="K", help="Show K rows picked at random.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--head", "-n", type=click.IntRange(min=1), default=3, metavar="K", show_default=True, help="Without --row/--random: the first K rows (records, with --recipe).")
@click.option("--ids", "show_ids", is_flag=True, help="Show each token's id beside it.")
@click.option("--boundaries/--no-boundaries", default=True, show_default=True, help="Mark where each token starts and ends.")
@click.option("--color/--no-color", default=None, help="Colors (default: on when stdout is a terminal and NO_COLOR is unset).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(exists=True), help="Use this tokenizer instead of the dataset's (or, with --recipe, the recipe's).")
def inspect_command(path: str | None, recipe: str | None, overrides: tuple[str, ...], split: str, rows: tuple[int, ...], random_k: int | None, seed: int, head: int, show_ids: bool, boundaries: bool, color: bool | None, tokenizer_path: str | None) -> None:
    """Show rows of a dataset as tokens: targets and context in different colors, segment
    boundaries in packed rows, special tokens marked, and per row its length, segments,
    targets and pads.

    With --recipe, show what `run` would make of a source file's first records instead: each
    record it writes, and each it drops, in order, with the filter or duplicate that drops it.

    Example:

    \b
        dataprep inspect out/demo-sft --random 3 --seed 1
        dataprep inspect out/demo-sft --row 0 --ids --no-color
        dataprep inspect recipes/data/sft_tasks.jsonl --recipe recipes/demo-sft.yaml -n 5
    """
    from dataprep.look import inspect as view

    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if recipe is not None:
        if rows or random_k is not None:
            raise click.UsageError("--row and --random pick rows of a built dataset; with --recipe, use --head K")
        from dataprep.look.preview import rows_from_recipe
        from dataprep.recipe import load_recipe
        from dataprep.text.tokenizer import load_tokenizer

        loaded = load_recipe(recipe, overrides)
        if tokenizer_path is not None:  # e.g. the tokenizer a pretraining run trained: OUT/tokenizer
            from dataclasses import replace

            loaded = replace(loaded, tokenizer=replace(loaded.tokenizer, path=os.path.abspath(tokenizer_path), train=None))
        shown = rows_from_recipe(loaded, source=path, head=head)
        tokenizer = load_tokenizer(loaded.tokenizer, base_dir=loaded.base_dir)
    else:
        if path is None:
            raise click.UsageError("give a DATASET folder, or a source file with --recipe R.yaml")
        if overrides:
            raise click.UsageError("--set changes a recipe: use it with --recipe")
        from dataprep.dataset.reader import open_dataset

        ds = open_dataset(path)
        n = ds.table(split).num_rows
        if n == 0:
            click.echo(f"{path}: split {split!r} has no rows")
            return
        shown = view.rows_from_dataset(ds, split, view.pick_rows(n, rows=rows, random=random_k, seed=seed, head=head))
        tokenizer = ds.tokenizer(tokenizer_path)
    for text in view.iter_formatted(shown, tokenizer, color=color, boundaries=boundaries, show_ids=show_ids):
        click.echo(text, color=color)


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Folder for report.html and the PNGs (default: DATASET/report).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: print the numbers alone, write no files.")
def report(dataset: str, out: str | None, fmt: str) -> None:
    """Summarize a DATASET: the numbers in the terminal, plus one self-contained HTML page with
    plots (lengths, targets per example, row fill, drops, tokens per source) and the PNGs.

    Example:

    \b
        dataprep report out/demo-sft
        dataprep report out/demo-sft --format json > numbers.json
    """
    from dataprep.dataset.reader import open_dataset
    from dataprep.look.report import compute, summary_text, write_report

    result = compute(open_dataset(dataset))
    if fmt == "json":
        click.echo(json.dumps(result.summary, indent=2))
        return
    page = write_report(result, Path(out) if out else Path(dataset) / "report")
    click.echo(summary_text(result.summary))
    click.echo(f"wrote {page} (+ {len(list(page.parent.glob('*.png')))} PNGs)")

