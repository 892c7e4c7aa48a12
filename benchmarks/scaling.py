"""Scaling: ``dataprep run`` on one core, on every core (local engine), and on Ray; what 1B and 1T tokens take.

In one run, on the same corpus prefix (``wrap`` 2048, recipe defaults):

- 1 core: ``--workers 1`` pinned to one core (``taskset``) with the tokenizer's thread pool off:
  the per-core rate;
- local ``--workers 1``: chunks one at a time here, the tokenizer's Rust pool on every core;
- local ``--workers N``: N chunks at once on threads sharing the Rust pool (the default);
- Ray ``--workers N``: a local N-CPU Ray instance started by the run (its start-up included),
  reader actors reading the input (one file each at a time) and one single-threaded actor per CPU
  working its chunks, fed by the driver's loop (``dataprep/build/ray_feed.py``);
- the driver alone: what one ``dataprep run`` process spends outside the chunk work (reading
  inputs, dedup, split, pack, write), measured in this process on one core. It bounds what a single
  driver can feed. A Ray driver does not read, and reads each result where it lies in the object
  store (no copy), but runs the loop that feeds the actors; with ``packing.segment_tokens`` it neither packs
  nor writes: ``benchmarks/ray_segments.py`` measures that driver's CPU per token and its ceiling.

Then it prints estimates for 1B and 1T tokens on N cores from the per-core rate, the measured
parallel efficiency, and the driver bound.

    python benchmarks/scaling.py                  # whole corpus (~5 min on 2 cores)
    python benchmarks/scaling.py --limit-mb 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from _bench import TOKENIZER, WORK, corpus_prefix, dataprep_cmd, machine, measure, write_recipe


def driver_seconds(recipe_path: Path, out: Path) -> tuple[float, float, int]:
    """(total, chunk-work) seconds of a serial run in this process, and its tokens."""
    from dataprep.build import engine
    from dataprep.build.run import run
    from dataprep.recipe import load_recipe

    spent = Counter()

    def timed_serial(setup, setup_args, items):
        fn = setup(*setup_args)
        for item in items:
            started = time.perf_counter()
            result = fn(item)
            spent["work"] += time.perf_counter() - started
            yield result

    engine._serial, original = timed_serial, engine._serial
    try:
        started = time.perf_counter()
        manifest = run(load_recipe(recipe_path), out, workers=1, overwrite=True, progress=False)
        total = time.perf_counter() - started
    finally:
        engine._serial = original
    shutil.rmtree(out)
    return total, spent["work"], manifest["counts"]["tokens"]


def duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=None, help="use the first MB of the corpus (default: all of it)")
    parser.add_argument("--work", type=Path, default=WORK / "scaling")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    data = corpus_prefix(args.limit_mb)
    print(f"machine: {machine()}")
    recipe = write_recipe(args.work / "recipe.yaml", {
        "task": "pretrain", "inputs": [{"path": str(data)}], "tokenizer": {"path": str(TOKENIZER)},
        "packing": {"mode": "wrap", "seq_len": 2048},
    })
    out = args.work / "out"
    one_core = os.environ | {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}
    runs = {
        "1 core (per-core rate)": (["taskset", "-c", "0"], ["-w", "1"], one_core),
        "local --workers 1": ([], ["-w", "1"], None),
        f"local --workers {cores}": ([], ["-w", str(cores)], None),
    }
    if not args.no_ray:
        runs[f"ray --workers {cores} (local instance)"] = ([], ["-w", str(cores), "--engine", "ray"], None)
    rates, tokens = {}, 0
    for name, (prefix, extra, env) in runs.items():
        cmd = prefix + dataprep_cmd(str(recipe), "--out", str(out), "--overwrite", *extra)
        measured = measure(cmd, env=env)
        tokens = json.loads((out / "manifest.json").read_text())["counts"]["tokens"]
        rates[name] = tokens / measured.seconds
        print(f"{name:36} {measured.seconds:7.1f} s  {rates[name] / 1e6:6.3f} M tokens/s  "
              f"peak RSS {measured.peak_rss / 2**20:,.0f} MiB  (other processes: {measured.others:.0%} of the CPUs)")
        shutil.rmtree(out)

    # The driver's own work, on one core: this process, pinned, pool off.
    os.sched_setaffinity(0, {0})
    os.environ.update({"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"})
    total, work, tokens = driver_seconds(recipe, out)
    driver_rate = tokens / (total - work)
    print(f"{'driver alone (1 core)':36} {total - work:7.1f} s  {driver_rate / 1e6:6.3f} M tokens/s "
          f"(chunk work {work:.1f} s of {total:.1f} s)")

    per_core = rates["1 core (per-core rate)"]
    efficiency = rates[f"local --workers {cores}"] / (cores * per_core)
    print(f"\nper-core rate {per_core / 1e6:.3f} M tokens/s; {cores} cores reach {efficiency:.0%} of {cores}x that; "
          f"one driver feeds at most ~{driver_rate / per_core:.0f} cores")
    print(f"{'cores':>8} {'1B tokens':>12} {'1T tokens':>12}")
    for n in (1, 2, 8, 32, 64, 128, 512):
        rate = min(per_core * n * (efficiency if n > 1 else 1.0), driver_rate)
        bound = " (driver-bound: split the inputs over several runs)" if rate == driver_rate else ""
        print(f"{n:8} {duration(1e9 / rate):>12} {duration(1e12 / rate):>12}{bound}")


if __name__ == "__main__":
    main()
