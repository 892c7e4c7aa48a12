"""T5-style span corruption (``objective: span_corruption``): denoising rows of a fixed shape.

::

    read -> [normalize -> filter -> tokenize + EOS] (workers) -> dedup -> split
         -> SpanPacker: wrap into raw rows of raw_length tokens -> corrupt each row (seeded) -> write

Lengths (T5's ``compute_input_and_target_lengths``): for ``seq_len`` input tokens, the raw length
is the largest whose corrupted input fits, and it fits *exactly*: with
``noise = round(raw * noise_density)`` and ``spans = round(noise / mean_span_length)``, the input
is ``raw - noise + spans + 1`` (one sentinel per span, then EOS) and the labels
``noise + spans + 1``. ``seq_len=512``, density 0.15, mean 3: raw 568, noise 85, 28 spans,
labels 114. Every row has the same number of spans, so it needs sentinels ``<extra_id_0>``
... ``<extra_id_{spans-1}>``: taken from the tokenizer, or added to it (and the extended
tokenizer saved in ``OUT/tokenizer/``).

Spans (T5's ``random_spans_noise_mask``): the noise tokens are cut into ``spans`` random
non-empty runs, the other tokens likewise, and the row alternates keep, noise, keep, noise::

    raw      a b c d e f g h i j      (noise: c d, h)
    input    a b <X0> e f g <X1> i j </s>
    labels   <X0> c d <X1> h </s>

Merging the two at the sentinels gives the raw row back, exactly. Rows are one sequence
(``seq_lens = [seq_len]``): T5 encodes a row whole, document EOS tokens included.
Randomness: ``default_rng([seed, split, first row])`` per block of ``CORRUPT_BLOCK_ROWS`` rows (the
split's last block shorter), a function of the rows alone: shards are the same for any
``--workers`` or input chunking.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.errors import ConfigError
from dataprep.pack.rows import PackedRows, PackStats, RowBlocks
from dataprep.pack.wrap import WrapPacker
from dataprep.tasks import pretrain
from dataprep.dataset.manifest_parts import CORRUPTED
from dataprep.dataset.manifest_tasks import Span, TaskSections
from dataprep.tasks.base import Plan, RowFacts, fixed_rows, with_special_tokens

if TYPE_CHECKING:
    from dataprep.recipe import Recipe
    from dataprep.text.tokenizer import LoadedTokenizer

FORMAT = "dataprep.span/2"
SENTINEL = "<extra_id_{}>"
CORRUPT_BLOCK_ROWS = 1024  # rows corrupted with one generator (see RowBlocks)


def _noise(raw: int, density: float, mean: float) -> tuple[int, int]:
    noise = min(max(int(round(raw * density)), 1), raw - 1)
    spans = max(int(round(noise / mean)), 1)
    return noise, min(spans, noise, raw - noise)


def lengths_for(seq_len: int, noise_density: float, mean_span_length: float, *, eos: bool = True) -> dict[str, int]:
    """Raw row length, noise tokens, spans and labels length for input rows of exactly ``seq_len``.

    Raises:
        ConfigError: ``seq_len`` too short to hold one span and its context.
    """
    extra = 1 if eos else 0

    def input_len(raw: int) -> int:
        noise, spans = _noise(raw, noise_density, mean_span_length)
        return raw - noise + spans + extra

    if seq_len < 3 + extra:
        raise ConfigError(f"packing.seq_len {seq_len} is too short for span corruption (a kept token, a sentinel, a kept token{', EOS' if eos else ''}); raise it")
    raw = 2
    while input_len(raw + 1) <= seq_len:
        raw += 1
    if input_len(raw) != seq_len:  # input grows by 0 or 1 per raw token, so this cannot happen; guard anyway
        raise ConfigError(f"no raw length gives input rows of exactly {seq_len} tokens with noise_density {noise_density}")
    noise, spans = _noise(raw, noise_density, mean_span_length)
    return {"raw_length": raw, "noise_tokens": noise, "spans": spans, "labels_length": noise + spans + extra}


def _segments(rng: np.random.Generator, rows: int, items: int, parts: int) -> np.ndarray:
    """``rows x parts`` random positive lengths summing to ``items`` (uniform over compositions)."""
    if parts == 1:
        return np.full((rows, 1), items, dtype=np.int64)
    cuts = np.sort(np.argsort(rng.random((rows, items - 1)), axis=1)[:, : parts - 1], axis=1) + 1
    bounds = np.concatenate([np.zeros((rows, 1), np.int64), cuts, np.full((rows, 1), items, np.int64)], axis=1)
    return np.diff(bounds, axis=1)


def corrupt(raw: np.ndarray, rng: np.random.Generator, *, noise: int, spans: int, sentinels: np.ndarray,
            eos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt rows ``raw`` (``rows x raw_length``): ``(inputs, labels)``, two 2-D int32 arrays.

    Each row alternates kept and noise runs (kept first); a noise run becomes one sentinel in the
    input, and the labels list each sentinel followed by its run; both end with ``eos`` if given.
    """
    rows, length = raw.shape
    noise_lens = _segments(rng, rows, noise, spans)
    keep_lens = _segments(rng, rows, length - noise, spans)
    runs = np.stack([keep_lens, noise_lens], axis=2).reshape(-1)  # keep0 noise0 keep1 noise1 ... per row
    run_kind = np.tile([0, 1], rows * spans).astype(bool)
    is_noise = np.repeat(run_kind, runs)
    run_start = np.zeros(len(is_noise), dtype=bool)
    run_start[np.cumsum(runs) - runs] = True
    span_id = np.tile(np.repeat(np.arange(spans), 2), rows)
    sentinel = sentinels[np.repeat(span_id, runs)]
    flat = raw.reshape(-1)
    first_noise = is_noise & run_start
    in_input = ~is_noise | first_noise
    inputs = np.where(first_noise, sentinel, flat)[in_input].reshape(rows, length - noise + spans)
    # labels: a sentinel before each noise run's first token, then the noise tokens
    counts = is_noise.astype(np.int64) + first_noise
    at = np.cumsum(counts) - counts
    labels = np.empty(int(counts.sum()), dtype=np.int32)
    labels[at[first_noise]] = sentinel[first_noise]
    labels[at[is_noise] + first_noise[is_noise]] = flat[is_noise]
    labels = labels.reshape(rows, noise + spans)
    if eos is not None:
        tail = np.full((rows, 1), eos, dtype=np.int32)
        inputs, labels = np.concatenate([inputs, tail], axis=1), np.concatenate([labels, tail], axis=1)
    return inputs.astype(np.int32), labels


def sentinel_names(recipe: Recipe, tokenizer: LoadedTokenizer) -> list[str]:
    """The sentinels the rows need: ``<extra_id_0>`` ... one per span. Those already in the
    vocabulary (a T5 tokenizer's extra ids) are used as they are; the others are added
    (:meth:`SpanTask.prepare_tokenizer`)."""
    spans = lengths_for(recipe.packing.seq_len, recipe.span.noise_density, recipe.span.mean_span_length,
                        eos=tokenizer.eos_id is not None)["spans"]
    return [SENTINEL.format(i) for i in range(spans)]


class SpanPacker:
    """Wrap documents into raw rows and corrupt them (see the module docstring).

    Args:
        recipe: the recipe (``packing.seq_len``, ``span_corruption``).
        tokenizer: gives the sentinel and EOS ids.
        stream: which packer of the run this is (0 train, 1 validation): part of the seed.
    """

    def __init__(self, recipe: Recipe, tokenizer: LoadedTokenizer, *, stream: int):
        self.eos = tokenizer.eos_id
        self.shape = lengths_for(recipe.packing.seq_len, recipe.span.noise_density, recipe.span.mean_span_length,
                                 eos=self.eos is not None)
        self.sentinels = np.array([tokenizer.tokenizer.token_to_id(SENTINEL.format(i)) for i in range(self.shape["spans"])], dtype=np.int32)
        self.seed, self.stream = recipe.span.seed, stream
        self.blocks = RowBlocks(CORRUPT_BLOCK_ROWS)  # one generator per block of rows
        self.seq_len = recipe.packing.seq_len
        self.inner = WrapPacker(seq_len=self.shape["raw_length"], remainder="drop")

    @property
    def stats(self) -> PackStats:
        """The inner packer's counters in rows as written: ``content_tokens`` counts input tokens
        (``rows x seq_len``); ``dropped_tokens`` the raw tokens of the final partial row."""
        raw = self.inner.stats
        return PackStats(seq_len=self.seq_len, documents=raw.documents, content_tokens=raw.rows * self.seq_len,
                         rows=raw.rows, dropped_tokens=raw.dropped_tokens, dropped_rows=raw.dropped_rows,
                         split_documents=raw.split_documents)

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> PackedRows:
        return self._corrupt(self.inner.add(tokens, doc_lens), final=False)

    def finish(self) -> PackedRows:
        return self._corrupt(self.inner.finish(), final=True)

    def _corrupt(self, rows: PackedRows, *, final: bool) -> PackedRows:
        corrupted = [self._corrupt_block(first, block) for first, block in self.blocks.add(rows, final=final)]
        return PackedRows.concat(corrupted, {C.LABELS: np.dtype(np.int32)})

    def _corrupt_block(self, first: int, rows: PackedRows) -> PackedRows:
        n = rows.num_rows
        rng = np.random.default_rng([self.seed, self.stream, first])
        inputs, labels = corrupt(rows.input_ids.reshape(n, -1), rng, noise=self.shape["noise_tokens"],
                                 spans=self.shape["spans"], sentinels=self.sentinels, eos=self.eos)
        return PackedRows(
            input_ids=inputs.reshape(-1), row_offsets=np.arange(n + 1, dtype=np.int64) * self.seq_len,
            seq_lens=np.full(n, self.seq_len, dtype=np.int32), seq_offsets=np.arange(n + 1, dtype=np.int64),
            num_pad=np.zeros(n, dtype=np.int32), extras={C.LABELS: labels.reshape(-1)},
        )


SCHEMA = C.PRETRAIN_ROW_SCHEMA.append(pa.field(C.LABELS, pa.list_(pa.int32())))


def to_batch(labels_length: int):
    """Rows -> Arrow: ``labels`` have their own length, so they get their own offsets."""

    def convert(rows: PackedRows) -> pa.RecordBatch:
        labels = rows.extras.pop(C.LABELS)
        batch = rows.to_record_batch()
        offsets = pa.array((np.arange(rows.num_rows + 1, dtype=np.int64) * labels_length).astype(np.int32))
        return pa.RecordBatch.from_arrays([*batch.columns, pa.ListArray.from_arrays(offsets, pa.array(labels))], schema=SCHEMA)

    return convert


class SpanTask:
    """``objective: span_corruption``: the pretraining worker, rows wrapped and corrupted T5-style."""

    name = "span_corruption"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer: LoadedTokenizer, tmp) -> LoadedTokenizer:
        """The sentinels every row needs, taken from the tokenizer or added to it."""
        return with_special_tokens(recipe, tokenizer, sentinel_names(recipe, tokenizer), tmp)

    def local_mode(self, recipe: Recipe) -> str:
        return "threads"  # pyarrow kernels, hashing and the encoders all release the GIL

    def plan(self, recipe: Recipe, tokenizer: LoadedTokenizer, files) -> Plan:
        """The pretraining reader and worker, the span packer (wrap, then corrupt each row), and
        the ``objective`` section."""
        return _plan(recipe, tokenizer, files)


def _plan(recipe: Recipe, tokenizer: LoadedTokenizer, files=None) -> Plan:
    if tokenizer.eos_id is not None and not tokenizer.add_eos:
        raise ConfigError("span corruption ends every row with EOS and needs document boundaries: set `tokenizer.add_eos: true`")
    shape = lengths_for(recipe.packing.seq_len, recipe.span.noise_density, recipe.span.mean_span_length,
                        eos=tokenizer.eos_id is not None)
    streams = itertools.count()

    def manifest(stage: Any) -> TaskSections:
        sentinels = tuple(tokenizer.tokenizer.token_to_id(SENTINEL.format(i)) for i in range(shape["spans"]))
        return TaskSections(objective=Span(
            noise_density=recipe.span.noise_density, mean_span_length=recipe.span.mean_span_length,
            seed=recipe.span.seed, **shape, input_length=recipe.packing.seq_len, sentinel_ids=sentinels,
            eos_id=tokenizer.eos_id, added_tokens=tuple(tokenizer.added_tokens),
            raw_tokens=sum(p["rows"] for p in stage.pack_stats().values()) * shape["raw_length"],
        ))

    return Plan(
        format=FORMAT,
        schema=SCHEMA,
        reader=pretrain.chunk_reader(recipe),
        worker=(pretrain.chunk_worker, (recipe, tokenizer, files)),
        make_packer=lambda: SpanPacker(recipe, tokenizer, stream=next(streams)),
        to_batch=to_batch(shape["labels_length"]),
        dedup=recipe.filter.dedup == "exact",
        rows=RowFacts(layout=CORRUPTED, fixed_length=fixed_rows(recipe, wrap_fills=True)),
        manifest=manifest,
    )
