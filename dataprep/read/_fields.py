"""Fields: which value of a record goes into which output column, and how it is checked.

A :class:`FieldSpec` names a source path and a kind; every kind ends up as one
``large_string`` column, so all readers hand on the same schema::

    kind      accepts                              stored as                      bad record reason
    text      a string                             the string, untouched          non_string_field
    any       a string, number or boolean          str / JSON spelling (1, true)  non_scalar_field
    json      any JSON value                       json.dumps(value)              non_json_field
    messages  [{role, content}] / [{from, value}]  json.dumps([{role, content}])  bad_messages

A missing required field is ``missing_field``. An optional field (``required: false``)
that is absent or null becomes its kind's empty value: ``""`` for text and any,
``"null"`` for json, ``"[]"`` for messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from dataprep import columns
from dataprep.errors import ConfigError

from ._common import SKIP, BadRecords, json_type, names_list
from ._messages import normalize_messages

FIELD_KINDS = ("text", "any", "json", "messages")
EMPTY = {"text": "", "any": "", "json": "null", "messages": "[]"}  # an optional field that is absent or null
REASONS = {"text": "non_string_field", "any": "non_scalar_field", "json": "non_json_field", "messages": "bad_messages"}
_MISSING = object()
_FIX_OBJECT = 'make every record a JSON object such as {"text": "..."}, or set `on_error: skip` to drop other values'
_SCALARS = (int, float, bool)


@dataclass(frozen=True)
class FieldSpec:
    """Where one output column comes from.

    Attributes:
        path: The source field, dotted for nested JSON/struct fields (``meta.body``);
            a column name for tsv/csv (taken whole, dots and all).
        kind: ``text``, ``any``, ``json`` or ``messages`` (see the module docstring).
        required: A record without the field (or with null) is bad; when false it
            gets the kind's empty value instead.
    """

    path: str
    kind: str = "text"
    required: bool = True


@dataclass(frozen=True)
class Field:
    """A checked :class:`FieldSpec` plus what error messages call it."""

    name: str  # output column
    path: str
    parts: tuple[str, ...]
    kind: str
    required: bool
    fix: str  # for a value of the wrong type or shape
    fix_missing: str  # for a record without the field

    def convert(self, value: object) -> str | tuple[str, str]:
        """The column value for a present field, or ``(reason, message)``."""
        if value is None and not self.required:
            return EMPTY[self.kind]
        kind = self.kind
        if kind == "text":
            if type(value) is str:
                return value
            return REASONS[kind], f"field {self.path!r} is {json_type(value)}, expected a string"
        if kind == "any":
            if type(value) is str:
                return value
            if type(value) in _SCALARS:
                return json.dumps(value)
            message = f"field {self.path!r} is {json_type(value)}, expected a string, number or boolean"
            return REASONS[kind], message
        if kind == "messages":
            value = normalize_messages(value, self.path)
            if type(value) is str:
                return REASONS[kind], value
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return REASONS[kind], f"field {self.path!r} is {json_type(value)}, which has no JSON form"


def compile_fields(fields: Mapping[str, FieldSpec], option: Callable[[str], str]) -> list[Field]:
    """Check the field mapping; ``option(name)`` is the recipe option a fix should point at."""
    if not fields:
        raise ConfigError("fields must name at least one output column")
    out = []
    for name, spec in fields.items():
        if name in (columns.SOURCE, columns.LINE):
            raise ConfigError(f"field name {name!r} is taken by a provenance column; rename it")
        if not isinstance(spec, FieldSpec):
            raise ConfigError(f"fields.{name} must be a FieldSpec, got {type(spec).__name__}")
        parts = tuple(spec.path.split("."))
        if not spec.path or not all(parts):
            raise ConfigError(f"fields.{name}.path: invalid path {spec.path!r}; name a field, dotted for nested ones")
        if spec.kind not in FIELD_KINDS:
            raise ConfigError(f"fields.{name}.kind must be one of {', '.join(FIELD_KINDS)}, got {spec.kind!r}")
        what = "the text" if option(name) == "text_field" else f"`{name}`"
        fix_missing = f"set `{option(name)}:` to the field that holds {what}, or `on_error: skip` to drop such records"
        fix = fix_missing
        if spec.kind == "messages":
            shape = "a list of {role, content} or {from, value} objects with string values"
            fix = f"make `{spec.path}` {shape}, {SKIP}"
        out.append(Field(name, spec.path, parts, spec.kind, spec.required, fix, fix_missing))
    return out


def records_schema(names: Iterable[str]) -> pa.Schema:
    """The schema of :func:`~dataprep.read.read_records` batches for these field names (or a ``fields`` mapping).

    One large_string column per field, in order, then ``source`` (int32) and ``line`` (int64).
    """
    return pa.schema(
        [pa.field(name, pa.large_string()) for name in names]
        + [pa.field(columns.SOURCE, pa.int32()), pa.field(columns.LINE, pa.int64())]
    )


class RowExtractor:
    """Turns parsed records (dicts) into rows of column values; reports and drops bad ones.

    Args:
        fields: The compiled fields.
        bad: Where bad records go.
        whole_names: Take each path as one key (tsv/csv column names) instead of splitting at dots.
        missing_hint: ``(record, parts) -> str`` explaining a missing field; defaults to the keys present.
    """

    def __init__(
        self,
        fields: list[Field],
        bad: BadRecords,
        *,
        whole_names: bool = False,
        missing_hint: Callable[[dict, tuple[str, ...]], str] | None = None,
    ):
        self.bad = bad
        self.hint = missing_hint or _why_missing
        # (field, key to try first or None when nested, parts)
        self.plan = [
            (f, f.path, (f.path,)) if whole_names else (f, f.parts[0] if len(f.parts) == 1 else None, f.parts)
            for f in fields
        ]
        field, top, _ = self.plan[0]
        # The pretraining case: a reader may take a string at this key as the whole row, skipping row().
        self.fast_key = top if len(fields) == 1 and field.kind == "text" else None

    def row(self, record: object, location: str) -> list[str] | None:
        """The record's column values, or None after reporting why it has none."""
        if type(record) is not dict:
            message = f"expected a JSON object, got {json_type(record)}"
            self.bad.report("not_an_object", location, message, _FIX_OBJECT)
            return None
        row = []
        for field, top, parts in self.plan:
            value = record.get(top, _MISSING) if top is not None else _MISSING
            if type(value) is str and field.kind in ("text", "any"):  # the common case, checked first
                row.append(value)
                continue
            if value is _MISSING:
                found, value = lookup(record, parts)
                if not found:
                    if field.required:
                        message = f"missing field {field.path!r} ({self.hint(record, parts)})"
                        self.bad.report("missing_field", location, message, field.fix_missing)
                        return None
                    row.append(EMPTY[field.kind])
                    continue
            result = field.convert(value)
            if type(result) is tuple:
                self.bad.report(result[0], location, result[1], field.fix)
                return None
            row.append(result)
        return row


def lookup(record: dict, parts: tuple[str, ...]) -> tuple[bool, object]:
    value: object = record
    for name in parts:
        if not isinstance(value, dict) or name not in value:
            return False, None
        value = value[name]
    return True, value


def _why_missing(record: dict, parts: tuple[str, ...]) -> str:
    value: object = record
    for depth, name in enumerate(parts):
        where = ".".join(parts[:depth])
        if not isinstance(value, dict):
            return f"{where!r} is {json_type(value)}, not an object"
        if name not in value:
            return f"keys present{f' in {where!r}' if where else ''}: {names_list(list(value))}"
        value = value[name]
    return "found"  # not reached for a missing field


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
    return lookup(record, tuple(dotted.split(".")))
