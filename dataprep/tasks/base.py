"""The interface every task implements, and what it hands the common run (:mod:`dataprep.build.run`).

A :class:`Task` (one per kind of dataset: ``pretrain``, ``mlm``, ``span_corruption``, ``sft``,
``fewshot``; :func:`dataprep.tasks.registry.task_for` picks it from a recipe) first adds what it
needs to the tokenizer, then gives a :class:`Plan`: its chunk reader and worker, packer, row
schema, what it states about its rows (:class:`RowFacts`) and its typed manifest section
(:class:`~dataprep.dataset.manifest_tasks.TaskSections`). Its worker sends one
:class:`ChunkResult` per input chunk. The run knows only this interface; adding a task is adding
a module that implements it (and a line in the registry).

The read side (``validate``, ``look``, ``train``) never imports a task: it reads what the task
stated in the manifest (``format``, ``rows``, the task's section), so the checks stay independent
of the code they check.
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

from dataprep.dataset.manifest_parts import EXAMPLES, PIECES, STREAM
from dataprep.dataset.manifest_tasks import TaskSections
from dataprep.read.chunks import ChunkReader

if TYPE_CHECKING:
    from dataprep.read import InputFile
    from dataprep.recipe import Recipe
    from dataprep.text.minhash import MinhashSpec
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
        extras: per-token arrays aligned with ``tokens`` (e.g. ``assistant_masks``).
        doc_stats: per-document counters (e.g. ``target_tokens``); summed over the documents
            actually written, so duplicates never count.
        drops: dropped records of this chunk, by reason.
        drop_samples: where the first few of them were: ``(location, reason, message)``.
        signatures: ``filter.dedup: minhash``: uint32 ``[kept documents, permutations]``, each
            document's MinHash signature (:func:`dataprep.text.minhash.signatures`); else None.
        contaminated: ``decontaminate:``: each dropped document's evaluation set, item and location.
        examples: a few filtered documents per drop reason, for the report (:mod:`dataprep.tasks.drop_examples`).
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
    signatures: np.ndarray | None = None
    contaminated: list[tuple[str, str, str]] = field(default_factory=list)  # (set, item, location) of each document dropped so
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (reason, location, text cut short) of a few drops


@dataclass(frozen=True)
class RowFacts:
    """What a task states about its rows (the manifest's ``rows``, less what the packer counts).

    Attributes:
        layout: how documents sit in the rows (:data:`dataprep.dataset.manifest_parts.LAYOUTS`).
        fixed_length: every row is exactly the row length.
        label_column: the class-label column (``label_id`` / ``label_ids``), or None.
        starts_with_bos, ends_with_eos: whether each piece starts with BOS / ends with EOS when the
            task decides it (MLM's post-processor frame); None: as the recipe's ``tokenizer.add_bos`` /
            ``add_eos`` say.
    """

    layout: str
    fixed_length: bool
    label_column: str | None = None
    starts_with_bos: bool | None = None
    ends_with_eos: bool | None = None


def fixed_rows(recipe: Recipe, *, wrap_fills: bool) -> bool:
    """Whether every row is exactly ``packing.seq_len`` long: wrap fills them (when the task wraps a
    stream, ``wrap_fills``); bfd pads them when ``pad_rows``."""
    p = recipe.packing
    return (wrap_fills and p.mode == "wrap") or (p.mode == "bfd" and p.pad_rows)


def stream_facts(recipe: Recipe, **stated: Any) -> RowFacts:
    """The row facts of a task that packs a document stream (pretraining, MLM)."""
    layout = STREAM if recipe.packing.mode == "wrap" else PIECES
    return RowFacts(layout=layout, fixed_length=fixed_rows(recipe, wrap_fills=True), **stated)


def example_facts(recipe: Recipe, *, label_column: str | None = None) -> RowFacts:
    """The row facts of a fine-tuning task: each piece is one whole example."""
    return RowFacts(layout=EXAMPLES, fixed_length=fixed_rows(recipe, wrap_fills=False), label_column=label_column)


@dataclass
class Plan:
    """What a task plugs into the common run."""

    format: str  # manifest "format", e.g. dataprep.pretrain/2
    schema: pa.Schema  # row schema
    reader: ChunkReader  # reads one input file's chunks, here or on a Ray worker
    worker: tuple[Callable[..., Any], tuple[Any, ...]]  # (setup, args): builds the chunk function once per worker
    make_packer: Callable[[], Any]
    to_batch: Callable[[Any], pa.RecordBatch]
    dedup: bool | MinhashSpec  # True: exact duplicates; a MinhashSpec: those, then near-duplicates (ChunkResult.signatures)
    rows: RowFacts
    manifest: Callable[[Any], TaskSections] = lambda stage: TaskSections()  # the ordered stage -> the task's own sections


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

    def local_mode(self, recipe: Recipe) -> str:
        """How the local engine works this task's chunks (:data:`dataprep.build.engine.MODES`):
        ``threads`` when the chunk work releases the GIL, else ``processes``. Known from the recipe
        alone: a run begins its worker processes before it loads the tokenizer."""
        ...


def with_special_tokens(recipe: Recipe, tokenizer: LoadedTokenizer, names: list[str], tmp: Path) -> LoadedTokenizer:
    """``tokenizer`` with every one of ``names``: those it lacks are added as special tokens (so text
    can never produce them) and listed in ``added_tokens``. A tokenizer that gained tokens, or that
    the recipe trained, is saved in ``tmp``'s ``tokenizer/`` folder."""
    from tokenizers import AddedToken

    from dataprep import columns as C
    from dataprep.text.tokenizer import LoadedTokenizer

    missing = [n for n in names if tokenizer.tokenizer.token_to_id(n) is None]
    extended = tokenizer
    if missing:
        inner = tokenizer.copy()
        inner.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in missing])
        extended = LoadedTokenizer(inner, tokens=tokenizer.tokens, sources=tokenizer.sources, source=tokenizer.source,
                                   files=tokenizer.files, add_bos=tokenizer.add_bos, add_eos=tokenizer.add_eos,
                                   split_special_tokens=tokenizer.split_special_tokens, added_tokens=missing,
                                   engine=tokenizer.engine)
        log.info("added %d special token(s) (%s ... %s) to the tokenizer; saved in %s/", len(missing), missing[0],
                 missing[-1], C.TOKENIZER_DIR)
    if missing or recipe.tokenizer.train is not None:
        extended.save(tmp / C.TOKENIZER_DIR)
    return extended
