"""How fast `dataprep export` writes each format, next to a plain pyarrow read of the same shards.

Builds (once; reused while the recipe is unchanged) a pretraining dataset from the first
``--limit-mb`` MB of the benchmark corpus (../shared/bench/corpus.jsonl.zst, bpe32k.json), packed
with ``wrap`` into 2048-token rows. Then, in one process and alternating, best of ``--repeat``:

- plain read: ``pyarrow.ipc.open_stream(OSFile(shard)).read_all()`` for every shard, plus the
  ``input_ids`` values as one numpy array (what every exporter starts from);
- ``export(dataset, FORMAT)`` for each of ``--formats`` into a fresh folder.

Rates are the dataset's shard bytes over wall seconds (MB/s), and the ratio export / plain read.

Usage::

    python benchmarks/export.py                                  # 60 MB of the corpus, every format
    python benchmarks/export.py --limit-mb 20 --formats megatron nanogpt parquet --repeat 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pyarrow as pa

from _bench import BENCH, build_once, corpus_prefix, shard_files

from dataprep.export import EXPORTERS, export


def build(work: Path, corpus: Path, tokenizer: Path, limit_mb: float, workers: int | None) -> Path:
    inputs = corpus_prefix(limit_mb, corpus=corpus, work=work)
    spec = {
        "name": "export-bench",
        "task": "pretrain",
        "inputs": [{"path": str(inputs)}],
        "tokenizer": {"path": str(tokenizer)},
        "packing": {"mode": "wrap", "seq_len": 2048},
        "split": {"validation": 0.01},
    }
    return build_once(spec, work / "dataset", base_dir=work, workers=workers)


def plain_read(paths: list[Path]) -> int:
    tokens = 0
    for path in paths:
        table = pa.ipc.open_stream(pa.OSFile(str(path))).read_all()
        tokens += len(table.column("input_ids").combine_chunks().values.to_numpy())
    return tokens


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/dataprep-bench/export"), help="where the input prefix, the dataset and the exports go")
    parser.add_argument("--corpus", type=Path, default=BENCH / "corpus.jsonl.zst")
    parser.add_argument("--tokenizer", type=Path, default=BENCH / "bpe32k.json")
    parser.add_argument("--limit-mb", type=float, default=60.0, help="read only the first MB of the corpus")
    parser.add_argument("--workers", type=int, default=None, help="processes for the build (default: all cores)")
    parser.add_argument("--formats", nargs="+", default=list(EXPORTERS), choices=list(EXPORTERS))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    dataset = build(args.work, args.corpus, args.tokenizer, args.limit_mb, args.workers)
    paths = shard_files(dataset)
    size = sum(p.stat().st_size for p in paths)
    manifest = json.loads((dataset / "manifest.json").read_text())
    print(f"{manifest['counts']['tokens']:,} tokens, {sum(manifest['counts']['rows'].values()):,} rows, {size / 1e6:,.1f} MB of shards")
    best: dict[str, float] = {}
    for _ in range(args.repeat):  # alternating, so that a busy moment hits every contender alike
        best["plain read"] = min(best.get("plain read", float("inf")), timed(lambda: plain_read(paths)))
        for fmt in args.formats:
            dest = args.work / f"export-{fmt}"
            shutil.rmtree(dest, ignore_errors=True)
            best[fmt] = min(best.get(fmt, float("inf")), timed(lambda: export(dataset, fmt, dest=dest)))
    read_rate = size / 1e6 / best["plain read"]
    print(f"{'':12} {'seconds':>8} {'MB/s':>8} {'x plain read':>12}")
    for name, seconds in best.items():
        rate = size / 1e6 / seconds
        print(f"{name:12} {seconds:8.2f} {rate:8.1f} {rate / read_rate:12.3f}")


if __name__ == "__main__":
    main()
