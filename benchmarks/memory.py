"""Memory: peak RSS of ``dataprep run`` (worker processes included) on 25%, 50% and 100% of the corpus.

Each fraction is a prefix of the corpus (the corpus is shuffled, so prefixes have the same mix).
The run gets an empty ``TMPDIR`` of its own; afterwards the script lists every file the run left
anywhere under its work folder or that ``TMPDIR`` other than the output's shards and metadata.

    python benchmarks/memory.py                    # 25/50/100% of the whole corpus (~3 min on 2 cores)
    python benchmarks/memory.py --limit-mb 40      # of the first 40 MB
    python benchmarks/memory.py --mode bfd --workers 1

Goal: flat. The peak at 100% is at most 1.2x the peak at 25%, under 1 GiB, and no cache files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _bench import TOKENIZER, WORK, corpus_prefix, dataprep_cmd, du, machine, mb, measure, write_recipe

FRACTIONS = (0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=None, help="100%% is the first MB of the corpus (default: all of it)")
    parser.add_argument("--mode", choices=["wrap", "bfd"], default="wrap")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--work", type=Path, default=WORK / "memory")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    whole = corpus_prefix(args.limit_mb)
    total_mb = whole.stat().st_size / 1e6
    peaks = {}
    for fraction in FRACTIONS:
        data = whole if fraction == 1.0 else corpus_prefix(round(total_mb * fraction, 1))
        run_dir = args.work / f"run-{fraction:g}"
        shutil.rmtree(run_dir, ignore_errors=True)
        tmp = run_dir / "tmp"
        tmp.mkdir(parents=True)
        recipe = write_recipe(run_dir / "recipe.yaml", {
            "task": "pretrain", "inputs": [{"path": str(data)}], "tokenizer": {"path": str(TOKENIZER)},
            "packing": {"mode": args.mode, "seq_len": 2048},
        })
        out = run_dir / "out"
        extra = (["-w", str(args.workers)] if args.workers else []) + ["--engine", args.engine]
        measured = measure(dataprep_cmd(str(recipe), "--out", str(out), *extra), env={"TMPDIR": str(tmp)})
        manifest = json.loads((out / "manifest.json").read_text())
        shards = sum(s["bytes"] for split in manifest["splits"].values() for s in split["shards"])
        expected = {recipe, *out.rglob("*")}
        stray = [p for p in run_dir.rglob("*") if p.is_file() and p not in expected]
        peaks[fraction] = measured.peak_rss
        print(f"{fraction:4.0%} ({data.stat().st_size / 1e6:6.1f} MB, {manifest['counts']['tokens']:,} tokens): "
              f"{measured.seconds:6.1f} s, peak RSS {mb(measured.peak_rss)}; output {du(out) / 1e6:,.1f} MB "
              f"(shards {shards / 1e6:,.1f} MB, metadata {(du(out) - shards) / 1e3:,.1f} kB); "
              f"other files left: {len(stray)} ({sum(p.stat().st_size for p in stray):,} bytes)")
        for p in stray[:5]:
            print(f"    {p}")
        shutil.rmtree(run_dir)
    ratio = peaks[1.0] / peaks[0.25]
    print(f"\npeak at 100% / peak at 25% = {ratio:.2f}x (goal <= 1.2); peak at 100% = {mb(peaks[1.0])} (goal < 1 GiB)")


if __name__ == "__main__":
    main()
