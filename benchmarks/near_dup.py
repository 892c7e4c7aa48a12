"""Near-duplicate removal (``filter.dedup: minhash``) on planted pairs, beside datasketch's MinHashLSH.

The planted set: real paragraphs from ``../shared/data/corpora`` (c4_demo.jsonl, wiki_demo.txt cut
into ~150-word passages, multilingual/xquad_contexts.jsonl in the languages written with spaces),
each followed later in the stream by one variant made by one kind of change: ``edit`` (words
replaced), ``insert`` (words from other paragraphs inserted), ``delete`` (words removed), ``span``
(a contiguous stretch cut out and another paragraph's stretch put in) or ``reorder`` (sentences
moved). The amount of change is searched so that the variant's TRUE Jaccard similarity with its
paragraph (on word 5-gram shingles, computed here independently of dataprep) lands near a target
drawn uniformly from [0.3, 1.0]. Each pair is scored by its true Jaccard:

    recall          variants dropped, of the pairs at Jaccard >= 0.8   (goal: >= 95%)
    false removals  variants dropped, of the pairs at Jaccard <= 0.5   (goal: <= 1%)

Both sides see the same documents in the same order and decide the same way (a document is
dropped when a candidate from the LSH bands, among the earlier kept ones, has an estimated Jaccard
of at least the threshold); datasketch gets the same bands x rows, threshold and shingles, so the
throughput compares the MinHash and LSH code (MB/s of text, one process, shingling included).

    python benchmarks/near_dup.py                 # every paragraph (about 3,100 pairs, ~10 s)
    python benchmarks/near_dup.py --pairs 500     # a smaller set
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"
SPACED = {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "tr", "vi"}  # xquad languages written with spaces
KINDS = ("edit", "insert", "delete", "span", "reorder")
NGRAM = 5
HIGH, LOW = 0.8, 0.5
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Pair:
    original: str
    variant: str
    kind: str
    jaccard: float  # true Jaccard of the word 5-gram shingle sets


def shingles(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word n-grams of the lowercased ``\\w+`` words (a text shorter than n words is one shingle)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def paragraphs(min_words: int = 60, max_words: int = 400) -> list[str]:
    """The real paragraphs the pairs start from, in a fixed order."""
    out = [json.loads(line)["text"] for line in (CORPORA / "c4_demo.jsonl").open(encoding="utf-8")]
    for article in (CORPORA / "wiki_demo.txt").read_text(encoding="utf-8").splitlines():
        words = article.split(" ")
        out.extend(" ".join(words[i : i + 150]) for i in range(0, len(words), 150))
    for line in (CORPORA / "multilingual" / "xquad_contexts.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        if record["lang"] in SPACED:
            out.append(record["text"])
    seen, unique = set(), []
    for text in out:
        if min_words <= len(text.split()) <= max_words and text not in seen:
            seen.add(text)
            unique.append(text)
    return unique


def _change(words: list[str], kind: str, amount: int, rng_seed: int, donor: list[str]) -> list[str]:
    """``words`` with ``amount`` units of one kind of change; the positions depend on the seed only,
    so a larger amount changes a superset of places (the search below relies on it)."""
    rng = np.random.default_rng(rng_seed)
    n = len(words)
    if kind == "edit":
        out = list(words)
        for i in rng.permutation(n)[:amount]:
            out[i] = donor[int(i) % len(donor)]
        return out
    if kind == "delete":
        gone = set(rng.permutation(n)[:amount].tolist())
        return [w for i, w in enumerate(words) if i not in gone]
    if kind == "insert":
        at = set(rng.permutation(n)[:amount].tolist())
        out = []
        for i, w in enumerate(words):
            out.append(w)
            if i in at:
                out.append(donor[i % len(donor)])
        return out
    if kind == "span":
        start = int(rng.integers(0, max(1, n - amount)))
        return words[:start] + donor[:amount] + words[start + amount :]
    # reorder: move `amount` sentences (a fixed sequence of moves) to other places
    sentences = _SENTENCE.split(" ".join(words))
    for _ in range(amount):
        if len(sentences) < 2:
            break
        i, j = rng.integers(0, len(sentences), size=2)
        sentences.insert(int(j), sentences.pop(int(i)))
    return " ".join(sentences).split(" ")


def make_variant(text: str, kind: str, target: float, seed: int, donor: str) -> tuple[str, float]:
    """The variant of ``text`` whose true Jaccard is closest to ``target`` (binary search on the amount)."""
    words, donor_words = text.split(" "), donor.split(" ")
    base = shingles(text)
    limit = len(_SENTENCE.split(text)) * 3 if kind == "reorder" else len(words)
    low, high, best = 0, limit, (2.0, text, 1.0)
    while low <= high:
        amount = (low + high) // 2
        variant = " ".join(_change(words, kind, amount, seed, donor_words))
        j = jaccard(base, shingles(variant))
        if abs(j - target) < best[0]:
            best = (abs(j - target), variant, j)
        if j > target:
            low = amount + 1
        else:
            high = amount - 1
    return best[1], best[2]


def planted_pairs(count: int | None = None, *, seed: int = 0) -> list[Pair]:
    """One variant per paragraph (the first ``count`` paragraphs), kinds in turn, targets in [0.3, 1]."""
    texts = paragraphs()
    if count is not None:
        texts = texts[:count]
    rng = np.random.default_rng(seed)
    pairs = []
    for i, text in enumerate(texts):
        kind = KINDS[i % len(KINDS)]
        donor = texts[(i + len(texts) // 2) % len(texts)]
        variant, j = make_variant(text, kind, float(rng.uniform(0.3, 1.0)), seed * 1_000_003 + i, donor)
        if variant != text:  # an exact copy is the exact-dedup's case
            pairs.append(Pair(text, variant, kind, j))
    return pairs


def stream(pairs: list[Pair]) -> list[str]:
    """The documents as a corpus: every original, then every variant (in a shuffled order)."""
    order = np.random.default_rng(1).permutation(len(pairs))
    return [p.original for p in pairs] + [pairs[i].variant for i in order]


def scores(pairs: list[Pair], dropped_variant: np.ndarray) -> dict[str, float]:
    """Recall at Jaccard >= 0.8, false removals at <= 0.5, and the dropped share per Jaccard band."""
    js = np.array([p.jaccard for p in pairs])
    high, low = js >= HIGH, js <= LOW
    out = {"pairs_high": int(high.sum()), "pairs_low": int(low.sum()),
           "recall": float(dropped_variant[high].mean()), "false_removal": float(dropped_variant[low].mean())}
    for lo in (0.5, 0.6, 0.7):
        band = (js > lo) & (js < lo + 0.1) if lo == 0.5 else (js >= lo) & (js < lo + 0.1)
        out[f"dropped_{lo:.1f}-{lo + 0.1:.1f}"] = float(dropped_variant[band].mean()) if band.any() else float("nan")
    return out


def dataprep_dropped(docs: list[str], spec, *, chunk: int = 512) -> np.ndarray:
    """dataprep's decision for each document, as the run takes it (signatures per chunk, then the index)."""
    from dataprep.build.near_dup import NearDupIndex
    from dataprep.text.minhash import signatures

    index = NearDupIndex(spec)
    out = []
    for start in range(0, len(docs), chunk):
        part = docs[start : start + chunk]
        out.append(index.drop_mask(signatures(part, spec), np.ones(len(part), dtype=bool)))
    return np.concatenate(out)


def datasketch_dropped(docs: list[str], spec) -> np.ndarray:
    """The same decision with datasketch: MinHash per document, MinHashLSH with the same bands x rows,
    candidates confirmed by MinHash.jaccard >= threshold."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=spec.permutations, params=(spec.bands, spec.rows))
    kept: dict[int, MinHash] = {}
    out = np.zeros(len(docs), dtype=bool)
    for i, text in enumerate(docs):
        m = MinHash(num_perm=spec.permutations, seed=spec.seed)
        m.update_batch([" ".join(s).encode("utf-8") for s in shingles(text)])
        if any(kept[k].jaccard(m) >= spec.threshold for k in lsh.query(m)):
            out[i] = True
        else:
            kept[i] = m
            lsh.insert(i, m)
    return out


def main() -> None:
    from dataprep.text.minhash import MinhashSpec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=None, help="paragraphs to plant a variant of (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    pairs = planted_pairs(args.pairs)
    docs = stream(pairs)
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    spec = MinhashSpec()
    print(f"{len(pairs)} planted pairs ({sum(p.jaccard >= HIGH for p in pairs)} at Jaccard >= {HIGH}, "
          f"{sum(p.jaccard <= LOW for p in pairs)} at <= {LOW}), {len(docs)} documents, {megabytes:.2f} MB "
          f"(made in {time.perf_counter() - started:.0f} s); {spec.shingle} {spec.ngram}-grams, "
          f"{spec.bands} bands x {spec.rows} rows, threshold {spec.threshold}")
    variants = np.arange(len(pairs), 2 * len(pairs))
    rows = []
    for name, decide in (("dataprep", dataprep_dropped), ("datasketch", datasketch_dropped)):
        t = time.perf_counter()
        dropped = decide(docs, spec)
        seconds = time.perf_counter() - t
        back = np.empty(len(pairs), dtype=bool)  # the variants, back in pair order
        back[np.random.default_rng(1).permutation(len(pairs))] = dropped[variants]
        s = scores(pairs, back)
        rows.append((name, s, int(dropped[: len(pairs)].sum()), megabytes / seconds))
    print(f"{'':12} {'recall>=0.8':>12} {'false<=0.5':>11} {'0.5-0.6':>8} {'0.6-0.7':>8} {'0.7-0.8':>8} "
          f"{'originals dropped':>18} {'MB/s':>7}")
    for name, s, originals, speed in rows:
        print(f"{name:12} {s['recall']:12.1%} {s['false_removal']:11.2%} {s['dropped_0.5-0.6']:8.1%} "
              f"{s['dropped_0.6-0.7']:8.1%} {s['dropped_0.7-0.8']:8.1%} {originals:18d} {speed:7.2f}")
    by_kind = {k: [p.jaccard >= HIGH for p in pairs if p.kind == k] for k in KINDS}
    print("pairs at >= 0.8 by kind: " + ", ".join(f"{k} {sum(v)}" for k, v in by_kind.items()))


if __name__ == "__main__":
    main()
