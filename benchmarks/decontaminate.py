"""Decontamination (``dataprep.text.decontaminate``): index build, and MB/s of ``match``.

    python benchmarks/decontaminate.py [--mb 50] [--batch 4096] [--plant 200]

The evaluation sets are real files from ``../shared/data``, read by ``load_index`` as a recipe's
``decontaminate:`` would name them: DialogSum dev (dialogue + summary), XQuAD's paragraphs in 10
languages, the first 1,000 cleaned Alpaca records (instruction + input + output) and HumanEval
(prompt + canonical_solution). The training text is the first ``--mb`` MB of
``../shared/bench/corpus.jsonl.zst``, in which ``--plant`` documents (spread evenly) get one
evaluation item appended, so the run shows it finds them; the corpus's own matches are counted
apart. ``match`` runs over batches of ``--batch`` documents, as a worker would call it; MB/s is
UTF-8 text per second of wall time and per CPU second of this process (the VM is shared).

Then the lookup alone, on the corpus's n-gram hashes already computed: the module's sorted array
behind a bitmap, ``np.searchsorted`` on every hash, and a Python ``set`` of the hashes.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import Contention, corpus_prefix, machine, read_texts  # noqa: E402

from dataprep.text import decontaminate as dc  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = [
    dc.EvalSetSpec("pairs/summarization/dialogsum_dev.jsonl", fields=("dialogue", "summary"), id_field="fname"),
    dc.EvalSetSpec("corpora/multilingual/xquad_contexts.jsonl", id_field="id"),
    dc.EvalSetSpec("pairs/instruction/alpaca_data_cleaned_1000.json", fields=("instruction", "input", "output")),
    dc.EvalSetSpec("corpora/code/humaneval_python.jsonl", fields=("prompt", "canonical_solution"), id_field="task_id"),
]


def build() -> dc.DecontaminationIndex:
    started = time.perf_counter()
    index = dc.load_index(SETS, base_dir=DATA)
    seconds = time.perf_counter() - started
    print(f"index: {seconds:.2f} s to read and hash {sum(s['items'] for s in index.stats().values()):,} items; "
          f"{len(index.hashes):,} distinct 13-grams; pickled {len(pickle.dumps(index)) / 1e6:.1f} MB "
          f"(+ a {len(index._table()[1]) / 1e6:.1f} MB bitmap each process makes)")
    for name, stats in index.stats().items():
        print(f"  {name}: {stats['items']:,} items, {stats['short_items']:,} under 13 words, {stats['ngrams']:,} 13-grams")
    return index


def plant(texts: list[str], count: int) -> dict[int, str]:
    """Append one evaluation item to ``count`` documents spread over the corpus: index -> item id."""
    items = [(spec.name, item) for spec in SETS for item in dc.read_items(spec, base_dir=DATA)]
    step_docs, step_items = max(1, len(texts) // max(count, 1)), max(1, len(items) // max(count, 1))
    planted = {}
    for k in range(min(count, len(texts))):
        doc, (name, (item, text)) = k * step_docs, items[(k * step_items) % len(items)]
        texts[doc] = f"{texts[doc]}\n\n{text}"
        planted[doc] = (name, item)
    return planted


def run_match(index: dc.DecontaminationIndex, texts: list[str], batch: int) -> list:
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    found = []
    with Contention() as load:
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(texts), batch):
            found.extend(index.match(texts[start : start + batch]))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"match: {len(texts):,} documents, {mb:.1f} MB in {wall:.1f} s: {mb / wall:.1f} MB/s wall, "
          f"{mb / cpu:.1f} MB per CPU second (other processes used {load.others:.0%} of the machine)")
    return found


def lookups(index: dc.DecontaminationIndex, texts: list[str]) -> None:
    hashes, doc, _ = dc._word_hashes(texts)
    grams = np.concatenate([h for _, _, h in dc._grams(hashes, doc, index.lengths)])
    members = set(index.hashes.tolist())
    index._table()

    def bitmap() -> int:
        bits, table = index._table()
        slot = grams >> np.uint64(64 - bits)
        maybe = np.flatnonzero((table[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1)
        at = np.minimum(np.searchsorted(index.hashes, grams[maybe]), len(index.hashes) - 1)
        return int((index.hashes[at] == grams[maybe]).sum())

    def searchsorted() -> int:
        at = np.minimum(np.searchsorted(index.hashes, grams), len(index.hashes) - 1)
        return int((index.hashes[at] == grams).sum())

    def python_set() -> int:
        return sum(h in members for h in grams.tolist())

    print(f"lookup of the corpus's {len(grams):,} 13-gram hashes in {len(index.hashes):,}:")
    for name, lookup in (("bitmap + searchsorted (used)", bitmap), ("searchsorted alone", searchsorted),
                         ("Python set", python_set)):
        cpu = time.process_time()
        hits = lookup()
        print(f"  {name}: {time.process_time() - cpu:.3f} CPU s, {hits:,} hits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50, help="MB of the bench corpus to match (default 50)")
    parser.add_argument("--batch", type=int, default=4096, help="documents per match() call (default 4096)")
    parser.add_argument("--plant", type=int, default=200, help="documents given an evaluation item (default 200)")
    args = parser.parse_args()
    print(machine())
    index = build()
    texts = read_texts(corpus_prefix(args.mb))
    planted = plant(texts, args.plant)
    found = run_match(index, texts, args.batch)
    right = sum(found[doc] is not None for doc in planted)
    named = sum(found[doc] == want for doc, want in planted.items())
    missed = [f"{name} {item}" for doc, (name, item) in planted.items() if found[doc] is None]
    other = sum(m is not None for i, m in enumerate(found) if i not in planted)
    print(f"planted: {right} of {len(planted)} found, {named} naming the planted item and {right - named} an earlier "
          f"item that shares an n-gram with it; missed: {', '.join(missed) or 'none'}; "
          f"{other} other documents of the corpus matched")
    lookups(index, texts)


if __name__ == "__main__":
    main()
