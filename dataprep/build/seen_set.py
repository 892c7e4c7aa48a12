"""The exact-dedup set of the ordered stage, in bounded memory: recent digests in a Python set,
older ones in sorted runs on disk (an LSM tree of memory-mapped numpy arrays).

A Python set of 16-byte digests costs about 100 bytes per document (the bytes object and the
table's slots): some 100 GB for a billion documents. Here the set holds at most ``limit`` digests;
when it fills, it is sorted into a run on disk (two uint64 columns, the digest's halves, in order
of the first) and emptied. Runs merge ``FANOUT`` at a time into one run of the next level, block by
block (a k-way merge that holds ``MERGE_BLOCK`` rows per run), so there are about
``(FANOUT - 1) * log_FANOUT(n / limit)`` runs, and a lookup is one binary search per run::

    add chunk's digests --> in the set? in a run (np.searchsorted over each memory map)? -> seen
                            else -> the set (<= limit) --full--> sort -> run (level 0)
                            FANOUT runs of one level --merge, by blocks--> one run of the next

Memory stays flat: the set, the merge blocks, and the pages of the runs the OS keeps mapped (file
pages it can drop at any time; ``benchmarks/dedup_memory.py`` prints both kinds of RSS). The runs
live in a temporary folder (``TMPDIR``) removed when the set is, and the answer is the same as a
plain set's: the first occurrence of a digest is new, every later one is seen.
"""

from __future__ import annotations

import mmap
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

DIGEST = 16  # bytes of a content hash (dataprep.text.filters.content_hashes)
LIMIT = 1 << 19  # digests held in memory before a spill: about 50 MB of Python set
FANOUT = 4  # runs of one level merged into one of the next
MERGE_BLOCK = 1 << 17  # rows per run held while merging


class SeenSet:
    """Digests seen so far (see the module docstring). ``limit``: the most held in memory."""

    def __init__(self, *, limit: int | None = None):
        self.limit = limit or LIMIT
        self.recent: set[bytes] = set()
        self.disk = SortedRuns("dataprep-seen-")
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def first_seen(self, digests: list[bytes]) -> np.ndarray:
        """bool per digest: True the first time it is seen (it is added), False after (and for a
        repeat within ``digests``)."""
        on_disk = self._on_disk(digests)
        if not on_disk.any() and self.recent.isdisjoint(digests):
            # the usual chunk, none seen before: set operations in C instead of a Python loop per digest
            # (this is the ordered stage's largest cost per document once segments pack elsewhere)
            before = len(self.recent)
            self.recent.update(digests)
            if len(self.recent) - before == len(digests):  # no repeat within the chunk: all new
                new = np.ones(len(digests), dtype=bool)
            else:  # repeats within the chunk: each digest's first place is new
                new = np.zeros(len(digests), dtype=bool)
                new[list({digest: i for i, digest in reversed(list(enumerate(digests)))}.values())] = True
        else:
            new = np.zeros(len(digests), dtype=bool)
            for i, digest in enumerate(digests):
                if not on_disk[i] and digest not in self.recent:
                    self.recent.add(digest)
                    new[i] = True
        self.count += int(new.sum())
        if len(self.recent) >= self.limit:
            self._spill()
        return new

    def add_all(self, digests: np.ndarray) -> None:
        """Add ``digests`` (uint8 ``[n, 16]``, distinct and not yet here: a checkpoint's seen.bin),
        in blocks, so a resumed run holds no more of them in memory than a running one."""
        for start in range(0, len(digests), self.limit):
            block = np.ascontiguousarray(digests[start : start + self.limit]).tobytes()
            self.recent.update(block[i : i + DIGEST] for i in range(0, len(block), DIGEST))
            self.count += len(block) // DIGEST
            if len(self.recent) >= self.limit:
                self._spill()

    def _on_disk(self, digests: list[bytes]) -> np.ndarray:
        found = np.zeros(len(digests), dtype=bool)
        if self.disk.runs() and digests:
            hi, lo = _halves(b"".join(digests))
            query, second = self.disk.matches(hi)
            found[query[second == lo[query]]] = True
        return found

    def _spill(self) -> None:
        self.disk.add(*_halves(b"".join(self.recent)))
        self.recent = set()


class SortedRuns:
    """A multimap of uint64 keys to uint64 values on disk: sorted runs, merged ``FANOUT`` at a time.

    Args:
        prefix: the name of its temporary folder (made at the first run, removed with the object).
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.levels: list[list[Run]] = []  # level -> its runs
        self._folder: Path | None = None
        self._made = 0  # runs written (their file names)

    def runs(self) -> int:
        return len(self._runs())

    def disk_bytes(self) -> int:
        return sum(run.path.stat().st_size for run in self._runs())

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Write ``keys -> values`` as a new run (then merge as the levels fill)."""
        order = np.argsort(keys, kind="stable")
        path = self._path()
        with open(path, "wb") as fh:
            np.concatenate([keys[order], values[order]]).astype("<u8").tofile(fh)
        self._add_run(0, Run(path, len(keys)))
        for run in self._runs():  # lookups touched their pages: out of this process's RSS (the OS caches them)
            run.release()

    def matches(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every stored ``key -> value`` whose key is among ``keys``: (index into ``keys``, value)."""
        order = np.argsort(keys)  # sorted queries: each binary search starts where the last ended
        ordered = keys[order]
        where, values = [], []
        for run in self._runs():
            left = np.searchsorted(run.hi, ordered, side="left")
            right = np.searchsorted(run.hi, ordered, side="right")
            count = right - left
            if not count.any():
                continue
            hit = np.flatnonzero(count)
            count, left = count[hit], left[hit]
            rows = np.repeat(left - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
            where.append(order[np.repeat(hit, count)])
            values.append(np.asarray(run.lo[rows]))
        if not where:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
        return np.concatenate(where), np.concatenate(values)

    def _runs(self) -> list[Run]:
        return [run for level in self.levels for run in level]

    def _add_run(self, level: int, run: Run) -> None:
        while len(self.levels) <= level:
            self.levels.append([])
        self.levels[level].append(run)
        if len(self.levels[level]) >= FANOUT:
            runs, self.levels[level] = self.levels[level], []
            merged = self._merge(runs)
            for old in runs:
                old.remove()
            self._add_run(level + 1, merged)

    def _merge(self, runs: list[Run]) -> Run:
        """One run holding ``runs``, sorted by the first half, written block by block."""
        total = sum(len(r.hi) for r in runs)
        path = self._path()
        pos, written = [0] * len(runs), 0
        with open(path.with_suffix(".lo"), "wb") as lo_file, open(path, "wb") as hi_file:
            while written < total:
                blocks = [(r.hi[p : p + MERGE_BLOCK], r.lo[p : p + MERGE_BLOCK], p + MERGE_BLOCK >= len(r.hi))
                          for r, p in zip(runs, pos)]
                bounded = [h[-1] for h, _, tail in blocks if len(h) and not tail]
                cutoff = min(bounded) if bounded else None  # every row <= cutoff is in the blocks
                his, los = [], []
                for k, (h, lo, _) in enumerate(blocks):
                    take = len(h) if cutoff is None else int(np.searchsorted(h, cutoff, side="right"))
                    his.append(h[:take])
                    los.append(lo[:take])
                    pos[k] += take
                hi, lo = np.concatenate(his), np.concatenate(los)
                order = np.argsort(hi, kind="stable")
                hi[order].tofile(hi_file)
                lo[order].tofile(lo_file)
                written += len(hi)
                for run in runs:  # the blocks read so far: out of RSS
                    run.release()
        with open(path, "ab") as hi_file, open(path.with_suffix(".lo"), "rb") as lo_file:
            shutil.copyfileobj(lo_file, hi_file)  # one file per run: the first halves, then the second
        path.with_suffix(".lo").unlink()
        return Run(path, total)

    def folder(self) -> Path:
        """The temporary folder of the runs (made on first use; removed with this object)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix=self.prefix))
            weakref.finalize(self, shutil.rmtree, self._folder, True)
        return self._folder

    def _path(self) -> Path:
        self._made += 1
        return self.folder() / f"run-{self._made:06d}.u64"


class Run:
    """One sorted run on disk, mapped: ``rows`` first halves (sorted), then their second halves."""

    def __init__(self, path: Path, rows: int):
        self.path = path
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        both = np.frombuffer(self._map, dtype="<u8")
        self.hi, self.lo = both[:rows], both[rows:]

    def release(self) -> None:
        """Drop the pages lookups touched from this process's RSS (they are read back on demand)."""
        self._map.madvise(mmap.MADV_DONTNEED)

    def remove(self) -> None:
        self.hi = self.lo = None
        self.path.unlink(missing_ok=True)  # unmapped when the last view goes


def _halves(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.frombuffer(blob, dtype="<u8").reshape(-1, 2)
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
