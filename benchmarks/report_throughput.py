"""How fast `dataprep report` summarizes a large split, next to a plain pyarrow pass over the same columns.

The split is synthetic and held in memory: ``--rows`` packed rows of 64 tokens (pieces of 20 and
40 tokens, then a pad piece of 4; a random loss mask), put in place of the demo-sft dataset's
train split (built once, bfd at 128, into ``--work``). Alternating, best of ``--repeat``:

- plain pass: what any columnar summary must at least do: each list column's lengths and the sum
  of its values (``pyarrow.compute``), no Python loop per row;
- ``report.compute``: every number of the summary (rows, documents, tokens, pad, targets, length
  percentiles, fill);
- ``report.write_report``: the five PNGs and the HTML page (matplotlib), timed on its own.

Usage::

    python benchmarks/report_throughput.py                 # 1M rows, 64M token slots (~1 min on 2 cores)
    python benchmarks/report_throughput.py --rows 100000   # quick

The README's "a million rows in seconds" is this script's ``compute + write`` line. Nothing here is
asserted by the test suite (tests/test_report.py checks the exact counts on 200k rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from _bench import machine

from dataprep.build.run import run
from dataprep.dataset.reader import open_dataset
from dataprep.look import report
from dataprep.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def large_split(rows: int, length: int = 64) -> pa.Table:
    """The split of tests/test_report.py's large-split test, ``rows`` rows long."""
    rng = np.random.default_rng(0)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * length)
    pieces = np.tile(np.array([20, 40, length - 60], dtype=np.int32), rows)
    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(rng.integers(0, 200, rows * length, dtype=np.int32))),
            "seq_lengths": pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * 3), pa.array(pieces)),
            "num_pad": pa.array(np.full(rows, length - 60, dtype=np.int32)),
            "assistant_masks": pa.ListArray.from_arrays(offsets, pa.array(rng.integers(0, 2, rows * length, dtype=np.uint8))),
        }
    )


def plain_pass(table: pa.Table) -> int:
    """Each list column's lengths and value sum, and the pad column's sum."""
    total = 0
    for name in ("input_ids", "seq_lengths", "assistant_masks"):
        column = table.column(name)
        total += pc.sum(pc.list_value_length(column)).as_py() + pc.sum(pc.list_flatten(column)).as_py()
    return total + pc.sum(table.column("num_pad")).as_py()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dataprep-bench-report")
    args = parser.parse_args()

    out = args.work / "demo-sft"
    if not (out / "manifest.json").is_file():
        run(load_recipe(REPO / "recipes" / "demo-sft.yaml", ["packing.mode=bfd", "packing.seq_len=128"]), out, workers=1, overwrite=True, progress=None)
    table = large_split(args.rows)
    print(machine())
    print(f"{args.rows:,} rows, {table.column('input_ids').combine_chunks().values.__len__():,} token slots in memory")
    best = {"plain": float("inf"), "compute": float("inf"), "write": float("inf")}
    for i in range(args.repeat):
        started = time.perf_counter()
        plain_pass(table)
        best["plain"] = min(best["plain"], time.perf_counter() - started)
        ds = open_dataset(out)
        ds._tables = {"train": table, "validation": table.slice(0, 0)}  # the large split in place of demo-sft's
        started = time.perf_counter()
        result = report.compute(ds)
        best["compute"] = min(best["compute"], time.perf_counter() - started)
        started = time.perf_counter()
        report.write_report(result, args.work / f"report-{i}")
        best["write"] = min(best["write"], time.perf_counter() - started)
    print(f"best of {args.repeat}        seconds   rows/s        vs plain pass")
    for name, label in (("plain", "plain pyarrow pass"), ("compute", "report.compute"), ("write", "write_report (PNGs, HTML)")):
        print(f"{label:<26} {best[name]:>7.2f}   {args.rows / best[name]:>12,.0f}   {best['plain'] / best[name]:.2f}x")
    both = best["compute"] + best["write"]
    print(f"{'compute + write':<26} {both:>7.2f}   {args.rows / both:>12,.0f}   {best['plain'] / both:.2f}x")


if __name__ == "__main__":
    main()
