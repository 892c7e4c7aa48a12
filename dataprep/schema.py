"""The JSON Schemas in ``schemas/``: loading them, checking documents, filling defaults.

The schema files are the single statement of every format; code reads them and never
repeats them. Validation yields every :class:`~dataprep.errors.Issue` at once, each with
its path, and an unknown key gets a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from .errors import DataprepError, Issue

_PACKAGED = Path(__file__).resolve().parent / "schemas"  # inside an installed wheel
_SOURCE_TREE = Path(__file__).resolve().parent.parent / "schemas"  # a checkout / editable install


def schema_dir() -> Path:
    """The folder holding the ``*.schema.json`` files."""
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE_TREE


def schema_names() -> list[str]:
    """Names accepted by :func:`load_schema` (file names without ``.schema.json``)."""
    return sorted(p.name.removesuffix(".schema.json") for p in schema_dir().glob("*.schema.json"))


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Load ``schemas/<name>.schema.json``.

    Raises:
        DataprepError: no schema of that name; the message lists the available ones.
    """
    path = schema_dir() / f"{name}.schema.json"
    if not path.is_file():
        raise DataprepError(f"no schema named {name!r}; available: {', '.join(schema_names())}")
    return json.loads(path.read_text(encoding="utf-8"))


def format_path(path: Any) -> str:
    """``["packing", "seq_len"]`` -> ``packing.seq_len``; list indices as ``inputs[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def iter_issues(instance: Any, name: str) -> Iterator[Issue]:
    """Yield every way ``instance`` breaks schema ``name``, in document order."""
    schema = load_schema(name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    # A value can break a general enum and a narrower conditional one (packing.mode per task):
    # report only the narrowest choice list for each place.
    narrowest: dict[tuple, jsonschema.ValidationError] = {}
    for error in errors:
        if error.validator == "enum":
            key = tuple(error.absolute_path)
            if key not in narrowest or len(error.validator_value) < len(narrowest[key].validator_value):
                narrowest[key] = error
    for error in errors:
        if error.validator == "enum" and narrowest[tuple(error.absolute_path)] is not error:
            continue
        yield from _explain(error)


def _explain(error: jsonschema.ValidationError) -> Iterator[Issue]:
    where = format_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        extras = sorted(set(error.instance) - set(known) - _pattern_matched(error))
        for key in extras:
            child = f"{where}.{key}" if error.absolute_path else key
            hint = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            suggestion = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(known)}"
            yield Issue(child, f"unknown key {key!r}; {suggestion}")
        return
    if error.validator == "oneOf":
        # oneOf of required-clauses (tokenizer: path | train) reads better as a sentence.
        required = [s.get("required") for s in error.validator_value if "required" in s]
        if required and all(len(r) == 1 for r in required):
            options = " or ".join(repr(r[0]) for r in required)
            yield Issue(where, f"set exactly one of {options}")
            return
    if error.validator == "not" and error.schema.get("description"):
        # e.g. sft-only keys in a pretrain recipe: the rule's description is the message.
        yield Issue(where, error.schema["description"])
        return
    if error.validator == "enum":
        choices = ", ".join(repr(v) for v in error.validator_value)
        yield Issue(where, f"{error.instance!r} is not one of {choices}")
        return
    if error.validator == "required":
        yield Issue(where, error.message.replace("is a required property", "is required"))
        return
    yield Issue(where, error.message)


def _pattern_matched(error: jsonschema.ValidationError) -> set[str]:
    patterns = error.schema.get("patternProperties", {})
    if not patterns:
        return set()
    import re

    return {k for k in error.instance if any(re.search(p, k) for p in patterns)}


def with_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Return a copy of ``instance`` with every schema ``default`` filled in (objects, recursively).

    Only ``properties`` of objects that are present (or whose subschema has its own
    default object) are filled; ``$ref`` into ``$defs`` is followed.
    """
    root = root or schema
    schema = _deref(schema, root)
    if isinstance(instance, dict):
        out = copy.copy(instance)
        properties = {key: _deref(sub, root) for key, sub in schema.get("properties", {}).items()}
        # 1. Absent sections become {} so that the rules below can fill them.
        for key, sub in properties.items():
            if key not in out and "default" not in sub and _is_section(sub):
                out[key] = {}
        # 2. Conditional defaults (`allOf: [{if, then}]`, e.g. per task) are the more specific: first.
        for rule in schema.get("allOf", []):
            if "if" in rule and "then" in rule and jsonschema.Draft202012Validator(rule["if"]).is_valid(instance):
                out = with_defaults(out, rule["then"], root)
        # 3. General defaults fill what is still missing.
        for key, sub in properties.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = with_defaults(out[key], sub, root)
        return out
    if isinstance(instance, list) and "items" in schema:
        return [with_defaults(item, schema["items"], root) for item in instance]
    return instance


def _is_section(sub: dict[str, Any]) -> bool:
    """An optional object of options, created empty when absent (unless its presence means something)."""
    return (
        sub.get("type") == "object"
        and "properties" in sub
        and not sub.get("required")
        and not sub.get("x-presence-matters")  # e.g. `classification:` switches a mode on
    )


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return node
    return schema
