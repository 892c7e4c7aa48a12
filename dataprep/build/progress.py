"""Progress and logs on long work: a tqdm bar on a terminal, periodic log lines otherwise, JSON lines for pipelines.

What is shown: the current stage, records read and records/s, documents, tokens and tokens/s,
and, when the input files are known, how much of their bytes has been read and the ETA::

    sft · tokenize: 41% of 1.2 GB · 812,000 records (96,410/s) · 201,338,112 tokens (23.9M/s) · ETA 12s

The CLI picks the mode once (:func:`configure`): ``-q`` shows warnings and errors only and no
progress; ``--log-format json`` writes every log record, progress included, as one JSON object
per line on stderr (no bar), e.g.
``{"time": 1767000000.0, "level": "info", "logger": "dataprep.progress", "message": "...",
"event": "progress", "stage": "tokenize", "records": 812000, "eta_s": 12.1, ...}``.

Bytes read are exact at file boundaries. Inside a file they come from the reading position of
its open file descriptor (``/proc/self/fdinfo``, Linux): this process's, or on ``--engine ray`` the
worker's that reads the file, sent with each chunk (:meth:`Progress.read_elsewhere`). Elsewhere
(URLs, other systems) progress moves file by file.
Compressed inputs count compressed bytes, which is what their sizes on disk are too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dataprep.read import local_size

log = logging.getLogger("dataprep.progress")

LOG_FORMATS = ("text", "json")
_MODE = {"quiet": False, "json": False}


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, plus the record's ``data`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj.update(getattr(record, "data", None) or {})
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def configure(*, quiet: bool = False, log_format: str = "text") -> None:
    """Route log records to stderr at the chosen level and format, and set the progress mode.

    Args:
        quiet: warnings and errors only; no progress bar or progress lines.
        log_format: ``text`` (plain lines) or ``json`` (one JSON object per line, no bar).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {log_format!r}")
    _MODE.update(quiet=quiet, json=log_format == "json")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if quiet else "%(message)s"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler], force=True)


def json_logs() -> bool:
    """True when the CLI asked for JSON-lines logs (``--log-format json``)."""
    return _MODE["json"]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:,.1f}M" if x >= 1e6 else f"{x:,.0f}"


def _fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def read_position(path: Path) -> int | None:
    """Where this process is reading ``path`` (bytes from its start), or None when unknown."""
    fd_dir = "/proc/self/fd"
    try:
        target = str(Path(path).resolve())
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    for line in info:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
            except OSError:  # closed in between, or not ours to read
                continue
    except OSError:  # no /proc here
        return None
    return None


class Progress:
    """Counts records, documents and tokens; shows rates, the stage and, when inputs are known, an ETA.

    Args:
        stage: what is running (e.g. the task name), shown beside the numbers.
        enabled: True/False forces the bar on/off; None shows it only when stderr is a TTY.
            Without a bar, a log line is written every ``log_every`` seconds. Quiet mode shows
            neither; JSON-lines mode never shows a bar.
        log_every: seconds between log lines.
        inputs: the input files, in read order; their sizes make the ETA (see :meth:`track`).
        sizes: their sizes in bytes, when known already (URLs have no local size).
    """

    def __init__(
        self,
        stage: str,
        *,
        enabled: bool | None = None,
        log_every: float = 10.0,
        inputs: Sequence[Path] | None = None,
        sizes: Sequence[int] | None = None,
        **_: object,
    ):
        self.task = stage
        self.stage = stage
        self.records = 0
        self.docs = 0
        self.tokens = 0
        self.start = time.perf_counter()
        self.log_every = log_every
        self._last_log = self.start
        self._last_draw = 0.0
        self._sizes = list(sizes) if sizes is not None else [local_size(p) for p in inputs or []]
        self._paths = list(inputs or [])
        self.total_bytes = sum(self._sizes) if inputs else None
        self._input = -1
        self._within = 0  # bytes read of the current input, as last seen
        self._remote = False  # inputs read by Ray workers: positions come from them (read_elsewhere)
        self._done_before = 0  # bytes of the inputs finished before the current one
        self._bar = None
        show = enabled or (enabled is None and sys.stderr.isatty())
        if show and not _MODE["quiet"] and not _MODE["json"]:
            from tqdm import tqdm

            if self.total_bytes:
                self._bar = tqdm(
                    desc=stage, total=self.total_bytes, unit="B", unit_scale=True, dynamic_ncols=True, file=sys.stderr
                )
            else:
                self._bar = tqdm(desc=stage, unit=" docs", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    # --- feeding -------------------------------------------------------------------------

    def track(self, items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """Pass ``(input index, batch)`` items through unchanged, counting records and the input read."""
        self.set_stage("tokenize")
        for index, batch in items:
            if index != self._input:
                self._done_before = sum(self._sizes[: max(index, 0)])
                self._input, self._within = index, 0
            self.records += getattr(batch, "num_rows", 0)
            yield index, batch
        self._input, self._done_before = len(self._sizes), sum(self._sizes)  # every input read

    def read_elsewhere(self, index: int, records: int, *, position: int | None, file_done: bool) -> None:
        """Count records that workers read (``--engine ray``), input ``index`` at byte ``position``
        of its file (as the worker saw it; None: unknown) or read entirely once ``file_done``."""
        self.set_stage("tokenize")
        self.records += records
        self._remote = True
        if index != self._input:
            self._done_before = sum(self._sizes[: max(index, 0)])
            self._input, self._within = index, 0
        at = self._sizes[index] if file_done else min(position or 0, self._sizes[index])
        self._within = max(self._within, at)

    def set_stage(self, stage: str) -> None:
        """Name what runs now (e.g. ``finish``, ``checksums``); logged when it changes."""
        if stage == self.stage:
            return
        self.stage = stage
        if self._bar is not None:
            self._bar.set_description_str(f"{self.task} · {stage}", refresh=True)
        elif not _MODE["quiet"]:
            log.info("%s · %s", self.task, stage, extra={"data": {"event": "stage", **self.numbers()}})

    def update(self, *, docs: int, tokens: int, records: int = 0) -> None:
        """Add finished work (``records`` only when not counted by :meth:`track`)."""
        self.docs += docs
        self.tokens += tokens
        self.records += records
        now = time.perf_counter()
        if self._bar is not None:
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                self._draw()
        elif now - self._last_log >= self.log_every and not _MODE["quiet"]:
            self._last_log = now
            log.info("%s", self.line(), extra={"data": {"event": "progress", **self.numbers()}})

    # --- numbers -------------------------------------------------------------------------

    def bytes_done(self) -> int | None:
        if self.total_bytes is None or self._input < 0:
            return None
        if self._remote:  # positions as the workers reported them
            return self._done_before + self._within
        if self._input >= len(self._paths):
            return self._done_before
        at = read_position(self._paths[self._input])
        if at is None and self._within:  # was open, now closed: the reader is done with it
            at = self._sizes[self._input]
        self._within = max(self._within, min(at or 0, self._sizes[self._input]))
        return self._done_before + self._within

    def numbers(self) -> dict[str, Any]:
        """Everything shown, as numbers (the fields of a JSON progress line)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out: dict[str, Any] = {
            "task": self.task,
            "stage": self.stage,
            "elapsed_s": round(elapsed, 3),
            "records": self.records,
            "documents": self.docs,
            "tokens": self.tokens,
            "records_per_s": round(self.records / elapsed, 1),
            "tokens_per_s": round(self.tokens / elapsed, 1),
        }
        done = self.bytes_done()
        if done is not None and self.total_bytes:
            out["bytes_done"], out["bytes_total"] = done, self.total_bytes
            out["eta_s"] = round(elapsed * (self.total_bytes - done) / done, 1) if done else None
        return out

    def line(self) -> str:
        n = self.numbers()
        parts = [f"{self.task} · {self.stage}:"] if self.stage != self.task else [f"{self.task}:"]
        if "bytes_total" in n:
            parts.append(f"{n['bytes_done'] / n['bytes_total']:.0%} of {_fmt_bytes(n['bytes_total'])} ·")
        parts.append(f"{n['records']:,} records ({_fmt_rate(n['records_per_s'])}/s) ·")
        parts.append(f"{n['tokens']:,} tokens ({_fmt_rate(n['tokens_per_s'])}/s)")
        if n.get("eta_s") is not None:
            parts.append(f"· ETA {_fmt_eta(n['eta_s'])}")
        return " ".join(parts)

    def summary(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return (
            f"{self.records:,} records, {self.docs:,} docs, {self.tokens:,} tokens in {elapsed:.1f}s "
            f"({self.records / elapsed:,.0f} records/s, {self.tokens / elapsed:,.0f} tokens/s)"
        )

    def _draw(self) -> None:
        n = self.numbers()
        if self.total_bytes:
            done = n.get("bytes_done") or 0
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)
        else:
            self._bar.update(self.docs - self._bar.n)
        self._bar.set_postfix_str(
            f"{_fmt_rate(n['records_per_s'])} rec/s, {_fmt_rate(n['tokens_per_s'])} tok/s", refresh=True
        )

    def close(self) -> None:
        if self._bar is not None:
            self._draw()
            self._bar.close()
        if not _MODE["quiet"]:
            log.info("%s done: %s", self.task, self.summary(), extra={"data": {"event": "done", **self.numbers()}})
