"""Input readers: files, folders and globs -> record batches of ``(text, source, line)``.

Two steps. :func:`resolve_inputs` turns a recipe's ``inputs:`` into a sorted,
de-duplicated list of :class:`InputFile` with format and compression resolved.
:func:`read_batches` streams one of them as Arrow record batches (:data:`SCHEMA`)
whose ``source`` and ``line`` columns say where every record came from::

    inputs: [{path: corpus/}]         corpus/a.jsonl      corpus/b.txt (txt_unit: line)
                                            |                   |
    resolve_inputs  ->  [InputFile(a.jsonl, jsonl, None), InputFile(b.txt, txt, None)]
    read_batches(files[1], 1, ...)  ->  text="first line"  source=1  line=1
                                        text="third line"  source=1  line=3   (line 2 blank)

Text is passed through untouched (no stripping, no normalization: later stages
do that). Bad records (invalid UTF-8, malformed JSON, missing or non-string text
field, a JSON value that is not an object) either raise :class:`InputError` or,
with ``on_error="skip"``, are counted by reason and logged (the first
``MAX_LOGGED`` per file, then one summary line).
"""

from __future__ import annotations

import collections
import glob
import gzip
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from dataprep import columns
from dataprep.errors import ConfigError, InputError

logger = logging.getLogger("dataprep.read")

FORMATS = ("txt", "jsonl", "json", "parquet", "arrow")
TXT_UNITS = ("file", "line", "paragraph")
ON_ERROR = ("raise", "skip")
DROP_REASONS = ("invalid_utf8", "malformed_json", "missing_field", "non_string_field", "not_an_object")
MAX_LOGGED = 10  # bad records logged one by one per file; the rest go into one summary line

SCHEMA = pa.schema(
    [
        pa.field(columns.TEXT, pa.large_string()),
        pa.field(columns.SOURCE, pa.int32()),
        pa.field(columns.LINE, pa.int64()),
    ]
)

_EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_TEMP_SUFFIXES = (".incomplete", ".tmp")
_HF_STATE, _HF_DICT = "state.json", "dataset_dict.json"
_BLOCK = 1 << 20  # read size for files and decompressors
_MISSING = object()

_FIX_UTF8 = (
    "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or set `on_error: skip` to drop such records"
)
_FIX_FIELD = "set `text_field:` to the field that holds the text, or `on_error: skip` to drop such records"
_FIX_JSON_LINE = (
    "fix the JSON on that line (one complete JSON object per line), or set `on_error: skip` to drop such records"
)
_FIX_OBJECT = 'make every record a JSON object such as {"text": "..."}, or set `on_error: skip` to drop other values'
_STRING_TYPES = (pa.types.is_string, pa.types.is_large_string, getattr(pa.types, "is_string_view", lambda _: False))


@dataclass(frozen=True)
class InputSpec:
    """One entry of a recipe's ``inputs:`` list.

    Attributes:
        path: A file, a folder (read recursively, sorted) or a glob (``**`` allowed).
        format: ``auto`` (from the extension), ``txt``, ``jsonl``, ``json``, ``parquet`` or ``arrow``.
        text_field: Field holding the text; dotted for nested fields (``meta.body``). Not used by txt.
        txt_unit: txt only: ``file`` (one document per file), ``line`` or ``paragraph``.
    """

    path: str
    format: str = "auto"
    text_field: str = "text"
    txt_unit: str = "file"


@dataclass(frozen=True)
class InputFile:
    """One file to read (or one HF ``save_to_disk`` dataset folder), format resolved."""

    path: Path
    format: str  # never "auto"
    compression: str | None  # None | "gzip" | "zstd"
    spec: InputSpec


# --- resolving inputs ----------------------------------------------------------------


def resolve_inputs(specs: Sequence[InputSpec], *, base_dir: Path) -> list[InputFile]:
    """Expand the recipe's inputs into the sorted, de-duplicated list of files to read.

    Folders are read recursively and globs expanded (``**`` allowed); the matches
    of each input are sorted, inputs keep the recipe's order, and a file matched
    twice is read once, under its first input. Hidden names and names ending in
    ``.incomplete`` or ``.tmp`` are skipped in folders and glob matches (a path
    named exactly is always read). A folder holding ``state.json`` (HF
    ``save_to_disk``) is one arrow input; one holding ``dataset_dict.json``
    gives one arrow input per split, in that file's order.

    Args:
        specs: The recipe's inputs.
        base_dir: Folder that relative paths are resolved against (the recipe's folder).

    Returns:
        The files, in read order; a file's index here is its ``source`` value.

    Raises:
        InputError: A path does not exist, a pattern matches nothing, a format
            cannot be inferred, or an option has an unknown value.
    """
    files: list[InputFile] = []
    seen: set[str] = set()
    for spec in specs:
        _check_spec(spec)
        for path in _expand(spec, Path(base_dir)):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(_input_file(path, spec))
    return files


def _check_spec(spec: InputSpec) -> None:
    if spec.format != "auto" and spec.format not in FORMATS:
        fix = f"set `format:` to one of: auto, {', '.join(FORMATS)}"
        raise InputError(spec.path, None, f"unknown format {spec.format!r}", fix)
    if spec.txt_unit not in TXT_UNITS:
        fix = f"set `txt_unit:` to one of: {', '.join(TXT_UNITS)}"
        raise InputError(spec.path, None, f"unknown txt_unit {spec.txt_unit!r}", fix)
    if not all(spec.text_field.split(".")):
        fix = "name a field, dotted for nested ones (e.g. `meta.body`)"
        raise InputError(spec.path, None, f"invalid text_field {spec.text_field!r}", fix)


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _expand(spec: InputSpec, base_dir: Path) -> list[Path]:
    """The paths one input names: files, HF dataset folders; sorted, temp and hidden names left out."""
    raw = os.path.expanduser(spec.path)
    full = os.path.abspath(os.path.join(base_dir, raw))  # an absolute `raw` stays as it is
    relative_fix = "check the path; relative paths are resolved against the recipe's folder"
    if os.path.exists(full):
        matches = [Path(full)]
    elif _has_magic(raw):
        parts = Path(raw).parts
        magic = next(i for i, part in enumerate(parts) if _has_magic(part))
        root = Path(os.path.abspath(os.path.join(base_dir, *parts[:magic])))
        pattern = os.path.join(glob.escape(str(root)), *parts[magic:])
        found = (Path(m) for m in glob.glob(pattern, recursive=True))  # `*` never matches hidden names
        matches = sorted(
            (m for m in found if not any(map(_skipped, m.parts[len(root.parts) :]))), key=lambda p: p.parts
        )
        if not matches:
            raise InputError(spec.path, None, f"no files match this pattern (looked for {pattern})", relative_fix)
    else:
        raise InputError(spec.path, None, f"path does not exist (resolved to {full})", relative_fix)
    out: list[Path] = []
    for match in matches:
        out.extend(_walk(match, spec) if match.is_dir() else [match])
    if not out:
        message = "no input files in this folder (hidden, *.incomplete and *.tmp names are skipped)"
        raise InputError(spec.path, None, message, "point `path:` at a folder with data files")
    return out


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


def _walk(folder: Path, spec: InputSpec) -> list[Path]:
    if spec.format in ("auto", "arrow"):
        if (folder / _HF_DICT).is_file():  # a DatasetDict: one input per split, in its order
            return [folder / split for split in _load_json_file(folder / _HF_DICT).get("splits", [])]
        if (folder / _HF_STATE).is_file():
            return [folder]
    out: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _skipped(entry.name):
            continue
        if entry.is_dir():
            out.extend(_walk(Path(entry.path), spec))
        elif entry.is_file():
            out.append(Path(entry.path))
    return out


def _input_file(path: Path, spec: InputSpec) -> InputFile:
    if path.is_dir():  # an HF dataset (split) folder
        if not (path / _HF_STATE).is_file():
            message = f"dataset split folder {path} has no {_HF_STATE}"
            raise InputError(spec.path, None, message, "save the dataset again with `save_to_disk`")
        return InputFile(path, "arrow", None, spec)
    stem, ext = os.path.splitext(path.name)
    compression = _COMPRESSIONS.get(ext.lower())
    if compression:
        ext = os.path.splitext(stem)[1]
    fmt = spec.format if spec.format != "auto" else _EXTENSIONS.get(ext.lower())
    if fmt is None:
        message = (
            f"cannot infer the format of {path} from its extension {ext or '(none)'!r}"
            f" (known: {', '.join(_EXTENSIONS)}, each optionally + .gz/.zst)"
        )
        raise InputError(spec.path, None, message, "set `format:` on this input")
    if compression and fmt in ("parquet", "arrow"):
        message = f"{path} is a compressed {fmt} file, which cannot be read in place"
        raise InputError(spec.path, None, message, f"decompress it; {fmt} files compress their columns internally")
    return InputFile(path, fmt, compression, spec)


def _load_json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fix = "save the dataset again with `save_to_disk`"
        raise InputError(str(path), None, f"cannot read dataset metadata: {exc}", fix) from exc


# --- reading -------------------------------------------------------------------------


def read_batches(
    file: InputFile, source_index: int, *, batch_size: int, on_error: str, drops: collections.Counter
) -> Iterator[pa.RecordBatch]:
    """Stream one input as record batches of :data:`SCHEMA`.

    Every batch holds exactly ``batch_size`` records except the last, so batching
    depends only on the file's content. Memory stays flat for txt in line and
    paragraph mode, jsonl (also .gz/.zst), parquet and arrow; txt in file mode
    and json arrays are loaded whole.

    ``line`` is the 1-based line number for txt and jsonl (where a paragraph
    starts; 1 in file mode), the 0-based record index for json arrays and the
    0-based row index for parquet/arrow (counted across the shards of a dataset).
    Blank lines (only whitespace) are not records in jsonl and txt line mode, and
    separate paragraphs in paragraph mode. A UTF-8 byte-order mark is dropped in
    json/jsonl and kept in txt.

    Args:
        file: The input, from :func:`resolve_inputs`.
        source_index: Value of the ``source`` column (the file's index in the run).
        batch_size: Most records per batch.
        on_error: ``raise`` or ``skip`` bad records.
        drops: Counter that skipped records are added to, by reason (see :data:`DROP_REASONS`).

    Returns:
        An iterator of record batches with columns ``text`` (large_string), ``source`` (int32), ``line`` (int64).

    Raises:
        InputError: A bad record with ``on_error="raise"``; always for a json file that
            does not parse as a whole or a file that cannot be read (corrupt, truncated).
        ConfigError: ``batch_size`` < 1 or an unknown ``on_error``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if file.format not in FORMATS:
        raise ConfigError(f"{file.path}: format must be one of {', '.join(FORMATS)}, got {file.format!r}")
    bad = _BadRecords(file, on_error, drops)
    if file.format == "txt":
        pieces = _TXT_READERS[file.spec.txt_unit](file, bad, batch_size)
    elif file.format in ("parquet", "arrow"):
        pieces = _rebatch(_read_columnar(file, bad, batch_size), batch_size)
    else:
        pieces = (_read_jsonl if file.format == "jsonl" else _read_json)(file, bad, batch_size)
    return _batches(file, source_index, pieces, bad)  # options are checked now, the file is read lazily


def _batches(file: InputFile, source_index: int, pieces: Iterator, bad: _BadRecords) -> Iterator[pa.RecordBatch]:
    source = pa.scalar(source_index, pa.int32())
    try:
        for texts, lines in pieces:
            if not isinstance(texts, pa.Array):
                texts, lines = pa.array(texts, pa.large_string()), pa.array(lines, pa.int64())
            yield pa.RecordBatch.from_arrays([texts, pa.repeat(source, len(texts)), lines], schema=SCHEMA)
    except (OSError, EOFError, zstandard.ZstdError, pa.ArrowException) as exc:
        fix = "check that the file is complete and not corrupt (re-download or re-create it)"
        raise InputError(str(file.path), None, f"cannot read the file: {exc}", fix) from exc
    finally:
        bad.finish()


class _BadRecords:
    """Raises on a bad record, or counts and logs it (``on_error: skip``)."""

    def __init__(self, file: InputFile, on_error: str, drops: collections.Counter):
        self.path, self.raise_ = str(file.path), on_error == "raise"
        self.drops, self.counts, self.logged = drops, collections.Counter(), 0

    def report(self, reason: str, location: str, message: str, fix: str) -> None:
        if self.raise_:
            raise InputError(self.path, location, message, fix)
        self.drops[reason] += 1
        self.counts[reason] += 1
        if self.logged < MAX_LOGGED:
            self.logged += 1
            logger.warning("%s, %s: %s; skipped (on_error: skip)", self.path, location, message)

    def report_rows(self, reason: str, rows: np.ndarray, first: int, message: object, fix: str) -> None:
        """Report bad rows of a columnar batch; ``message`` is a string or ``row -> string``."""
        shown = rows[: max(MAX_LOGGED - self.logged, 1 if self.raise_ else 0)]
        for row in map(int, shown):
            self.report(reason, f"row {first + row}", message(row) if callable(message) else message, fix)
        rest = len(rows) - len(shown)  # counted, not logged one by one
        if rest:
            self.drops[reason] += rest
            self.counts[reason] += rest

    def finish(self) -> None:
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


def _open(file: InputFile) -> BinaryIO:
    """Binary stream of the decompressed file, read in large blocks."""
    if file.compression == "gzip":
        return io.BufferedReader(gzip.open(file.path, "rb"), buffer_size=_BLOCK)
    if file.compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(
            open(file.path, "rb"), read_size=_BLOCK, read_across_frames=True, closefd=True
        )
        return io.BufferedReader(reader, buffer_size=_BLOCK)
    return open(file.path, "rb", buffering=_BLOCK)


def _utf8_message(exc: UnicodeDecodeError, data: bytes, scope: str) -> str:
    return f"invalid UTF-8 at byte {exc.start} of the {scope} ({exc.reason}: {data[exc.start:exc.end]!r})"


def _read_txt_file(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[list, list]]:
    with _open(file) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad.report("invalid_utf8", f"line {line}", _utf8_message(exc, data, "file"), _FIX_UTF8)
        return
    yield [text], [1]


def _read_txt_lines(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[list, list]]:
    texts: list[str] = []
    lines: list[int] = []
    with _open(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.report("invalid_utf8", f"line {lineno}", _utf8_message(exc, raw, "line"), _FIX_UTF8)
                continue
            if text.isspace():
                continue
            texts.append(text[:-1] if text[-1] == "\n" else text)
            lines.append(lineno)
            if len(texts) == batch_size:
                yield texts, lines
                texts, lines = [], []
    if texts:
        yield texts, lines


def _read_txt_paragraphs(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[list, list]]:
    texts: list[str] = []
    lines: list[int] = []
    parts: list[str] = []
    start = 0  # line where the current paragraph starts; 0 between paragraphs
    broken = False  # the current paragraph has invalid UTF-8 (already reported)
    with _open(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not broken:
                    bad.report("invalid_utf8", f"line {lineno}", _utf8_message(exc, raw, "line"), _FIX_UTF8)
                start, broken = start or lineno, True
                continue
            if not text.isspace():
                start = start or lineno
                parts.append(text[:-1] if text[-1] == "\n" else text)
                continue
            if start and not broken:
                texts.append("\n".join(parts))
                lines.append(start)
                if len(texts) == batch_size:
                    yield texts, lines
                    texts, lines = [], []
            parts, start, broken = [], 0, False
    if start and not broken:
        texts.append("\n".join(parts))
        lines.append(start)
    if texts:
        yield texts, lines


_TXT_READERS = {"file": _read_txt_file, "line": _read_txt_lines, "paragraph": _read_txt_paragraphs}


def _read_jsonl(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[list, list]]:
    parts = tuple(file.spec.text_field.split("."))
    top = parts[0] if len(parts) == 1 else None  # fast path for a top-level field
    loads = json.loads
    texts: list[str] = []
    lines: list[int] = []
    with _open(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.report("invalid_utf8", f"line {lineno}", _utf8_message(exc, raw, "line"), _FIX_UTF8)
                continue
            if lineno == 1 and line[:1] == "\ufeff":
                line = line[1:]
            try:
                record = loads(line)
            except (ValueError, RecursionError) as exc:
                if line and not line.isspace():  # blank lines are not records
                    bad.report("malformed_json", f"line {lineno}", _json_message(exc), _FIX_JSON_LINE)
                continue
            value = record.get(top, _MISSING) if top is not None and type(record) is dict else _MISSING
            if type(value) is not str:
                value = _check_record(record, parts, f"line {lineno}", bad)
                if value is None:
                    continue
            texts.append(value)
            lines.append(lineno)
            if len(texts) == batch_size:
                yield texts, lines
                texts, lines = [], []
    if texts:
        yield texts, lines


def _read_json(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[list, list]]:
    """A json file holds one array of records; it is loaded and parsed whole."""
    path, whole = str(file.path), "a json file is parsed as a whole, so `on_error: skip` cannot drop part of it"
    with _open(file) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message, fix = _utf8_message(exc, data, "file"), f"re-encode the file as UTF-8 ({whole})"
        raise InputError(path, f"line {line}", message, fix) from exc
    try:
        records = json.loads(text[1:] if text[:1] == "\ufeff" else text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip("\ufeff \t\r\n").startswith("{"):
            fix = "the file holds one JSON value per line: set `format: jsonl` on this input (or rename it to .jsonl)"
        else:
            fix = f"fix the JSON syntax ({whole})"
        raise InputError(path, f"line {exc.lineno}", _json_message(exc), fix) from exc
    except RecursionError as exc:
        raise InputError(path, None, "malformed JSON: nested too deeply", f"flatten the records ({whole})") from exc
    if type(records) is not list:
        message = f"expected a JSON array of records at the top level, got {_json_type(records)}"
        raise InputError(path, None, message, "make the file a JSON array of objects, or JSON Lines (`format: jsonl`)")
    parts = tuple(file.spec.text_field.split("."))
    texts: list[str] = []
    lines: list[int] = []
    for index, record in enumerate(records):
        value = _check_record(record, parts, f"record {index}", bad)
        if value is not None:
            texts.append(value)
            lines.append(index)
            if len(texts) == batch_size:
                yield texts, lines
                texts, lines = [], []
    if texts:
        yield texts, lines


def _json_message(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON: {exc.msg} (column {exc.colno})"
    return f"malformed JSON: {exc}" if isinstance(exc, ValueError) else "malformed JSON: nested too deeply"


def _json_type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _names(names: Sequence[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(str(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def _check_record(record: object, parts: tuple[str, ...], location: str, bad: _BadRecords) -> str | None:
    """The text of one parsed JSON record, or None after reporting why there is none."""
    if type(record) is not dict:
        bad.report("not_an_object", location, f"expected a JSON object, got {_json_type(record)}", _FIX_OBJECT)
        return None
    found, value = _lookup(record, parts)
    field = ".".join(parts)
    if not found:
        bad.report("missing_field", location, f"missing field {field!r} ({_why_missing(record, parts)})", _FIX_FIELD)
        return None
    if type(value) is not str:
        message = f"field {field!r} is {_json_type(value)}, expected a string"
        bad.report("non_string_field", location, message, _FIX_FIELD)
        return None
    return value


def _why_missing(record: dict, parts: tuple[str, ...]) -> str:
    value: object = record
    for depth, name in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(value, dict):
            return f"{where!r} is {_json_type(value)}, not an object"
        if name not in value:
            return f"keys present{f' in {where!r}' if where else ''}: {_names(list(value))}"
        value = value[name]
    return "found"  # not reached for a missing field


def _lookup(record: dict, parts: tuple[str, ...]) -> tuple[bool, object]:
    value: object = record
    for name in parts:
        if not isinstance(value, dict) or name not in value:
            return False, None
        value = value[name]
    return True, value


def iter_field(record: dict, dotted: str) -> tuple[bool, object]:
    """Look up a dotted field path in a JSON record.

    Args:
        record: A parsed JSON object.
        dotted: Field path, e.g. ``"text"`` or ``"meta.body"``.

    Returns:
        ``(True, value)`` when every step exists (value may be None for a JSON
        null), else ``(False, None)``.

    Example:
        >>> iter_field({"meta": {"body": "hi"}}, "meta.body")
        (True, 'hi')
    """
    return _lookup(record, tuple(dotted.split(".")))


# --- parquet and arrow: whole columns at a time ----------------------------------------


def _read_columnar(file: InputFile, bad: _BadRecords, batch_size: int) -> Iterator[tuple[pa.Array, pa.Array]]:
    parts = tuple(file.spec.text_field.split("."))
    batches = _parquet_batches(file, parts[0], batch_size) if file.format == "parquet" else _arrow_batches(file)
    row = 0
    for batch in batches:
        if batch.num_rows:
            texts, lines = _column_texts(batch, parts, row, bad)
            if len(texts):
                yield texts, lines
        row += batch.num_rows


def _parquet_batches(file: InputFile, top: str, batch_size: int) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(file.path, memory_map=True)
    if top in parquet.schema_arrow.names:
        yield from parquet.iter_batches(batch_size=batch_size, columns=[top])
        return
    names = parquet.schema_arrow.names  # no text column: hand on the row counts only
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        yield _empty_rows(rows, names)


def _empty_rows(rows: int, names: list[str]) -> pa.RecordBatch:
    """A batch standing in for rows that lack the text column; its schema lists the real columns."""
    schema = pa.schema([pa.field(name, pa.null()) for name in names])
    return pa.RecordBatch.from_arrays([pa.nulls(rows)] * len(names), schema=schema)


def _arrow_batches(file: InputFile) -> Iterator[pa.RecordBatch]:
    if file.path.is_dir():  # HF `save_to_disk`: state.json lists the shards in order
        state = _load_json_file(file.path / _HF_STATE)
        paths = [file.path / entry["filename"] for entry in state.get("_data_files", [])]
    else:
        paths = [file.path]
    for path in paths:
        with pa.memory_map(str(path), "r") as source:
            try:
                reader = pa.ipc.open_file(source)
            except pa.ArrowInvalid:  # not the IPC file format: the stream format `datasets` writes
                source.seek(0)
                yield from pa.ipc.open_stream(source)
            else:
                for index in range(reader.num_record_batches):
                    yield reader.get_batch(index)


def _column_texts(
    batch: pa.RecordBatch, parts: tuple[str, ...], first: int, bad: _BadRecords
) -> tuple[pa.Array, pa.Array]:
    """The text column of one batch, with its row numbers, minus the bad rows (reported)."""
    n, field = batch.num_rows, ".".join(parts)
    problems: list[tuple[str, np.ndarray, object]] = []  # (reason, bad rows, message or row -> message)
    every_row = np.ones(n, dtype=bool)
    index = batch.schema.get_field_index(parts[0])
    if index < 0:
        message = f"missing field {field!r} (columns present: {_names(batch.schema.names)})"
        return _drop_rows(bad, [("missing_field", every_row, message)], first, n, None)
    column, nulls = batch.column(index), []  # nulls: (path, null mask) of each enclosing struct
    for depth, name in enumerate(parts[1:], 1):
        where, kind = ".".join(parts[:depth]), column.type
        child = kind.get_field_index(name) if pa.types.is_struct(kind) else -1
        if child < 0:
            if pa.types.is_struct(kind):
                why = f"fields present in {where!r}: {_names([f.name for f in kind])}"
            else:
                why = f"{where!r} is {kind}, not a struct"
            return _drop_rows(bad, [("missing_field", every_row, f"missing field {field!r} ({why})")], first, n, None)
        nulls.append((where, column.is_null().to_numpy(zero_copy_only=False)))
        column = pc.struct_field(column, [child])
    missing = np.zeros(n, dtype=bool)
    for where, mask in nulls:
        if mask.any():
            problems.append(("missing_field", mask & ~missing, f"missing field {field!r} ({where!r} is null)"))
            missing |= mask
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not any(is_string(kind) for is_string in _STRING_TYPES):
        problems.append(("non_string_field", ~missing, f"field {field!r} is {column.type}, expected a string"))
        return _drop_rows(bad, problems, first, n, None)
    column = column.cast(pa.large_string())
    null = column.is_null().to_numpy(zero_copy_only=False) & ~missing
    if null.any():
        problems.append(("non_string_field", null, f"field {field!r} is null, expected a string"))
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        problems.append(_invalid_utf8_rows(column, missing | null))
    return _drop_rows(bad, problems, first, n, column)


def _invalid_utf8_rows(column: pa.Array, skip: np.ndarray) -> tuple[str, np.ndarray, object]:
    rows = np.zeros(len(column), dtype=bool)
    errors: dict[int, str] = {}
    for i, value in enumerate(column.view(pa.large_binary()).to_pylist()):
        if value is not None and not skip[i]:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                rows[i], errors[i] = True, _utf8_message(exc, value, "value")
    return "invalid_utf8", rows, errors.__getitem__


def _drop_rows(
    bad: _BadRecords, problems: list, first: int, n: int, column: pa.Array | None
) -> tuple[pa.Array, pa.Array]:
    """Report every bad row (in row order when raising) and return the good rows' texts and row numbers."""
    problems = [(reason, rows, message) for reason, rows, message in problems if rows.any()]
    if problems and bad.raise_:
        reason, rows, message = min(problems, key=lambda p: int(np.argmax(p[1])))
        row = int(np.argmax(rows))
        text = message(row) if callable(message) else message
        bad.report(reason, f"row {first + row}", text, _FIX_UTF8 if reason == "invalid_utf8" else _FIX_FIELD)
    keep = np.ones(n, dtype=bool)
    for reason, rows, message in problems:
        fix = _FIX_UTF8 if reason == "invalid_utf8" else _FIX_FIELD
        bad.report_rows(reason, np.flatnonzero(rows), first, message, fix)
        keep &= ~rows
    lines = pa.array(np.arange(first, first + n, dtype=np.int64))
    if column is None or not keep.any():
        return pa.array([], pa.large_string()), pa.array([], pa.int64())
    if keep.all():
        return column, lines
    mask = pa.array(keep)
    return column.filter(mask), lines.filter(mask)


def _rebatch(pieces: Iterator[tuple[pa.Array, pa.Array]], batch_size: int) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Cut pieces of any size into batches of exactly batch_size rows (the last may be shorter)."""
    texts: list[pa.Array] = []
    lines: list[pa.Array] = []
    held = 0
    for text, line in pieces:
        texts.append(text)
        lines.append(line)
        held += len(text)
        if held < batch_size:
            continue
        text, line = pa.concat_arrays(texts), pa.concat_arrays(lines)
        start = 0
        while held - start >= batch_size:
            yield text.slice(start, batch_size), line.slice(start, batch_size)
            start += batch_size
        texts, lines, held = [text.slice(start)], [line.slice(start)], held - start
    if held:
        yield pa.concat_arrays(texts), pa.concat_arrays(lines)
