"""Fields: which value of a record goes into which output column, and how it is checked.

A :class:`FieldSpec` names a source path and a kind; every kind ends up as one
``large_string`` column, so all readers hand on the same schema::

    kind      accepts                              stored as                      bad record reason
    text      a string                             the string, untouched          non_string_field
    any       a string, number or boolean          str / JSON spelling (1, true)  non_scalar_field
    json      any JSON value                       json.dumps(value)              non_json_field
    messages  [{role, content}] / [{from, value}]  json.dumps(canonical messages) bad_messages, non_text_content

A missing required field is ``missing_field``. An optional field (``required: false``)
that is absent or null becomes its kind's empty value: ``""`` for text and any,
``"null"`` for json, ``"[]"`` for messages.

Paths: dots step into objects, and a number steps into a list (``instances.0.output``:
the first item's ``output``; a key that is a number is tried first). In records read with
``records:`` (nested sources, :mod:`._nested`), each leading ``^`` steps up one level to
the record's parent: ``^context`` is the paragraph's context for a SQuAD question,
``^^title`` the article's title. tsv/csv column names are taken whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from dataprep import columns
from dataprep.errors import ConfigError

from ._common import SKIP, BadRecords, json_type, names_list
from ._messages import NON_TEXT, normalize_messages

FIELD_KINDS = ("text", "any", "json", "messages")
EMPTY = {"text": "", "any": "", "json": "null", "messages": "[]"}  # an optional field that is absent or null
REASONS = {"text": "non_string_field", "any": "non_scalar_field", "json": "non_json_field", "messages": "bad_messages"}
UP = "^"  # a leading ^ per level up: the record's parent (records read with `records:`)
_MISSING = object()
_FIX_OBJECT = 'make every record a JSON object such as {"text": "..."}, or set `on_error: skip` to drop other values'
_FIX_NON_TEXT = "keep text-only records (images, audio and other parts cannot be trained on here), " + SKIP
_SCALARS = (int, float, bool)


@dataclass(frozen=True)
class FieldSpec:
    """Where one output column comes from.

    Attributes:
        path: The source field, dotted for nested JSON/struct fields (``meta.body``), a
            number indexing a list (``answers.0.text``), a leading ``^`` per level up to
            a parent record (``^context``, with ``records:``); a column name for tsv/csv
            (taken whole, dots and all).
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
    parts: tuple[str, ...]  # without the leading ^s
    kind: str
    required: bool
    fix: str  # for a value of the wrong type or shape
    fix_missing: str  # for a record without the field
    up: int = 0  # levels up to the parent the path starts from (the ^s)
    roles: Mapping[str, str] | None = None  # messages: the input's role mapping

    def fix_for(self, reason: str) -> str:
        """The fix for a bad value reported under ``reason``."""
        return _FIX_NON_TEXT if reason == NON_TEXT else self.fix

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
            value = normalize_messages(value, self.path, self.roles)
            if type(value) is tuple:
                return value
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return REASONS[kind], f"field {self.path!r} is {json_type(value)}, which has no JSON form"


def compile_fields(
    fields: Mapping[str, FieldSpec],
    option: Callable[[str], str],
    *,
    roles: Mapping[str, str] | None = None,
    levels: int = 0,
) -> list[Field]:
    """Check the field mapping; ``option(name)`` is the recipe option a fix should point at.

    ``roles`` is the input's role mapping (messages fields); ``levels`` how many parent
    levels a record has (``records:``), the most ``^`` a path may start with.
    """
    if not fields:
        raise ConfigError("fields must name at least one output column")
    out = []
    for name, spec in fields.items():
        if name in (columns.SOURCE, columns.LINE):
            raise ConfigError(f"field name {name!r} is taken by a provenance column; rename it")
        if not isinstance(spec, FieldSpec):
            raise ConfigError(f"fields.{name} must be a FieldSpec, got {type(spec).__name__}")
        up, parts = split_path(spec.path)
        if not spec.path or not all(parts):
            raise ConfigError(f"fields.{name}.path: invalid path {spec.path!r}; name a field, dotted for nested ones")
        if up > levels:
            if levels:
                where = f"its records have {levels} parent level{'s' if levels > 1 else ''} (`records:`)"
            else:
                where = "a leading ^ reaches a parent record, which only inputs read with `records:` have"
            raise ConfigError(f"fields.{name}.path: {spec.path!r} goes {up} level{'s' if up > 1 else ''} up, but {where}")
        if spec.kind not in FIELD_KINDS:
            raise ConfigError(f"fields.{name}.kind must be one of {', '.join(FIELD_KINDS)}, got {spec.kind!r}")
        if option(name) == "text_template":
            fix_missing = f"make every {{field}} in `text_template:` name a field these records hold, {SKIP}"
        else:
            what = "the text" if option(name) == "text_field" else f"`{name}`"
            fix_missing = f"set `{option(name)}:` to the field that holds {what}, or `on_error: skip` to drop such records"
        fix = fix_missing
        if spec.kind == "messages":
            shape = "a list of {role, content} or {from, value} objects with string values"
            fix = f"make `{spec.path}` {shape}, {SKIP}"
        field_roles = roles if spec.kind == "messages" else None
        out.append(Field(name, spec.path, parts, spec.kind, spec.required, fix, fix_missing, up, field_roles))
    return out


def split_path(path: str) -> tuple[int, tuple[str, ...]]:
    """``"^^meta.title"`` -> ``(2, ("meta", "title"))``: levels up, then the steps."""
    rest = path.lstrip(UP)
    return len(path) - len(rest), tuple(rest.split("."))


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
        # (field, key to try first or None when nested or up, parts)
        self.plan = [
            (f, f.path, (f.path,))
            if whole_names
            else (f, f.parts[0] if len(f.parts) == 1 and not f.up else None, f.parts)
            for f in fields
        ]
        field, top, _ = self.plan[0]
        # The pretraining case: a reader may take a string at this key as the whole row, skipping row().
        self.fast_key = top if len(fields) == 1 and field.kind == "text" else None
        # Blocks of records parsed at once (the JSONL fast path): every field at a top-level key of its
        # own, text or optional (fine-tuning reads an optional history and system beside its text
        # fields); :meth:`fast_columns` says which blocks row() would read the same way.
        tops = [top for f, top, _ in self.plan if top is not None and (f.kind == "text" or not f.required)]
        self.fast_keys = tuple(tops) if len(tops) == len(fields) and len(set(tops)) == len(tops) else None

    def fast_columns(self, columns: list[pa.Array]) -> list[pa.Array] | None:
        """The columns :meth:`row` gives for records whose :attr:`fast_keys` values Arrow read as
        ``columns`` (strings, null where absent or null); None when a record needs :meth:`row`: a
        required text field null or absent, or a non-text field present (a string there is
        ``json``'s quoted text or a message list's error, row()'s to decide)."""
        out = []
        for (field, _, _), column in zip(self.plan, columns):
            if field.kind == "text":
                if column.null_count and field.required:
                    return None
                out.append(column.fill_null("") if column.null_count else column)
            elif column.null_count != len(column):
                return None
            else:
                out.append(pa.array([EMPTY[field.kind]] * len(column), pa.large_string()))
        return out

    def row(self, record: object, location: str, parents: tuple = ()) -> list[str] | None:
        """The record's column values, or None after reporting why it has none.

        ``parents`` are the record's parent levels, outermost first (``records:``); a
        field path with ``n`` leading ``^`` starts from ``parents[-n]``.
        """
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
                base = parents[-field.up] if field.up else record
                found, value = lookup(base, parts)
                if not found:
                    if field.required:
                        message = f"missing field {field.path!r} ({self.hint(base, parts)})"
                        self.bad.report("missing_field", location, message, field.fix_missing)
                        return None
                    row.append(EMPTY[field.kind])
                    continue
            result = field.convert(value)
            if type(result) is tuple:
                self.bad.report(result[0], location, result[1], field.fix_for(result[0]))
                return None
            row.append(result)
        return row


def lookup(record: object, parts: tuple[str, ...]) -> tuple[bool, object]:
    """Follow ``parts`` from ``record``: keys of objects, numbers (``"0"``) into lists."""
    value: object = record
    for name in parts:
        if isinstance(value, dict):
            if name not in value:
                return False, None
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return False, None
    return True, value


def _why_missing(record: object, parts: tuple[str, ...]) -> str:
    value: object = record
    for depth, name in enumerate(parts):
        where = ".".join(parts[:depth])
        if isinstance(value, list):
            if not name.isdigit():
                shown, example = (repr(where), f"{where}.0") if where else ("the value", "0")
                return f"{shown} is a list; index it with a number, e.g. {example}"
            if int(name) >= len(value):
                return f"{where!r} has {len(value)} item{'' if len(value) == 1 else 's'}"
            value = value[int(name)]
            continue
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
