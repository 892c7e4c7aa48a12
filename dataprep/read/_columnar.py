"""parquet and arrow readers: whole columns at a time.

Text columns stay in Arrow (cast to large_string, nulls and invalid UTF-8 found with
vectorised checks). Other kinds go through Python one batch at a time, converted the
way JSON records are. Field paths step into struct fields by name and into list
columns by number (``instances.0.output``), both vectorised; a row whose list is too
short or null is missing the field. ``line`` is the 0-based row index, counted across
the shards of an HF dataset. Bad rows are reported in row order when raising.

A file cut short or corrupt is a file error (:class:`~dataprep.errors.InputError`), in
both ``on_error`` modes: parquet and the Arrow IPC file format find it in their footer;
an Arrow IPC *stream* (what ``datasets`` writes) must end with its end-of-stream marker,
since one cut between two batches otherwise reads as a shorter, complete stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataprep import storage
from dataprep.errors import InputError

from ._common import SKIP, BadRecords, load_json_file, names_list, utf8_message
from ._fields import EMPTY, REASONS, Field
from ._file import InputFile
from ._inputs import HF_STATE

Piece = tuple[list[pa.Array], pa.Array]
Problem = tuple[str, np.ndarray, object, str]  # (reason, bad rows, message or row -> message, fix)
_STRING_TYPES = (pa.types.is_string, pa.types.is_large_string, getattr(pa.types, "is_string_view", lambda _: False))
_LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
_FIX_DAMAGED = "the file is damaged or incomplete: download, copy or write it again"
_ARROW_FILE_MAGIC = b"ARROW1"
_ARROW_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # continuation marker, then a message of length 0
_FIX_UTF8 = f"the program that wrote the file stored bytes that are not UTF-8 in a string column: write it again with the text decoded, {SKIP}"


def read_columnar(file: InputFile, fields: list[Field], bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    if file.format == "parquet":
        batches = _parquet_batches(file, list(dict.fromkeys(f.parts[0] for f in fields)), batch_size)
    else:
        batches = arrow_batches(file, batch_size)
    row = 0
    for batch, names in batches:
        if batch.num_rows:
            values, lines = _batch_values(batch, names, fields, row, bad)
            if len(lines):
                yield values, lines
        row += batch.num_rows


def _parquet_batches(file: InputFile, tops: list[str], batch_size: int) -> Iterator[tuple[pa.RecordBatch, list]]:
    try:
        parquet = pq.ParquetFile(storage.open_random(file.url)) if file.url else pq.ParquetFile(file.path, memory_map=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(file.location, None, f"not a complete parquet file (truncated or corrupt): {exc}", _FIX_DAMAGED) from exc
    names = parquet.schema_arrow.names
    present = [top for top in tops if top in names]
    if present:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=present):
            yield batch, names
        return
    for group in range(parquet.num_row_groups):  # no field is there: hand on the row counts only
        rows = parquet.metadata.row_group(group).num_rows
        yield pa.RecordBatch.from_arrays([pa.nulls(rows)], names=[""]), names


def arrow_batches(file: InputFile, batch_size: int) -> Iterator[tuple[pa.RecordBatch, list]]:
    if not file.url and file.path.is_dir():  # HF `save_to_disk`: state.json lists the shards in order
        state = load_json_file(file.path / HF_STATE)
        paths = [file.path / entry["filename"] for entry in state.get("_data_files", [])]
    else:
        paths = [file.path]
    for path in paths:
        location = file.url or str(path)
        with (storage.open_random(file.url) if file.url else pa.memory_map(str(path), "r")) as source:
            if source.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC:  # the IPC file format
                source.seek(0)
                try:
                    reader = pa.ipc.open_file(source)
                except pa.ArrowInvalid as exc:
                    message = f"not a complete Arrow IPC file (truncated or corrupt: no footer): {exc}"
                    raise InputError(location, None, message, _FIX_DAMAGED) from exc
                batches = (reader.get_batch(index) for index in range(reader.num_record_batches))
            else:  # the stream format `datasets` writes
                source.seek(0)
                batches = _stream_batches(source, location)
            for batch in batches:  # sliced (zero-copy) so Python conversions stay batch-sized
                for start in range(0, batch.num_rows, batch_size):
                    yield batch.slice(start, batch_size), batch.schema.names


def _stream_batches(source, location: str) -> Iterator[pa.RecordBatch]:
    """The batches of an Arrow IPC stream, which must end with its end-of-stream marker."""
    try:
        yield from pa.ipc.open_stream(source)
    except pa.ArrowInvalid as exc:
        raise InputError(location, None, f"truncated or corrupt Arrow IPC stream: {exc}", _FIX_DAMAGED) from exc
    end = source.tell()
    source.seek(max(end - len(_ARROW_EOS), 0))
    if source.read(len(_ARROW_EOS)) != _ARROW_EOS:
        message = f"truncated: the Arrow IPC stream ends after {end} bytes without its end-of-stream marker"
        raise InputError(location, None, message, _FIX_DAMAGED)


def _batch_values(
    batch: pa.RecordBatch, names: list[str], fields: list[Field], first: int, bad: BadRecords
) -> Piece:
    """The field columns of one batch, with row numbers, minus the bad rows (reported)."""
    n = batch.num_rows
    taken = np.zeros(n, dtype=bool)  # rows found bad so far; a row is dropped for its first problem only
    problems: list[Problem] = []
    values: list[pa.Array] = []
    for field in fields:
        column, found = _field_values(batch, names, field)
        for reason, rows, message, fix in found:
            rows = rows & ~taken
            if rows.any():
                problems.append((reason, rows, message, fix))
                taken |= rows
        values.append(pa.nulls(n, pa.large_string()) if column is None else column)
    if problems and bad.raise_:
        reason, rows, message, fix = min(problems, key=lambda p: int(np.argmax(p[1])))
        row = int(np.argmax(rows))
        bad.report(reason, f"row {first + row}", message(row) if callable(message) else message, fix)
    for reason, rows, message, fix in problems:
        bad.report_rows(reason, np.flatnonzero(rows), first, message, fix)
    lines = pa.array(np.arange(first, first + n, dtype=np.int64))
    if not taken.any():
        return values, lines
    keep = pa.array(~taken)
    return [value.filter(keep) for value in values], lines.filter(keep)


def _field_values(batch: pa.RecordBatch, names: list[str], field: Field) -> tuple[pa.Array | None, list[Problem]]:
    """One field's column as large_string (None when no row has it) and its bad rows."""
    n, path, parts = batch.num_rows, field.path, field.parts

    def absent(why: str) -> tuple[pa.Array | None, list[Problem]]:
        if not field.required:
            return pa.array([EMPTY[field.kind]] * n, pa.large_string()), []
        return None, [("missing_field", np.ones(n, dtype=bool), f"missing field {path!r} ({why})", field.fix_missing)]

    index = batch.schema.get_field_index(parts[0])
    if index < 0:
        return absent(f"columns present: {names_list(names)}")
    column = batch.column(index)
    gaps: list[tuple[np.ndarray, object]] = []  # (rows where a step finds nothing, message or row -> message)
    for depth, name in enumerate(parts[1:], 1):
        where, kind = ".".join(parts[:depth]), column.type
        null = column.is_null().to_numpy(zero_copy_only=False)
        if any(is_list(kind) for is_list in _LIST_TYPES):
            if not name.isdigit():
                return absent(f"{where!r} is a list; index it with a number, e.g. {where}.0")
            lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
            short = ~null & (lengths <= int(name))
            gaps.append((null, f"missing field {path!r} ({where!r} is null)"))
            gaps.append((short, partial(_too_short, path, where, lengths)))
            column = _list_item(column, int(name), ~null & ~short)
            continue
        child = kind.get_field_index(name) if pa.types.is_struct(kind) else -1
        if child < 0:
            if pa.types.is_struct(kind):
                return absent(f"fields present in {where!r}: {names_list([f.name for f in kind])}")
            return absent(f"{where!r} is {kind}, not a struct")
        gaps.append((null, f"missing field {path!r} ({where!r} is null)"))
        column = pc.struct_field(column, [child])
    problems: list[Problem] = []
    missing = np.zeros(n, dtype=bool)
    for mask, message in gaps:
        if mask.any() and field.required:
            problems.append(("missing_field", mask & ~missing, message, field.fix_missing))
        missing |= mask
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if field.kind in ("text", "any") and any(is_string(kind) for is_string in _STRING_TYPES):
        return _string_values(column.cast(pa.large_string()), field, missing, problems)
    if field.kind == "text":  # a column of another type: every value there is bad
        wrong = ~missing
        if not field.required:
            wrong &= ~column.is_null().to_numpy(zero_copy_only=False)
        message = f"field {path!r} is {column.type}, expected a string"
        problems.append((REASONS["text"], wrong, message, field.fix))
        return pa.array([EMPTY["text"]] * n, pa.large_string()), problems
    return _python_values(column, field, missing, problems)


def _string_values(column: pa.Array, field: Field, missing: np.ndarray, problems: list[Problem]):
    null = column.is_null().to_numpy(zero_copy_only=False) & ~missing
    if null.any() and field.required:
        expected = "a string" if field.kind == "text" else "a string, number or boolean"
        problems.append((REASONS[field.kind], null, f"field {field.path!r} is null, expected {expected}", field.fix))
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        problems.append(_invalid_utf8_rows(column, missing | null))
    if not field.required:  # a null parent struct makes the child null too
        column = column.fill_null(EMPTY[field.kind])
    return column, problems


def _python_values(column: pa.Array, field: Field, missing: np.ndarray, problems: list[Problem]):
    """Values converted one by one, as for JSON records (json, messages, and `any` over numbers or booleans)."""
    out: list[str | None] = []
    errors: dict[str, dict[int, str]] = {}
    for row, value in enumerate(column.to_pylist()):
        if missing[row]:
            out.append(None if field.required else EMPTY[field.kind])
            continue
        result = field.convert(value)
        if type(result) is tuple:
            errors.setdefault(result[0], {})[row] = result[1]
            result = None
        out.append(result)
    for reason, messages in errors.items():
        rows = np.zeros(len(out), dtype=bool)
        rows[list(messages)] = True
        problems.append((reason, rows, messages.__getitem__, field.fix_for(reason)))
    return pa.array(out, pa.large_string()), problems


def _too_short(path: str, where: str, lengths: np.ndarray, row: int) -> str:
    count = int(lengths[row])
    return f"missing field {path!r} ({where!r} has {count} item{'' if count == 1 else 's'})"


def _list_item(column: pa.Array, index: int, ok: np.ndarray) -> pa.Array:
    """Item ``index`` of each list in ``column`` where ``ok``, null elsewhere."""
    taken = pc.list_flatten(pc.list_slice(column, index, index + 1))  # one value per ok row, in order
    if not ok.any():
        return pa.nulls(len(column), taken.type)
    positions = np.cumsum(ok) - 1
    return taken.take(pa.array(np.where(ok, positions, 0), mask=~ok))


def _invalid_utf8_rows(column: pa.Array, skip: np.ndarray) -> Problem:
    rows = np.zeros(len(column), dtype=bool)
    errors: dict[int, str] = {}
    for i, value in enumerate(column.view(pa.large_binary()).to_pylist()):
        if value is not None and not skip[i]:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                rows[i], errors[i] = True, utf8_message(exc, value, "value")
    return "invalid_utf8", rows, errors.__getitem__, _FIX_UTF8
