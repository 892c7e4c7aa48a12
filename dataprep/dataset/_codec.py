"""Typed records <-> JSON: the one generic codec behind :class:`~dataprep.dataset.manifest.Manifest`.

A record is a frozen dataclass whose fields are its JSON keys, in the order they are written.
Field types drive decoding: a nested record, ``tuple[X, ...]`` (a JSON list), ``dict[str, X]``
(a JSON object), ``X | None``, a union of records told apart by their ``name`` (the objective
sections), or a plain JSON value (kept exactly as read: an int stays an int, so a manifest
read and written again has the same bytes)::

    @dataclass(frozen=True)
    class Shard:
        file: str
        rows: int
        xxh3_128: str | None = optional()   # absent from the JSON when None

    decode(Shard, {"file": "a.arrow", "rows": 3}, "splits.train.shards[0]")  -> Shard("a.arrow", 3, None)
    encode(Shard("a.arrow", 3, None))                                         -> {"file": "a.arrow", "rows": 3}

A field declared with :func:`optional` is left out of the JSON when it is None (a key older
manifests lack, or that only some tasks write); any other field is always written, ``null``
included. A key that decoding needs and the JSON lacks, or a key no field holds, raises
:class:`~dataprep.errors.BadKey` with its path (internal: the manifest reader turns it into a
:class:`~dataprep.errors.ManifestError`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from dataprep.errors import BadKey

_OPTIONAL = "optional"


def optional(**kwargs: Any) -> Any:
    """A field that is absent from the JSON when None (and None when the JSON lacks it)."""
    return dataclasses.field(default=None, metadata={_OPTIONAL: True}, **kwargs)


def encode(value: Any) -> Any:
    """A record (or a list, dict or JSON value holding records) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None and f.metadata.get(_OPTIONAL):
                continue
            out[f.name] = encode(item)
        return out
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(kind: Any, value: Any, where: str) -> Any:
    """``value`` (read from JSON) as ``kind``; ``where`` is its path, for errors."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value  # built typed already
    if dataclasses.is_dataclass(kind):
        return _record(kind, value, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in args if a is not type(None)]
        records = [a for a in options if dataclasses.is_dataclass(a)]
        if len(records) > 1:  # told apart by their name (mlm | span_corruption)
            name = value.get("name") if isinstance(value, Mapping) else None
            for record in records:
                if name == getattr(record, "NAME", None):
                    return _record(record, value, where)
            raise BadKey(f"{where}.name", f"{name!r} is not one of {', '.join(repr(r.NAME) for r in records)}")
        return decode(options[0], value, where) if len(options) == 1 else copy.deepcopy(value)
    if origin is tuple and isinstance(value, list):
        return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(args) == 2:
        return {k: decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return copy.deepcopy(value)


def _record(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise BadKey(where, f"expected an object, got {type(value).__name__}")
    hints = _hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    for key in value:
        if key not in names:
            raise BadKey(f"{where}.{key}" if where else str(key), f"unknown key {key!r}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(kind):
        path = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = decode(hints[f.name], value[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadKey(path, f"{f.name!r} is required")
    return kind(**kwargs)


@lru_cache(maxsize=None)
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)
