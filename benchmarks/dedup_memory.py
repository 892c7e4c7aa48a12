"""Exact-dedup memory: peak RSS of the ordered stage's dedup set at 10^6, 10^7 (and 10^8) documents.

Each size runs in a fresh process that feeds that many synthetic 16-byte content hashes (random,
one in 20 a repeat of an earlier one), 2,048 at a time as the ordered stage gets them, through

    set        a Python set of the digests (what the ordered stage held before #19)
    seen_set   dataprep.build.seen_set.SeenSet: at most 2^19 digests in memory, sorted runs on disk

and, for ``filter.dedup: minhash``, 10^5 and 10^6 documents' random signatures (each one kept and
indexed: the index's worst case) through dataprep.build.near_dup.NearDupIndex, as

    lsh_dict   every band key in a dict and every signature in memory (no spill)
    lsh        at most 2^19 band keys in memory, older keys and signatures on disk

and prints its peak RSS (VmHWM: anonymous memory and the mapped pages of the runs together, pages
the kernel can drop at any time), its peak anonymous RSS (sampled every 16 chunks and at the end:
the memory the process cannot give back), the disk the runs take, and the time.

    python benchmarks/dedup_memory.py                      # 10^6 and 10^7 (~4 min on 2 cores)
    python benchmarks/dedup_memory.py --sizes 1e6 1e7 1e8  # 10^8: seen_set only (a set needs ~10 GB)

Goal: flat. seen_set's peak anonymous RSS is the same at every size; its peak RSS grows with the
runs it maps (every chunk's lookups touch every run's first halves: 8 bytes per digest, page cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHUNK = 2048
SET_MAX = 10**7  # the plain set is not run above this (about 100 bytes per digest)


def status() -> dict[str, int]:
    """This process's VmHWM, RssAnon and RssFile in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def feed(kind: str, n: int) -> dict:
    """Feed ``n`` digests through one kind of set (in this process); its figures."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from dataprep.build.seen_set import SeenSet

    rng = np.random.default_rng(0)
    seen = SeenSet() if kind == "seen_set" else set()
    new = peak_anon = 0
    started = time.perf_counter()
    earlier: list[bytes] = []
    for start in range(0, n, CHUNK):
        blob = rng.bytes(16 * min(CHUNK, n - start))
        digests = [blob[i : i + 16] for i in range(0, len(blob), 16)]
        for i in range(0, len(digests), 20):  # one in 20: a repeat of a digest of the previous chunk
            if earlier:
                digests[i] = earlier[i % len(earlier)]
        if kind == "seen_set":
            new += int(seen.first_seen(digests).sum())
        else:
            for d in digests:
                if d not in seen:
                    seen.add(d)
                    new += 1
        earlier = digests
        if start % (CHUNK * 16) == 0:
            peak_anon = max(peak_anon, status()["RssAnon"])
    peak_anon = max(peak_anon, status()["RssAnon"])
    seconds = time.perf_counter() - started
    disk = seen.disk.disk_bytes() if kind == "seen_set" else 0
    return {"kind": kind, "n": n, "new": new, "seconds": seconds, "disk": disk, "peak_anon": peak_anon,
            "runs": seen.disk.runs() if kind == "seen_set" else 0, **status()}


def feed_lsh(kind: str, n: int) -> dict:
    """Feed ``n`` documents' random MinHash signatures (none near another: every one is kept and
    indexed) through the near-duplicate index, spilling (``lsh``) or all in memory (``lsh_dict``)."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from dataprep.build import near_dup
    from dataprep.text.minhash import MinhashSpec

    if kind == "lsh_dict":
        near_dup.TABLE_LIMIT = 1 << 62
    spec = MinhashSpec()
    index, rng, peak_anon = near_dup.NearDupIndex(spec), np.random.default_rng(0), 0
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        sigs = rng.integers(0, 2**32 - 1, size=(min(CHUNK, n - start), spec.permutations), dtype=np.uint32)
        index.drop_mask(sigs, np.ones(len(sigs), dtype=bool))
        if start % (CHUNK * 16) == 0:
            peak_anon = max(peak_anon, status()["RssAnon"])
    peak_anon = max(peak_anon, status()["RssAnon"])
    disk = index.disk.disk_bytes() + (index._spill_file.stat().st_size if index._spill_file else 0)
    return {"kind": kind, "n": n, "new": index.kept, "seconds": time.perf_counter() - started, "disk": disk,
            "peak_anon": peak_anon, "runs": index.disk.runs(), **status()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7], help="digests fed to the exact-dedup set")
    parser.add_argument("--documents", type=float, nargs="*", default=[1e5, 1e6],
                        help="documents fed to the near-duplicate index (filter.dedup: minhash)")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: KIND N, in a fresh process
    args = parser.parse_args()
    if args.one:
        kind, n = args.one[0], int(args.one[1])
        print(json.dumps(feed_lsh(kind, n) if kind.startswith("lsh") else feed(kind, n)))
        return
    print(f"{'':10} {'digests/docs':>12} {'new/kept':>12} {'peak RSS':>10} {'peak anon':>10} {'runs disk':>10} {'runs':>5} {'s':>7}")
    runs = [(kind, int(n)) for n in args.sizes for kind in ("set", "seen_set") if kind != "set" or n <= SET_MAX]
    runs += [(kind, int(n)) for n in args.documents for kind in ("lsh_dict", "lsh")]
    for kind, n in runs:
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(n)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        print(f"{kind:10} {n:12,d} {r['new']:12,d} {r['VmHWM'] / 2**20:8.0f}MB {r['peak_anon'] / 2**20:8.0f}MB "
              f"{r['disk'] / 2**20:8.0f}MB {r['runs']:5d} {r['seconds']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
