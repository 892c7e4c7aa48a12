"""Nested sources (``records:`` of a json or jsonl input): one record per element of a nested list.

::

    records: "data[*].paragraphs[*].qas[*]"          (SQuAD)
    {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "C", "qas": [{"question": "Q?"}]}]}]}
      -> record {"question": "Q?"}   at data[0].paragraphs[0].qas[0]
         parents: the file's value (^^^), data[0] (^^), data[0].paragraphs[0] (^)
      fields: {question: question, context: ^context, title: ^^title, answer: answers.0.text}

Path syntax: steps joined by dots; a step is a key, followed by any number of ``[*]``
(every item of the list) or ``[N]`` (item N, 0-based); a step may be ``[*]`` alone
when the value there is itself a list (``[*].turns[*]`` for a file that is an array).

Parents: a record's field paths may start with ``^``, one per level up. The levels
are the list items that each ``[*]`` or ``[N]`` above the record picked, innermost
first, and last the whole value the path started from (the file of a json input, the
line of a jsonl one). So with ``data[*].paragraphs[*].qas[*]``: ``^`` is the paragraph,
``^^`` the article, ``^^^`` the file.

Where records are: a json input numbers its records 0, 1, 2, ... across the file (the
``line`` column) and messages show their path too (``record 7 (data[1].paragraphs[0].qas[2])``);
a jsonl input gives the line the record was on (``line 3, qas[2]``). An empty list on the
path gives no records; a key that is missing, or a value of the wrong type where the
path steps into it, is a bad part of the file (``bad_nesting``: raised, or counted once
per such place with ``on_error: skip``). A path that finds no record at all in a whole
file is an error, never an empty run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._common import json_type, names_list

ALL = -1  # the [*] step
_STEP = re.compile(r"([^.\[\]]*)((?:\[(?:\*|\d+)\])*)")
_BRACKET = re.compile(r"\[(\*|\d+)\]")

Op = tuple[str, object]  # ("key", name) | ("item", n) with n = ALL for [*]


@dataclass(frozen=True)
class RecordsPath:
    """A parsed ``records:`` path."""

    text: str
    ops: tuple[Op, ...]

    @property
    def levels(self) -> int:
        """Parent levels a record has: the starting value plus each list item picked above the record."""
        items = sum(1 for kind, _ in self.ops if kind == "item")
        return 1 + items - (1 if self.ops[-1][0] == "item" else 0)


def parse_records(text: str) -> RecordsPath:
    """Parse a ``records:`` path.

    Raises:
        ValueError: The path does not follow the syntax (see the module docstring).
    """
    ops: list[Op] = []
    for index, step in enumerate(text.split(".")):
        match = _STEP.fullmatch(step)
        if not match or not step or (not match.group(1) and (index or not match.group(2))):
            raise ValueError(
                f"invalid records path {text!r} at {step!r}: write keys joined by dots, each followed by [*] "
                "(every item) or [N], e.g. data[*].paragraphs[*].qas[*]"
            )
        if match.group(1):
            ops.append(("key", match.group(1)))
        for item in _BRACKET.findall(match.group(2)):
            ops.append(("item", ALL if item == "*" else int(item)))
    return RecordsPath(text, tuple(ops))


def walk(
    root: object, path: RecordsPath, problem: Callable[[str, str], None]
) -> Iterator[tuple[object, tuple, str]]:
    """Every record ``path`` finds in ``root``, in order: ``(record, parents, where)``.

    ``parents`` are outermost first (``root`` first); ``where`` is the record's place,
    e.g. ``data[3].paragraphs[1].qas[0]``. A place the path cannot step into is
    handed to ``problem(where, message)`` and skipped.
    """
    return _walk(root, path.ops, 0, (root,), "", problem)


def _walk(value, ops, i, parents, where, problem) -> Iterator[tuple[object, tuple, str]]:
    if i == len(ops):
        yield value, parents, where
        return
    kind, arg = ops[i]
    shown = where or "the top level"
    if kind == "key":
        if type(value) is not dict:
            problem(where, f"{shown} is {json_type(value)}, expected an object with {arg!r}")
            return
        if arg not in value:
            problem(where, f"missing {arg!r} in {shown} (keys present: {names_list(list(value))})")
            return
        yield from _walk(value[arg], ops, i + 1, parents, f"{where}.{arg}" if where else arg, problem)
        return
    if type(value) is not list:
        problem(where, f"{shown} is {json_type(value)}, expected a list")
        return
    last = i == len(ops) - 1
    if arg != ALL:
        if arg >= len(value):
            problem(where, f"{shown} has {len(value)} item{'' if len(value) == 1 else 's'}, so no item {arg}")
            return
        item = value[arg]
        yield from _walk(item, ops, i + 1, parents if last else (*parents, item), f"{where}[{arg}]", problem)
        return
    for n, item in enumerate(value):
        yield from _walk(item, ops, i + 1, parents if last else (*parents, item), f"{where}[{n}]", problem)
