"""Pretraining throughput: dataprep end to end beside the tokenizer floor and the standard HF recipe.

In one run, on the same corpus prefix, tokenizer and cores:

- floor: ``tokenizers`` ``encode_batch_fast`` (and ``encode_batch``, which also computes offsets)
  over the documents in batches of ``--batch``, in this process (Rust thread pool on every core),
  counting tokens only; the texts are loaded beforehand and not timed;
- standard: ``hf_standard.py`` (``datasets`` JSON load -> ``map(tokenize, batched, num_proc)``
  -> ``map(group_texts)`` into 2048-token blocks -> ``save_to_disk``), with its peak RSS and the
  bytes of its ``datasets`` cache;
- dataprep: ``dataprep run`` (recipe defaults: NFC, exact dedup, 1% validation split, EOS after
  each document) with ``wrap`` and then ``bfd`` at 2048, with peak RSS (children included).

Every rate is the corpus's tokens (the floor's count) over wall time; subprocess times include
interpreter start and imports. Usage::

    python benchmarks/pretrain_throughput.py                    # the whole corpus (~5 min on 2 cores)
    python benchmarks/pretrain_throughput.py --limit-mb 40      # quick
    python benchmarks/pretrain_throughput.py --skip-standard --repeat 3

Goals: dataprep >= 0.85x the floor (encode_batch_fast) and >= 1.7x the standard recipe.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tokenizers import Tokenizer

from _bench import REPO, TOKENIZER, WORK, Contention, corpus_prefix, dataprep_cmd, du, machine, mb, measure, read_texts, write_recipe


def floor(texts: list[str], tokenizer: Path, batch: int, *, fast: bool) -> dict:
    tok = Tokenizer.from_file(str(tokenizer))
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    with Contention() as contention:
        started = time.perf_counter()
        tokens = 0
        for i in range(0, len(texts), batch):
            tokens += sum(len(e) for e in encode(texts[i : i + batch], add_special_tokens=False))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": tokens, "others": contention.others, "cpu": contention.cpu}


def recipe(data: Path, tokenizer: Path, mode: str) -> dict:
    return {
        "name": f"bench-{mode}",
        "task": "pretrain",
        "inputs": [{"path": str(data)}],
        "tokenizer": {"path": str(tokenizer)},
        "packing": {"mode": mode, "seq_len": 2048},
    }


def run_dataprep(work: Path, data: Path, tokenizer: Path, mode: str, workers: int | None, engine: str = "local") -> dict:
    path = write_recipe(work / f"pretrain-{mode}.yaml", recipe(data, tokenizer, mode))
    out = work / f"out-{mode}"
    extra = ["-w", str(workers)] if workers else []
    measured = measure(dataprep_cmd(str(path), "--out", str(out), "--overwrite", "--engine", engine, *extra))
    manifest = json.loads((out / "manifest.json").read_text())
    result = {"seconds": measured.seconds, "peak_rss": measured.peak_rss, "tokens": manifest["counts"]["tokens"],
              "output_bytes": du(out), "others": measured.others, "cpu": measured.cpu}
    shutil.rmtree(out)
    return result


def run_standard(work: Path, data: Path, tokenizer: Path, workers: int | None) -> dict:
    cache, out = work / "hf-cache", work / "hf-out"
    for p in (cache, out):
        shutil.rmtree(p, ignore_errors=True)
    cmd = [sys.executable, str(REPO / "benchmarks" / "hf_standard.py"), str(data), "--tokenizer", str(tokenizer),
           "--cache", str(cache), "--out", str(out)] + (["--num-proc", str(workers)] if workers else [])
    measured = measure(cmd, env={"HF_DATASETS_CACHE": str(cache)})
    counts = json.loads(measured.output.strip().splitlines()[-1])
    result = {"seconds": measured.seconds, "peak_rss": measured.peak_rss, "tokens": counts["tokens"],
              "cache_bytes": du(cache), "output_bytes": du(out), "others": measured.others, "cpu": measured.cpu}
    shutil.rmtree(cache)
    shutil.rmtree(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=None, help="use the first MB of the corpus (default: all of it)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--work", type=Path, default=WORK / "pretrain")
    parser.add_argument("--batch", type=int, default=1000, help="documents per encode call in the floor")
    parser.add_argument("--workers", type=int, default=None, help="dataprep --workers and the standard recipe's num_proc (default: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N for each measurement")
    parser.add_argument("--skip-standard", action="store_true")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    data = corpus_prefix(args.limit_mb)
    print(f"machine: {machine()}")
    texts = read_texts(data)
    print(f"corpus: {data.name}, {len(texts):,} documents, {data.stat().st_size / 1e6:,.1f} MB of JSONL")

    best: dict[str, dict] = {}

    def keep(name: str, result: dict) -> None:
        if name not in best or result["seconds"] < best[name]["seconds"]:
            best[name] = result

    for _ in range(args.repeat):
        for name, fast in (("floor: encode_batch_fast", True), ("floor: encode_batch (offsets)", False)):
            keep(name, floor(texts, args.tokenizer, args.batch, fast=fast))
        if not args.skip_standard:
            keep("standard HF recipe", run_standard(args.work, data, args.tokenizer, args.workers))
        for mode in ("wrap", "bfd"):
            keep(f"dataprep run ({mode})", run_dataprep(args.work, data, args.tokenizer, mode, args.workers))
    del texts

    corpus_tokens = best["floor: encode_batch_fast"]["tokens"]
    rate = {name: corpus_tokens / r["seconds"] for name, r in best.items()}
    print(f"\n{corpus_tokens:,} corpus tokens; rate = corpus tokens / wall seconds, best of {args.repeat}\n")
    print("others: share of the machine other processes used during the measurement (0% = quiet)\n")
    print(f"{'':32} {'seconds':>8} {'M tokens/s':>11} {'CPU s':>6} {'peak RSS':>10} {'cache files':>12} {'others':>7}  output tokens")
    for name, r in best.items():
        rss = mb(r["peak_rss"]) if "peak_rss" in r else "-"
        cache = mb(r["cache_bytes"]) if "cache_bytes" in r else ("0" if name.startswith("dataprep") else "-")
        print(f"{name:32} {r['seconds']:8.1f} {rate[name] / 1e6:11.3f} {r['cpu']:6.1f} {rss:>10} {cache:>12} {r['others']:7.0%}  {r['tokens']:,}")
    fast = rate["floor: encode_batch_fast"]
    print()
    for mode in ("wrap", "bfd"):
        d = rate[f"dataprep run ({mode})"]
        line = f"dataprep ({mode}) / floor = {d / fast:.2f}x (goal >= 0.85)"
        if "standard HF recipe" in rate:
            line += f";  dataprep ({mode}) / standard = {d / rate['standard HF recipe']:.2f}x (goal >= 1.7)"
        print(line)


if __name__ == "__main__":
    main()
