"""The near-duplicate index of the ordered stage (``filter.dedup: minhash``): LSH over the kept documents.

Workers send each document's MinHash signature (:mod:`dataprep.text.minhash`); this index sees them
in input order and decides, one document at a time::

    band keys of the document --lookup--> earlier KEPT documents sharing a band (candidates)
    candidates, earliest first: signature agreement >= spec.agree ?  -> dropped (near_duplicate),
                                                                        counted in that kept one's cluster
    no candidate confirmed                                            -> kept, its band keys indexed

Only kept documents are indexed, so every dropped document is near an earlier document that was
written, the first document of a cluster in input order is the one kept, and a chain A~B~C (A not
near C) keeps A and C: each decision is final when made, which a one-pass, streaming stage needs
(a union-find over all pairs would have to see the whole corpus before writing anything).

State, in bounded memory as the exact-dedup set's (:mod:`dataprep.build.seen_set`): the band keys
of the last ~26,000 kept documents in a dict, older ones in sorted runs on disk (looked up once per
chunk); the kept documents' signatures (uint32, ``permutations`` each: 480 bytes at the default 120)
likewise, older ones in a mapped file read only to confirm a candidate. On resume the index is
rebuilt from the checkpoint's signatures (minhash.bin).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.build.seen_set import SortedRuns
from dataprep.text.minhash import MinhashSpec, agreement, band_keys, has_shingles


TABLE_LIMIT = 1 << 19  # band keys held in a dict before they go to disk (about 26,000 documents at 20 bands)


class NearDupIndex:
    """LSH over the kept documents' signatures, in input order (see the module docstring)."""

    def __init__(self, spec: MinhashSpec):
        self.spec = spec
        self.kept = 0
        self.saved = 0  # kept signatures already in a checkpoint (Checkpoints.save appends the rest)
        self.table: dict[int, int | list[int]] = {}  # band key -> kept document(s), since the last spill
        self.disk = SortedRuns("dataprep-minhash-")  # older band keys -> kept document
        self.recent = np.empty((1024, spec.permutations), dtype=np.uint32)  # signatures since the last spill
        self.spilled = 0  # kept documents whose signatures are in the spill file (the first ones)
        self._spill_file: Path | None = None
        self._spilled_sigs = np.empty((0, spec.permutations), dtype=np.uint32)  # mapped
        self.clusters: Counter = Counter()  # kept document -> near-duplicates dropped against it
        self.rejected = 0  # candidate pairs from the bands whose estimated Jaccard was below the threshold

    def drop_mask(self, sigs: np.ndarray, consider: np.ndarray) -> np.ndarray:
        """True for each document of a chunk that is a near-duplicate of an earlier kept one; the
        others among ``consider`` (and with shingles) are added to the index, in order."""
        dropped = np.zeros(len(sigs), dtype=bool)
        todo = np.flatnonzero(consider & has_shingles(sigs))
        if not len(todo):
            return dropped
        keys = band_keys(sigs[todo], self.spec)
        older = self._on_disk(keys)  # documents of earlier chunks' spills: looked up once, for the chunk
        for row, (i, doc_keys) in enumerate(zip(todo.tolist(), keys.tolist())):
            rep = self._match(sigs[i], doc_keys, older.get(row, ()))
            if rep is None:
                self._add(sigs[i], doc_keys)
            else:
                dropped[i] = True
                self.clusters[rep] += 1
        if len(self.table) >= TABLE_LIMIT:  # between chunks only: `older` holds for a whole chunk
            self._spill()
        return dropped

    def _on_disk(self, keys: np.ndarray) -> dict[int, set[int]]:
        if not self.disk.runs():
            return {}
        where, docs = self.disk.matches(keys.ravel())
        found: dict[int, set[int]] = {}
        for row, doc in zip((where // self.spec.bands).tolist(), docs.tolist()):
            found.setdefault(row, set()).add(doc)
        return found

    def _match(self, sig: np.ndarray, keys: list[int], older: set[int] | tuple) -> int | None:
        """The earliest kept document whose estimated Jaccard with ``sig`` reaches the threshold."""
        found: set[int] = set(older)
        for key in keys:
            hit = self.table.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                found.add(hit)
            else:
                found.update(hit)
        if not found:
            return None
        candidates = np.array(sorted(found))
        close = agreement(sig, self.signatures(candidates)) >= self.spec.agree
        self.rejected += int(len(candidates) - close.sum())
        return int(candidates[np.argmax(close)]) if close.any() else None

    def signatures(self, docs: np.ndarray) -> np.ndarray:
        """The kept documents ``docs``' signatures (spilled ones read from the mapped file)."""
        old = docs < self.spilled
        out = np.empty((len(docs), self.spec.permutations), dtype=np.uint32)
        out[old] = self._spilled_sigs[docs[old]]
        out[~old] = self.recent[docs[~old] - self.spilled]
        return out

    def _add(self, sig: np.ndarray, keys: list[int]) -> None:
        row = self.kept - self.spilled
        if row == len(self.recent):
            self.recent = np.concatenate([self.recent, np.empty_like(self.recent)])
        self.recent[row] = sig
        doc = self.kept
        self.kept += 1
        for key in keys:
            hit = self.table.get(key)
            if hit is None:
                self.table[key] = doc
            elif isinstance(hit, int):
                self.table[key] = [hit, doc]
            else:
                hit.append(doc)

    def _spill(self) -> None:
        """The band table to a sorted run on disk, the recent signatures to the spill file."""
        keys = np.fromiter(self.table.keys(), dtype=np.uint64, count=len(self.table))
        counts = np.fromiter((1 if isinstance(v, int) else len(v) for v in self.table.values()), dtype=np.int64,
                             count=len(self.table))
        docs = np.fromiter((d for v in self.table.values() for d in ((v,) if isinstance(v, int) else v)),
                           dtype=np.uint64, count=int(counts.sum()))
        self.disk.add(np.repeat(keys, counts), docs)
        if self._spill_file is None:
            self._spill_file = self.disk.folder() / "signatures.u32"
        with open(self._spill_file, "ab") as fh:
            self.recent[: self.kept - self.spilled].tofile(fh)
        self.spilled = self.kept
        self._spilled_sigs = np.memmap(self._spill_file, dtype=np.uint32, mode="r",
                                       shape=(self.spilled, self.spec.permutations))
        self.table, self.recent = {}, np.empty((1024, self.spec.permutations), dtype=np.uint32)

    # --- checkpoints: the signatures go to their own file (appended), the rest into state.pkl ---

    def unsaved(self) -> np.ndarray:
        """Kept signatures not yet in a checkpoint, in order."""
        return self.signatures(np.arange(self.saved, self.kept))

    def state(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "rejected": self.rejected, "permutations": self.spec.permutations}

    def restore(self, state: dict[str, Any], sigs: np.ndarray) -> None:
        """Continue from a checkpoint: its counters and the kept signatures (mapped from minhash.bin),
        indexed again in order, in blocks, spilling as a running index does."""
        self.__init__(self.spec)
        self.clusters, self.rejected = state["clusters"], state["rejected"]
        for start in range(0, len(sigs), 4096):
            block = np.asarray(sigs[start : start + 4096])
            for sig, doc_keys in zip(block, band_keys(block, self.spec).tolist()):
                self._add(sig, doc_keys)
            if len(self.table) >= TABLE_LIMIT:
                self._spill()
        self.saved = self.kept

    def stats(self) -> dict[str, int]:
        """The manifest's ``counts.near_duplicates``: documents dropped, clusters (kept documents with
        at least one near-duplicate), the largest cluster (its kept document included) and the band
        collisions the Jaccard estimate turned down."""
        return {
            "documents": sum(self.clusters.values()),
            "clusters": len(self.clusters),
            "largest_cluster": max(self.clusters.values()) + 1 if self.clusters else 0,
            "candidates_rejected": self.rejected,
        }
