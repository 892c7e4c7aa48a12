"""Typed exceptions. The library raises these; only ``cli.py`` turns them into messages.

Every message names what is wrong, where (file, line/record, recipe path) and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class DataprepError(Exception):
    """Base class of every error dataprep raises on purpose."""


@dataclass(frozen=True)
class Issue:
    """One problem found while checking something, with where it is."""

    where: str  # e.g. "packing.seq_len" or "data.jsonl:12"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RecipeError(DataprepError):
    """The recipe is invalid. Carries every issue found, not just the first."""

    def __init__(self, source: str, issues: list[Issue]):
        self.source = source
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{source}: recipe has {len(self.issues)} problem(s):\n{lines}")

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.source, self.issues))


class InputError(DataprepError):
    """A record or file of the input cannot be read as the recipe says."""

    def __init__(self, path: str, location: str | None, message: str, fix: str | None = None):
        self.path = path
        self.location = location  # "line 12", "record 3", "row 7" or None for the whole file
        self.reason_message = message
        self.fix = fix
        where = f"{path}, {location}" if location else path
        text = f"{where}: {message}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.path, self.location, self.reason_message, self.fix))


class DataLossError(DataprepError):
    """A run would lose more data than the recipe allows, or write an empty dataset or split."""

    def __init__(self, message: str, fix: str):
        self.reason_message, self.fix = message, fix
        super().__init__(f"{message}\n  fix: {fix}")

    def __reduce__(self):
        return (type(self), (self.reason_message, self.fix))


class TokenizerError(DataprepError):
    """The tokenizer cannot be loaded or lacks what the recipe needs."""


class OutputError(DataprepError):
    """The output path cannot be written as asked (exists, not a dataset, ...)."""


class ConfigError(DataprepError):
    """Options that cannot work together, found after the recipe passed its schema."""
