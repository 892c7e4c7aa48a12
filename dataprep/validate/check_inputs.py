"""``validate_inputs``: raw input records judged by ``run``'s own code, every problem with its place.

Two ways to say what the records are:

- ``recipe`` (``--recipe R.yaml``): every input the recipe reads, read and worked exactly as
  ``run`` would, writing nothing (:mod:`.check_recipe`): the findings are the records the run
  would drop or stop on, under its reasons, locations and fixes.
- ``kind`` (``--as chat``): the recipe a run of that kind of record would have (the kind's
  template, ``--field`` as the input's ``fields:``), with no tokenizer: run's readers alone judge
  the records, as they would in that run (malformed JSON or rows, invalid text, a value that is
  not an object, missing or wrong-typed fields, a conversation that is not a list of turns, a
  non-text content part). What a template or a tokenizer decides (roles, an assistant turn to
  learn, blank values, labels, lengths) needs ``--recipe``.

A finding's ``kind`` is the run's drop reason (``missing_field``, ``non_string_field``,
``bad_messages``, ``malformed_json``, ``invalid_utf8``, ``bad_row``, ``no_target``, ``too_long``, ...)
or ``unreadable_file`` for a file the run cannot read at all; its ``line`` is the run's
(``line 3``, ``record 3``, ``row 3``) and its ``expected`` the run's fix.

The schemas ``schemas/<kind>-record.schema.json`` describe these record kinds for people
(``dataprep schema chat-record``); no check reads them.

Memory stays flat: records are read a chunk at a time (json arrays excepted, as in ``run``),
and reading stops after ``max_errors`` findings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from dataprep.errors import ConfigError
from dataprep.read import resolve_inputs
from dataprep.recipe import Recipe, recipe_from_dict
from dataprep.tasks.sft.records import fields_for

from .check_recipe import CheckPlan, check_files, check_recipe, reader_of
from .findings import Findings

# record kind -> the fine-tuning template that reads it (None: pretraining text)
INPUT_KINDS: dict[str, str | None] = {
    "text": None,
    "instruction": "alpaca",
    "prompt-completion": "prompt_completion",
    "chat": "chat",
    "classification": "classification",
}
NO_TOKENIZER = "(none: validate --as reads records only)"  # never loaded


def validate_inputs(
    paths: Iterable[str | Path] = (),
    *,
    kind: str | None = None,
    fields: dict[str, str] | None = None,
    recipe: Recipe | None = None,
    max_errors: int = 50,
    base_dir: Path | None = None,
) -> Findings:
    """Check raw input records as ``run`` would judge them; stop reading after ``max_errors`` findings.

    Args:
        paths: Files, folders or globs (with ``kind``).
        kind: One of :data:`INPUT_KINDS`.
        fields: With ``kind``: field name -> where it is in the records, dotted for nested
            fields (``{"messages": "conversations"}``); unnamed fields keep their names.
        recipe: Check every input the recipe reads, as its run would (no ``paths``).
        max_errors: Findings after which reading stops.
        base_dir: Folder relative ``paths`` are resolved against (default: the current one).

    Raises:
        ConfigError: Neither or both of ``kind`` and ``recipe``, an unknown ``kind``, or a field
            the kind does not have.
        InputError: A path that does not exist or whose format cannot be inferred.
        DataprepError: With ``recipe``: what would stop its run before it reads a record.
    """
    if (kind is None) == (recipe is None):
        raise ConfigError("say what the records are: a kind (--as) or a recipe (--recipe), not both")
    if recipe is not None:
        return check_recipe(recipe, max_errors=max_errors)
    if kind not in INPUT_KINDS:
        raise ConfigError(f"unknown record kind {kind!r}; kinds are {', '.join(INPUT_KINDS)}")
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("name the files to check")
    started = time.perf_counter()
    as_recipe = kind_recipe(kind, paths, fields or {}, base_dir=base_dir or Path.cwd())
    files = resolve_inputs(as_recipe.inputs, base_dir=as_recipe.base_dir)
    report = Findings(", ".join(paths), "inputs", max_errors=max_errors)
    check_files(CheckPlan(reader_of(as_recipe), None), files, report)
    report.notes.append(f"--as {kind}: run's readers judged the records; the template's and the tokenizer's "
                        "judgement (roles, targets, blank values, labels, lengths) needs --recipe")
    report.stats["seconds"] = round(time.perf_counter() - started, 3)
    return report


def kind_recipe(kind: str, paths: list[str], fields: dict[str, str], *, base_dir: Path) -> Recipe:
    """The recipe a run over ``paths`` of records of ``kind`` would have (its tokenizer is never loaded).

    Raises:
        ConfigError: ``fields`` names a field the kind's records do not have.
    """
    template = INPUT_KINDS[kind]
    if template is None:
        unknown = sorted(set(fields) - {"text"})
        if unknown:
            raise ConfigError(f"text records have no field {', '.join(map(repr, unknown))}; their field is 'text'")
        inputs = [{"path": p, **({"text_field": fields["text"]} if "text" in fields else {})} for p in paths]
        data = {"task": "pretrain", "inputs": inputs}
    else:
        data = {"task": "sft", "template": template, "inputs": [{"path": p} for p in paths]}
        if fields:  # each named field moved, its kind and whether it is required kept as the template reads it
            default = fields_for(_as_recipe(data, kind, base_dir), 0)
            unknown = sorted(set(fields) - set(default))
            if unknown:
                raise ConfigError(f"{kind} records have no field {', '.join(map(repr, unknown))}; "
                                  f"their fields are {', '.join(sorted(default))}")
            moved = {name: {"path": path, "kind": default[name].kind, "required": default[name].required}
                     for name, path in fields.items()}
            data["inputs"] = [{**spec, "fields": moved} for spec in data["inputs"]]
    return _as_recipe(data, kind, base_dir)


def _as_recipe(data: dict, kind: str, base_dir: Path) -> Recipe:
    return recipe_from_dict({**data, "tokenizer": {"path": NO_TOKENIZER}}, base_dir=base_dir, source=f"--as {kind}")
