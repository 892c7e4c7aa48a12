"""Reading one input: :func:`read_records` (named fields) and :func:`read_batches` (pretraining text)."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping

import pyarrow as pa
import zstandard

from dataprep import columns
from dataprep.errors import ConfigError, InputError

from ._columnar import read_columnar
from ._common import ON_ERROR, BadRecords, lone_surrogate
from ._delimited import read_delimited
from ._fields import Field, FieldSpec, compile_fields, records_schema
from ._file import FORMATS, TABULAR, InputFile
from ._json import read_json, read_jsonl
from ._nested import parse_records
from ._template import join_pieces, parse_template, template_fields
from ._text import read_txt

SCHEMA = records_schema({columns.TEXT: FieldSpec(columns.TEXT)})  # read_batches: text, source, line


def read_records(
    file: InputFile,
    source_index: int,
    *,
    fields: Mapping[str, FieldSpec],
    batch_size: int,
    on_error: str,
    drops: collections.Counter,
    sink: list | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream one input as record batches with one large_string column per field.

    Each output column holds the value at a field's path, checked and converted by
    its kind (see :class:`FieldSpec`); ``source`` and ``line`` say where each record
    came from, as in :func:`read_batches`. A record with any bad field is dropped
    whole, for the first problem found (fields in the mapping's order)::

        fields={"prompt": FieldSpec("instruction"), "input": FieldSpec("input", required=False),
                "chat": FieldSpec("conversations", "messages")}
        {"instruction": "Add", "conversations": [{"from": "human", "value": "1+1"}]}   line 3
          -> prompt="Add"  input=""  chat='[{"role": "user", "content": "1+1"}]'  source=0  line=3

    Every batch holds exactly ``batch_size`` records except the last. Memory stays
    flat for jsonl, tsv, csv (also .gz/.zst), parquet and arrow; json arrays are
    loaded whole. A txt input holds one text and takes exactly one field of kind text
    (its path is not used). The input's ``roles`` apply to its messages fields, and with
    ``records`` each element found is a record (see :mod:`._nested`).

    Args:
        file: The input, from :func:`resolve_inputs`.
        source_index: Value of the ``source`` column (the file's index in the run).
        fields: Output column name -> :class:`FieldSpec`, in column order.
        batch_size: Most records per batch.
        on_error: ``raise`` or ``skip`` bad records.
        drops: Counter that skipped records are added to, by reason (see :data:`DROP_REASONS`).

    Returns:
        An iterator of record batches with :func:`records_schema` ``(fields)``.

    Raises:
        InputError: A bad record with ``on_error="raise"``; always for a json file or a
            tsv/csv header that does not parse, or a file that cannot be read.
        ConfigError: A bad field mapping (a ``^`` path beyond the parents ``records:`` gives),
            ``batch_size`` < 1, an unknown ``on_error``, or an input with ``text_template``.
    """
    if file.spec.text_template is not None:
        message = f"{file.path}: `text_template:` builds pretraining text; fine-tuning reads fields"
        raise ConfigError(f"{message}: remove it and map the template's fields with `fields:`")
    compiled = compile_fields(fields, lambda name: f"fields.{name}.path", **_field_options(file))
    return _read(file, source_index, compiled, batch_size, on_error, drops, sink=sink)


def read_batches(
    file: InputFile,
    source_index: int,
    *,
    batch_size: int,
    on_error: str,
    drops: collections.Counter,
    sink: list | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream one input as record batches of :data:`SCHEMA`: its ``text_field`` as ``text``.

    :func:`read_records` with the one text field ``{"text": FieldSpec(file.spec.text_field)}``,
    or the input's ``text_template`` filled in from its fields (see :mod:`._template`).

    ``line`` is the 1-based line number for txt, jsonl, tsv and csv (where a record
    or paragraph starts; 1 for a txt file read whole), the 0-based record index for
    json arrays and the 0-based row index for parquet/arrow (counted across the
    shards of a dataset). Blank lines (only whitespace) are not records in jsonl,
    tsv, csv and txt line mode, and separate paragraphs in paragraph mode. Text is
    decoded with the input's ``encoding`` (``file.encoding``); with ``utf-8`` a
    byte-order mark is dropped in json/jsonl/tsv/csv and kept in txt, with
    ``utf-8-sig`` it is dropped in txt too.

    Args:
        file: The input, from :func:`resolve_inputs`.
        source_index: Value of the ``source`` column (the file's index in the run).
        batch_size: Most records per batch.
        on_error: ``raise`` or ``skip`` bad records.
        drops: Counter that skipped records are added to, by reason (see :data:`DROP_REASONS`).
        sink: When given, each skipped record is also appended as ``(file, location, reason,
            message, fix)`` instead of logged (``validate --recipe``).

    Returns:
        An iterator of record batches with columns ``text`` (large_string), ``source`` (int32), ``line`` (int64).

    Raises:
        InputError: A bad record with ``on_error="raise"``; always for a json file that
            does not parse as a whole, a file that cannot be read (a .gz/.zst, parquet or
            arrow file cut short or corrupt), a UTF-16/32 file read as another codec, or a
            csv quote that never closes (see :mod:`._delimited`).
        ConfigError: ``batch_size`` < 1 or an unknown ``on_error``.
    """
    template = file.spec.text_template
    if template is None:
        fields = compile_fields({columns.TEXT: FieldSpec(file.spec.text_field)}, lambda _: "text_field", **_field_options(file))
        return _read(file, source_index, fields, batch_size, on_error, drops, sink=sink)
    literals, paths = parse_template(template)
    fields = compile_fields(template_fields(paths), lambda _: "text_template", **_field_options(file))
    return _read(file, source_index, fields, batch_size, on_error, drops, join=literals, sink=sink)


def _field_options(file: InputFile) -> dict:
    """What of an input's options the compiled fields need: its role mapping and parent levels."""
    records = file.spec.records
    return {"roles": file.spec.role_map, "levels": 0 if records is None else parse_records(records).levels}


def _read(
    file: InputFile,
    source_index: int,
    fields: list[Field],
    batch_size: int,
    on_error: str,
    drops: collections.Counter,
    join: list[str] | None = None,
    sink: list | None = None,
) -> Iterator[pa.RecordBatch]:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if file.format not in FORMATS:
        raise ConfigError(f"{file.path}: format must be one of {', '.join(FORMATS)}, got {file.format!r}")
    if file.format == "txt" and (len(fields) != 1 or fields[0].kind != "text" or join is not None):
        raise ConfigError(f"{file.path}: a txt input holds plain text; read it with exactly one field of kind text")
    bad = BadRecords(file, on_error, drops, sink)
    if file.format == "txt":
        pieces = read_txt(file, bad, batch_size)
    elif file.format in ("parquet", "arrow"):
        pieces = _rebatch(read_columnar(file, fields, bad, batch_size), batch_size)
    else:
        pieces = _ROW_READERS[file.format](file, fields, bad, batch_size)
    if join is not None:  # text_template: the fields joined into one text column
        pieces, schema = join_pieces(pieces, join), SCHEMA
    else:
        schema = records_schema(f.name for f in fields)
    return _batches(file, source_index, pieces, bad, schema)  # options are checked now, the file is read lazily


_ROW_READERS = {"jsonl": read_jsonl, "json": read_json, **{fmt: read_delimited for fmt in TABULAR}}


def _batches(
    file: InputFile, source_index: int, pieces: Iterator, bad: BadRecords, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    source = pa.scalar(source_index, pa.int32())
    try:
        for values, lines in pieces:
            if not isinstance(lines, pa.Array):
                values = [_text_array(file, column, lines) for column in values]
                lines = pa.array(lines, pa.int64())
            yield pa.RecordBatch.from_arrays([*values, pa.repeat(source, len(lines)), lines], schema=schema)
    except (OSError, EOFError, zstandard.ZstdError, pa.ArrowException) as exc:
        fix = "check that the file is complete and not corrupt (re-download or re-create it)"
        raise InputError(file.location, None, f"cannot read the file: {exc}", fix) from exc
    finally:
        bad.finish()


def _text_array(file: InputFile, column: list[str], lines: list[int]) -> pa.Array:
    """A column of values as Arrow text. A value with half a surrogate pair (JSON's ``\\udXXX``
    escapes make them; the pretraining text field reports them as bad records) has no UTF-8 form:
    the record is named in an error, whatever ``on_error`` says, never a bare traceback."""
    try:
        return pa.array(column, pa.large_string())
    except UnicodeEncodeError:
        at, escape = next((i, e) for i, value in enumerate(column) if (e := lone_surrogate(value)))
        where = f"record {lines[at]}" if file.format == "json" else f"line {lines[at]}"
        message = f"a field holds {escape}, half of a surrogate pair: it has no UTF-8 form"
        raise InputError(file.location, where, message, "write the character itself, or both halves of its pair (\\ud83d\\ude00)") from None


def _rebatch(pieces: Iterator[tuple[list[pa.Array], pa.Array]], batch_size: int) -> Iterator[tuple[list, pa.Array]]:
    """Cut pieces of any size into batches of exactly batch_size rows (the last may be shorter)."""
    held: list[list[pa.Array]] = []  # each piece as [*values, lines]
    count = 0
    for values, lines in pieces:
        held.append([*values, lines])
        count += len(lines)
        if count < batch_size:
            continue
        joined = [pa.concat_arrays(list(arrays)) for arrays in zip(*held)]
        start = 0
        while count - start >= batch_size:
            sliced = [array.slice(start, batch_size) for array in joined]
            yield sliced[:-1], sliced[-1]
            start += batch_size
        held, count = [[array.slice(start) for array in joined]], count - start
    if count:
        joined = [pa.concat_arrays(list(arrays)) for arrays in zip(*held)]
        yield joined[:-1], joined[-1]
