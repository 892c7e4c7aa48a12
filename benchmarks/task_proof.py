"""The task proof at CI size: a small model learns demo-sft's held-out answers; planted broken masks cannot.

Builds ``recipes/demo-sft.yaml`` (reverse a word, add two numbers, sort letters; byte-level
tokenizer), trains the CI-sized model on it, and trains the same model on two planted copies whose
``assistant_masks`` are wrong in every split:

- ``prompt``: the prompt is the target instead of the answer (masks inverted);
- ``no_stop``: the stop token that closes each answer is not a target.

and prints each run's held-out exact match (greedy, the stop token required), how many answers
stopped on time, and the seconds. ``tests/test_task_proof_ci.py`` runs this script with ``--json``
and asserts its figures: the good run >= 90%, each broken one <= 10%. The README quotes its output.

    python benchmarks/task_proof.py                  # CI size (CONFIG below)
    python benchmarks/task_proof.py --same-budget    # broken runs with the good run's steps too
    python benchmarks/task_proof.py --json out.json  # the figures, for the test

The broken runs take BROKEN_STEPS by default (they fail at any budget: a model whose data never
trains the stop token, or never trains the answer, cannot answer and stop; ``--same-budget`` shows
it at the good run's budget). The full default config (2,000 steps of the 0.62M "cpu" model) is
``pytest -m slow tests/test_train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The CI-sized run: a 2-layer, d_model 64 model (about 0.1M parameters with the byte vocabulary).
CONFIG = {"d_model": 64, "n_layers": 2, "n_heads": 2, "steps": 4000, "batch_size": 64, "eval_every": 0,
          "checkpoint_every": 0}
BROKEN_STEPS = 300
ACCURACY = 0.9     # the good run's held-out exact match must reach this
BROKEN_MAX = 0.1   # and each broken run's must stay at or below this
PLANTS = ("prompt", "no_stop")


def plant(src: Path, dst: Path, how: str) -> Path:
    """A copy of a fine-tuning dataset whose ``assistant_masks`` are broken in every split (``how``:
    ``prompt`` or ``no_stop``). The manifest is copied unchanged; the trainer does not read shard checksums."""
    from dataprep import columns as C
    from dataprep.train.loader import read_info

    shutil.copytree(src, dst)
    eos = read_info(src).stop_ids[0]
    for split in C.SPLITS:
        for shard in sorted((dst / split).glob("data-*.arrow")):
            table = pa.ipc.open_stream(pa.memory_map(str(shard))).read_all()
            masks = []
            for ids, mask in zip(table.column(C.INPUT_IDS).to_pylist(), table.column(C.LOSS_MASK).to_pylist()):
                mask = np.array(mask, dtype=np.uint8)
                if how == "prompt":
                    mask = 1 - mask
                    mask[0] = 0  # still never the first token
                else:
                    mask[(np.array(ids) == eos) & (mask == 1)] = 0
                masks.append(mask)
            column = pa.array(masks, type=pa.list_(pa.uint8()))
            table = table.set_column(table.schema.get_field_index(C.LOSS_MASK), C.LOSS_MASK, column)
            tmp = shard.with_name(shard.name + ".tmp")  # never truncate a file that is memory-mapped
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, shard)
    return dst


def one_run(dataset: Path, out: Path, settings: dict) -> dict:
    from dataprep.train.loop import config_from, train

    start = time.monotonic()
    report = train(dataset, out, config_from(**settings), overwrite=True, echo=lambda _: None)
    checks = report["checks"]
    task, learned, targets = checks["task"], checks["learned"], checks["targets"]
    return {"accuracy": task["after"], "stopped_on_time": task["stopped_on_time"],
            "never_stopped": task["never_stopped"], "examples": task["examples"], "passed": report["passed"],
            "checks": {name: check.get("pass") for name, check in checks.items()},
            "learned_target_drop": learned.get("target_drop"), "targets_found": targets.get("found"),
            "targets_masks_equal": targets.get("masks_equal"), "targets_first_mismatch": targets.get("first_mismatch"),
            "steps": settings["steps"], "seconds": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the datasets and runs go (default: a temporary folder)")
    parser.add_argument("--same-budget", action="store_true", help="broken runs take the good run's steps too")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the trainer's choice)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    from dataprep.build.run import run
    from dataprep.recipe import load_recipe

    work = args.work or Path(tempfile.mkdtemp(prefix="task-proof-"))
    settings = dict(CONFIG, threads=args.threads)
    print(f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}; model d_model {CONFIG['d_model']}, "
          f"{CONFIG['n_layers']} layers, batch {CONFIG['batch_size']}", flush=True)
    start = time.monotonic()
    good = work / "demo-sft"
    run(load_recipe(REPO / "recipes" / "demo-sft.yaml"), good, workers=1, overwrite=True)
    build = time.monotonic() - start
    figures = {"config": CONFIG, "build_seconds": round(build, 1), "runs": {}}
    figures["runs"]["good"] = one_run(good, work / "run-good", settings)
    for how in PLANTS:
        data = plant(good, work / f"demo-sft-{how}", how)
        steps = CONFIG["steps"] if args.same_budget else BROKEN_STEPS
        figures["runs"][how] = one_run(data, work / f"run-{how}", dict(settings, steps=steps))
    figures["seconds"] = round(time.monotonic() - start, 1)
    print(f"\n{'demo-sft, held-out exact match':<34}{'steps':>7}{'accuracy':>10}{'stopped':>9}{'seconds':>9}")
    for name, r in figures["runs"].items():
        label = {"good": "good masks", "prompt": "planted: prompt as target", "no_stop": "planted: stop not trained"}[name]
        print(f"{label:<34}{r['steps']:>7}{r['accuracy']:>10.1%}{r['stopped_on_time']:>9.1%}{r['seconds']:>9.1f}")
    print(f"{'total (build ' + format(build, '.1f') + ' s)':<34}{'':>26}{figures['seconds']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
