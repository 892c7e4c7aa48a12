"""The interface every task implements, and what it hands the common run (:mod:`dataprep.build.run`).

A :class:`Task` (one per kind of dataset: ``pretrain``, ``mlm``, ``span_corruption``, ``sft``,
``fewshot``; :func:`dataprep.tasks.registry.task_for` picks it from a recipe) first adds what it
needs to the tokenizer, then gives a :class:`Plan`: its chunk reader and worker, packer, row
schema and manifest section. Its worker sends one :class:`ChunkResult` per input chunk. The run
knows only this interface; adding a task is adding a module that implements it (and a line in
the registry).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from dataprep.read.chunks import ChunkReader

if TYPE_CHECKING:
    from dataprep.read import InputFile
    from dataprep.recipe import Recipe
    from dataprep.text.tokenizer import LoadedTokenizer

log = logging.getLogger("dataprep.tasks")


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: kept documents (or examples), tokenized.

    Attributes:
        hashes: content hash of each kept document: the identity for dedup and the split.
        validation: bool per kept document, True when it belongs to the validation split.
        tokens: int32, the kept documents' tokens, flat.
        lengths: int64, tokens per kept document.
        source: index of the input file the chunk came from.
        extras: per-token arrays aligned with ``tokens`` (e.g. ``loss_mask``).
        doc_stats: per-document counters (e.g. ``target_tokens``); summed over the documents
            actually written, so duplicates never count.
        drops: dropped records of this chunk, by reason.
        drop_samples: where the first few of them were: ``(location, reason, message)``.
    """

    hashes: list[bytes]
    validation: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    source: int = 0
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    doc_stats: dict[str, np.ndarray] = field(default_factory=dict)
    drops: Counter = field(default_factory=Counter)
    drop_samples: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Plan:
    """What a task plugs into the common run."""

    format: str  # manifest "format", e.g. dataprep.pretrain/1
    schema: pa.Schema  # row schema
    reader: ChunkReader  # reads one input file's chunks, here or on a Ray worker
    worker: tuple[Callable[..., Any], tuple[Any, ...]]  # (setup, args): builds the chunk function once per worker
    make_packer: Callable[[], Any]
    to_batch: Callable[[Any], pa.RecordBatch]
    dedup: bool
    manifest: Callable[[Any], dict[str, Any]]  # the ordered stage -> the task's own manifest section
    mode: str = "processes"  # local engine: "threads" when the chunk work releases the GIL (engine.py)


class Task(Protocol):
    """One kind of dataset: how a recipe's records become rows."""

    name: str  # the recipe's task, or its pretraining objective: pretrain, mlm, span_corruption, sft, fewshot

    def prepare_tokenizer(self, recipe: Recipe, tokenizer: LoadedTokenizer, tmp: Path) -> LoadedTokenizer:
        """The tokenizer the run encodes with: ``tokenizer``, or a copy with the special tokens this
        task needs added (and saved in ``tmp``'s ``tokenizer/`` folder)."""
        ...

    def plan(self, recipe: Recipe, tokenizer: LoadedTokenizer, files: list[InputFile]) -> Plan:
        """What this task plugs into the common run, for ``recipe`` over ``files``."""
        ...


def with_special_tokens(recipe: Recipe, tokenizer: LoadedTokenizer, names: list[str], tmp: Path) -> LoadedTokenizer:
    """``tokenizer`` with every one of ``names``: those it lacks are added as special tokens (so text
    can never produce them) and listed in ``added_tokens``. A tokenizer that gained tokens, or that
    the recipe trained, is saved in ``tmp``'s ``tokenizer/`` folder."""
    from tokenizers import AddedToken, Tokenizer

    from dataprep import columns as C
    from dataprep.text.tokenizer import LoadedTokenizer

    missing = [n for n in names if tokenizer.tokenizer.token_to_id(n) is None]
    extended = tokenizer
    if missing:
        inner = Tokenizer.from_str(tokenizer.tokenizer.to_str())
        inner.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in missing])
        extended = LoadedTokenizer(inner, tokens=tokenizer.tokens, sources=tokenizer.sources, source=tokenizer.source,
                                   files=tokenizer.files, add_bos=tokenizer.add_bos, add_eos=tokenizer.add_eos,
                                   split_special_tokens=tokenizer.split_special_tokens, added_tokens=missing)
        log.info("added %d special token(s) (%s ... %s) to the tokenizer; saved in %s/", len(missing), missing[0],
                 missing[-1], C.TOKENIZER_DIR)
    if missing or recipe.tokenizer.train is not None:
        extended.save(tmp / C.TOKENIZER_DIR)
    return extended
