"""``run(recipe, out)``: build a dataset from a recipe, atomically, with its manifest.

Every task runs the same way: read chunks (this process; Ray workers on ``--engine ray``) ->
the task's chunk worker (threads, worker processes or Ray workers; results in input order) ->
:class:`~dataprep.build.ordered.OrderedStage` (dedup, split, pack, write; this process) -> manifest.
A task (:class:`~dataprep.tasks.base.Task`, picked by :func:`~dataprep.tasks.registry.task_for`) contributes a
:class:`~dataprep.tasks.base.Plan`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from dataprep._version import __version__
from dataprep import columns as C
from dataprep.build import accounting, checkpoint, reference_check
from dataprep.build.engine import default_workers, run_chunks
from dataprep.build.faults import os_fault
from dataprep.build.mixing import MIXTURE_DIR, Mixing
from dataprep.build.ordered import OrderedStage
from dataprep.build.progress import Progress
from dataprep.build.seen_set import SeenSet
from dataprep.build.segments import SegmentSpec, Segments
from dataprep.build.output_dir import open_output
from dataprep.build.worker_pool import WorkerPool
from dataprep.build.write import SplitWriter, batch_rows, write_bytes_atomic
from dataprep.dataset.manifest import Manifest, section
from dataprep.dataset.manifest_parts import (
    Counts,
    Decontamination,
    EvalSetCounts,
    Input,
    Mixture,
    MixtureSource,
    MixtureSplit,
    NearDuplicates,
    Packing,
    PackStats,
    Padding,
    PerSplit,
    Rows,
    Shard,
    Split,
    Splits,
    Tokenizer,
)
from dataprep.errors import ConfigError
from dataprep.read import InputFile, file_size, resolve_inputs
from dataprep.read.digests import InputDigests
from dataprep.recipe import Recipe
from dataprep.tasks import pretrain
from dataprep.tasks.base import RowFacts
from dataprep.tasks.decontamination import SIDE_FILE, index_for
from dataprep.tasks.registry import task_for
from dataprep.tasks.sft import engine_choice as sft_engine
from dataprep.text.decontaminate import DecontaminationIndex
from dataprep.text.language_stats import per_language
from dataprep.text.mojibake import FIXED_STAT
from dataprep.text.pii import PII_STAT
from dataprep.text.tokenizer import LoadedTokenizer, load_tokenizer
from dataprep.text.tokenizer_manifest import copy_tokenizer_files, tokenizer_manifest
from dataprep.text.train_bpe import train_tokenizer

log = logging.getLogger("dataprep.run")



def run(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    engine: str = "local",
    address: str | None = None,
    resume: bool = False,
    checkpoint_every: float | None = checkpoint.DEFAULT_EVERY,
) -> dict[str, Any]:
    """Build the dataset that ``recipe`` describes at ``out``; return its manifest (the JSON written).

    Args:
        recipe: a loaded recipe (:func:`dataprep.recipe.load_recipe`).
        out: the output folder. It appears only when the run succeeds.
        workers: chunks worked on at once (default: all cores): threads for pretraining, processes
            for fine-tuning, or the CPUs of a local Ray instance. Output does not depend on it.
        overwrite: replace an existing dataset at ``out``.
        progress: show a progress bar (None: only when stderr is a terminal).
        engine: ``local`` (this machine) or ``ray`` (reading and chunk work on Ray actors; same shards, byte for byte).
        address: with ``engine="ray"``: the cluster to join; default: start a local Ray instance.
        resume: continue the interrupted run in ``out.incomplete`` from its last checkpoint
            (:mod:`dataprep.build.checkpoint`); the shards are byte-identical to an uninterrupted run's.
        checkpoint_every: seconds between checkpoints (0: after every chunk; None: none).

    Raises:
        DataprepError: bad recipe values, unreadable inputs (with file and line), tokenizer problems,
            more data lost than the recipe allows, an output path that may not be written (a full
            disk, a read-only folder, another run writing it), or nothing to resume.
    """
    started = time.perf_counter()
    workers = workers or default_workers()
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    sources = InputDigests(files)  # size and content hash, taken on threads from now on; checked again at the end
    try:
        mode = task_for(recipe).local_mode(recipe)
        target = open_output(out, overwrite=overwrite, resume=resume)
        with contextlib.ExitStack() as stack:  # worker processes begin now, while the tokenizer loads (worker_pool)
            pool = stack.enter_context(WorkerPool(workers - 1, warm=(_warm_worker,))) if (
                engine == "local" and workers > 1 and mode == "processes") else None
            return _run(recipe, out, files, sources, target, workers=workers, progress=progress, engine=engine,
                        address=address, resume=resume, checkpoint_every=checkpoint_every, pool=pool, started=started)
    except BaseException:
        sources.cancel()  # the error is not held back until every input is hashed
        raise


def _warm_worker() -> None:
    """What a worker process imports before it knows its set-up: every task's chunk work, the encoders."""
    import importlib

    importlib.import_module("dataprep.build.lean_imports").pyarrow_without_pandas()  # a process of the run's own
    importlib.import_module("dataprep.tasks.registry")
    importlib.import_module("dataprep.text.encode_engine").warm_up()


def _run(recipe: Recipe, out: str | Path, files: list[InputFile], sources: InputDigests, target, *, workers: int,
         progress: bool | None, engine: str, address: str | None, resume: bool, checkpoint_every: float | None,
         pool: WorkerPool | None, started: float) -> dict[str, Any]:
    saves = checkpoint.Checkpoints(target.tmp / checkpoint.CHECKPOINT_DIR,
                                   every=checkpoint_every if target.resumable else None)
    try:
        manifest = _build(recipe, files, sources, target.tmp, saves, workers=workers, progress=progress, engine=engine,
                          address=address, resume=resume, pool=pool)
        facts = {"seconds": round(time.perf_counter() - started, 3), "workers": workers, "engine": engine,
                 "checkpoints": {"saved": saves.saved, "seconds": round(saves.seconds, 3), "resumed": resume}}
        manifest = manifest.portable(recipe, facts)  # paths relative to the recipe; run facts in `run`
        target.commit(manifest, list(C.SPLITS))
    except BaseException as exc:
        # a refused --resume keeps what it refused; an interruption keeps its checkpoint
        keep = isinstance(exc, checkpoint.ResumeError) or (_resumable(exc) and (resume or saves.saved > 0))
        target.abort(keep=keep)
        if keep and not isinstance(exc, checkpoint.ResumeError):
            log.warning("the run's last checkpoint is kept in %s: continue it with `dataprep run RECIPE --out %s --resume`",
                        target.tmp, out)
        if isinstance(exc, OSError):
            raise os_fault(exc, out=Path(str(out)), work=target.tmp, inputs=[f.location for f in files], resumable=keep) from exc
        raise
    return manifest.to_dict()


def _resumable(exc: BaseException) -> bool:
    """Whether a run that failed with ``exc`` may be continued: an interruption or a fault of the
    machine (a full disk, a lost worker), not a property of the data or the recipe, which a
    resumed run would meet again."""
    from dataprep.errors import EngineError

    return isinstance(exc, (KeyboardInterrupt, OSError, EngineError, MemoryError))


def _build(recipe: Recipe, files: list[InputFile], sources: InputDigests, tmp: Path, saves: checkpoint.Checkpoints, *,
           workers: int, progress: bool | None, engine: str, address: str | None, resume: bool,
           pool: WorkerPool | None) -> Manifest:
    """The run itself, in ``tmp``: read, work, dedup, split, pack, write; the manifest."""
    state = saves.load() if resume else None
    # a trained tokenizer is taken from the checkpoint, not trained again
    tokenizer = state["tokenizer"] if state is not None and state["tokenizer"] is not None else _tokenizer(recipe, files, tmp)
    index_for(recipe)  # decontaminate: read the evaluation sets now (their errors first; workers reuse it when forked)
    if recipe.task == "pretrain":  # the encode engine, chosen once on the run's first documents: every worker
        # inherits it with the pickled tokenizer, and the manifest records it (dataprep.text.encode_engine)
        tokenizer.choose_engine(pretrain.first_documents(files, recipe))
    elif recipe.task == "sft":  # fine-tuning's own probe: ids, offsets and masks on its first rendered examples
        sft_engine.choose_engine(recipe, tokenizer, files)
    plan = task_for(recipe).plan(recipe, tokenizer, files)
    # the checkpoint identity names the inputs' digests, hashed on threads since the run began:
    # asked for only by a resumed run's check (now) and by the first checkpoint
    ident = functools.cache(lambda: checkpoint.identity(recipe.hash, [(f.location, size, digest) for f, size, digest
                                                                      in zip(files, sources.sizes, sources.digests)],
                                                        tokenizer.fingerprint))
    saves.bind(ident)
    counts: Counter = Counter()
    read_drops: Counter = Counter()
    by_input: dict[int, Counter] = {}
    rows = batch_rows(seq_len=seq_len_of(recipe), batch_tokens=recipe.output.batch_tokens, shard_bytes=recipe.output.shard_bytes)
    writers = {s: SplitWriter(tmp / s, plan.schema, shard_bytes=recipe.output.shard_bytes, batch_rows=rows) for s in C.SPLITS}
    mixing = None if recipe.mixture is None else Mixing(
        recipe.mixture, [f.entry for f in files], tmp / MIXTURE_DIR, block=seq_len_of(recipe), unk_id=_unknown_id(tokenizer))
    segments = None if recipe.packing.segment_tokens is None else Segments(
        SegmentSpec(tmp / "train", plan.schema, plan.make_packer, plan.to_batch, shard_bytes=recipe.output.shard_bytes,
                    batch_rows=rows, unk_id=_unknown_id(tokenizer), wrap=recipe.packing.mode == "wrap"),
        segment_tokens=recipe.packing.segment_tokens, seq_len=seq_len_of(recipe),
        extra_dtypes=plan.make_packer().extra_dtypes, writer=writers["train"], workers=workers)
    stage = OrderedStage(writers, make_packer=plan.make_packer, to_batch=plan.to_batch, dedup=plan.dedup,
                         unk_id=_unknown_id(tokenizer), mixing=mixing, segments=segments)
    done: Counter = Counter()  # input file index -> chunks worked (what a checkpoint says is done)
    reader = plan.reader
    if state is not None:
        checkpoint.check_identity(state, ident(), tmp)
        stage.restore(state["stage"], state["seen"])
        for split, writer in writers.items():
            writer.restore(state["writers"][split])
        done.update(state["done"])
        reader = dataclasses.replace(reader, skip=tuple(sorted(done.items())))
        log.info("resuming from a checkpoint: %d chunk(s) of %d input(s) done", done.total(), len(done))
    bar = Progress(recipe.task, enabled=progress, inputs=[f.path for f in files], sizes=[file_size(f) for f in files])
    results = run_chunks(reader, plan.worker, files, read_drops=read_drops, counts=counts, progress=bar,
                         workers=workers, mode=task_for(recipe).local_mode(recipe), engine=engine, address=address,
                         by_input=by_input, pool=pool)
    if segments is not None:  # an engine may pack them itself (--engine ray: Ray tasks); else this process's threads
        segments.use(results.segment_runner)
    try:
        return _work(recipe, files, sources, saves, plan, tokenizer, stage, writers, results, done,
                     counts=counts, read_drops=read_drops, by_input=by_input, bar=bar, tmp=tmp)
    except BaseException:
        for writer in writers.values():  # no open file may outlive a failed run (it would hold its disk)
            writer.discard()
        raise
    finally:
        if segments is not None:  # its threads (a failed run: segments not begun are cancelled)
            segments.close()


def _work(recipe, files, sources, saves, plan, tokenizer, stage, writers, results, done, *, counts, read_drops,
          by_input, bar, tmp) -> Manifest:
    trained = recipe.tokenizer.train is not None  # only a trained tokenizer is kept in the checkpoint
    checked = 0  # inputs before this one are read to their end and had their losses checked
    with contextlib.closing(results):  # on an error here, stop the engine now (the Ray actors, the pool)
        for result in results:
            stage.add(result)
            done[result.source] += 1
            bar.update(docs=len(result.hashes), tokens=int(result.lengths.sum()))
            if result.source > checked:  # results come in input order: the inputs before it are done
                accounting.check_losses(recipe, files, by_input, stage, range(checked, result.source))
                checked = result.source
            if saves.due() and stage.settled():  # with segments: only between two of them
                saves.save(stage, writers, done, tokenizer if trained else None)
    accounting.check_losses(recipe, files, by_input, stage, range(checked, len(files)))
    bar.set_stage("finish")
    stage.finish()
    shards = {split: writer.close() for split, writer in writers.items()}
    accounting.check_output(recipe, stage, {s: sum(x["rows"] for x in shards[s]) for s in C.SPLITS}, read_drops)
    bar.set_stage("checksums")
    sources.check_unchanged()
    index = index_for(recipe)
    if index is not None:
        _write_side_file(tmp, stage.contaminated)
    manifest = _manifest(recipe, plan, tokenizer, files, counts, read_drops, stage, shards, by_input, sources, index)
    accounting.warn_unknown(stage, manifest.counts.tokens, tokenizer.tokens.get("unk"))
    bar.close()
    return manifest


def _unknown_id(tokenizer: LoadedTokenizer) -> int | None:
    """The id that stands for text the tokenizer cannot represent; None when it has none, or when
    that token also frames documents as BOS or EOS (GPT-2's config names ``<|endoftext|>`` for
    all). A pad that is also the unknown token (Llama 2) never appears among document tokens."""
    unk = tokenizer.unk_id
    return None if unk is None or unk in (tokenizer.bos_id, tokenizer.eos_id) else unk


def seq_len_of(recipe: Recipe) -> int:
    """The longest a row may be: the packing length, or the longest example when not packed."""
    return recipe.packing.seq_len if recipe.packing.mode != "none" else recipe.sft.max_length


def _tokenizer(recipe: Recipe, files: list[InputFile], tmp: Path) -> LoadedTokenizer:
    """The tokenizer the run encodes with, in the dataset's ``tokenizer/`` folder: saved there when
    trained or extended by the task, else its files copied (the dataset is self-contained)."""
    tokenizer = task_for(recipe).prepare_tokenizer(recipe, _load_or_train(recipe, files, tmp), tmp)
    if recipe.tokenizer.train is None and not tokenizer.added_tokens:
        copy_tokenizer_files(tokenizer, tmp / C.TOKENIZER_DIR)
    return tokenizer


def _load_or_train(recipe: Recipe, files: list[InputFile], tmp: Path) -> LoadedTokenizer:
    if recipe.tokenizer.train is None:
        tokenizer = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
        reference_check.check_run(tokenizer, recipe, files)  # warns when transformers would give other ids
        return tokenizer
    if recipe.task != "pretrain":
        raise ConfigError("tokenizer.train is for pretraining recipes; a fine-tuning recipe needs tokenizer.path")
    log.info("training a byte-level BPE (vocab %d) on the recipe's corpus", recipe.tokenizer.train["vocab_size"])
    # the training corpus deduplicated in bounded memory, as the run's ordered stage does
    tokenizer = train_tokenizer(pretrain.iter_clean_texts(files, recipe, SeenSet().first_seen), recipe.tokenizer)
    tokenizer.save(tmp / C.TOKENIZER_DIR)
    return tokenizer


def _write_side_file(folder: Path, contaminated: list[tuple[str, str, str]]) -> None:
    """``contamination.jsonl``: each document decontamination dropped, its set and item, in input order."""
    lines = "".join(json.dumps({"set": s, "item": item, "document": where}, ensure_ascii=False) + "\n"
                    for s, item, where in contaminated)
    write_bytes_atomic(folder / SIDE_FILE, lines.encode("utf-8"))


def _decontamination(index: DecontaminationIndex, contaminated: list[tuple[str, str, str]]) -> Decontamination:
    dropped = Counter(s for s, _, _ in contaminated)
    return Decontamination(ngram=index.n, min_words=index.min_words, file=SIDE_FILE, sets={
        name: EvalSetCounts(**counts, documents=dropped[name]) for name, counts in index.stats().items()})


def _manifest(recipe, plan, tokenizer, files, counts, read_drops, stage, shards, by_input, sources, index) -> Manifest:
    """The dataset's manifest, without its ``run`` section (:meth:`Manifest.portable` adds it)."""
    dropped = Counter(read_drops)
    dropped.update(stage.drops)
    pack = {split: section(PackStats, stats, f"packing.{split}") for split, stats in stage.pack_stats().items()}
    content = sum(p.content_tokens for p in pack.values())
    slots = sum(p.rows * p.seq_len for p in pack.values())
    sections = plan.manifest(stage)  # the task's own
    return Manifest(
        format=plan.format,
        dataprep_version=__version__,
        unicode_version=unicodedata.unidata_version,  # what NFC/NFKC mean (dataprep.text.normalize)
        recipe=dict(recipe.resolved),
        recipe_hash=recipe.hash,
        task=recipe.task,
        seq_len=seq_len_of(recipe),
        rows=_rows(recipe, plan.rows, pack),
        tokenizer=section(Tokenizer, tokenizer_manifest(recipe, tokenizer), "tokenizer"),
        inputs=tuple(
            Input(
                path=f.location,
                format=f.format,
                encoding=f.encoding if f.format not in ("parquet", "arrow") else None,
                bytes=sources.sizes[i],
                sha256=sources.digests[i],
                records_read=by_input.get(i, Counter())[accounting.RECORDS_READ],
                documents=stage.source_documents[i],  # written from this file (after dedup)
                dropped=dict(sorted(accounting.input_drops(i, by_input, stage).items())),
                tokens=stage.source_tokens[i],  # their tokens before packing
                unknown_tokens=stage.source_unknown[i],  # of those, the tokenizer's unknown-token id
            )
            for i, f in enumerate(files)
        ),
        padding=Padding(pad_token_id=tokenizer.pad_id, trailing_piece=True, column=C.NUM_PAD),
        counts=Counts(
            records_read=counts["records_read"],
            records_written=sum(stage.documents.values()),
            dropped=dict(sorted(dropped.items())),
            documents=PerSplit(**{split: stage.documents[split] for split in C.SPLITS}),
            tokens=content,
            unknown_tokens=PerSplit(**{split: stage.unknown[split] for split in C.SPLITS}),
            pad_tokens=sum(p.pad_tokens for p in pack.values()),
            remainder_tokens_dropped=sum(p.dropped_tokens for p in pack.values()),
            rows=PerSplit(**{split: pack[split].rows for split in C.SPLITS}),
            packing_efficiency=(content / slots) if slots else 0.0,
            near_duplicates=None if stage.near is None else NearDuplicates(**stage.near_duplicates()),
            redacted={kind: stage.stats[f"{PII_STAT}{kind}"] for kind in recipe.normalize.pii} or None,
            mojibake_fixed=stage.stats[FIXED_STAT] if recipe.normalize.fix_mojibake else None,
            languages=per_language(stage.stats) if recipe.filter.languages is not None else None,
            dropped_examples=dict(sorted(stage.examples.items())) or None,
        ),
        packing=Packing(**pack),
        splits=Splits(**{split: Split(shards=tuple(Shard(**shard) for shard in shards[split])) for split in C.SPLITS}),
        sft=sections.sft,
        fewshot=sections.fewshot,
        preference=sections.preference,
        objective=sections.objective,
        mixture=None if stage.mixing is None else _mixture(recipe, stage.mixing),
        decontamination=None if index is None else _decontamination(index, stage.contaminated),
    )


def _mixture(recipe: Recipe, mixing: Mixing) -> Mixture:
    """The manifest's ``mixture``: what each source asked for and wrote, per split."""
    return Mixture(seed=recipe.mixture.seed, tokens=recipe.mixture.tokens, sources=tuple(
        MixtureSource(name=spec.name, inputs=spec.entries, requested=drawn["requested"],
                      train=MixtureSplit(**drawn["train"]), validation=MixtureSplit(**drawn["validation"]))
        for spec, drawn in zip(recipe.mixture.sources, mixing.report)))


def _rows(recipe: Recipe, facts: RowFacts, pack: dict[str, PackStats]) -> Rows:
    """What this run decided about its rows, stated in the manifest for every reader: the task's
    facts, the row length, and whether the packer cut any document."""
    return Rows(
        length=seq_len_of(recipe),
        fixed_length=facts.fixed_length,
        packing=recipe.packing.mode,
        layout=facts.layout,
        cut_documents=sum(p.split_documents for p in pack.values()) > 0,
        starts_with_bos=recipe.tokenizer.add_bos if facts.starts_with_bos is None else facts.starts_with_bos,
        ends_with_eos=recipe.tokenizer.add_eos if facts.ends_with_eos is None else facts.ends_with_eos,
        label_column=facts.label_column,
    )