"""MinHash signatures and LSH band keys of documents (``filter.dedup: minhash``), computed in the workers.

A document becomes a set of shingles (``word``: n consecutive ``\\w+`` words, lowercased;
``char``: n consecutive characters of the lowercased text with whitespace runs made one space),
each a stable 64-bit hash. Its signature holds, for each of ``bands x rows`` permutations
``h -> a*h + b (mod 2**64)`` (``a`` odd: a bijection of the 64-bit hashes), the top 32 bits of the
smallest permuted shingle hash. Two documents agree at one permutation with probability equal to
the Jaccard similarity of their shingle sets, so the share of agreeing permutations estimates it.

The ordered stage (:mod:`dataprep.build.near_dup`) looks documents up by their band keys (one hash
per band of ``rows`` values) and drops a document whose estimated Jaccard with an earlier kept one
is at least ``threshold``: a band collision only proposes a pair, the estimate decides.

Defaults: word 5-grams (datatrove's ``MinhashConfig``, and Gopher/RefinedWeb), 20 bands x 6 rows
= 120 permutations, threshold 0.7. A pair at Jaccard ``s`` becomes a candidate with probability
``1 - (1 - s**6)**20`` (the LSH S-curve; its midpoint ``(1/20)**(1/6)`` = 0.61 sits below the
threshold, so the bands propose nearly every pair the estimate would accept), and is then dropped
when at least 84 of 120 permutations agree. Computed exactly under the independent-permutation
model (``benchmarks/near_dup.py`` measures it on planted pairs)::

    Jaccard          0.5      0.6      0.7      0.75     0.8      0.85
    candidate        0.270    0.615    0.918    0.980    0.998    1.000
    dropped          0.0000   0.0143   0.5317   0.9024   0.9948   0.9999

datatrove's defaults (14 bands x 8 rows, no estimate check) drop 92% of pairs at 0.8; NeMo Curator
(20 x 13 on 24-character shingles, then an exact Jaccard check at 0.8) drops about half of the
pairs at exactly 0.8. A threshold of 0.7 is what catches >= 99% of pairs at 0.8 with one estimate
of 120 permutations, while pairs at 0.5 are never dropped. For text without spaces between words
(Chinese, Japanese, Thai) use ``shingle: char`` with a longer ``ngram`` (NeMo Curator uses 24).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xxhash

WORD = "word"
CHAR = "char"
NO_SHINGLE = np.uint32(0xFFFFFFFF)  # every value of the signature of a document with no shingle
_WORDS = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")
_BLOCK = 4096  # shingles permuted at once: 4096 x 120 x 8 bytes = 4 MB of scratch
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class MinhashSpec:
    """A recipe's ``filter.minhash`` (defaults in ``schemas/recipe.schema.json``; see the module docstring)."""

    shingle: str = WORD
    ngram: int = 5
    bands: int = 20
    rows: int = 6
    threshold: float = 0.7
    seed: int = 0

    @property
    def permutations(self) -> int:
        return self.bands * self.rows

    @property
    def agree(self) -> int:
        """Permutations that must agree for a pair to count as near-duplicates (``threshold`` of them)."""
        return int(np.ceil(self.threshold * self.permutations - 1e-9))


def _splitmix(x: int) -> int:
    """SplitMix64's finalizer on a Python int: the stable source of every constant here."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _constants(seed: int, count: int, salt: int) -> np.ndarray:
    """``count`` 64-bit constants from ``seed`` (numpy's generators may change streams across versions)."""
    return np.array([_splitmix((seed << 20) ^ (salt << 12) ^ i) for i in range(count)], dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _units(text: str, shingle: str) -> np.ndarray:
    """64-bit hashes of a document's words (or characters), in order."""
    text = text.lower()
    if shingle == WORD:
        words = _WORDS.findall(text)
        return np.fromiter((xxhash.xxh3_64_intdigest(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    chars = np.frombuffer(_SPACES.sub(" ", text).strip().encode("utf-32-le"), dtype=np.uint32)
    return _mix(chars.astype(np.uint64))


def shingle_hashes(text: str, spec: MinhashSpec, weights: np.ndarray | None = None) -> np.ndarray:
    """The document's shingle hashes: each n-gram of units is ``mix(sum(unit[i+k] * w[k]))``.

    A document shorter than ``ngram`` units is one shingle; one without any unit has none.
    """
    units = _units(text, spec.shingle)
    if weights is None:
        weights = _constants(spec.seed, spec.ngram, salt=1)
    if len(units) == 0:
        return units
    n = min(spec.ngram, len(units))
    count = len(units) - n + 1
    acc = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        acc += units[k : k + count] * weights[k]
    return _mix(acc)


def signatures(texts: list[str], spec: MinhashSpec) -> np.ndarray:
    """uint32 ``[len(texts), permutations]``: each document's MinHash signature.

    A document with no shingle (no word character) gets :data:`NO_SHINGLE` everywhere and is
    never compared (:func:`has_shingles`).
    """
    weights = _constants(spec.seed, spec.ngram, salt=1)
    a = _constants(spec.seed, spec.permutations, salt=2) | np.uint64(1)  # odd: a bijection mod 2**64
    b = _constants(spec.seed, spec.permutations, salt=3)
    per_doc = [shingle_hashes(t, spec, weights) for t in texts]
    counts = np.fromiter((len(h) for h in per_doc), dtype=np.int64, count=len(per_doc))
    lowest = np.full((len(texts), spec.permutations), np.iinfo(np.uint64).max, dtype=np.uint64)
    if counts.sum():
        hashes = np.concatenate(per_doc)
        doc_of = np.repeat(np.arange(len(texts)), counts)
        for start in range(0, len(hashes), _BLOCK):
            block = hashes[start : start + _BLOCK, None] * a[None, :] + b[None, :]
            docs = doc_of[start : start + _BLOCK]
            starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            mins = np.minimum.reduceat(block, starts, axis=0)
            owners = docs[starts]
            lowest[owners] = np.minimum(lowest[owners], mins)
    return (lowest >> np.uint64(32)).astype(np.uint32)


def has_shingles(sigs: np.ndarray) -> np.ndarray:
    """bool per signature row: False for a document with no shingle."""
    return ~np.all(sigs == NO_SHINGLE, axis=1)


def band_keys(sigs: np.ndarray, spec: MinhashSpec) -> np.ndarray:
    """uint64 ``[len(sigs), bands]``: one key per band of ``rows`` values (the band's index mixed in,
    so that all bands share one lookup table)."""
    rows = sigs.reshape(len(sigs), spec.bands, spec.rows).astype(np.uint64)
    weights = _constants(spec.seed, spec.rows, salt=4)
    acc = (rows * weights).sum(axis=2, dtype=np.uint64)
    return _mix(acc ^ _constants(spec.seed, spec.bands, salt=5)[None, :])


def agreement(sig: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Permutations at which ``sig`` agrees with each row of ``others`` (the Jaccard estimate times
    ``permutations``)."""
    return np.count_nonzero(others == sig[None, :], axis=1)
