"""Pretraining text built from several fields: an input's ``text_template:``.

::

    text_template: "{prompt}{canonical_solution}"       (HumanEval)
    {"prompt": "def add(a, b):\\n", "canonical_solution": "    return a + b\\n", ...}
      -> text = "def add(a, b):\\n    return a + b\\n"

``{path}`` is replaced by the field at ``path`` (dotted, list numbers and ``^`` parents
allowed, as in ``fields:``); everything else is kept exactly, whitespace and all
(``{{`` and ``}}`` are literal braces). A field holds a string, number or boolean (the
``any`` kind: numbers and booleans in their JSON spelling). A record without one of the
fields is a bad record (``missing_field``), reported with its file and line.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ._fields import FieldSpec


def parse_template(template: str) -> tuple[list[str], list[str]]:
    """``"a{x}b{y}"`` -> ``(["a", "b", ""], ["x", "y"])``: the literal pieces around the field paths.

    Raises:
        ValueError: An unclosed or stray brace, an empty ``{}``, or no field at all.
    """
    literals, paths, piece, i = [], [], [], 0
    while i < len(template):
        char = template[i]
        if char in "{}" and template[i + 1 : i + 2] == char:  # {{ or }}
            piece.append(char)
            i += 2
        elif char == "{":
            close = template.find("}", i + 1)
            if close < 0 or "{" in template[i + 1 : close]:
                raise ValueError(f"unclosed '{{' at character {i} of {template!r} (write '{{{{' for a literal brace)")
            if close == i + 1:
                raise ValueError(f"empty '{{}}' at character {i} of {template!r}; name a field inside the braces")
            literals.append("".join(piece))
            paths.append(template[i + 1 : close])
            piece, i = [], close + 1
        elif char == "}":
            raise ValueError(f"stray '}}' at character {i} of {template!r} (write '}}}}' for a literal brace)")
        else:
            piece.append(char)
            i += 1
    literals.append("".join(piece))
    if not paths:
        raise ValueError(f"{template!r} names no field; put field paths in braces, e.g. '{{prompt}}{{completion}}'")
    return literals, paths


def template_fields(paths: list[str]) -> dict[str, FieldSpec]:
    """One ``any`` field per placeholder (a field named twice is read twice)."""
    return {f"{{{i}}}": FieldSpec(path, "any") for i, path in enumerate(paths)}


def join_pieces(pieces: Iterator, literals: list[str]) -> Iterator:
    """Reader pieces of the template's fields -> pieces of the one joined text column."""
    for values, lines in pieces:
        if values and isinstance(values[0], pa.Array):
            args = [pa.scalar(literals[0], pa.large_string())]
            for column, literal in zip(values, literals[1:]):
                args += [column, pa.scalar(literal, pa.large_string())]
            yield [pc.binary_join_element_wise(*args, pa.scalar("", pa.large_string()))], lines
        else:
            texts = []
            for row in zip(*values):
                parts = [literals[0]]
                for value, literal in zip(row, literals[1:]):
                    parts += [value, literal]
                texts.append("".join(parts))
            yield [texts], lines
