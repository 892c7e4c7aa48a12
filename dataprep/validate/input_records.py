"""Raw input records, streamed, numbered the way ``dataprep run`` numbers them in its errors.

The pipeline's readers hand on extracted fields; validation needs each *whole* record, so
that a schema can report a JSON path in it. :func:`iter_records` yields ``(location, record)``
per record, or ``(location, Unreadable)`` for a line that is not a record at all::

    jsonl, tsv, csv, txt   "line 3"      (1-based; blank lines are not records)
    json (one array)       "record 3"    (0-based index; the file is parsed whole, as run does)
    parquet, arrow         "row 3"       (0-based, counted across an HF dataset's shards)

Memory stays flat for every format but json arrays. tsv/csv rows become ``{column: value}``
with the header (or ``columns:``) as names; txt units are plain strings.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from ..errors import InputError
from ..read import DIALECTS, InputFile, arrow_batches, json_message, open_binary, text_message

BATCH = 4096


@dataclass(frozen=True)
class Unreadable:
    """A line or file that holds no record: ``kind`` is the pipeline's drop reason."""

    kind: str  # invalid_utf8 | malformed_json | bad_row | unreadable_file
    message: str
    expected: str


def iter_records(file: InputFile) -> Iterator[tuple[str, Any]]:
    """Every record of ``file`` as ``(location, record)``; bad ones as ``(location, Unreadable)``."""
    try:
        if file.format == "jsonl":
            yield from _jsonl(file)
        elif file.format == "json":
            yield from _json(file)
        elif file.format in DIALECTS:
            yield from _delimited(file)
        elif file.format == "txt":
            yield from _txt(file)
        else:
            yield from _columnar(file)
    except InputError as exc:  # a damaged container (truncated .zst, cut parquet) or an unclosed quote, as run says it
        yield exc.location or "", Unreadable("unreadable_file", exc.reason_message, exc.fix or "a complete, uncorrupted file")
    except (OSError, EOFError, ValueError, pa.ArrowException) as exc:
        yield "", Unreadable("unreadable_file", f"cannot read the file: {exc}", "a complete, uncorrupted file")


def _jsonl(file: InputFile) -> Iterator[tuple[str, Any]]:
    with open_binary(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, Unreadable("invalid_utf8", text_message(exc, raw, "line", file.encoding), f"{file.encoding} text")
                continue
            if lineno == 1 and line[:1] == "\ufeff":
                line = line[1:]
            if not line or line.isspace():
                continue
            try:
                yield where, json.loads(line)
            except (ValueError, RecursionError) as exc:
                yield where, Unreadable("malformed_json", json_message(exc), "one complete JSON object per line")


def _json(file: InputFile) -> Iterator[tuple[str, Any]]:
    with open_binary(file) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield f"line {line}", Unreadable("invalid_utf8", text_message(exc, data, "file", file.encoding), f"{file.encoding} text")
        return
    try:
        records = json.loads(text[1:] if text[:1] == "\ufeff" else text)
    except json.JSONDecodeError as exc:
        yield f"line {exc.lineno}", Unreadable("malformed_json", json_message(exc), "a JSON array of records")
        return
    if type(records) is not list:
        yield "", Unreadable("malformed_json", f"the top level is {type(records).__name__}, not an array", "a JSON array of records (or use .jsonl)")
        return
    for index, record in enumerate(records):
        yield f"record {index}", record


def _delimited(file: InputFile) -> Iterator[tuple[str, Any]]:
    names = file.spec.columns
    header_pending = file.spec.header
    with open_binary(file) as fh:
        lines = (_decode(raw, n, file.encoding) for n, raw in enumerate(fh, 1))
        bad_lines: dict[int, str] = {}

        def text() -> Iterator[str]:
            for n, line, error in lines:
                if error:
                    bad_lines[n] = error
                yield line

        reader = csv.reader(text(), **DIALECTS[file.format])
        end = 0
        while True:
            try:
                row = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = None, f"malformed {file.format} row: {exc}"
            start, end = end + 1, reader.line_num
            where = f"line {start}"
            if error is not None and end > start:  # a quote opened on `start` never closed: run refuses the file
                yield where, Unreadable("unreadable_file", f"{error}: the quoted value opened on this line runs on "
                                        f"to line {end}", "close the quote (or quote the value's own quotes by doubling them)")
                return
            utf8 = [bad_lines.pop(n) for n in range(start, end + 1) if n in bad_lines]
            if utf8:
                yield where, Unreadable("invalid_utf8", utf8[0], f"{file.encoding} text")
                continue
            if row is not None and (not row or (len(row) == 1 and (not row[0] or row[0].isspace()))):
                continue
            if header_pending:
                header_pending = False
                names = names or tuple(row or ())
                continue
            if error is not None or row is None:
                yield where, Unreadable("bad_row", error or "malformed row", f"one value per column ({len(names or ())})")
                continue
            if names is None:
                names = tuple(f"column{i}" for i in range(len(row)))
            if len(row) != len(names):
                why = f"row has {len(row)} columns, expected {len(names)} ({', '.join(names)})"
                yield where, Unreadable("bad_row", why, f"one value per column: {', '.join(names)}")
                continue
            yield where, dict(zip(names, row))


def _decode(raw: bytes, n: int, codec: str) -> tuple[int, str, str | None]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return n, raw.decode("utf-8", "replace"), text_message(exc, raw, "line", codec)
    return n, line[1:] if n == 1 and line[:1] == "\ufeff" else line, None


def _txt(file: InputFile) -> Iterator[tuple[str, Any]]:
    with open_binary(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield f"line {lineno}", Unreadable("invalid_utf8", text_message(exc, raw, "line", file.encoding), f"{file.encoding} text")
                continue
            if not line.isspace():
                yield f"line {lineno}", line.rstrip("\n")


def _columnar(file: InputFile) -> Iterator[tuple[str, Any]]:
    row = 0
    for batch in _batches(file):
        for record in batch.to_pylist():
            yield f"row {row}", record
            row += 1


def _batches(file: InputFile) -> Iterator[pa.RecordBatch]:
    """Every column of a parquet or Arrow input, local or a URL, in batches of ``BATCH`` rows."""
    if file.format == "parquet":
        source = storage.open_random(file.url) if file.url else file.path
        yield from pq.ParquetFile(source, memory_map=not file.url).iter_batches(batch_size=BATCH)
        return
    for batch, _names in arrow_batches(file, BATCH):
        yield batch
