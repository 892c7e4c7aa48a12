"""Pretraining throughput: dataprep end to end beside raw gigatoken, raw tokenizers and the HF recipe.

In one run, on the same corpus prefix, tokenizer and cores:

- raw gigatoken: ``gigatoken.Tokenizer.encode_batch`` over the documents in batches of
  ``--batch``, in this process (its thread pool on every core), counting tokens only; the texts
  are loaded beforehand and not timed: the ids as one flat array, what dataprep's engine calls,
  the stricter yardstick; and ``encode_batch_list`` (the ids as Python lists) the same way, the
  call issue #20 measured its floor with (#20: dataprep >= 0.6x of raw gigatoken). Both ratios
  are printed;
- raw tokenizers: ``encode_batch_fast``, the same way (the old floor);
- standard: ``hf_standard.py`` (``datasets`` JSON load -> ``map(tokenize, batched, num_proc)``
  -> ``map(group_texts)`` into 2048-token blocks -> ``save_to_disk``), with its peak RSS;
- dataprep: ``dataprep run`` (recipe defaults: NFC, exact dedup, 1% validation split, EOS after
  each document) with ``wrap`` and ``bfd`` at 2048, each with ``tokenizer.engine: tokenizers``
  and ``gigatoken``, with peak RSS (children included). The two engines' shards must be
  byte-identical (checked here, by SHA-256 in the manifests).

Every rate is the corpus's tokens (raw tokenizers' count, which gigatoken must equal) over wall
time, so every row counts the same tokens; subprocess times include interpreter start and
imports. Then, unless ``--memory-mb`` is given no sizes, dataprep with gigatoken (wrap and bfd)
again on prefixes of ``--memory-mb`` MB (default 40 and 160): peak RSS must stay flat as the
corpus grows. Usage::

    python benchmarks/pretrain_throughput.py --limit-mb 60      # ~3 min on 2 cores
    python benchmarks/pretrain_throughput.py                    # the whole corpus
    python benchmarks/pretrain_throughput.py --skip-standard --repeat 3 --memory-mb
    python benchmarks/pretrain_throughput.py --limit-mb 60 --skip-standard --engines gigatoken --repeat 3   # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _bench import (REPO, TOKENIZER, WORK, corpus_prefix, dataprep_cmd, du, machine, mb, measure, print_rates, raw_gigatoken,
                    raw_tokenizers, read_texts, write_recipe)

GIGATOKEN, TOKENIZERS, STANDARD = "raw gigatoken encode_batch", "raw tokenizers encode_batch_fast", "standard HF recipe"
GIGATOKEN_LISTS = "raw gigatoken encode_batch_list"
ENGINES = ("tokenizers", "gigatoken")


def recipe(data: Path, tokenizer: Path, mode: str, engine: str) -> dict:
    return {
        "name": f"bench-{mode}-{engine}",
        "task": "pretrain",
        "inputs": [{"path": str(data)}],
        "tokenizer": {"path": str(tokenizer), "engine": engine},
        "packing": {"mode": mode, "seq_len": 2048},
    }


def run_dataprep(work: Path, data: Path, tokenizer: Path, mode: str, engine: str, workers: int | None) -> dict:
    path = write_recipe(work / f"pretrain-{mode}-{engine}.yaml", recipe(data, tokenizer, mode, engine))
    out = work / f"out-{mode}-{engine}"
    extra = ["-w", str(workers)] if workers else []
    measured = measure(dataprep_cmd(str(path), "--out", str(out), "--overwrite", *extra))
    manifest = json.loads((out / "manifest.json").read_text())
    result = {"seconds": measured.seconds, "peak_rss": measured.peak_rss, "tokens": manifest["counts"]["tokens"],
              "output_bytes": du(out), "others": measured.others, "cpu": measured.cpu,
              "shards": [s["sha256"] for info in manifest["splits"].values() for s in info["shards"]],
              "engine": (manifest["tokenizer"].get("engine") or {}).get("engine")}
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


def memory(args: argparse.Namespace) -> None:
    """dataprep with gigatoken on corpus prefixes of growing size: peak RSS and rate."""
    print(f"\npeak RSS as the corpus grows (dataprep, engine gigatoken): {', '.join(f'{s:g} MB' for s in args.memory_mb)}")
    print(f"{'prefix':>9} {'documents':>10} {'tokens':>12}  {'wrap: peak RSS':>14} {'M tokens/s':>10}  {'bfd: peak RSS':>13} {'M tokens/s':>10}")
    for size in args.memory_mb:
        data = corpus_prefix(size)
        documents = sum(1 for _ in open(data, "rb"))
        runs = {mode: run_dataprep(args.work, data, args.tokenizer, mode, "gigatoken", args.workers) for mode in ("wrap", "bfd")}
        tokens = runs["wrap"]["tokens"]
        print(f"{size:>6g} MB {documents:>10,} {tokens:>12,}  " + "  ".join(
            f"{mb(r['peak_rss']):>14} {r['tokens'] / r['seconds'] / 1e6:>10.2f}" for r in runs.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=None, help="use the first MB of the corpus (default: all of it)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--work", type=Path, default=WORK / "pretrain")
    parser.add_argument("--batch", type=int, default=1000, help="documents per raw encode call")
    parser.add_argument("--workers", type=int, default=None, help="dataprep --workers and the standard recipe's num_proc (default: all cores)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N for each measurement")
    parser.add_argument("--skip-standard", action="store_true")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                        help="dataprep's encode engines to run (default both; the shards are compared only with both)")
    parser.add_argument("--memory-mb", type=float, nargs="*", default=[40, 160],
                        help="corpus prefixes (MB) for the peak-RSS check (default 40 160; none: skip it)")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    data = corpus_prefix(args.limit_mb)
    print(f"machine: {machine()}")
    from dataprep.text.encode_engine import gigatoken_version

    print(f"encode engine: {gigatoken_version()}")
    texts = read_texts(data)
    print(f"corpus: {data.name}, {len(texts):,} documents, {data.stat().st_size / 1e6:,.1f} MB of JSONL")

    best: dict[str, dict] = {}

    def keep(name: str, result: dict) -> None:
        if name not in best or result["seconds"] < best[name]["seconds"]:
            best[name] = result

    for _ in range(args.repeat):
        keep(GIGATOKEN, raw_gigatoken(texts, args.tokenizer, args.batch))
        keep(GIGATOKEN_LISTS, raw_gigatoken(texts, args.tokenizer, args.batch, lists=True))
        keep(TOKENIZERS, raw_tokenizers(texts, args.tokenizer, args.batch))
    del texts
    for _ in range(args.repeat):
        if not args.skip_standard:
            keep(STANDARD, run_standard(args.work, data, args.tokenizer, args.workers))
        for mode in ("wrap", "bfd"):
            for engine in args.engines:
                keep(f"dataprep {mode}, engine {engine}", run_dataprep(args.work, data, args.tokenizer, mode, engine, args.workers))

    corpus_tokens = best[TOKENIZERS]["tokens"]
    rate = print_rates(best, corpus_tokens, {"/gigatoken": GIGATOKEN, "/lists": GIGATOKEN_LISTS, "/standard": STANDARD},
                       f", best of {args.repeat}")
    print()
    for mode in ("wrap", "bfd"):
        for engine in args.engines:
            run, name = best[f"dataprep {mode}, engine {engine}"], f"dataprep {mode}, engine {engine}"
            print(f"dataprep {mode} ({engine}) / raw gigatoken = {rate[name] / rate[GIGATOKEN]:.2f}x (encode_batch), "
                  f"{rate[name] / rate[GIGATOKEN_LISTS]:.2f}x (encode_batch_list, as #20 measured; goal >= 0.6 with "
                  f"gigatoken); engine recorded: {run['engine']}")
    same = {mode: best[f"dataprep {mode}, engine gigatoken"]["shards"] == best[f"dataprep {mode}, engine tokenizers"]["shards"]
            for mode in ("wrap", "bfd")} if len(args.engines) == 2 else None
    print(f"shards byte-identical across engines: {same if same is not None else 'not checked (one engine)'}")
    if STANDARD in best:
        print(f"standard HF recipe: {mb(best[STANDARD]['cache_bytes'])} of datasets cache files; dataprep writes none")
    print(f"raw token counts equal: {best[GIGATOKEN]['tokens'] == corpus_tokens} ({best[GIGATOKEN]['tokens']:,} vs {corpus_tokens:,})")
    if same is not None and not all(same.values()):
        raise SystemExit("the engines wrote different shards")
    if args.memory_mb:
        memory(args)


if __name__ == "__main__":
    main()
