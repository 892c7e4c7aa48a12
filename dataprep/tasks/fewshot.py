"""Few-shot prompt sets (``task: fewshot``): the labeled pairs of fine-tuning, put in context.

::

    pool (main, before the run): every record rendered through the template; those in the train
        split (the content-hash split of fine-tuning) are the demonstrations
    read fields (main) -> [render query -> pick k demonstrations (seeded by the query) -> prompt
        -> tokenize once with offsets -> mask the query's answer -> fewer shots while too long]
        (workers) -> dedup -> split -> one prompt per row -> write (main)

Demo-sft's inline template, k=2, separator ``"\\n\\n"`` (``⟦ ⟧`` = assistant_masks 1)::

    Q: add 3 49\\nA: 52\\n\\nQ: reverse idp\\nA: pdi\\n\\nQ: add 60 83\\nA: ⟦143<eos>⟧
    |-- demonstration --|    |-- demonstration --|    ^ query_start

Demonstrations are the template's prompt and response without the stop token (they are
context, not targets); the query is rendered exactly as fine-tuning renders it, so its split
(and, with the same template and ``split``, the held-out queries) match an ``sft`` run of the
same data. A query never gets itself, nor any record with its prompt, as a demonstration, and
validation queries are never anyone's demonstration. When k demonstrations do not fit
``max_length``, the last ones are dropped until the prompt fits; ``overflow`` applies only
when the query alone is too long. The manifest counts prompts per number of shots.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.dataset.manifest_tasks import Fewshot, Pool as DemoPool, TaskSections  # Pool here is the demonstrations themselves
from dataprep.tasks.sft.records import chunk_reader, iter_chunks
from dataprep.tasks.sft.task import OnePerRow, manifest_section
from dataprep.tasks.sft.worker import SftWorker
from dataprep.text.filters import content_hashes, validation_flags
from dataprep.tasks.sft.loss_mask import encode_batch_flat
from dataprep.tasks.base import ChunkResult, Plan, example_facts
from dataprep.read import InputFile
from dataprep.recipe import Recipe
from dataprep.errors import RecordProblem
from dataprep.tasks.sft.templates import Rendered

log = logging.getLogger("dataprep.fewshot")

FORMAT = "dataprep.fewshot/2"
EXTRA_DRAWS = 8  # candidates drawn beyond k, so that excluded ones (the query, its prompt) can be replaced


@dataclass
class Pool:
    """The demonstrations: train-split records, rendered (deduplicated by content hash)."""

    hashes: list[bytes]
    prompts: list[str]  # the template's prompt of each record
    texts: list[str]  # prompt + response, no stop token

    def __len__(self) -> int:
        return len(self.hashes)

    def pick(self, query_hash: bytes, query_prompt: str, *, k: int, seed: int) -> list[int]:
        """Up to ``k`` demonstration indices for a query: seeded by the query, never the query itself."""
        if not k or not len(self):
            return []
        rng = np.random.default_rng([seed, int.from_bytes(query_hash[:8], "little")])
        draws = rng.choice(len(self), size=min(k + EXTRA_DRAWS, len(self)), replace=False).tolist()
        return [i for i in draws if self.hashes[i] != query_hash and self.prompts[i] != query_prompt][:k]


def build_pool(recipe: Recipe, tokenizer, files: list[InputFile]) -> Pool:
    """Read every input once and keep the train-split records as demonstrations."""
    worker = SftWorker(recipe, tokenizer, files, None)
    stop = worker.stop_text
    hashes: list[bytes] = []
    prompts: list[str] = []
    texts: list[str] = []
    seen: set[bytes] = set()
    for index, batch in iter_chunks(files, recipe, Counter(), Counter()):
        rendered = []
        columns = worker._columns(batch, files[index].entry)
        for row in range(batch.num_rows):
            try:
                rendered.append(worker._render({name: values[row] for name, values in columns.items()}))
            except RecordProblem:
                continue  # the run itself counts it as dropped (or stops on it)
        digests = content_hashes([r.text for r in rendered])
        held_out = validation_flags(digests, fraction=recipe.split.validation, salt=recipe.split.salt)
        for r, digest, out in zip(rendered, digests, held_out):
            if out or digest in seen:
                continue
            seen.add(digest)
            hashes.append(digest)
            prompts.append(r.text[: r.prompt_end])
            texts.append(r.text[: len(r.text) - len(stop)])
    return Pool(hashes, prompts, texts)


def prompt_of(query: Rendered, demos: list[str], separator: str) -> Rendered:
    """The k-shot example: demonstrations, then the query; targets and ``prompt_end`` moved past them.

    ``prompt_end`` marks where the query starts, so the encoder's ``prompt_tokens`` is the
    query's first token (``query_start``).
    """
    head = "".join(d + separator for d in demos)
    shift = len(head)
    return Rendered(text=head + query.text, targets=tuple((a + shift, b + shift) for a, b in query.targets), prompt_end=shift)


class FewshotWorker(SftWorker):
    """Renders, picks demonstrations, fits and masks one chunk (built once per worker process)."""

    def __init__(self, recipe: Recipe, tokenizer, files: list[InputFile], pool: Pool):
        super().__init__(recipe, tokenizer, files, None)
        self.pool = pool
        self.spec = recipe.fewshot

    def __call__(self, item: tuple[int, pa.RecordBatch]) -> ChunkResult:
        index, batch = item
        file = self.files[index]
        drops: Counter = Counter()
        columns = self._columns(batch, file.entry)
        queries, lines = [], []
        for row, line in enumerate(batch.column(C.LINE).to_pylist()):
            try:
                queries.append(self._render({name: values[row] for name, values in columns.items()}))
            except RecordProblem as problem:
                self._bad(file, line, problem.reason, problem.message, drops)
                continue
            lines.append(line)
        hashes = content_hashes([q.text for q in queries])
        demos = [self.pool.pick(h, q.text[: q.prompt_end], k=self.spec.k, seed=self.spec.seed) for h, q in zip(hashes, queries)]
        shots = np.array([len(d) for d in demos], dtype=np.int64)
        enc = self._encode(queries, demos, shots)
        # Too long: drop the last demonstration and encode again, only the prompts still over.
        while True:
            over = np.flatnonzero((enc.lengths > self.sft.max_length) & (shots > 0))
            if not len(over):
                break
            shots[over] -= 1
            enc = self._encode(queries, demos, shots, previous=enc, redo=over)
        stats = {f"shots_{n}": (shots == n).astype(np.int64) for n in range(self.spec.k + 1)}
        stats["shots"] = shots
        stats["fewer_shots"] = (shots < self.spec.k).astype(np.int64)
        return self._fit_batch(index, file, enc, queries, [None] * len(queries), lines, drops,
                               extra_stats=stats, extra_columns={C.QUERY_START: enc.prompt_tokens.astype(np.int32)})

    def _encode(self, queries: list[Rendered], demos: list[list[int]], shots: np.ndarray, *, previous=None, redo=None):
        """Encode every prompt (or, given ``previous``, only ``redo`` again) as one flat batch."""
        pool, sep = self.pool, self.spec.separator
        if previous is None:
            redo = np.arange(len(queries))
        fresh = encode_batch_flat(self.tokenizer, [prompt_of(queries[i], [pool.texts[j] for j in demos[i][: shots[i]]], sep) for i in redo.tolist()])
        if previous is None:
            return fresh
        return _replace(previous, redo, fresh)


def _replace(batch, which: np.ndarray, fresh):
    """``batch`` with examples ``which`` replaced by those of ``fresh`` (same order)."""
    from dataprep.tasks.sft.loss_mask import EncodedBatch

    n = len(batch)
    parts_ids, parts_mask, lengths = [], [], batch.lengths.copy()
    straddles, prompt_tokens = batch.straddles.copy(), batch.prompt_tokens.copy()
    lengths[which] = fresh.lengths
    straddles[which] = fresh.straddles
    prompt_tokens[which] = fresh.prompt_tokens
    source = np.zeros(n, dtype=np.int64)  # 0: previous, 1: fresh
    source[which] = 1
    slot = np.full(n, -1, dtype=np.int64)
    slot[which] = np.arange(len(which))
    for i in range(n):  # a Python loop per example, only on the rounds that shorten prompts
        b, j = (fresh, int(slot[i])) if source[i] else (batch, i)
        a, e = int(b.offsets[j]), int(b.offsets[j + 1])
        parts_ids.append(b.ids[a:e])
        parts_mask.append(b.mask[a:e])
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return EncodedBatch(np.concatenate(parts_ids).astype(np.int32), np.concatenate(parts_mask), lengths, offsets, straddles, prompt_tokens)


def fewshot_worker(recipe: Recipe, tokenizer, files: list[InputFile], pool: Pool) -> FewshotWorker:
    return FewshotWorker(recipe, tokenizer, files, pool)


SCHEMA = pa.schema([
    pa.field(C.INPUT_IDS, pa.list_(C.TOKEN_TYPE)),
    pa.field(C.SEQ_LENS, pa.list_(pa.int32())),
    pa.field(C.NUM_PAD, pa.int32()),
    pa.field(C.LOSS_MASK, pa.list_(pa.uint8())),
    pa.field(C.QUERY_START, pa.int32()),
])


def to_batch(rows) -> pa.RecordBatch:
    """One prompt per row; ``query_start`` (carried per token) becomes one value per row."""
    starts = rows.extras.pop(C.QUERY_START)
    batch = rows.to_record_batch()
    per_row = starts[rows.row_offsets[:-1]] if rows.num_rows else np.zeros(0, np.int32)
    return pa.RecordBatch.from_arrays([*batch.columns, pa.array(per_row.astype(np.int32))], schema=SCHEMA)


class FewshotTask:
    """``task: fewshot``: fine-tuning's labeled pairs as k-shot prompts, only the answer a target."""

    name = "fewshot"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer, tmp):
        return tokenizer

    def local_mode(self, recipe: Recipe) -> str:
        return "processes"  # templating and masks are Python that holds the GIL

    def plan(self, recipe: Recipe, tokenizer, files: list[InputFile]) -> Plan:
        """The demonstration pool (read first), the few-shot worker, one prompt per row, and the
        ``sft`` and ``fewshot`` sections."""
        return _plan(recipe, tokenizer, files)


def _plan(recipe: Recipe, tokenizer, files: list[InputFile]) -> Plan:
    pool = build_pool(recipe, tokenizer, files)
    k = recipe.fewshot.k
    if k and len(pool) < 2:
        log.warning("the demonstration pool (train split) holds %d record(s): most prompts get fewer than %d shots", len(pool), k)
    dtypes = {C.LOSS_MASK: np.dtype(np.uint8), C.QUERY_START: np.dtype(np.int32)}

    def manifest(stage) -> TaskSections:
        stats = stage.stats
        prompts = sum(stage.documents.values())
        return TaskSections(
            sft=manifest_section(recipe, stage, None, tokenizer),
            fewshot=Fewshot(
                k=k, separator=recipe.fewshot.separator, seed=recipe.fewshot.seed,
                pool=DemoPool(split="train", examples=len(pool)),
                shots={str(n): stats[f"shots_{n}"] for n in range(k + 1)},
                prompts_with_fewer_shots=stats["fewer_shots"],
                mean_shots=stats["shots"] / prompts if prompts else 0.0,
            ),
        )

    return Plan(
        format=FORMAT,
        schema=SCHEMA,
        reader=chunk_reader(recipe),
        worker=(fewshot_worker, (recipe, tokenizer, files, pool)),
        make_packer=lambda: OnePerRow(max_length=recipe.sft.max_length, extra_dtypes=dtypes),
        to_batch=to_batch,
        dedup=recipe.filter.dedup == "exact",
        rows=example_facts(recipe),
        manifest=manifest,
    )
