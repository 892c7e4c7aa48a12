"""The pretraining pipeline: raw text -> packed, fixed-length token rows.

::

    read (main) -> [normalize -> filter -> hash -> tokenize] (workers, per chunk) -> dedup -> split -> pack -> write (main)

Chunks are the recipe's ``output.chunk_records`` records of one input file, so the work
partition is a function of the inputs alone. The ordered stage sees chunk results in
input order whatever the worker count, which is why shards are byte-identical for any
``--workers``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from . import columns as C
from .engine import ordered_map
from .filters import DUPLICATE, content_hashes, filter_mask, validation_flags
from .normalize import normalize_array
from .pack import BfdPacker, PackedRows, WrapPacker
from .read import InputFile, read_batches
from .recipe import Recipe
from .tokenizer import LoadedTokenizer
from .write import SplitWriter

log = logging.getLogger("dataprep.pretrain")


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: kept documents, tokenized, and its drops."""

    hashes: list[bytes]
    validation: np.ndarray  # bool per kept document
    tokens: np.ndarray  # int32, flat
    lengths: np.ndarray  # int64 per kept document
    chars: int
    drops: Counter = field(default_factory=Counter)


def chunk_worker(recipe: Recipe, tokenizer: LoadedTokenizer):
    """Build the per-process chunk function (runs once in each worker)."""

    def process(batch: pa.RecordBatch) -> ChunkResult:
        drops: Counter = Counter()
        texts = normalize_array(batch.column(C.TEXT), recipe.normalize)
        keep = filter_mask(texts, recipe.filter, drops)
        kept = texts.filter(pa.array(keep)).to_pylist()
        hashes = content_hashes(kept)
        tokens, lengths = tokenizer.encode_docs(kept)
        return ChunkResult(
            hashes=hashes,
            validation=validation_flags(hashes, fraction=recipe.split.validation, salt=recipe.split.salt),
            tokens=tokens,
            lengths=lengths,
            chars=sum(map(len, kept)),
            drops=drops,
        )

    return process


def iter_chunks(files: list[InputFile], recipe: Recipe, read_drops: Counter, counts: Counter) -> Iterator[pa.RecordBatch]:
    """Every input record, in input order, as batches of at most ``chunk_records``."""
    for index, file in enumerate(files):
        before = sum(read_drops.values())
        for batch in read_batches(
            file, index, batch_size=recipe.output.chunk_records, on_error=recipe.on_error, drops=read_drops
        ):
            counts["records_read"] += batch.num_rows
            yield batch
        counts["records_read"] += sum(read_drops.values()) - before  # unreadable records were read too


def iter_clean_texts(files: list[InputFile], recipe: Recipe) -> Iterator[str]:
    """Normalized, filtered, deduplicated texts: the corpus a trained tokenizer learns from."""
    seen: set[bytes] = set()
    for batch in iter_chunks(files, recipe, Counter(), Counter()):
        texts = normalize_array(batch.column(C.TEXT), recipe.normalize)
        kept = texts.filter(pa.array(filter_mask(texts, recipe.filter, Counter()))).to_pylist()
        for text, digest in zip(kept, content_hashes(kept)):
            if recipe.filter.dedup == "none" or digest not in seen:
                seen.add(digest)
                yield text


def make_packer(recipe: Recipe, tokenizer: LoadedTokenizer) -> WrapPacker | BfdPacker:
    p = recipe.packing
    if p.mode == "wrap":
        return WrapPacker(seq_len=p.seq_len, remainder=p.remainder, pad_id=tokenizer.pad_id)
    return BfdPacker(seq_len=p.seq_len, buffer_tokens=p.buffer_tokens, pad_id=tokenizer.pad_id, pad_rows=p.pad_rows)


class OrderedStage:
    """Dedup, split, pack and write, one chunk result at a time, in input order."""

    def __init__(self, recipe: Recipe, tokenizer: LoadedTokenizer, writers: dict[str, SplitWriter]):
        self.recipe = recipe
        self.writers = writers
        self.packers = {split: make_packer(recipe, tokenizer) for split in writers}
        self.seen: set[bytes] = set()
        self.documents: Counter = Counter()
        self.drops: Counter = Counter()

    def add(self, result: ChunkResult) -> None:
        self.drops.update(result.drops)
        n = len(result.hashes)
        if n == 0:
            return
        keep = np.ones(n, dtype=bool)
        if self.recipe.filter.dedup == "exact":
            for i, digest in enumerate(result.hashes):
                if digest in self.seen:
                    keep[i] = False
                else:
                    self.seen.add(digest)
            self.drops[DUPLICATE] += int(n - keep.sum())
        for split, in_split in (("train", ~result.validation), ("validation", result.validation)):
            docs = keep & in_split
            if not docs.any():
                continue
            self.documents[split] += int(docs.sum())
            if docs.all():
                tokens, lengths = result.tokens, result.lengths
            else:
                tokens = result.tokens[np.repeat(docs, result.lengths)]
                lengths = result.lengths[docs]
            self._write(split, self.packers[split].add(tokens, lengths))

    def finish(self) -> None:
        for split, packer in self.packers.items():
            self._write(split, packer.finish())

    def _write(self, split: str, rows: PackedRows) -> None:
        if rows.num_rows:
            content = int(len(rows.input_ids) - rows.num_pad.sum())
            self.writers[split].write(rows.to_record_batch(), tokens=content)

    def pack_stats(self) -> dict[str, Any]:
        return {split: packer.stats.as_dict() for split, packer in self.packers.items()}
