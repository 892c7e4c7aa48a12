"""What a task hands the common run (:mod:`dataprep.build.run`): a :class:`Plan`, and per chunk a
:class:`ChunkResult`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.read.chunks import ChunkReader


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
