"""JSON readers: JSON Lines (streamed, 1-based line numbers) and JSON arrays (parsed whole, 0-based record index).

Pieces are ``(columns, lines)``: one list of values per field, and where each record is.
With ``records:`` (:mod:`._nested`) a json file may hold any value, and each line of a
jsonl file is a value to find records in.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from dataprep.errors import InputError

from ._common import SKIP, BadRecords, Rows, json_message, json_type, lone_surrogate, open_binary, read_blocks
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


def _decoded_lines(fh, bad: BadRecords, first: int = 1) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line that is UTF-8 (a leading byte-order mark dropped);
    the others are reported as ``invalid_utf8``. ``first``: the number of ``fh``'s first line."""
    for lineno, raw in enumerate(fh, first):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.invalid_text(f"line {lineno}", exc, raw, "line")
            continue
        if lineno == 1 and line[:1] == "\ufeff":
            line = line[1:]
        yield lineno, line


def _read_jsonl(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    """Line by line; or, when every field is at a top-level key (pretraining's ``text``,
    fine-tuning's ``prompt`` and ``response`` with their optional ``history`` and ``system``) of a
    UTF-8 file, a block of whole lines at a time (:func:`parse_block`, then
    :meth:`RowExtractor.fast_columns`): a block that is not clean goes line by line,
    so every bad line is reported with its number, as ever. Pieces hold exactly ``batch_size``
    records (the last may hold fewer) whichever way their records were read."""
    extractor = RowExtractor(fields, bad)
    rows = Rows(len(fields), batch_size)
    keys = extractor.fast_keys if file.encoding == "utf-8" else None
    with open_binary(file) as fh:
        if keys is None:
            yield from _per_line(_decoded_lines(fh, bad), extractor, rows)
        else:
            first = 1  # the block's first line number
            for block in read_blocks(fh):
                parsed = parse_block(block, keys, first=first)
                columns = None if parsed is None else extractor.fast_columns(parsed[0])
                if parsed is None or columns is None:
                    yield from _per_line(_decoded_lines(io.BytesIO(block), bad, first), extractor, rows)
                    first += block.count(b"\n")
                else:
                    yield from rows.add_arrays(columns, parsed[1] + first)
                    first += parsed[2]
    if len(rows):
        yield rows.take()


def _per_line(lines: Iterator[tuple[int, str]], extractor: RowExtractor, rows: Rows) -> Iterator[Piece]:
    """Parse each line with Python's json and add its record to ``rows``; report the bad ones."""
    extract, fast_key, bad = extractor.row, extractor.fast_key, extractor.bad
    loads = json.loads
    columns, numbers, room = rows.columns, rows.lines, rows.room()
    for lineno, line in lines:
        try:
            record = loads(line)
        except (ValueError, RecursionError) as exc:
            if line and not line.isspace():  # blank lines are not records
                bad.report("malformed_json", f"line {lineno}", json_message(exc, line), _FIX_JSON_LINE)
            continue
        # Inlined for the pretraining case (one top-level text field): ~30% faster than row().
        if fast_key is not None and type(record) is dict and type(value := record.get(fast_key)) is str:
            if ("\\ud" in line or "\\uD" in line) and (escape := lone_surrogate(value)):  # only an escape makes one
                bad.report("invalid_utf8", f"line {lineno}", f"the text holds {escape}, half of a surrogate pair: it has no "
                           "UTF-8 form", f"write the character itself, or both halves of its pair (\\ud83d\\ude00), {SKIP}")
                continue
            columns[0].append(value)
        else:
            row = extract(record, f"line {lineno}")
            if row is None:
                continue
            for column, value in zip(columns, row):
                column.append(value)
        numbers.append(lineno)
        if len(numbers) == room:
            yield rows.take()
            columns, numbers, room = rows.columns, rows.lines, rows.room()


def parse_block(block: bytes, keys: tuple[str, ...], *, first: int) -> tuple[list[pa.Array], np.ndarray, int] | None:
    """The values at ``keys`` of every record of a block of whole JSON lines (one array a key:
    strings, null where a key is absent or null), parsed at once by Arrow's JSON reader, each
    record's line (0-based, in the block) and the block's line breaks; None unless the block is
    clean: what Python's json would read line by line, value for value.

    Clean means: valid UTF-8; every line blank (only spaces, tabs, CRs) or one JSON object that
    starts and ends its line, whose ``keys`` hold strings or null or are absent; no ``Inf``/``-Inf``/``-NaN`` where a
    value may stand (Arrow reads them, Python's json does not); no run of digits as long as Python's
    ``int`` refuses; no line nested deeper than Python's json recurses (checked with it); nothing
    Arrow refuses (duplicate keys, escaped lone surrogates).
    A line starting with ``{`` cannot continue the line before it, so one object a line is
    exactly Arrow's row count. ``first``: the block's first line number (line 1 may start with a
    byte-order mark, as the line-by-line reader allows).
    """
    if first == 1 and block[:3] == b"\xef\xbb\xbf":
        block = b"   " + block[3:]  # JSON whitespace where the mark was: the same lines, the same values
    x = np.frombuffer(block, dtype=np.uint8)
    if not _utf8(block) or _nonfinite(block, x) or _long_digits(block, x):
        return None
    ends = np.flatnonzero(x == 10)
    breaks = len(ends)
    if not len(ends) or ends[-1] != len(x) - 1:
        ends = np.append(ends, len(x))  # the last line has no line break
    starts = np.concatenate(([0], ends[:-1] + 1))
    at = np.flatnonzero(ends > starts)  # empty lines are not records
    starts, ends = starts[at], ends[at]
    last = ends - 1
    last -= (x[last] == 13) & (last > starts)  # a CR before the line break
    record = np.ones(len(at), dtype=bool)
    for i in np.flatnonzero((x[starts] != 123) | (x[last] != 125)).tolist():  # not {...}: blank, or not clean
        line = block[starts[i] : ends[i]].strip(b" \t\r")
        if line:
            if line[:1] != b"{" or line[-1:] != b"}":
                return None
            continue
        record[i] = False
    at, starts, ends = at[record], starts[record], ends[record]
    if not len(at):
        return [pa.array([], pa.large_string()) for _ in keys], at, breaks
    if _deep(block, x, starts, ends):
        return None
    options = pa_json.ParseOptions(explicit_schema=pa.schema([(key, pa.string()) for key in keys]),
                                   unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(pa.BufferReader(block), parse_options=options,
                                  read_options=pa_json.ReadOptions(use_threads=False, block_size=len(block) + 1))
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(at):  # two objects on a line
        return None
    return [column.combine_chunks().cast(pa.large_string()) for column in table.columns], at, breaks


def _utf8(block: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64))
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(block)]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _nonfinite(block: bytes, x: np.ndarray) -> bool:
    """Whether ``Inf``, ``-Inf`` or ``-NaN`` may stand as a value (after ``:``, ``,`` or ``[`` and
    before ``,``, ``}`` or ``]``): Arrow reads them, Python's json refuses them (both read ``NaN``,
    ``Infinity`` and ``-Infinity``). Text in strings rarely looks like that; when it does, the
    block goes line by line."""
    n = len(x)
    i = np.flatnonzero(x[: max(n - 2, 0)] == 73)  # I
    i = i[(x[i + 1] == 110) & (x[i + 2] == 102)]  # Inf
    nan = np.flatnonzero(x[1 : max(n - 2, 1)] == 78) + 1  # N, after a first byte
    nan = nan[(x[nan - 1] == 45) & (x[nan + 1] == 97) & (x[nan + 2] == 78)] - 1  # -NaN
    for at, length in [(a, 3) for a in i.tolist()] + [(a, 4) for a in nan.tolist()]:
        end = at + length
        if block[end : end + 5] == b"inity":
            continue
        before = block[max(at - 64, 0) : at].rstrip(b" \t\r\n-")[-1:]
        after = block[end : end + 64].lstrip(b" \t\r\n")[:1]
        if before in (b":", b",", b"[") and after in (b",", b"}", b"]"):
            return True
    return False


def _long_digits(block: bytes, x: np.ndarray) -> bool:
    """Whether a run of digits may be longer than Python's ``int`` takes from a string
    (``sys.get_int_max_str_digits``): json refuses such an integer, Arrow reads it. Every run that
    long holds one of the bytes sampled at half that stride; a sampled digit's run is measured."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if not limit or len(block) <= limit:
        return False
    stride = max(limit // 2, 1)
    sampled = x[::stride]
    for at in (np.flatnonzero((sampled >= 48) & (sampled <= 57)) * stride).tolist():
        left = block[max(at - limit - 1, 0) : at]
        right = block[at : at + limit + 1]
        run = (len(left) - len(left.rstrip(_DIGITS))) + (len(right) - len(right.lstrip(_DIGITS)))
        if run > limit:
            return True
    return False


_DIGITS = b"0123456789"


def _deep(block: bytes, x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether a line may nest deeper than Python's json recurses: a line with fewer ``{``/``[``
    than half the recursion limit cannot; one with more is parsed by Python's json to see."""
    limit = max(sys.getrecursionlimit() // 2, 1)
    opens = np.flatnonzero((x | 0x20) == 0x7B)  # { and [ (0x7B, 0x5B): no other byte ORs to 0x7B
    if len(opens) < limit:
        return False
    per_line = np.bincount(np.searchsorted(ends, opens), minlength=len(ends) + 1)[: len(ends)]
    for i in np.flatnonzero(per_line >= limit).tolist():
        try:
            json.loads(block[starts[i] : ends[i]].decode("utf-8"))
        except (ValueError, RecursionError):
            return True
    return False


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
