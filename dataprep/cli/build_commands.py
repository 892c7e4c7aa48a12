"""``run``, ``schema`` and ``check-recipe``: building a dataset from a recipe."""

from __future__ import annotations

import gc
import json

import click

from dataprep.build.engine import ENGINES
from dataprep.cli.app import cli, setup_logging


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (written atomically).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value, e.g. --set packing.seq_len=4096. Repeatable.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None, help="Chunks worked on at once (default: all cores): threads for pretraining, processes for fine-tuning, CPUs of a local Ray instance. Output is identical for any value.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, help="ray: reading and chunk work on Ray actors (pip install 'dataprep[ray]'; every node must reach the inputs); same shards, byte for byte.")
@click.option("--address", default=None, metavar="ADDR", help="With --engine ray: the cluster to join (auto, HOST:6379, ray://HOST:10001); default: a local Ray instance.")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset at --out.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in OUT.incomplete from its last checkpoint (same recipe, inputs and tokenizer); the shards are byte-identical to an uninterrupted run's.")
@click.option("--checkpoint-every", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS", help="Seconds between checkpoints (a crash loses at most about this much work); 0: after every chunk.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off (default: on when stderr is a terminal).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
def run(recipe: str, out: str, overrides: tuple[str, ...], workers: int | None, engine: str, address: str | None, overwrite: bool, resume: bool, checkpoint_every: float, progress: bool | None, quiet: bool) -> None:
    """Build the dataset a RECIPE describes.

    The dataset appears at --out only when the run succeeds. An interrupted run (Ctrl-C,
    SIGTERM, a crash, a full disk) keeps its last checkpoint in OUT.incomplete: --resume
    continues it. One run at a time may write an --out (OUT.lock).

    Example:

    \b
        dataprep run recipes/demo-pretrain.yaml --out out/demo-pretrain --set packing.seq_len=256
        dataprep run recipes/demo-pretrain.yaml --out out/demo-pretrain --resume
        dataprep run recipes/demo-pretrain.yaml --out out/demo-pretrain --engine ray --address auto
    """
    from dataprep.build.lean_imports import pyarrow_without_pandas
    from dataprep.cli import app

    if app.PROCESS_ENTRY:  # this process is the run's own: pandas would cost 0.13 s for nothing
        pyarrow_without_pandas()
    from dataprep.build.run import run as run_pipeline
    from dataprep.recipe import load_recipe

    setup_logging(quiet)
    if resume and overwrite:
        raise click.UsageError("--resume continues a run; --overwrite starts over: choose one")
    loaded = load_recipe(recipe, overrides)
    # What exists so far (the modules imported) outlives the run: kept out of the garbage collector's
    # full passes while it runs, which walked it again and again (~3% of a pretraining run's CPU).
    gc.freeze()
    try:
        manifest = run_pipeline(loaded, out, workers=workers, overwrite=overwrite, progress=False if quiet else progress,
                                engine=engine, address=address, resume=resume, checkpoint_every=checkpoint_every)
    finally:
        gc.unfreeze()  # a caller in the same process (tests, scripts calling main) collects as before
    if not quiet:
        click.echo(_summary(manifest, out))


def _summary(manifest: dict, out: str) -> str:
    c = manifest["counts"]
    dropped = sum(c["dropped"].values())
    head = ""
    if dropped:  # losses first: the line a reader must not miss
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(c["dropped"].items(), key=lambda kv: -kv[1]))
        head = f"dropped {dropped:,} of {c['records_read']:,} records: {reasons} (`dataprep report {out}` shows them per input)\n"
    unknown = sum(c.get("unknown_tokens", {}).values())
    if unknown:
        head += f"unknown-token ids written: {unknown:,} (text the tokenizer could not represent)\n"
    if manifest["task"] == "preference":
        return f"{head}wrote {out}\n  records: {c['records_read']:,} read, {c['records_written']:,} written, {dropped:,} dropped\n" + _pairs(manifest)
    return (
        f"{head}wrote {out}\n"
        f"  records: {c['records_read']:,} read, {c['records_written']:,} written, {dropped:,} dropped\n"
        f"  documents: train {c['documents']['train']:,}, validation {c['documents']['validation']:,}\n"
        f"  rows: train {c['rows']['train']:,}, validation {c['rows']['validation']:,} "
        f"(seq_len {manifest['seq_len']}); tokens {c['tokens']:,}; pad {c['pad_tokens']:,}; "
        f"remainder dropped {c['remainder_tokens_dropped']:,}\n"
        f"  packing efficiency: {c['packing_efficiency']:.2%}"
        + _mixture(manifest)
    )


def _mixture(manifest: dict) -> str:
    """A mixture's line: each source's share of the training tokens, drawn (asked) and its epochs."""
    if not manifest.get("mixture"):
        return ""
    parts = [f"{s['name']} {s['train']['share']:.1%} (asked {s['train']['requested_share']:.1%}, "
             f"{s['train']['epochs']:.2f} epochs)" for s in manifest["mixture"]["sources"]]
    return "\n  mixture (train tokens): " + "; ".join(parts)


def _pairs(manifest: dict) -> str:
    """A preference dataset's lines: pairs (KTO: examples) per split and the tokens of prompts and
    responses; nothing about packing (one pair per row, never packed). Chosen and rejected apart
    where the manifest's ``preference`` section counts them, else together (``sft.target_tokens``)."""
    from dataprep.tasks.preference.task import KTO_FORMAT

    c, sft = manifest["counts"], manifest["sft"]
    what = "examples" if manifest["format"] == KTO_FORMAT else "pairs"
    responses = sft["target_tokens"]
    section = manifest.get("preference") or {}
    if what == "examples":
        parts = ""
    elif section.get("chosen_tokens") is not None and section.get("rejected_tokens") is not None:
        parts = f" (chosen {section['chosen_tokens']:,}, rejected {section['rejected_tokens']:,})"
    else:
        parts = " (chosen + rejected)"
    return (
        f"  {what}: train {c['rows']['train']:,}, validation {c['rows']['validation']:,} (one per row, max_length {sft['max_length']:,})\n"
        f"  tokens: {c['tokens']:,}: prompts {c['tokens'] - responses:,} (stored once per row), responses {responses:,}{parts}"
    )


@cli.command()
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """Print the JSON Schema NAME (without NAME: list the schemas).

    Example:

    \b
        dataprep schema recipe
    """
    from dataprep.schema import load_schema, schema_names

    if name is None:  # each name with its title
        click.echo("\n".join(f"{n:26} {load_schema(n).get('title', '')}" for n in schema_names()))
        return
    click.echo(json.dumps(load_schema(name), indent=2))


@cli.command("check-recipe")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value before checking.")
def check_recipe(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check a RECIPE against its schema and print it resolved (defaults filled in).

    Example:

    \b
        dataprep check-recipe recipes/demo-pretrain.yaml --set packing.mode=bfd
    """
    import yaml

    from dataprep.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    click.echo(yaml.safe_dump(dict(loaded.resolved), sort_keys=False, allow_unicode=True), nl=False)
    click.echo(f"# recipe_hash: {loaded.hash}")

