"""Training tokens/s with one CPU thread and with every available core, side by side.

torch's CPU threads wait for each other at every operation: on an idle machine more threads are
faster, but when other work keeps the cores busy a descheduled thread stalls the others. This runs
the same short demo-sft training with ``--threads 1`` and ``--threads N`` (N: the cores this process
may run on), alternating, and prints each run's training tokens/s (from ``verify.json``) and the ratio,
with the machine's load average, so that the README's advice for a busy machine is a measurement.

    python benchmarks/train_threads.py                   # builds demo-sft into a temporary folder
    python benchmarks/train_threads.py --steps 100 --rounds 3
    python benchmarks/train_threads.py --busy 2          # with 2 other CPU-bound processes running: a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def dataprep(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dataprep", *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="Training steps per run (default 60).")
    parser.add_argument("--rounds", type=int, default=2, help="Runs per thread count, alternating (default 2).")
    parser.add_argument("--busy", type=int, default=0, help="Other CPU-bound processes to run meanwhile (default 0).")
    opts = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="train-threads-"))
    dataprep("run", "recipes/demo-sft.yaml", "--out", str(work / "demo-sft"))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(opts.busy)]
    print(f"demo-sft, {opts.steps} steps per run, {cores} cores, {opts.busy} other busy processes; "
          f"load average (1 / 5 / 15 min) at the start {load()}")
    rates: dict[int, list[float]] = {1: [], cores: []}
    try:
        for round_ in range(opts.rounds):
            for threads in rates:
                run = work / f"run-{threads}-{round_}"
                dataprep("train", str(work / "demo-sft"), "--out", str(run), "--steps", str(opts.steps), "--threads", str(threads),
                         "--set", "task_proof=off", "--set", "eval_every=0", "--set", "checkpoint_every=0")
                rate = json.loads((run / "verify.json").read_text())["throughput"]["train_tokens_per_s"]
                rates[threads].append(rate)
                print(f"  --threads {threads}: {rate:,.0f} tok/s  (load {load()})")
    finally:  # never leave them spinning
        for spinner in spinners:
            spinner.kill()
    best = {threads: max(found) for threads, found in rates.items()}
    print(f"best of {opts.rounds}: 1 thread {best[1]:,.0f} tok/s, {cores} threads {best[cores]:,.0f} tok/s: "
          f"one thread is {best[1] / best[cores]:.2f}x the speed of {cores}; load average at the end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
