"""How fast `dataprep validate` checks a dataset, next to a plain pyarrow read of the same shards.

Builds (once; reused while the recipe is unchanged) a pretraining dataset of at least 100M
tokens from the benchmark corpus: ../shared/bench/corpus.jsonl.zst (61.8M tokens with
bpe32k.json) is decompressed once and read ``--copies`` times (hard links, ``dedup: none``),
packed with ``wrap`` into 2048-token rows. Then, in one process and alternating, best of
``--repeat``:

- plain read: ``pyarrow.ipc.open_stream(OSFile(shard)).read_all()`` for every shard;
- validate, default: ``validate_dataset``, re-checking each shard's xxh3_128 (the writer records
  it beside sha256);
- validate, sha256: the same with ``full_hash=True`` (``dataprep validate --sha256``).

in each page-cache scenario (``SCENARIOS``): as found, read back from disk, and (``--cold``) cold.

Usage::

    python benchmarks/validate_throughput.py                      # build (~3 min on 2 cores), then measure
    python benchmarks/validate_throughput.py --limit-mb 60 --copies 1   # a quick, smaller run
    python benchmarks/validate_throughput.py --cold               # also with the shards evicted before every run

The goal is validate >= 0.5x the plain read's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import pyarrow as pa

from _bench import build_once, corpus_prefix, shard_files

from dataprep.validate import validate_dataset

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench"


def prepare_inputs(work: Path, corpus: Path, limit_mb: float | None, copies: int) -> list[Path]:
    """The corpus as plain JSONL (first ``limit_mb`` MB of it), hard-linked ``copies`` times."""
    first = corpus_prefix(limit_mb, corpus=corpus, work=work)
    paths = []
    for i in range(copies):
        path = work / f"corpus-{i}.jsonl"
        if path.exists():
            path.unlink()
        os.link(first, path)
        paths.append(path)
    return paths


def build(work: Path, inputs: list[Path], tokenizer: Path, workers: int | None) -> Path:
    spec = {
        "name": "validate-bench",
        "task": "pretrain",
        "inputs": [{"path": str(p)} for p in inputs],
        "filter": {"dedup": "none"},  # the copies are the point
        "tokenizer": {"path": str(tokenizer)},
        "packing": {"mode": "wrap", "seq_len": 2048},
        "split": {"validation": 0.01},
    }
    return build_once(spec, work / "dataset", base_dir=work, workers=workers)


def evict(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# How the shards sit in the page cache. Memory-mapping pages that the kernel read in (in large
# folios) costs about a tenth of mapping pages that `run` wrote (4 KiB each); a plain read copies
# either at about the same speed, so the first two scenarios differ for validate alone.
SCENARIOS = {
    "warm, as found": "the page cache as this process found it (as written, when the dataset was just built)",
    "warm, read back": "evicted, then read once from disk: a dataset validated in a later session",
    "cold": "evicted from the page cache before every run",
}


def read_back(paths: list[Path]) -> None:
    evict(paths)
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def plain_read(paths: list[Path]) -> int:
    rows = 0
    for path in paths:
        rows += pa.ipc.open_stream(pa.OSFile(str(path))).read_all().num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/dataprep-bench/validate"), help="where inputs and the dataset go")
    parser.add_argument("--corpus", type=Path, default=BENCH / "corpus.jsonl.zst")
    parser.add_argument("--tokenizer", type=Path, default=BENCH / "bpe32k.json")
    parser.add_argument("--limit-mb", type=float, default=None, help="read only the first MB of the corpus (default: all)")
    parser.add_argument("--copies", type=int, default=2, help="times the corpus is read (2 x 61.8M tokens)")
    parser.add_argument("--workers", type=int, default=None, help="processes for the build (default: all cores)")
    parser.add_argument("--threads", type=int, default=0, help="validate's shard threads (0: its default)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also measure with the shards evicted from the page cache before each run")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    dataset = build(args.work, prepare_inputs(args.work, args.corpus, args.limit_mb, args.copies), args.tokenizer, args.workers)
    manifest = json.loads((dataset / "manifest.json").read_text())
    tokens = manifest["counts"]["tokens"]
    paths = shard_files(dataset)
    size = sum(p.stat().st_size for p in paths)
    print(f"{tokens:,} tokens, {sum(manifest['counts']['rows'].values()):,} rows, {len(paths)} shards, {size / 1e6:,.0f} MB; "
          f"{os.cpu_count()} cores; pyarrow {pa.__version__}")
    if tokens < 100_000_000:
        print("note: fewer than 100M tokens (raise --copies or drop --limit-mb for the full benchmark)")

    modes = {
        "plain pyarrow read": lambda: plain_read(paths),
        "validate (xxh3_128)": lambda: _validated(dataset, args.threads, full_hash=False),
        "validate --sha256": lambda: _validated(dataset, args.threads, full_hash=True),
    }
    for scenario in list(SCENARIOS) if args.cold else list(SCENARIOS)[:2]:
        if scenario == "warm, read back":
            read_back(paths)
        times: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.repeat):
            for name, fn in modes.items():
                if scenario == "cold":
                    evict(paths)
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        base = min(times["plain pyarrow read"])
        print(f"\n{scenario}: {SCENARIOS[scenario]}; best of {args.repeat} (median in brackets):")
        for name, seconds in times.items():
            best = min(seconds)
            print(f"  {name:22} {best:7.3f} s ({statistics.median(seconds):.3f})  {tokens / best / 1e6:9,.0f} M tokens/s  {base / best:5.2f}x plain read")


def _validated(dataset: Path, threads: int, *, full_hash: bool) -> None:
    report = validate_dataset(dataset, workers=threads, full_hash=full_hash)
    if not report.ok:
        raise SystemExit(f"the benchmark dataset does not validate:\n{report.to_text()}")


if __name__ == "__main__":
    main()
