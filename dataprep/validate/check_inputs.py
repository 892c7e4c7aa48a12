"""``validate_inputs``: raw input records against the record schemas, streamed, every problem with its place.

Two ways to say what a record must hold:

- ``kind`` (``--as chat``): the schema ``schemas/<kind>-record.schema.json`` as it is;
- ``recipe`` (``--recipe R.yaml``): every input the recipe reads, each with the recipe's own
  field mapping (``text_field``, ``fields:``), the template's required and optional fields, the
  masking policy (``all`` needs no assistant turn) and the classification labels. The schema
  for each input is assembled from the record schemas' ``$defs``, at the record's real paths,
  so a finding points into the user's data (``$.conversations[1].from``), not at a renamed copy.

A finding's ``kind`` is the reason ``dataprep run`` would count the record under
(``missing_field``, ``non_string_field``, ``bad_messages``, ``empty_field``, ``no_target``,
``unknown_role``, ``unknown_label``, ``malformed_json``, ``invalid_utf8``, ``bad_row``): the schemas
carry it as ``x-reason`` / ``x-reasons`` next to the rule. Content-dependent drops (too long
after tokenizing, a chat template that refuses a conversation) are only found by ``run``.

Memory stays flat: records are read one at a time (json arrays excepted, as in ``run``), and
reading stops after ``max_errors`` findings.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ConfigError
from ..read import TABULAR, FieldSpec, InputFile, InputSpec, resolve_inputs
from ..recipe import Recipe
from ..schema import load_schema
from .findings import Finding, Report
from .input_records import Unreadable, iter_records

INPUT_KINDS = {
    "text": "text-record",
    "instruction": "instruction-record",
    "prompt-completion": "prompt-completion-record",
    "chat": "chat-record",
    "classification": "classification-record",
}
_DEF_SCHEMAS = ("text-record", "instruction-record", "classification-record", "chat-record")


@dataclass
class Source:
    """One input file and what its records must be (``schema`` None: txt, any text is a record)."""

    file: InputFile
    schema: dict[str, Any] | None
    labels: tuple[str, ...] | None = None  # classification labels that `unknown_label: error` enforces
    label_path: tuple[str, ...] = ()


def validate_inputs(
    paths: Iterable[str | Path] = (),
    *,
    kind: str | None = None,
    fields: dict[str, str] | None = None,
    recipe: Recipe | None = None,
    max_errors: int = 50,
    base_dir: Path | None = None,
) -> Report:
    """Check raw input records; stop reading after ``max_errors`` findings.

    Args:
        paths: Files, folders or globs (with ``kind``).
        kind: One of :data:`INPUT_KINDS`.
        fields: With ``kind``: field name -> where it is in the records, dotted for nested
            fields (``{"messages": "conversations"}``); unnamed fields keep their names.
        recipe: Validate every input the recipe reads, with its field mapping (no ``paths``).
        max_errors: Findings after which reading stops.
        base_dir: Folder relative ``paths`` are resolved against (default: the current one).

    Raises:
        ConfigError: Neither or both of ``kind`` and ``recipe``, or an unknown ``kind``.
        InputError: A path that does not exist or whose format cannot be inferred.
    """
    if (kind is None) == (recipe is None):
        raise ConfigError("say what the records are: a kind (--as) or a recipe (--recipe), not both")
    if recipe is not None:
        sources = recipe_sources(recipe)
        target = f"inputs of {recipe.name or 'the recipe'}"
    else:
        if kind not in INPUT_KINDS:
            raise ConfigError(f"unknown record kind {kind!r}; kinds are {', '.join(INPUT_KINDS)}")
        specs = [InputSpec(path=str(p)) for p in paths]
        if not specs:
            raise ConfigError("name the files to check")
        files = resolve_inputs(specs, base_dir=base_dir or Path.cwd())
        schema = kind_schema(kind, fields or {})
        sources = [Source(f, None if f.format == "txt" and kind == "text" else schema) for f in files]
        target = ", ".join(str(p) for p in paths)
    report = Report(target, "inputs", max_errors=max_errors)
    started = time.perf_counter()
    records: dict[str, int] = {}
    flagged: set[tuple[str, str]] = set()  # (file, location) of records the schemas found bad
    for source in sources:
        for finding in _check_source(source, records):
            flagged.add((finding.file, finding.line))
            report.add(finding)
            if report.full:
                report.stopped = True
                break
        if report.stopped:
            break
    if recipe is not None and not report.stopped:
        # What the schemas cannot see (a template that refuses a conversation, a turn with no
        # target, an example over max_length, a special token's text, nested records, list
        # indexes, parent paths, text templates): run's own reader and worker decide.
        files = [s.file for s in sources if recipe.task == "sft" or (s.schema is None and s.file.format != "txt")]
        for finding in _run_findings(recipe, files, flagged, records):
            report.add(finding)
            if report.full:
                report.stopped = True
                break
    report.stats["files"] = len(records)
    report.stats["records"] = sum(records.values())
    report.stats["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _run_findings(recipe: Recipe, files: list, flagged: set[tuple[str, str]], records: dict[str, int]) -> Iterator[Finding]:
    """Records that pass the schemas but that ``run`` rejects, found by ``run``'s own worker;
    ``records`` gets the count of files the schema pass could not read record by record."""
    import logging

    from dataprep.tasks.sft import worker as sft_worker
    from dataprep.text.tokenizer import load_tokenizer

    quiet = logging.getLogger("dataprep.read")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # rejects come as findings, not log lines
    try:
        counts: dict[str, int] = {}
        if recipe.task == "sft":
            tokenizer = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
            bad = sft_worker.bad_records(recipe, tokenizer, files, counts)
        elif recipe.task == "pretrain":
            bad = _pretrain_rejects(files, recipe.output.chunk_records, counts)
        else:  # fewshot: the schema pass only
            return
        for file, where, reason, message, fix in bad:
            if (file, where) not in flagged:
                yield Finding(reason, message, file=file, line=where, expected=fix)
        for file, n in counts.items():
            if not records.get(file):  # nested records: only run's reader can count them
                records[file] = n
    finally:
        quiet.setLevel(level)


def _pretrain_rejects(files: list, batch_size: int, counts: dict[str, int]) -> Iterator[tuple[str, str, str, str, str]]:
    """The records run's pretraining reader rejects (text_field, text_template, records: as run reads them)."""
    from collections import Counter

    from ..read import read_batches

    for index, file in enumerate(files):
        found: list = []
        drops: Counter = Counter()
        read = 0
        for batch in read_batches(file, index, batch_size=batch_size, on_error="skip", drops=drops, sink=found):
            read += batch.num_rows
            yield from found
            found.clear()
        yield from found
        counts[file.location] = read + sum(drops.values())


def _check_source(source: Source, records: dict[str, int]) -> Iterator[Finding]:
    """Findings of one input, in record order; ``records[file]`` counts the records read."""
    file = source.file.location
    validator = jsonschema.Draft202012Validator(source.schema) if source.schema is not None else None
    records[file] = 0
    if source.file.spec.records is not None:
        return  # nested records: run's own reader finds and judges them (_run_findings)
    for where, record in iter_records(source.file):
        records[file] += 1
        if isinstance(record, Unreadable):
            yield Finding(record.kind, record.message, file=file, line=where or None, expected=record.expected)
            continue
        if validator is None:
            continue
        problems = sorted(validator.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
        for error in problems:
            yield _finding(error, source.schema, file, where)
        if not problems and source.labels is not None:
            found = _lookup(record, source.label_path)
            if found is not None and found not in source.labels:
                path = "$." + ".".join(source.label_path)
                why = f"label {found!r} is not one of the recipe's classification.labels"
                yield Finding("unknown_label", why, file=file, line=where, path=path, expected=f"one of {', '.join(map(repr, source.labels))}")


def _lookup(record: Any, path: tuple[str, ...]) -> str | None:
    value = record
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (int, float, bool)) else None


# --- findings from schema errors ----------------------------------------------------------


def _finding(error: jsonschema.ValidationError, schema: dict[str, Any], file: str, where: str) -> Finding:
    kind = _reason(error, schema)
    node = error.schema if isinstance(error.schema, dict) else {}
    expected = node.get("description")
    instance = error.instance
    if error.validator == "required":
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else error.message
        present = ", ".join(map(str, list(instance)[:20])) if isinstance(instance, dict) else "none"
        message = f"missing field {missing!r} (keys present: {present or 'none'})"
        sub = _deref(node.get("properties", {}).get(missing, {}), schema)
        expected = sub.get("description") or expected
    elif error.validator == "type":
        message = f"{_json_type(instance)} {_short(instance)} where a value of type {error.validator_value} belongs"
        if not error.absolute_path:
            expected = "a JSON object (one record)"
    elif error.validator == "pattern":
        message = f"{_short(instance)} is blank"
    elif error.validator == "contains":
        message = "no assistant turn: nothing to train on"
    elif error.validator == "minItems":
        message = "is empty"
    elif error.validator == "enum":
        message = f"{_short(instance)} is not one of {', '.join(map(repr, error.validator_value))}"
    else:
        message = error.message
    return Finding(kind, message, file=file, line=where or None, path=error.json_path, expected=expected)


def _reason(error: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    """The deepest ``x-reasons[validator]`` / ``x-reason`` on the way to the failing rule;
    a missing field outside any annotated part is ``missing_field``."""
    reason = "missing_field" if error.validator == "required" else "schema"
    node: Any = schema
    for key in list(error.absolute_schema_path)[:-1]:
        node = _step(node, key, schema)
        if node is None:
            break
        reason = _deref(node, schema).get("x-reason", reason) if isinstance(node, dict) else reason
    if isinstance(node, dict):
        node = _deref(node, schema)
        reason = node.get("x-reasons", {}).get(error.validator, node.get("x-reason", reason))
    return reason


def _step(node: Any, key: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict) and key not in node and "$ref" in node:
        node = _deref(node, root)
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _json_type(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# --- schemas for a recipe's inputs, or a kind with renamed fields ------------------------------


def kind_schema(kind: str, fields: dict[str, str]) -> dict[str, Any]:
    """The record schema of ``kind``, its fields moved to the paths ``fields`` names.

    Raises:
        ConfigError: ``fields`` names a field the kind does not have.
    """
    schema = load_schema(INPUT_KINDS[kind])
    if not fields:
        return schema
    known = schema["properties"]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"{kind} records have no field {', '.join(map(repr, unknown))}; their fields are {', '.join(known)}")
    specs = {name: FieldSpec(fields.get(name, name), required=name in schema["required"]) for name in known}
    values = {name: known[name]["$ref"].rsplit("/", 1)[-1] for name in known}
    return _assemble(specs, values, whole_names=False, masking=None)



def recipe_sources(recipe: Recipe) -> list[Source]:
    """Every input of ``recipe`` with the schema of what ``run`` reads from it."""
    from dataprep.tasks.sft import records as sft_records

    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    out = []
    for index, file in enumerate(files):
        if recipe.task == "pretrain":
            if file.format == "txt" or file.spec.text_template is not None or file.spec.records is not None:
                out.append(Source(file, None))  # run's own reader judges these records (_run_findings)
                continue
            fields = {"text": FieldSpec(file.spec.text_field)}
            values = {"text": "text"}
        else:
            fields = sft_records.fields_for(recipe, file.entry)  # what run reads from this file
            values = _value_defs(recipe, fields)
        if file.spec.records is not None or any(_reaches(spec.path) for spec in fields.values()):
            out.append(Source(file, None))  # nested records, list indexes, parent paths: run's reader judges
            continue
        schema = _assemble(fields, values, whole_names=file.format in TABULAR, masking=recipe.sft.masking if recipe.sft else None)
        labels = None
        cls = recipe.sft.classification if recipe.sft else None
        if cls is not None and cls.labels and cls.unknown_label == "error" and "label" in fields:
            labels = cls.labels
        path = () if labels is None else _parts(fields["label"].path, file.format in TABULAR)
        out.append(Source(file, schema, labels, path))
    return out


def _value_defs(recipe: Recipe, fields: dict[str, FieldSpec]) -> dict[str, str]:
    """Template field -> the ``$defs`` entry its value must match."""
    from dataprep.tasks.sft.records import HISTORY, SYSTEM, TOOLS, template_of

    template = template_of(recipe)
    optional = set() if template is None else set(template.optional_fields)
    defs = {}
    for name, spec in fields.items():
        if name in (SYSTEM, TOOLS, HISTORY) and not spec.required:
            defs[name] = "any_json"  # read when present; run judges their shape (blank is no value)
        elif spec.kind == "messages":
            # the shape only: roles, tool calls and targets are the chat template's, judged by run's own code
            defs[name] = "recipe_messages"
        elif spec.kind == "json":
            defs[name] = "any_json"
        elif spec.kind == "any":
            defs[name] = "optional_label" if name in optional or not spec.required else "label"
        else:
            defs[name] = "optional_text" if name in optional or not spec.required else "required_text"
    return defs


def _assemble(fields: dict[str, FieldSpec], values: dict[str, str], *, whole_names: bool, masking: str | None) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for name in _DEF_SCHEMAS:
        defs.update(copy.deepcopy(load_schema(name).get("$defs", {})))
    defs["any_json"] = {"description": "any JSON value"}
    defs["recipe_messages"] = {
        "description": "a non-empty list of turns (objects)", "type": "array", "minItems": 1,
        "items": {"type": "object", "x-reasons": {"type": "bad_messages"}, "description": "a turn: an object"},
        "x-reason": "bad_messages", "x-reasons": {"minItems": "missing_field"},
    }
    defs["optional_label"] = {**defs["label"], "type": ["string", "number", "boolean", "null"], "description": "a string, a number, a boolean or null"}
    if masking == "all":  # every token is a target: a conversation needs no assistant turn
        defs["messages"].pop("contains", None)
        defs["messages"]["description"] = "a non-empty list of turns"
    root: dict[str, Any] = {"type": "object", "x-reasons": {"type": "not_an_object"}, "properties": {}, "required": [], "$defs": defs}
    for name, spec in fields.items():
        parts = _parts(spec.path, whole_names)
        node = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            child = {"$ref": f"#/$defs/{values[name]}"} if last else node["properties"].get(part) or {
                "type": "object", "properties": {}, "required": [], "x-reasons": {"type": "missing_field"},
                "description": f"an object holding {'.'.join(parts[depth + 1:])!r}",
            }
            node["properties"][part] = child
            if spec.required and part not in node["required"]:
                node["required"].append(part)
            node = child
    return root


def _reaches(path: str) -> bool:
    """A path a JSON Schema of plain nested objects cannot express: a list index or a parent (``^``)."""
    return path.startswith("^") or any(part.isdigit() for part in path.split("."))


def _parts(path: str, whole: bool) -> tuple[str, ...]:
    return (path,) if whole else tuple(path.split("."))
