"""The ``dataprep`` command group, its logging, and the entry point that turns errors into
``error: ... fix: ...`` messages (the commands live beside it, one module per stage)."""

from __future__ import annotations

import gc
import json
import sys
import threading

import click

from dataprep._version import __version__
from dataprep.errors import FIX_LINE, DataprepError, Terminated

OS_FIX = "check the path: what is read must exist, and the folder of what is written must be writable and have room"


class PathOrURL(click.Path):
    """An existing local path, or a filesystem URL (``s3://...``) taken as given (checked when read)."""

    def convert(self, value, param, ctx):
        from dataprep.storage import is_url

        return value if is_url(value) else super().convert(value, param, ctx)


def setup_logging(quiet: bool) -> None:
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
    setup_logging(quiet)



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


# True when main() runs as the process's own command line (no argv: the `dataprep` script, `python -m
# dataprep`), not called in a process that goes on (tests, scripts): what may change the process for good.
PROCESS_ENTRY = False


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, with the exit statuses and error messages the module docstring lists."""
    global PROCESS_ENTRY
    PROCESS_ENTRY = argv is None
    try:
        _main(argv)
    finally:
        if argv is None:  # the process's own command line: it ends now
            # Python's finalization runs the cycle collector over every object several times while
            # it clears the modules (~110k objects after pyarrow, pandas, numpy, jsonschema are
            # imported: 0.13-0.2 s of a 2.3 s fine-tuning run); frozen, they are only freed. Nothing
            # written is left open by then (outputs are committed, in-process callers pass argv).
            gc.freeze()


def _main(argv: list[str] | None) -> None:
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
