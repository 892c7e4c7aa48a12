"""tsv and csv readers, streamed row by row; fields address columns by name.

::

    sms.tsv (header: true)           sentiment.txt (format: tsv, header: false,
    Label<TAB>SMS          line 1                   columns: [sentence, label])
    ham<TAB>Ok lar...      line 2    Wow... Loved this place.<TAB>1   line 1
    spam<TAB>Free entry... line 3    Crust is not good.<TAB>0         line 2

Dialects: tsv splits at tabs and nothing else (``csv.QUOTE_NONE``: a quote is an
ordinary character, as in the UCI corpora); csv is RFC 4180 (``"`` quotes values
holding commas, quotes or newlines; ``""`` is a quote). ``line`` is the 1-based
line where a record starts. Blank lines (empty, or whitespace with no delimiter:
a tsv line ``\\t`` is a row of two empty values) are not records. A row
with the wrong number of columns or broken quoting within its line is a bad record
(``bad_row``); invalid UTF-8 (text not valid in the input's ``encoding``) is
``invalid_utf8``. A UTF-8 byte-order mark is dropped, and the line ends (``\\n`` or
``\\r\\n``) are not part of the last value. So every line is part of a record, the
header, blank, or counted as dropped.

A quoted csv value that runs past the end of its line and then never closes, or is
broken by a quote that does not end it cleanly, is a file error naming the line where
the quote opened, in both ``on_error`` modes::

    id,text        line 1
    1,"open        line 2   InputError: "..., line 2: unterminated quoted value: the quote
    2,plain        line 3   opened on this line is never closed (lines 2-4, to the end of
    3,more         line 4   the file, would be one value)"

That is what the tools most trusted with csv do (PostgreSQL ``COPY``: "unterminated CSV
quoted field"; pandas: "EOF inside string starting at row N"; Python's csv module in
strict mode; DuckDB): once a quote is open, the lines after it are part of a value by
the grammar, and which of them were meant as rows is a guess. Guessing would turn part
of a value into records, or records into part of a value, without a count saying so.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from dataprep.errors import InputError

from ._common import SKIP, BadRecords, names_list, open_binary
from ._fields import Field, RowExtractor
from ._file import InputFile
from ._json import FieldColumns, Piece

DIALECTS = {
    "tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "strict": True},
    "csv": {"delimiter": ",", "quotechar": '"', "doublequote": True, "strict": True},
}
_FIX_ROW = {
    "tsv": f"give every row one value per column (a tsv value cannot hold a tab or a line break), {SKIP}",
    "csv": f'give every row one value per column, quoting values that hold commas, quotes or line breaks, {SKIP}',
}
_FIELD_LIMIT = 1 << 30  # the csv module's default of 128 KiB per value is too small for documents


class _Lines:
    """Decoded lines for ``csv.reader``; remembers the first line with invalid UTF-8 since the last row."""

    def __init__(self, fh, bad: BadRecords):
        self.fh, self.bad, self.number, self.error = fh, bad, 0, None  # error: (line number, message, raw line)

    def __iter__(self) -> Iterator[str]:
        for raw in self.fh:
            self.number += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.error is None:
                    self.error = (self.number, self.bad.text_message(exc, raw, "line"), raw)
                line = raw.decode("utf-8", "replace")
            if self.number == 1 and line[:1] == "\ufeff":
                line = line[1:]
            yield line

    def take_error(self) -> tuple[int, str, bytes] | None:
        error, self.error = self.error, None
        return error


def read_delimited(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    fmt, spec = file.format, file.spec
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    names: tuple[str, ...] | None = spec.columns
    fix_row = _FIX_ROW[fmt]
    extract = None
    rows = FieldColumns(len(fields), batch_size)
    with open_binary(file) as fh:
        lines = _Lines(fh, bad)
        reader = csv.reader(lines, **DIALECTS[fmt])
        end = 0  # last line of the previous row
        header_pending = spec.header
        while True:
            try:
                row = next(reader)
                error = None
            except StopIteration:
                break
            except csv.Error as exc:
                row, error = None, f"malformed {fmt} row: {_csv_error(exc)}"
            start, end = end + 1, reader.line_num
            if error is not None and end > start:
                _open_quote(file, start, end, error)
            utf8 = lines.take_error()
            if utf8 is None and row is not None and _blank(row):
                continue
            location = f"line {start}"
            if header_pending:
                header_pending = False
                if utf8 or error:
                    line, message = utf8[:2] if utf8 else (start, error)
                    fix = "fix the header row; it cannot be skipped like a record"
                    raise InputError(file.location, f"line {line}", message, fix)
                names = names or tuple(row)
                _check_header(file, fields, row, names, location)
                extract = _extractor(fields, bad, names)
                continue
            if utf8 is not None:
                bad.report("invalid_utf8", f"line {utf8[0]}", utf8[1], f"{bad.text_fix(utf8[2])}, {SKIP}")
                continue
            if error is not None:
                bad.report("bad_row", location, error, fix_row)
                continue
            if len(row) != len(names):
                message = f"row has {_count(len(row))}, expected {len(names)} ({names_list(names)})"
                bad.report("bad_row", location, message, fix_row)
                continue
            if extract is None:
                extract = _extractor(fields, bad, names)
            values = extract(dict(zip(names, row)), location)
            if values is not None and (piece := rows.add(values, start)):
                yield piece
    if rows.lines:
        yield rows.take()


def _open_quote(file: InputFile, start: int, end: int, error: str) -> None:
    """Raise for a quoted value that runs from line ``start`` over more lines and never closes or breaks."""
    if error.endswith("unexpected end of data"):
        message = (
            f"unterminated quoted value: the quote opened on this line is never closed"
            f" (lines {start}-{end}, to the end of the file, would be one value)"
        )
    else:
        message = f"the quoted value opened on this line runs over lines {start}-{end} and breaks there ({error})"
    fix = (
        f'close the quote on line {start} (a quote inside a quoted value is written twice: ""), or quote nothing'
        " there; a file whose rows cannot be told apart cannot be skipped record by record"
    )
    raise InputError(file.location, f"line {start}", message, fix)


def _blank(row: list[str]) -> bool:
    """An empty or whitespace-only line, which is not a record."""
    return not row or (len(row) == 1 and (not row[0] or row[0].isspace()))


def _count(n: int) -> str:
    return f"{n} column" if n == 1 else f"{n} columns"


def _csv_error(exc: csv.Error) -> str:
    if "new-line character" in str(exc):  # the csv module's hint about file modes does not apply here
        return "a carriage return (\\r) inside an unquoted value"
    return str(exc)


def _extractor(fields: list[Field], bad: BadRecords, names: tuple[str, ...]):
    present = f"columns present: {names_list(names)}"
    return RowExtractor(fields, bad, whole_names=True, missing_hint=lambda record, parts: present).row


def _check_header(file: InputFile, fields: list[Field], header: list[str], names: tuple[str, ...], location: str):
    """Problems no record could be read past: a header that does not fit ``columns:``, a field named twice."""
    path = file.location
    if file.spec.columns is not None and len(header) != len(names):
        message = f"the header has {len(header)} columns ({names_list(header)}), but `columns:` names {len(names)}"
        raise InputError(path, location, message, "make `columns:` name every column, in order")
    for field in fields:
        count = names.count(field.path)
        if count > 1:
            message = f"column {field.path!r} appears {count} times in the header"
            raise InputError(path, location, message, "name the columns with `columns:` (it replaces the header)")
