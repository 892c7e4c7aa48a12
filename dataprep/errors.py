"""Typed exceptions: every error dataprep raises on purpose is defined here, and only here.

The library raises these; only ``cli.py`` turns them into messages (``error: ...`` and
``fix: ...``) and exit codes. Every message names what is wrong and where (file, line/record,
recipe path); the fix says what to do about it. A raise site that knows the fix passes it
(``ConfigError(message, fix=...)``, or a message ending in ``"\\n  fix: ..."``); otherwise the
class's :attr:`~DataprepError.default_fix` is shown::

    DataprepError
    ├── RecipeError        the recipe file: unreadable, or keys/values against its schema
    ├── ConfigError        options that cannot work together (recipe, --set, command options)
    │   └── TemplateError  a pair or chat template that cannot render any record
    │       ├── TemplateRaised  the chat template's raise_exception() for one conversation
    │       └── RenderFailed    (internal) the template failed on one conversation
    ├── DataError          the data: a record, an input file's contents, a built dataset
    │   ├── InputError     a record or input file that cannot be read as the recipe says
    │   │   └── ManifestError  a manifest.json that does not match its schema (every key named)
    │   ├── RecordProblem  one record that cannot be rendered (``reason`` is its drop counter)
    │   └── DataLossError  a run that would lose more data than allowed, or write nothing
    ├── TokenizerError     the tokenizer cannot be loaded, or lacks what the recipe needs
    ├── OutputError        the output path cannot be written as asked
    │   └── ResumeError    ``run --resume`` cannot continue the run in ``OUT.incomplete``
    └── EngineError        the Ray engine could not start or finish the chunk work

:class:`Terminated` is an internal signal, not an error, and :class:`BadKey` an internal
exception the manifest reader turns into a :class:`ManifestError` (see each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

FIX_LINE = "\n  fix: "  # how a message carries its fix: on its own line, after the message


class DataprepError(Exception):
    """Base class of every error dataprep raises on purpose.

    Args:
        message: What is wrong, and where.
        fix: What to do about it; None to leave it to :attr:`default_fix`.
    """

    default_fix: ClassVar[str] = "see the message above; `dataprep COMMAND --help` lists each command's options"

    def __init__(self, message: str = "", fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}{FIX_LINE}{fix}")

    def explain(self) -> tuple[str, str]:
        """What the user reads: the message, and the fix its text ends with (``fix=``, or a
        message written with a ``fix:`` line), else :attr:`default_fix`."""
        message, found, fix = str(self).partition(FIX_LINE)
        return message, fix if found else self.default_fix


@dataclass(frozen=True)
class Issue:
    """One problem found while checking something, with where it is."""

    where: str  # e.g. "packing.seq_len" or "data.jsonl:12"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RecipeError(DataprepError):
    """The recipe is invalid. Carries every issue found, not just the first."""

    default_fix = (
        "correct the recipe as each line says (`dataprep schema recipe` lists every key and value), then check it "
        "with `dataprep check-recipe RECIPE`"
    )

    def __init__(self, source: str, issues: list[Issue]):
        self.source = source
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{source}: recipe has {len(self.issues)} problem(s):\n{lines}")

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.source, self.issues))


class ConfigError(DataprepError):
    """Options that cannot work together, found after the recipe passed its schema (the recipe,
    ``--set`` values, command options, the engine)."""

    default_fix = (
        "change the setting or option the message names (`dataprep schema recipe` lists the recipe's keys, "
        "`dataprep COMMAND --help` the options)"
    )


class TemplateError(ConfigError):
    """A template is invalid or cannot render any record (bad syntax, unknown name, no chat
    template in the tokenizer, ...)."""

    default_fix = "change the recipe's `template:` (or `chat.template:`) as the message says, or choose another template"


class TemplateRaised(TemplateError):
    """The chat template itself called ``raise_exception(message)`` for one conversation.

    A :class:`TemplateError` (the template rejects the input); the fine-tuning worker counts it
    as a per-record drop (``template_raised``), since another conversation may render fine.
    """

    default_fix = "fix the conversation as the template's message says, or set `on_error: skip` to count such records as dropped"


class RenderFailed(TemplateError):
    """Internal: the chat template failed on one conversation (a Jinja or type error), not at
    compile time. ``ChatTemplate.render_with_targets`` turns it into a :class:`RecordProblem`
    (``template_failed``); only a direct caller of ``ChatTemplate.render`` sees it, as a
    :class:`TemplateError`."""

    default_fix = "give the template messages in the shape it expects (see its source), or set `on_error: skip`"


class DataError(DataprepError):
    """A problem in the data, not in the recipe or settings: a record, an input file's contents,
    or a built dataset (damaged shards, rows that contradict their manifest)."""

    default_fix = (
        "correct the data the message names; rebuild a damaged dataset with `dataprep run RECIPE --out PATH --overwrite`"
    )


class InputError(DataError):
    """A record or file of the input cannot be read as the recipe says."""

    default_fix = "correct the file or record the message names, or set `on_error: skip` to count bad records as dropped"

    def __init__(self, path: str, location: str | None, message: str, fix: str | None = None):
        self.path = path
        self.location = location  # "line 12", "record 3", "row 7" or None for the whole file
        self.reason_message = message
        where = f"{path}, {location}" if location else path
        super().__init__(f"{where}: {message}", fix)

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.path, self.location, self.reason_message, self.fix))


class ManifestError(InputError):
    """A ``manifest.json`` (read, or built by the run) does not match its schema. Carries every
    issue found, each with its key path (``counts.tokens``, ``splits.train.shards[0].sha``), as
    :class:`RecipeError` does; ``location`` names the keys, comma-separated.

    An :class:`InputError`, so every ``except InputError`` that reads a dataset catches it too.
    """

    default_fix = "rebuild the dataset with `dataprep run RECIPE --out PATH --overwrite`"

    def __init__(self, source: str, issues: list[Issue], fix: str | None = None):
        self.source = source
        self.issues = list(issues)
        keys = ", ".join(dict.fromkeys(i.where for i in self.issues))
        lines = "".join(f"\n  - {issue}" for issue in self.issues)
        super().__init__(source, keys, f"the manifest does not match manifest.schema.json:{lines}", fix)

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.source, self.issues, self.fix))


class RecordProblem(DataError):
    """One record cannot be rendered. ``reason`` is a short code to count drops under.

    Reasons: ``missing_field``, ``empty_field``, ``bad_type``, ``unknown_role``, ``no_target``
    and the chat template's own (``target_not_found``, ``no_end_of_turn``, ...). The caller
    adds the file and line (``InputError``) or counts ``dropped_<reason>``.
    """

    default_fix = (
        "fix the record, map the right field under `fields:`, or set `on_error: skip` to count such records as dropped"
    )

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)

    def __reduce__(self):  # pickle across worker processes with the original arguments
        return (type(self), (self.reason, self.message))


class DataLossError(DataError):
    """A run would lose more data than the recipe allows, or write an empty dataset or split."""

    def __init__(self, message: str, fix: str):
        self.reason_message = message
        super().__init__(message, fix)

    def __reduce__(self):
        return (type(self), (self.reason_message, self.fix))


class TokenizerError(DataprepError):
    """The tokenizer cannot be loaded or lacks what the recipe needs."""

    default_fix = "correct the recipe's `tokenizer:` section, or the tokenizer files, as the message says"


class OutputError(DataprepError):
    """The output path cannot be written as asked (exists, not a dataset, ...)."""

    default_fix = "choose another --out, or free the path the message names (--overwrite replaces a dataset dataprep wrote)"


class ResumeError(OutputError):
    """``--resume`` cannot continue the run in ``OUT.incomplete`` (nothing there, or it was made
    from another recipe, input or tokenizer)."""


class EngineError(DataprepError):
    """The Ray engine or the local worker processes could not start or finish the chunk work (a
    machine or cluster fault, not the data's: a resumed run may get past it)."""

    default_fix = "run the same command with --engine local to tell a Ray problem from a data one; `ray status` shows the cluster"


class BadKey(Exception):
    """Internal, not a :class:`DataprepError` users see: the manifest codec
    (:mod:`dataprep.dataset._codec`) met a key a record needs that the JSON lacks, or one it does
    not know (``where`` is its path, e.g. ``counts.tokens``). :mod:`dataprep.dataset.manifest`
    turns it into a :class:`ManifestError`."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}")


class Terminated(KeyboardInterrupt):
    """Internal signal, not an error: SIGTERM, raised by the CLI's signal handler so that the
    run stops as it does on Ctrl-C (keeping its checkpoint); the CLI exits with status 143."""
