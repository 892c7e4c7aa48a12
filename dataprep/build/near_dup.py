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

State: the kept documents' signatures (uint32, ``permutations`` each: 480 bytes at the default 120)
and one table entry per band (:attr:`table`, rebuilt from the signatures on resume).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from dataprep.text.minhash import MinhashSpec, agreement, band_keys, has_shingles


class NearDupIndex:
    """LSH over the kept documents' signatures, in input order (see the module docstring)."""

    def __init__(self, spec: MinhashSpec):
        self.spec = spec
        self.sigs = np.empty((1024, spec.permutations), dtype=np.uint32)  # kept documents' signatures, grown by doubling
        self.kept = 0
        self.saved = 0  # kept signatures already in a checkpoint (Checkpoints.save appends the rest)
        self.table: dict[int, int | list[int]] = {}  # band key -> kept document(s) with it
        self.clusters: Counter = Counter()  # kept document -> near-duplicates dropped against it
        self.rejected = 0  # candidate pairs from the bands whose estimated Jaccard was below the threshold

    def drop_mask(self, sigs: np.ndarray, consider: np.ndarray) -> np.ndarray:
        """True for each document of a chunk that is a near-duplicate of an earlier kept one; the
        others among ``consider`` (and with shingles) are added to the index, in order."""
        dropped = np.zeros(len(sigs), dtype=bool)
        todo = np.flatnonzero(consider & has_shingles(sigs))
        if not len(todo):
            return dropped
        keys = band_keys(sigs[todo], self.spec).tolist()
        for i, doc_keys in zip(todo.tolist(), keys):
            rep = self._match(sigs[i], doc_keys)
            if rep is None:
                self._add(sigs[i], doc_keys)
            else:
                dropped[i] = True
                self.clusters[rep] += 1
        return dropped

    def _match(self, sig: np.ndarray, keys: list[int]) -> int | None:
        """The earliest kept document whose estimated Jaccard with ``sig`` reaches the threshold."""
        found: set[int] = set()
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
        close = agreement(sig, self.sigs[candidates]) >= self.spec.agree
        self.rejected += int(len(candidates) - close.sum())
        return int(candidates[np.argmax(close)]) if close.any() else None

    def _add(self, sig: np.ndarray, keys: list[int]) -> None:
        if self.kept == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.empty_like(self.sigs)])
        doc = self.kept
        self.sigs[doc] = sig
        self.kept += 1
        for key in keys:
            hit = self.table.get(key)
            if hit is None:
                self.table[key] = doc
            elif isinstance(hit, int):
                self.table[key] = [hit, doc]
            else:
                hit.append(doc)

    # --- checkpoints: the signatures go to their own file (appended), the rest into state.pkl ---

    def unsaved(self) -> np.ndarray:
        """Kept signatures not yet in a checkpoint, in order."""
        return self.sigs[self.saved : self.kept]

    def state(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "rejected": self.rejected, "permutations": self.spec.permutations}

    def restore(self, state: dict[str, Any], sigs: np.ndarray) -> None:
        """Continue from a checkpoint: its counters and the kept signatures, indexed again in order."""
        self.__init__(self.spec)
        self.clusters, self.rejected = state["clusters"], state["rejected"]
        if len(sigs):
            for sig, doc_keys in zip(sigs, band_keys(sigs, self.spec).tolist()):
                self._add(sig, doc_keys)
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
