"""What every reader shares: opening (decompressing) files, bad-record policy, message helpers."""

from __future__ import annotations

import collections
import gzip
import io
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import zstandard

from dataprep import storage
from dataprep.errors import InputError

if TYPE_CHECKING:
    from ._inputs import InputFile

logger = logging.getLogger("dataprep.read")

ON_ERROR = ("raise", "skip")
DROP_REASONS = (
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "non_string_field",  # kind text
    "non_scalar_field",  # kind any
    "non_json_field",  # kind json: a columnar value with no JSON form (bytes, timestamp, NaN)
    "bad_messages",  # kind messages
    "non_text_content",  # kind messages: an image, audio, ... content part
    "bad_nesting",  # records: a place on the path that is missing or of the wrong type
    "bad_row",  # tsv / csv: wrong number of columns or malformed quoting
)
MAX_LOGGED = 10  # bad records logged one by one per file; the rest go into one summary line

_BLOCK = 1 << 20  # read size for files and decompressors

FIX_UTF8 = (
    "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or set `on_error: skip` to drop such records"
)
SKIP = "or set `on_error: skip` to drop such records"


class BadRecords:
    """Raises on a bad record, or counts and logs it (``on_error: skip``), or, with a ``sink``
    (``validate --recipe``), counts it and appends ``(file, location, reason, message, fix)``."""

    def __init__(self, file: InputFile, on_error: str, drops: collections.Counter, sink: list | None = None):
        self.path, self.raise_ = file.location, on_error == "raise"
        self.drops, self.counts, self.logged = drops, collections.Counter(), 0
        self.sink = sink

    def report(self, reason: str, location: str, message: str, fix: str) -> None:
        if self.sink is not None:
            self.drops[reason] += 1
            self.counts[reason] += 1
            self.sink.append((self.path, location, reason, message, fix))
            return
        if self.raise_:
            raise InputError(self.path, location, message, fix)
        self.drops[reason] += 1
        self.counts[reason] += 1
        if self.logged < MAX_LOGGED:
            self.logged += 1
            logger.warning("%s, %s: %s; skipped (on_error: skip)", self.path, location, message)

    def report_rows(self, reason: str, rows: np.ndarray, first: int, message: object, fix: str) -> None:
        """Report bad rows of a columnar batch; ``message`` is a string or ``row -> string``."""
        shown = rows if self.sink is not None else rows[: max(MAX_LOGGED - self.logged, 1 if self.raise_ else 0)]
        for row in map(int, shown):
            self.report(reason, f"row {first + row}", message(row) if callable(message) else message, fix)
        rest = len(rows) - len(shown)  # counted, not logged one by one
        if rest:
            self.drops[reason] += rest
            self.counts[reason] += rest

    def finish(self) -> None:
        if self.sink is not None:
            return
        total = sum(self.counts.values())
        if total > self.logged:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
            logger.warning(
                "%s: skipped %d bad records in all (%s); only the first %d were logged",
                self.path,
                total,
                reasons,
                self.logged,
            )


def open_binary(file: InputFile) -> BinaryIO:
    """Binary stream of the decompressed file (local or a URL), read in large blocks."""
    if file.url:  # pyarrow's stream decompresses gzip and zstd (every frame) itself
        return io.BufferedReader(storage.open_input(file.url, compression=file.compression), buffer_size=_BLOCK)
    if file.compression == "gzip":
        return io.BufferedReader(gzip.open(file.path, "rb"), buffer_size=_BLOCK)
    if file.compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(
            open(file.path, "rb"), read_size=_BLOCK, read_across_frames=True, closefd=True
        )
        return io.BufferedReader(reader, buffer_size=_BLOCK)
    return open(file.path, "rb", buffering=_BLOCK)


def load_json_file(path) -> dict:
    """An HF dataset's metadata file (state.json, dataset_dict.json)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fix = "save the dataset again with `save_to_disk`"
        raise InputError(str(path), None, f"cannot read dataset metadata: {exc}", fix) from exc


def utf8_message(exc: UnicodeDecodeError, data: bytes, scope: str) -> str:
    return f"invalid UTF-8 at byte {exc.start} of the {scope} ({exc.reason}: {data[exc.start:exc.end]!r})"


def json_message(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON: {exc.msg} (column {exc.colno})"
    return f"malformed JSON: {exc}" if isinstance(exc, ValueError) else "malformed JSON: nested too deeply"


def json_type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def names_list(names: Sequence[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(str(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
