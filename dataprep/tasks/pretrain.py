"""The pretraining pipeline: raw text -> packed, fixed-length token rows.

::

    read (main) -> [normalize -> filter -> hash (+ MinHash) -> tokenize] (workers, per chunk) -> dedup -> split -> pack -> write (main)

Chunks are the recipe's ``output.chunk_records`` records of one input file, so the work
partition is a function of the inputs alone. The ordered stage sees chunk results in
input order whatever the worker count, which is why shards are byte-identical for any
``--workers``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from dataprep.read import chunks
from dataprep import columns as C
from dataprep.text.filter_chain import keep_documents_with_languages
from dataprep.text.language_stats import language_stats
from dataprep.text.filters import MINHASH, content_hashes, validation_flags
from dataprep.text.minhash import signatures
from dataprep.text.normalize import normalize_array
from dataprep.text.mojibake import FIXED_STAT, fix_mojibake
from dataprep.text.pii import PII_STAT, redact_rows
from dataprep.tasks.base import ChunkResult, Plan, stream_facts
from dataprep.tasks.decontamination import drop_contaminated, index_for
from dataprep.tasks.drop_examples import PER_REASON, filter_examples, shorten
from dataprep.text.decontaminate import CONTAMINATED
from dataprep.text.encode_engine import PROBE_DOCS
from dataprep.pack.bfd import BfdPacker
from dataprep.pack.wrap import WrapPacker
from dataprep.errors import DataprepError
from dataprep.read import InputFile, collecting, read_batches
from dataprep.recipe import Recipe
from dataprep.text.tokenizer import LoadedTokenizer

log = logging.getLogger("dataprep.pretrain")

FORMAT = "dataprep.pretrain/2"


def clean_texts(batch: pa.RecordBatch, recipe: Recipe, drops: Counter) -> list[str]:
    """Normalize and filter one batch; the kept texts, in order."""
    return clean_batch(batch, recipe, drops)[0]


class Cleaned(NamedTuple):
    """One batch normalized and filtered (:func:`clean_batch`)."""

    texts: list[str]  # kept, in order
    stats: dict[str, np.ndarray]  # per kept text: what was redacted (``pii_<kind>``), whether mojibake was fixed
    languages: list[str] | None  # per kept text: its top language, when the recipe filters by language
    at: np.ndarray  # per kept text: its row in the batch
    normalized: pa.Array  # every text of the batch, normalized (what the filters judged)
    kept: pa.Array  # ``texts`` as Arrow strings (hashed from their buffer, no Python string encoded again)


def clean_batch(batch: pa.RecordBatch, recipe: Recipe, drops: Counter) -> Cleaned:
    """Normalize (mojibake fixed first, ``normalize.fix_mojibake``; personal data redacted last,
    ``normalize.pii``) and filter one batch."""
    texts, fixed = batch.column(C.TEXT), None
    if recipe.normalize.fix_mojibake:
        texts, fixed = fix_mojibake(texts)
    texts = normalize_array(texts, recipe.normalize)
    per_text = {FIXED_STAT: fixed} if fixed is not None else {}
    if recipe.normalize.pii:
        texts, redacted = redact_rows(texts, recipe.normalize.pii)
        per_text.update({f"{PII_STAT}{kind}": counts for kind, counts in redacted.items()})
    kept, at, languages = keep_documents_with_languages(texts, recipe.filter, drops)
    return Cleaned(kept.to_pylist(), {name: counts[at] for name, counts in per_text.items()}, languages, at, texts, kept)


def chunk_worker(recipe: Recipe, tokenizer: LoadedTokenizer, files: list[InputFile] | None = None):
    """Build the per-process chunk function (runs once in each worker)."""

    index = index_for(recipe)  # decontaminate: the evaluation sets' n-grams, once per process

    def process(item: tuple[int, pa.RecordBatch]) -> ChunkResult:
        drops: Counter = Counter()
        kept, stats, languages, at, normalized, kept_arrow = clean_batch(item[1], recipe, drops)
        where = files[item[0]].location if files is not None else f"input {item[0]}"
        locations = [f"{where} line {line}" for line in item[1].column(C.LINE).to_pylist()]
        examples = filter_examples(normalized, at, locations, recipe.filter) if len(at) < len(normalized) else []
        contaminated: list[tuple[str, str, str]] = []
        if index is not None and kept:
            keep = drop_contaminated(index, kept, [locations[i] for i in at.tolist()], drops, contaminated)
            if not keep.all():
                examples += [(CONTAMINATED, locations[at[j]], shorten(kept[j])) for j in np.flatnonzero(~keep)[:PER_REASON].tolist()]
                kept = [t for t, k in zip(kept, keep.tolist()) if k]
                kept_arrow = kept_arrow.filter(pa.array(keep))
                stats = {name: values[keep] for name, values in stats.items()}
                languages = None if languages is None else [c for c, k in zip(languages, keep.tolist()) if k]
        hashes = content_hashes(kept_arrow)
        tokens, lengths = tokenizer.encode_docs(kept)
        if languages is not None:
            stats.update(language_stats(languages, lengths))
        return ChunkResult(
            hashes=hashes,
            validation=validation_flags(hashes, fraction=recipe.split.validation, salt=recipe.split.salt),
            tokens=tokens,
            lengths=lengths,
            source=item[0],
            drops=drops,
            doc_stats=stats,
            signatures=signatures(kept, recipe.filter.minhash) if recipe.filter.dedup == MINHASH else None,
            contaminated=contaminated,
            examples=examples,
        )

    return process


def chunk_reader(recipe: Recipe) -> chunks.ChunkReader:
    """How pretraining reads its chunks: the input's text as ``(file index, batch)`` of at most
    ``chunk_records`` records and ``chunk_bytes`` bytes."""
    return chunks.ChunkReader(partial(_read_file, recipe), max_bytes=recipe.output.chunk_bytes)


def _read_file(recipe: Recipe, index: int, file: InputFile, drops: Counter) -> Iterator[pa.RecordBatch]:
    return read_batches(file, index, batch_size=recipe.output.chunk_records, on_error=recipe.on_error, drops=drops)


def iter_chunks(files: list[InputFile], recipe: Recipe, read_drops: Counter, counts: Counter) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Every input record, in input order, as ``(file index, batch)`` (:func:`chunk_reader`)."""
    return chunk_reader(recipe).chunks(files, read_drops=read_drops, counts=counts)


def first_documents(files: list[InputFile], recipe: Recipe) -> list[str]:
    """The run's first documents, cleaned as its workers clean them: what the encode engine's parity
    probe samples (the first chunk that keeps any, read again when a run resumes). Read quietly: a bad
    record is neither logged nor raised here, and a damaged file ends the sample; the run's own reading
    reports both, in order."""
    # Small chunks: the probe needs PROBE_DOCS documents, and reading and cleaning a whole chunk of
    # chunk_records (2,048) for them cost a sixth of a 40 MB run's CPU. The same documents: the first
    # kept ones, up to the first chunk's worth of records when fewer are kept.
    small = dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, chunk_records=PROBE_DOCS))
    kept: list[str] = []
    records = 0
    try:
        with collecting([]):
            for _, batch in iter_chunks(files, small, Counter(), Counter()):
                kept += clean_texts(batch, small, Counter())
                records += batch.num_rows
                if len(kept) >= PROBE_DOCS or (kept and records >= recipe.output.chunk_records):
                    break
    except DataprepError:
        pass
    return kept[:PROBE_DOCS]


def iter_clean_texts(files: list[InputFile], recipe: Recipe,
                     first_seen: Callable[[list[bytes]], np.ndarray] | None = None) -> Iterator[str]:
    """Normalized, filtered, deduplicated texts: the corpus a trained tokenizer learns from (exact
    duplicates only: near-duplicates are decided in the run, after the tokenizer exists).
    ``first_seen``: digests -> True where new (the run passes its bounded-memory
    :class:`~dataprep.build.seen_set.SeenSet`); default a set in memory."""
    if first_seen is None:
        seen: set[bytes] = set()

        def first_seen(digests: list[bytes]) -> np.ndarray:
            new = np.zeros(len(digests), dtype=bool)
            for i, digest in enumerate(digests):
                if digest not in seen:
                    seen.add(digest)
                    new[i] = True
            return new

    for _, batch in iter_chunks(files, recipe, Counter(), Counter()):
        kept = clean_texts(batch, recipe, Counter())
        if recipe.filter.dedup == "none":
            yield from kept
            continue
        for text, new in zip(kept, first_seen(content_hashes(kept)).tolist()):
            if new:
                yield text


def make_packer(recipe: Recipe, tokenizer: LoadedTokenizer) -> WrapPacker | BfdPacker:
    p = recipe.packing
    if p.mode == "wrap":
        return WrapPacker(seq_len=p.seq_len, remainder=p.remainder, pad_id=tokenizer.pad_id)
    return BfdPacker(seq_len=p.seq_len, buffer_tokens=p.buffer_tokens, pad_id=tokenizer.pad_id, pad_rows=p.pad_rows)


class PretrainTask:
    """``task: pretrain``, ``objective: clm``: documents packed into rows, every token a target."""

    name = "pretrain"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer: LoadedTokenizer, tmp) -> LoadedTokenizer:
        return tokenizer

    def plan(self, recipe: Recipe, tokenizer: LoadedTokenizer, files: list[InputFile]) -> Plan:
        return Plan(
            format=FORMAT,
            schema=C.PRETRAIN_ROW_SCHEMA,
            reader=chunk_reader(recipe),
            worker=(chunk_worker, (recipe, tokenizer, files)),
            make_packer=lambda: make_packer(recipe, tokenizer),
            to_batch=lambda rows: rows.to_record_batch(),
            dedup=recipe.filter.minhash if recipe.filter.dedup == MINHASH else recipe.filter.dedup == "exact",
            rows=stream_facts(recipe),
        )

    def local_mode(self, recipe: Recipe) -> str:
        # pyarrow kernels, hashing and the encoders all release the GIL; MinHash's shingling does not
        return "processes" if recipe.filter.dedup == MINHASH else "threads"
