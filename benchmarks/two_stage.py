"""The two-stage demo end to end: pretrain a base model, fine-tune it, and compare in-context
learning with fine-tuning on the same held-out queries.

1. build ``recipes/two-stage-pretrain.yaml``: rule episodes (several "Q: ..\\nA: .." demonstrations
   of one rule out of four, two rules to each way of writing the answer; recipes/data/generate.py)
   plus the sample prose, with a BPE trained on that mix;
2. pretrain the base model on it (``dataprep train``);
3. build ``recipes/two-stage-sft.yaml`` (one rule: reverse the letters) and
   ``recipes/two-stage-fewshot.yaml`` (its held-out queries, alone and after 2 demonstrations)
   with the tokenizer stage 1 trained;
4. fine-tune the base model (``dataprep train --init-from BASE --eval-fewshot FEWSHOT``), which
   prints the table: base model zero-shot and 2-shot (in context), fine-tuned zero-shot and 2-shot.

The query alone leaves the base model one rule in four (zero-shot); two demonstrations show it
which pair of rules applies but not which of the two (in-context learning: about half); fine-tuning
on the one rule leaves no doubt (fine-tuned zero-shot: all but a few).

Prints the table and each step's seconds; the README quotes this output.

    python benchmarks/two_stage.py                        # out/two-stage-*, runs/two-stage-*
    python benchmarks/two_stage.py --work /tmp/ts         # somewhere else
    python benchmarks/two_stage.py --pretrain-steps 400   # quicker, weaker base model

A synthetic pretraining mix that contains the task's format: what it shows is the difference
between prompting a base model with demonstrations and training on them, on data you can read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def dataprep(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataprep", *args]


def step(name: str, cmd: list[str], seconds: dict[str, float], *, verdict: bool = False) -> str:
    """Run one command; its output is printed when it fails. ``verdict``: a training run whose checks
    failed (exit 1, verify.json written) goes on, with its output, so the table still prints."""
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds[name] = time.monotonic() - start
    if done.returncode != 0:
        print(done.stdout + done.stderr)
    if done.returncode != 0 and not (verdict and done.returncode == 1 and "verdict: FAIL" in done.stdout):
        sys.exit(f"{name} failed (exit {done.returncode}): {' '.join(cmd)}")
    print(f"{name:<28} {seconds[name]:7.1f} s", flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO, help="where out/ and runs/ go (default: the repository)")
    parser.add_argument("--pretrain-steps", type=int, default=800, help="base model steps (default 800)")
    parser.add_argument("--finetune-steps", type=int, default=300, help="fine-tuning steps (default 300)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per step, both stages (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the trainer's choice)")
    args = parser.parse_args()
    out, runs = args.work / "out", args.work / "runs"
    data = {name: out / f"two-stage-{name}" for name in ("pretrain", "sft", "fewshot")}
    base, tuned = runs / "two-stage-base", runs / "two-stage-ft"
    common = ["--batch-size", str(args.batch_size), "--set", "checkpoint_every=0", "--overwrite"]
    if args.threads:
        common += ["--threads", str(args.threads)]
    print(f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}")
    seconds: dict[str, float] = {}
    start = time.monotonic()
    step("build pretrain data", dataprep("run", str(RECIPES / "two-stage-pretrain.yaml"), "--out", str(data["pretrain"]),
                                         "--overwrite"), seconds)
    step("pretrain the base model", dataprep("train", str(data["pretrain"]), "--out", str(base), "--steps",
                                             str(args.pretrain_steps), *common), seconds)
    tokenizer = f"tokenizer.path={data['pretrain'] / 'tokenizer'}"
    for name in ("sft", "fewshot"):
        step(f"build {name} data", dataprep("run", str(RECIPES / f"two-stage-{name}.yaml"), "--out", str(data[name]),
                                            "--set", tokenizer, "--overwrite"), seconds)
    step("fine-tune + the table", dataprep("train", str(data["sft"]), "--out", str(tuned), "--init-from", str(base),
                                           "--eval-fewshot", str(data["fewshot"]), "--steps",
                                           str(args.finetune_steps), *common), seconds, verdict=True)
    print(f"{'total':<28} {time.monotonic() - start:7.1f} s\n")
    report = json.loads((tuned / "verify.json").read_text())
    from dataprep.train.fewshot_eval import table

    print(table(report["fewshot"]))


if __name__ == "__main__":
    main()
