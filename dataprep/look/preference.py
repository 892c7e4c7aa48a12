"""Looking at a preference dataset: each pair with its prompt once and the two responses side by
side (``inspect``; the lengths and the margin between chosen and rejected, a known bias, are
:func:`dataprep.look.stats.pair_lengths`, in ``report``)::

    train row 0  (prompt 12 tokens; chosen 4, rejected 5)
    prompt | Q: reverse abc⏎A:
    chosen                               | rejected
     cba<|endoftext|>                    |  abc<|endoftext|>
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dataprep import columns as C

WIDTH = 48  # characters per response column


def is_preference(table: pa.Table) -> bool:
    return C.PROMPT_IDS in table.column_names


@dataclass(frozen=True)
class PairView:
    """One stored preference row to show (``title``: e.g. ``train row 3``)."""

    title: str
    row: dict[str, Any]


def pair_views(table: pa.Table, split: str, indices: Sequence[int]) -> list[PairView]:
    rows = table.take(pa.array(list(indices), pa.int64())).to_pylist()
    return [PairView(f"{split} row {index}", row) for index, row in zip(indices, rows)]


def format_pair(view: PairView, tokenizer) -> str:
    """The prompt once, then the responses side by side (KTO: the response and its label)."""
    row = view.row

    def decode(ids: list[int]) -> str:
        return tokenizer.tokenizer.decode(ids, skip_special_tokens=False)

    prompt = decode(row[C.PROMPT_IDS]).replace("\n", "⏎")
    if C.COMPLETION_IDS in row:
        return (f"{view.title}  (prompt {len(row[C.PROMPT_IDS])} tokens; completion {len(row[C.COMPLETION_IDS])}, "
                f"label {row[C.KTO_LABEL]})\nprompt     | {prompt}\ncompletion | {decode(row[C.COMPLETION_IDS])}\n")
    left, right = _wrapped(decode(row[C.CHOSEN_IDS])), _wrapped(decode(row[C.REJECTED_IDS]))
    lines = [f"{view.title}  (prompt {len(row[C.PROMPT_IDS])} tokens; chosen {len(row[C.CHOSEN_IDS])}, "
             f"rejected {len(row[C.REJECTED_IDS])})", f"prompt | {prompt}", f"{'chosen':<{WIDTH}} | rejected"]
    for k in range(max(len(left), len(right))):
        lines.append(f"{left[k] if k < len(left) else '':<{WIDTH}} | {right[k] if k < len(right) else ''}")
    return "\n".join(lines) + "\n"


def _wrapped(text: str) -> list[str]:
    lines = []
    for line in text.replace("\r", "").split("\n"):
        lines += textwrap.wrap(line, WIDTH, drop_whitespace=False, replace_whitespace=False) or [""]
    return lines
