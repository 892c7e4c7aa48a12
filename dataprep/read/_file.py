"""What one input is: :class:`InputSpec` (an entry of a recipe's ``inputs:``) and :class:`InputFile`
(one file it names, format, compression and encoding resolved). Every reader takes an
``InputFile``; this module imports no other reader, so any of them may import it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("txt", "jsonl", "json", "parquet", "arrow", "tsv", "csv")
TABULAR = ("tsv", "csv")
TXT_UNITS = ("file", "line", "paragraph")


@dataclass(frozen=True)
class InputSpec:
    """One entry of a recipe's ``inputs:`` list.

    Attributes:
        path: A file, a folder (read recursively, sorted) or a glob (``**`` allowed).
        format: ``auto`` (from the extension) or one of :data:`FORMATS`.
        text_field: Field holding the text; dotted for nested fields (``meta.body``). Not used by txt.
        txt_unit: txt only: ``file`` (one document per file), ``line`` or ``paragraph``.
        header: tsv/csv only: the first row names the columns (skipped as a record either way).
        columns: tsv/csv only: the column names, in order. Required when ``header`` is false
            (e.g. ``["sentence", "label"]``); with a header, they replace the header's names.
        roles: Messages fields: the dataset's role names -> the template's (``user``,
            ``assistant``, ``system``, ``tool``, ``tool_call``), over the ShareGPT defaults
            (see :mod:`._messages`). Kept as sorted ``(name, role)`` pairs; :attr:`role_map`
            is the mapping.
        records: json/jsonl only: a path such as ``data[*].paragraphs[*].qas[*]``; each
            element it finds is one record, whose fields may reach parents with ``^``
            (see :mod:`._nested`).
        text_template: Pretraining text built from fields, e.g. ``"{prompt}{canonical_solution}"``
            (see :mod:`._template`); instead of ``text_field``.
        encoding: Text formats (txt, jsonl, json, tsv, csv): the file's codec, ``utf-8`` (default),
            any text codec Python knows (``utf-8-sig``, ``latin-1``, ``cp1252``, ``utf-16``,
            ``utf-32``, ...) or ``auto``, detected per file from its first bytes (see
            :mod:`._encoding`). Parquet and Arrow strings are UTF-8 by definition.
    """

    path: str
    format: str = "auto"
    text_field: str = "text"
    txt_unit: str = "file"
    header: bool = True
    columns: tuple[str, ...] | None = None
    roles: tuple[tuple[str, str], ...] | None = None
    records: str | None = None
    text_template: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if isinstance(self.columns, list):  # from YAML; a tuple keeps the spec hashable
            object.__setattr__(self, "columns", tuple(self.columns))
        if isinstance(self.roles, Mapping):
            object.__setattr__(self, "roles", tuple(sorted(self.roles.items())))

    @property
    def role_map(self) -> dict[str, str] | None:
        """``roles`` as a mapping (None when the input has none)."""
        return None if self.roles is None else dict(self.roles)


@dataclass(frozen=True)
class InputFile:
    """One file to read (or one HF ``save_to_disk`` dataset folder), format and encoding resolved."""

    path: Path
    format: str  # never "auto"
    compression: str | None  # None | "gzip" | "zstd"
    spec: InputSpec
    entry: int = 0  # index of the recipe input (``inputs[entry]``) that named this file
    url: str | None = None  # the file's URL when it is not local (``path`` is then its name only)
    encoding: str = "utf-8"  # the codec the text is read with, by Python's name; never "auto" (utf-8 for parquet/arrow)

    @property
    def location(self) -> str:
        """The file as messages and the manifest name it: its URL or its local path."""
        return self.url or str(self.path)
