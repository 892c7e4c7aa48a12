"""The command line. Thin: parse options, call the library, turn errors into messages.

Every failure a user can cause reaches them as ``error: ...`` and ``fix: ...`` on stderr, never a
traceback. Exit status: 0 success, 1 a dataprep error (a :class:`~dataprep.errors.DataprepError`, or an
OSError on a path the user named), 2 usage (click's own message), 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import click

from ._version import __version__
from dataprep.build.engine import ENGINES
from .errors import FIX_LINE, DataprepError, Terminated

OS_FIX = "check the path: what is read must exist, and the folder of what is written must be writable and have room"


class _PathOrURL(click.Path):
    """An existing local path, or a filesystem URL (``s3://...``) taken as given (checked when read)."""

    def convert(self, value, param, ctx):
        from .storage import is_url

        return value if is_url(value) else super().convert(value, param, ctx)


def _setup_logging(quiet: bool) -> None:
    """Log to stderr; the global `dataprep -q` / `--log-format json` apply to every command."""
    from dataprep.build.progress import configure

    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().params if ctx is not None else {}
    configure(quiet=quiet or bool(root.get("quiet")), log_format=root.get("log_format") or "text")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dataprep")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors, and no progress, for any command.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: logs and progress as one JSON object per line on stderr (for pipelines).")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, log_format: str) -> None:
    """Prepare pretraining and fine-tuning data for language models, and prove it before you train."""
    if quiet:  # `dataprep -q CMD` means `dataprep CMD -q` for every command that has -q
        quiet_commands = {name: {"quiet": True} for name, cmd in cli.commands.items() if any(p.name == "quiet" for p in cmd.params)}
        ctx.default_map = {**(ctx.default_map or {}), **quiet_commands}
    _setup_logging(quiet)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (written atomically).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value, e.g. --set packing.seq_len=4096. Repeatable.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None, help="Chunks worked on at once (default: all cores): threads for pretraining, processes for fine-tuning, CPUs of a local Ray instance. Output is identical for any value.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, help="ray: reading and chunk work on Ray Data (pip install 'dataprep[ray]'; every node must reach the inputs); same shards, byte for byte.")
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
    from dataprep.build.run import run as run_pipeline
    from .recipe import load_recipe

    _setup_logging(quiet)
    if resume and overwrite:
        raise click.UsageError("--resume continues a run; --overwrite starts over: choose one")
    loaded = load_recipe(recipe, overrides)
    manifest = run_pipeline(loaded, out, workers=workers, overwrite=overwrite, progress=False if quiet else progress,
                            engine=engine, address=address, resume=resume, checkpoint_every=checkpoint_every)
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
    return (
        f"{head}wrote {out}\n"
        f"  records: {c['records_read']:,} read, {c['records_written']:,} written, {dropped:,} dropped\n"
        f"  documents: train {c['documents']['train']:,}, validation {c['documents']['validation']:,}\n"
        f"  rows: train {c['rows']['train']:,}, validation {c['rows']['validation']:,} "
        f"(seq_len {manifest['seq_len']}); tokens {c['tokens']:,}; pad {c['pad_tokens']:,}; "
        f"remainder dropped {c['remainder_tokens_dropped']:,}\n"
        f"  packing efficiency: {c['packing_efficiency']:.2%}"
    )


@cli.command()
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """Print the JSON Schema NAME (without NAME: list the schemas).

    Example:

    \b
        dataprep schema recipe
    """
    from .schema import load_schema, schema_names

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

    from .recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    click.echo(yaml.safe_dump(dict(loaded.resolved), sort_keys=False, allow_unicode=True), nl=False)
    click.echo(f"# recipe_hash: {loaded.hash}")


@cli.command()
@click.argument("paths", nargs=-1, type=_PathOrURL(exists=True))
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
    from .validate import validate_dataset, validate_inputs

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
            from .recipe import load_recipe

            report = validate_inputs(recipe=load_recipe(recipe, overrides), max_errors=max_errors)
        else:
            if not paths:
                raise click.UsageError("name the files to check with --as")
            report = validate_inputs(paths, kind=kind, fields=mapping, max_errors=max_errors)
    click.echo(json.dumps(report.as_dict(), indent=2) if fmt == "json" else report.to_text())
    return 0 if report.ok else 1


@cli.command("inspect")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--recipe", "-r", type=click.Path(dir_okay=False), help="PATH is a source file: render and mask its first records as `run` would with this recipe, writing nothing (no PATH: the recipe's inputs).")
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

    With --recipe, show what `run` would make of a source file's first records instead.

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
        from .recipe import load_recipe
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


@cli.command("train")
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run folder for checkpoint.pt, verify.json and loss.png (default: DATASET-train beside DATASET).")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (default 2000).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per step (default 4096 // seq_len: 64 for demo-sft).")
@click.option("--lr", type=float, help="Peak learning rate (default: 4e-3 for the cpu model, 6e-4 for gpu).")
@click.option("--seed", type=int, help="Seeds the weights and the data order (default 0).")
@click.option("--model", type=click.Choice(["auto", "cpu", "gpu"]), help="Model size (default auto: gpu when CUDA is present).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train (default auto).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: the cores this process may run on). On a machine busy with other work, fewer is faster: --threads 1.")
@click.option("--classification", type=click.Choice(["generative", "head"]), help="Classification data: train the label words or a head on label_id (default: as the recipe's classification.train says).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Any other training setting (dataprep.train.config.TrainConfig), e.g. --set task_proof=on. Repeatable.")
@click.option("--eval-fewshot", "eval_fewshot", type=click.Path(file_okay=False), help="A task: fewshot dataset (same tokenizer): report exact match zero-shot and k-shot, before and after training, in one table.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again over a run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict.")
def train_command(dataset: str, out: str | None, steps: int | None, batch_size: int | None, lr: float | None, seed: int | None, model: str | None, device: str | None, threads: int | None, classification: str | None, overrides: tuple[str, ...], eval_fewshot: str | None, resume: bool, overwrite: bool, quiet: bool) -> int:
    """Train a small transformer on DATASET and prove the data trains: the loss falls, held-out
    answers are right (short-answer fine-tuning data), masks and packing are exact (the
    loader's speed against training's is reported, not part of the verdict). Writes verify.json, loss.png and checkpoint.pt.

    MLM datasets train an encoder (bidirectional attention), span-corruption datasets a prefix LM;
    both check that the loss falls. --eval-fewshot compares in-context learning with fine-tuning.

    Exit status: 0 every check passed, 1 a check failed (or a dataprep error).

    Example:

    \b
        dataprep train out/demo-sft
        dataprep train out/demo-pretrain --out runs/pretrain --steps 300 --set eval_every=100
        dataprep train out/demo-sft --eval-fewshot out/fewshot-demo
        dataprep train out/mlm-wikitext --out runs/mlm --steps 300
    """
    from dataprep.train.checks import verdict
    from dataprep.train.config import config_from
    from dataprep.train.loop import train

    settings = dict(item.split("=", 1) for item in overrides if "=" in item)
    if len(settings) != len(overrides):
        raise click.UsageError("--set takes KEY=VALUE, e.g. --set task_proof=on")
    cfg = config_from(settings, steps=steps, batch_size=batch_size, lr=lr, seed=seed, model=model, device=device, threads=threads, classification=classification, eval_fewshot=eval_fewshot)
    run_dir = out or dataset.rstrip("/\\") + "-train"
    report = train(dataset, run_dir, cfg, resume=resume, overwrite=overwrite, echo=(lambda _: None) if quiet else click.echo)
    if quiet:
        click.echo(verdict(report))
    return 0 if report["passed"] else 1


@cli.command("export")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "fmt", required=True, type=click.Choice(["megatron", "nanogpt", "mds", "parquet", "jsonl"]), help="megatron: SPLIT.bin/.idx (--data-path DEST/train); nanogpt: train.bin/val.bin + meta.pkl; mds: MosaicML streaming shards; parquet and jsonl: every column (jsonl adds decoded text and targets).")
@click.option("--split", type=click.Choice(["train", "validation", "all"]), default="all", show_default=True, help="The split(s) to export.")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Export folder, written atomically (default: DATASET-FORMAT beside DATASET).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export at --out.")
def export_command(dataset: str, fmt: str, split: str, out: str | None, overwrite: bool) -> None:
    """Export DATASET for another trainer, with export.json recording where it came from (the
    manifest's sha256, counts, each file's sha256). Token-only formats (megatron, nanogpt) refuse
    rows that carry a loss mask or labels: use mds, parquet or jsonl for those.

    Example:

    \b
        dataprep export out/demo-pretrain --to megatron --out out/demo-pretrain-megatron
        dataprep export out/demo-sft --to mds --split train
    """
    from dataprep.export import export

    record = export(dataset, fmt, split=split, dest=out, overwrite=overwrite)
    for name, entry in record["splits"].items():
        docs = f", {entry['documents']:,} documents" if "documents" in entry else ""
        click.echo(f"{name}: {entry['rows']:,} rows, {entry['tokens']:,} tokens{docs} -> {', '.join(entry['files'])}")
    click.echo(f"wrote {out or dataset.rstrip('/') + '-' + fmt} (provenance in export.json)")


def _echo_error(exc: DataprepError | OSError) -> None:
    """``error: MESSAGE`` and ``fix: FIX`` on stderr (one JSON line with ``--log-format json``)."""
    from dataprep.build.progress import json_logs

    if isinstance(exc, DataprepError):
        message, fix = exc.explain()
    else:  # a path the user named that cannot be read or written (missing, no permission, disk full)
        message, fix = f"{exc.filename}: {exc.strerror} ({type(exc).__name__})" if exc.filename else str(exc), OS_FIX
    if json_logs():  # a pipeline reading JSON lines on stderr gets the error as one too
        click.echo(json.dumps({"level": "error", "error": type(exc).__name__, "message": message, "fix": fix}, ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {message}{FIX_LINE}{fix}", err=True)


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, with the exit statuses and error messages the module docstring lists."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = cli.main(args=argv, prog_name="dataprep", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt (and so SIGTERM) into Abort
        if isinstance(exc.__cause__, Terminated):
            click.echo("terminated (SIGTERM)", err=True)
            sys.exit(143)
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (DataprepError, OSError) as exc:
        _echo_error(exc)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
