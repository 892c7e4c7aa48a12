"""The command line. Thin: parse options, call the library, turn DataprepError into a message.

Exit status: 0 success, 1 a dataprep error (the message says what, where and how to fix), 2 usage.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from . import __version__
from .errors import DataprepError


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if quiet else "%(message)s",
        stream=sys.stderr,
        force=True,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dataprep")
def cli() -> None:
    """Prepare pretraining and fine-tuning data for language models, and prove it before you train."""


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (written atomically).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value, e.g. --set packing.seq_len=4096. Repeatable.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores). Output is identical for any value.")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset at --out.")
@click.option("--progress/--no-progress", default=None, help="Force the progress bar on or off (default: on when stderr is a terminal).")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
def run(recipe: str, out: str, overrides: tuple[str, ...], workers: int | None, overwrite: bool, progress: bool | None, quiet: bool) -> None:
    """Build the dataset a RECIPE describes.

    Example:

    \b
        dataprep run recipes/demo-pretrain.yaml --out out/demo-pretrain --set packing.seq_len=256
    """
    from .pipeline import run as run_pipeline
    from .recipe import load_recipe

    _setup_logging(quiet)
    loaded = load_recipe(recipe, overrides)
    manifest = run_pipeline(loaded, out, workers=workers, overwrite=overwrite, progress=False if quiet else progress)
    if not quiet:
        click.echo(_summary(manifest, out))


def _summary(manifest: dict, out: str) -> str:
    c = manifest["counts"]
    dropped = ", ".join(f"{k} {v:,}" for k, v in c["dropped"].items()) or "none"
    return (
        f"wrote {out}\n"
        f"  records: {c['records_read']:,} read, {c['records_written']:,} written; dropped: {dropped}\n"
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

    if name is None:
        click.echo("\n".join(schema_names()))
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a DataprepError becomes 'error: ...' and exit status 1."""
    try:
        rc = cli.main(args=argv, prog_name="dataprep", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DataprepError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
