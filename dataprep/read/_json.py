"""JSON readers: JSON Lines (streamed, 1-based line numbers) and JSON arrays (parsed whole, 0-based record index).

Pieces are ``(columns, lines)``: one list of values per field, and where each record is.
With ``records:`` (:mod:`._nested`) a json file may hold any value, and each line of a
jsonl file is a value to find records in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from dataprep.errors import InputError

from ._common import SKIP, BadRecords, json_message, json_type, open_binary
from ._fields import Field, RowExtractor
from ._file import InputFile
from ._nested import RecordsPath, parse_records, walk

Piece = tuple[list[list[str]], list[int]]
_FIX_JSON_LINE = f"fix the JSON on that line (one complete JSON object per line), {SKIP}"
_FIX_NESTING = "make the value there what `records:` expects (or fix `records:`), or set `on_error: skip` to drop that part"


class FieldColumns:
    """Collects extracted rows column-wise and hands them on in batches of ``batch_size``."""

    def __init__(self, width: int, batch_size: int):
        self.width, self.batch_size = width, batch_size
        self.columns: list[list[str]] = [[] for _ in range(width)]
        self.lines: list[int] = []

    def add(self, row: list[str], line: int) -> Piece | None:
        """Add one row; returns a full piece when ``batch_size`` rows are held."""
        for column, value in zip(self.columns, row):
            column.append(value)
        self.lines.append(line)
        return self.take() if len(self.lines) == self.batch_size else None

    def take(self) -> Piece:
        piece = self.columns, self.lines
        self.columns, self.lines = [[] for _ in range(self.width)], []
        return piece


def read_jsonl(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    if file.spec.records is not None:
        return _read_jsonl_nested(file, fields, bad, batch_size, parse_records(file.spec.records))
    return _read_jsonl(file, fields, bad, batch_size)


def _decoded_lines(fh, bad: BadRecords) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line that is UTF-8 (a leading byte-order mark dropped);
    the others are reported as ``invalid_utf8``."""
    for lineno, raw in enumerate(fh, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.invalid_text(f"line {lineno}", exc, raw, "line")
            continue
        if lineno == 1 and line[:1] == "\ufeff":
            line = line[1:]
        yield lineno, line


def _read_jsonl(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    extractor = RowExtractor(fields, bad)
    extract, fast_key = extractor.row, extractor.fast_key
    loads = json.loads
    columns: list[list[str]] = [[] for _ in fields]
    lines: list[int] = []
    with open_binary(file) as fh:
        for lineno, line in _decoded_lines(fh, bad):
            try:
                record = loads(line)
            except (ValueError, RecursionError) as exc:
                if line and not line.isspace():  # blank lines are not records
                    bad.report("malformed_json", f"line {lineno}", json_message(exc, line), _FIX_JSON_LINE)
                continue
            # Inlined for the pretraining case (one top-level text field): ~30% faster than row().
            if fast_key is not None and type(record) is dict and type(value := record.get(fast_key)) is str:
                columns[0].append(value)
            else:
                row = extract(record, f"line {lineno}")
                if row is None:
                    continue
                for column, value in zip(columns, row):
                    column.append(value)
            lines.append(lineno)
            if len(lines) == batch_size:
                yield columns, lines
                columns, lines = [[] for _ in fields], []
    if lines:
        yield columns, lines


def read_json(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    """A json file holds one array of records; it is loaded and parsed whole."""
    path, whole = file.location, "a json file is parsed as a whole, so `on_error: skip` cannot drop part of it"
    with open_binary(file) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message, fix = bad.text_message(exc, data, "file"), f"{bad.text_fix(data[max(exc.start - 2048, 0) : exc.start + 2048])} ({whole})"
        raise InputError(path, f"line {line}", message, fix) from exc
    del data
    try:
        records = json.loads(text[1:] if text[:1] == "\ufeff" else text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip("\ufeff \t\r\n").startswith("{"):
            fix = "the file holds one JSON value per line: set `format: jsonl` on this input (or rename it to .jsonl)"
        else:
            fix = f"fix the JSON syntax ({whole})"
        raise InputError(path, f"line {exc.lineno}", json_message(exc), fix) from exc
    except RecursionError as exc:
        raise InputError(path, None, "malformed JSON: nested too deeply", f"flatten the records ({whole})") from exc
    if file.spec.records is not None:
        yield from _nested_json(file, records, fields, bad, batch_size, parse_records(file.spec.records))
        return
    if type(records) is not list:
        message = f"expected a JSON array of records at the top level, got {json_type(records)}"
        raise InputError(path, None, message, "make the file a JSON array of objects, or JSON Lines (`format: jsonl`)")
    extract = RowExtractor(fields, bad).row
    rows = FieldColumns(len(fields), batch_size)
    for index, record in enumerate(records):
        row = extract(record, f"record {index}")
        if row is not None and (piece := rows.add(row, index)):
            yield piece
    if rows.lines:
        yield rows.take()


def _nested_json(
    file: InputFile, root: object, fields: list[Field], bad: BadRecords, batch_size: int, path: RecordsPath
) -> Iterator[Piece]:
    """Records found by ``records:`` in a json file, numbered 0, 1, ... (bad ones too)."""
    extract = RowExtractor(fields, bad).row
    rows = FieldColumns(len(fields), batch_size)
    problems = _Problems(bad, path)
    index = -1
    for index, (record, parents, where) in enumerate(walk(root, path, problems)):
        row = extract(record, f"record {index} ({where})", parents)
        if row is not None and (piece := rows.add(row, index)):
            yield piece
    if index < 0:
        _nothing_found(file, path, problems.count)
    if rows.lines:
        yield rows.take()


def _read_jsonl_nested(
    file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int, path: RecordsPath
) -> Iterator[Piece]:
    """Records found by ``records:`` in each line of a jsonl file; ``line`` is the line they are on."""
    extract = RowExtractor(fields, bad).row
    rows = FieldColumns(len(fields), batch_size)
    problems = _Problems(bad, path)
    found = lines = 0
    with open_binary(file) as fh:
        for lineno, line in _decoded_lines(fh, bad):
            if not line or line.isspace():
                continue
            lines += 1
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:
                bad.report("malformed_json", f"line {lineno}", json_message(exc, line), _FIX_JSON_LINE)
                continue
            problems.prefix = f"line {lineno}, "
            for record, parents, where in walk(value, path, problems):
                found += 1
                row = extract(record, f"line {lineno}, {where}", parents)
                if row is not None and (piece := rows.add(row, lineno)):
                    yield piece
    if lines and not found:
        _nothing_found(file, path, problems.count)
    if rows.lines:
        yield rows.take()


class _Problems:
    """Reports the places ``records:`` cannot step into (``bad_nesting``)."""

    def __init__(self, bad: BadRecords, path: RecordsPath):
        self.bad, self.path, self.count = bad, path, 0
        self.prefix = ""  # "line N, " in a jsonl file

    def __call__(self, where: str, message: str) -> None:
        self.count += 1
        location = f"{self.prefix}{where}" if where else (self.prefix.rstrip(", ") or "top level")
        self.bad.report("bad_nesting", location, f"{message} (records: {self.path.text})", _FIX_NESTING)


def _nothing_found(file: InputFile, path: RecordsPath, problems: int) -> None:
    why = f"; {problems} place(s) on the path were skipped as bad_nesting" if problems else ", every list on it is empty"
    message = f"`records: {path.text}` finds no record in this file{why}"
    fix = "check `records:` against the file's structure (e.g. data[*].paragraphs[*].qas[*]); a file it finds nothing in is an error"
    raise InputError(file.location, None, message, fix)
