"""The ordered stage's own cost per token beside one worker's: how many workers one driver keeps up with.

Every run has one ordered stage (:mod:`dataprep.build.ordered`) in the driver process, fed by any
number of chunk workers. Its CPU per token against a worker's sets the ceiling: ``worker CPU per
token / stage CPU per token`` workers (cores) before the driver is the bottleneck.

In one run, on the first ``--limit-mb`` of the bench corpus with ``bpe32k.json``, for ``wrap`` and
``bfd`` at 2048 with exact dedup and the recipe's 1% validation split:

1. worker: the pretraining chunk function (normalize, filter, hash, split flags, encode) over every
   chunk, in this process, one thread: CPU seconds per token (``RAYON_NUM_THREADS=1``: one worker is
   one core);
2. one stream (no ``segment_tokens``): the same chunk results through ``OrderedStage.add`` +
   ``finish`` with real shard writers: the stage does dedup, split, pack, write and digests;
3. segments (``packing.segment_tokens``, :mod:`dataprep.build.segments`): the stage's own thread
   (dedup, split, counts, the partial row between segments, adopting shards) timed with
   ``time.thread_time``; the segment threads' work (gather, pack, write, digest) timed where it
   runs and counted as worker work (it runs on the workers' threads, in parallel);
4. the ceilings in cores. Issue #20 asks for >= 64.

Usage::

    python benchmarks/ordered_stage.py                  # 40 MB, segments of 8M tokens
    python benchmarks/ordered_stage.py --limit-mb 100 --segment-tokens 4000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from collections import Counter

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its pool: one worker = one core

from _bench import TOKENIZER, WORK, corpus_prefix, machine  # noqa: E402

from dataprep import columns as C  # noqa: E402
from dataprep.build import segments as seg  # noqa: E402
from dataprep.build.ordered import OrderedStage  # noqa: E402
from dataprep.build.write import SplitWriter, batch_rows  # noqa: E402
from dataprep.read import resolve_inputs  # noqa: E402
from dataprep.recipe import recipe_from_dict  # noqa: E402
from dataprep.tasks import pretrain  # noqa: E402
from dataprep.tasks.registry import task_for  # noqa: E402
from dataprep.text.tokenizer import load_tokenizer  # noqa: E402

SEQ_LEN = 2048


def timed_segments() -> tuple[dict, threading.Lock]:
    """Wrap pack_segment so that each call adds its thread's CPU seconds to a total."""
    spent, lock = {"seconds": 0.0}, threading.Lock()
    original = seg.pack_segment

    def pack_segment(*args, **kwargs):
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                spent["seconds"] += time.thread_time() - started

    seg.pack_segment = pack_segment
    return spent, lock


def stage_for(recipe, plan, tokenizer, out, *, segment_tokens: int | None, workers: int) -> OrderedStage:
    shutil.rmtree(out, ignore_errors=True)
    rows = batch_rows(seq_len=SEQ_LEN, batch_tokens=recipe.output.batch_tokens, shard_bytes=recipe.output.shard_bytes)
    writers = {s: SplitWriter(out / s, plan.schema, shard_bytes=recipe.output.shard_bytes, batch_rows=rows) for s in C.SPLITS}
    segments = None
    if segment_tokens:
        spec = seg.SegmentSpec(out / "train", plan.schema, plan.make_packer, plan.to_batch, shard_bytes=recipe.output.shard_bytes,
                               batch_rows=rows, unk_id=None, wrap=recipe.packing.mode == "wrap")
        segments = seg.Segments(spec, segment_tokens=segment_tokens, seq_len=SEQ_LEN, extra_dtypes={},
                                writer=writers["train"], workers=workers)
    return OrderedStage(writers, make_packer=plan.make_packer, to_batch=plan.to_batch, dedup=plan.dedup, segments=segments)


def chunk_results(recipe, tokenizer) -> tuple[object, list, float]:
    """The run's plan, and its chunk function over every chunk in this process, one thread: the
    results and the CPU seconds they took (a worker core's work; ``ray_segments.py`` uses it too)."""
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    tokenizer.choose_engine(pretrain.first_documents(files, recipe))  # as the run chooses it
    plan = task_for(recipe).plan(recipe, tokenizer, files)
    setup, setup_args = plan.worker
    work = setup(*setup_args)
    chunks = list(plan.reader.chunks(files, read_drops=Counter(), counts=Counter()))
    started = time.process_time()
    results = [work(chunk) for chunk in chunks]
    return plan, results, time.process_time() - started


def drive(stage: OrderedStage, results) -> tuple[float, float]:
    """Feed the results and finish; the CPU seconds of this thread (the driver's), and the train split's fill."""
    started = time.thread_time()
    for result in results:
        stage.add(result)
    stage.finish()
    shards = {split: writer.close() for split, writer in stage.writers.items()}
    if stage.segments is not None:
        stage.segments.close()
    seconds = time.thread_time() - started
    assert sum(s["rows"] for s in shards["train"]) > 0
    return seconds, stage.pack_stats()["train"]["efficiency"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=40.0, help="corpus prefix (MB of JSONL)")
    parser.add_argument("--segment-tokens", type=int, default=8_000_000, help="packing.segment_tokens")
    parser.add_argument("--segment-threads", type=int, default=2, help="threads packing segments")
    args = parser.parse_args()
    data = corpus_prefix(args.limit_mb)
    print(machine())
    spent, lock = timed_segments()
    print("| packing | tokens | worker Mtok/CPU-s | one stream: stage Mtok/CPU-s | ceiling | segments: driver Mtok/CPU-s "
          "| segment threads Mtok/CPU-s | ceiling | fill: one stream / segments |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in ("wrap", "bfd"):
        recipe = recipe_from_dict({"task": "pretrain", "inputs": [{"path": str(data)}],
                                   "tokenizer": {"path": str(TOKENIZER), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
                                   "packing": {"mode": mode, "seq_len": SEQ_LEN}}, base_dir=WORK)
        tokenizer = load_tokenizer(recipe.tokenizer, base_dir=WORK)
        plan, results, worker = chunk_results(recipe, tokenizer)
        tokens = sum(int(r.lengths.sum()) for r in results)
        one, one_fill = drive(stage_for(recipe, plan, tokenizer, WORK / f"ordered-{mode}", segment_tokens=None, workers=1), results)
        spent["seconds"] = 0.0
        driver, seg_fill = drive(stage_for(recipe, plan, tokenizer, WORK / f"ordered-{mode}-seg", segment_tokens=args.segment_tokens,
                                 workers=args.segment_threads), results)
        with lock:
            threads = spent["seconds"]
        for out in (WORK / f"ordered-{mode}", WORK / f"ordered-{mode}-seg"):
            shutil.rmtree(out, ignore_errors=True)
        rate = lambda seconds: tokens / seconds / 1e6  # noqa: E731
        # with segments a worker's share of the work per token is its chunk plus its share of the segments
        print(f"| {mode} | {tokens:,} | {rate(worker):.2f} | {rate(one):.2f} | {worker / one:.1f} | {rate(driver):.1f} "
              f"| {rate(threads):.2f} | {(worker + threads) / driver:.0f} | {one_fill:.2%} / {seg_fill:.2%} |")
    print(f"\nceiling = worker CPU per token / driver CPU per token (segments: the worker's share includes the "
          f"segment threads'); segments of {args.segment_tokens:,} tokens, {len(results)} chunks. #20 asks for >= 64.")


if __name__ == "__main__":
    main()
