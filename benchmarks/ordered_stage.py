"""The ordered stage's own throughput beside one worker's: how many workers one driver can keep up with.

Every run has one ordered stage (dedup, split, pack, write; :mod:`dataprep.build.ordered`) in the
driver process, fed by any number of chunk workers. Its cost per token against a worker's sets the
ceiling: ``stage tokens/s / worker tokens/s`` workers (cores) before the driver is the bottleneck.

In one run, on the first ``--limit-mb`` of the bench corpus with ``bpe32k.json``:

1. worker: the pretraining chunk function (normalize, filter, hash, split flags, encode) over every
   chunk, in this process, one thread: CPU seconds per token (``tokenizers`` may use its own threads:
   ``RAYON_NUM_THREADS=1`` is set so one worker is one core);
2. ordered stage: the same chunk results fed to ``OrderedStage.add`` + ``finish`` with real shard
   writers (wrap, then bfd, at 2048; exact dedup): CPU seconds per token;
3. the ratio, the ceiling in cores. Issue #20 asks for >= 64.

Usage::

    python benchmarks/ordered_stage.py                  # 40 MB
    python benchmarks/ordered_stage.py --limit-mb 100
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
import shutil
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its pool: one worker = one core

from _bench import TOKENIZER, WORK, corpus_prefix, machine  # noqa: E402

from dataprep import columns as C  # noqa: E402
from dataprep.build.ordered import OrderedStage  # noqa: E402
from dataprep.build.write import SplitWriter, batch_rows  # noqa: E402
from dataprep.read import resolve_inputs  # noqa: E402
from dataprep.recipe import recipe_from_dict  # noqa: E402
from dataprep.tasks.registry import task_for  # noqa: E402
from dataprep.text.tokenizer import load_tokenizer  # noqa: E402


def cpu() -> float:
    return time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=40.0, help="corpus prefix (MB of JSONL)")
    args = parser.parse_args()
    data = corpus_prefix(args.limit_mb)
    print(machine())
    for mode in ("wrap", "bfd"):
        recipe = recipe_from_dict({"task": "pretrain", "inputs": [{"path": str(data)}], "tokenizer": {"path": str(TOKENIZER)},
                                   "packing": {"mode": mode, "seq_len": 2048}}, base_dir=WORK)
        tokenizer = load_tokenizer(recipe.tokenizer, base_dir=WORK)
        files = resolve_inputs(recipe.inputs, base_dir=WORK)
        plan = task_for(recipe).plan(recipe, tokenizer, files)
        setup, setup_args = plan.worker
        work = setup(*setup_args)
        chunks = list(plan.reader.chunks(files, read_drops=Counter(), counts=Counter()))
        started = cpu()
        chunk_results = [work(chunk) for chunk in chunks]
        worker_seconds = cpu() - started
        tokens = sum(int(r.lengths.sum()) for r in chunk_results)
        out = WORK / f"ordered-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        rows = batch_rows(seq_len=2048, batch_tokens=recipe.output.batch_tokens, shard_bytes=recipe.output.shard_bytes)
        writers = {s: SplitWriter(out / s, plan.schema, shard_bytes=recipe.output.shard_bytes, batch_rows=rows) for s in C.SPLITS}
        stage = OrderedStage(writers, make_packer=plan.make_packer, to_batch=plan.to_batch, dedup=plan.dedup)
        started = cpu()
        for result in chunk_results:
            stage.add(result)
        stage.finish()
        for writer in writers.values():
            writer.close()
        stage_seconds = cpu() - started
        shutil.rmtree(out, ignore_errors=True)
        worker_rate, stage_rate = tokens / worker_seconds, tokens / stage_seconds
        print(f"{mode}: {tokens:,} tokens in {len(chunks)} chunks; one worker {worker_rate / 1e6:.2f} Mtok per CPU s; "
              f"ordered stage {stage_rate / 1e6:.2f} Mtok per CPU s; ceiling {stage_rate / worker_rate:.1f} workers "
              f"(goal of #20: >= 64)")


if __name__ == "__main__":
    main()
