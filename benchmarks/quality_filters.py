"""Quality filters and PII redaction: MB/s of text, dataprep's beside datatrove's, and drop shares.

    python benchmarks/quality_filters.py [--mb 20] [--datatrove-mb 5] [--batch 1000]

The text is the first ``--mb`` MB of ``../shared/bench/corpus.jsonl.zst`` (books, docs pages,
tldr pages in 39 languages, PEPs). Each filter of ``dataprep.text.quality`` runs alone, with its
published defaults, over batches of ``--batch`` documents on one core; the table prints MB of
UTF-8 per second and the share of documents it drops, and the reasons it counted.

datatrove (``pip install datatrove``; or its wheel's directory on ``DATATROVE_PATH``) runs its
``GopherQualityFilter``, ``GopherRepetitionFilter``, ``C4QualityFilter`` and
``FineWebQualityFilter`` one document at a time over the first ``--datatrove-mb`` MB, given a
whitespace word splitter (its default, NLTK's, needs a model download) and one sentence per
line, so that both sides split words alike. "agree" is the share of those documents on which
both keep, or both drop; C4 runs with C4's values (3 sentences, 5 words a line) on both sides,
datatrove's own defaults are 5 and 3. The documented differences (each class docstring) are
what keeps agreement below 100%.

``dataprep.text.pii.redact`` (email, ip, phone; and email + ip alone) runs beside datatrove's
``PIIFormatter`` (email and IP only) on the same ``--mb`` MB. Last, the share of documents each
filter drops, alone and chained, on the real corpora in ``../shared/data/corpora``: c4_demo
(C4's output: its own filter should drop none), WikiText-2 validation cut into articles, and
wiki_demo (one Wikipedia article per line, with no line breaks: line rules see one line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import Contention, corpus_prefix, machine, read_texts  # noqa: E402

from dataprep.text import pii, quality  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"


def batches(texts: list[str], size: int) -> list[pa.Array]:
    return [pa.array(texts[i : i + size], pa.string()) for i in range(0, len(texts), size)]


def run_ours(name: str, texts: list[str], size: int) -> tuple[float, list[bool], Counter]:
    """Seconds, keep decisions and drop counts of one dataprep filter over ``texts``."""
    (filt,) = quality.quality_filters({name: True})
    arrays, drops, keeps = batches(texts, size), Counter(), []
    started = time.process_time()
    for array in arrays:
        keep, _ = filt(array, drops, Counter())
        keeps.extend(keep.tolist())
    return time.process_time() - started, keeps, drops


def datatrove_filters():
    """datatrove's four filters with a whitespace word splitter, or None when it is not installed."""
    if os.environ.get("DATATROVE_PATH"):
        sys.path.insert(0, os.environ["DATATROVE_PATH"])
    try:
        from datatrove.data import Document
        from datatrove.pipeline import filters
        from datatrove.utils.word_tokenizers import WordTokenizer
    except ImportError as err:
        print(f"datatrove: not importable ({err}); `pip install datatrove` or set DATATROVE_PATH")
        return None

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    words = Whitespace("en")
    made = {
        "gopher_repetition": filters.GopherRepetitionFilter(language=words),
        "gopher_quality": filters.GopherQualityFilter(language=words),
        "c4": filters.C4QualityFilter(language=words, min_num_sentences=3, min_words_per_line=5),
        "fineweb": filters.FineWebQualityFilter(language=words),
    }
    return Document, made


def run_theirs(Document, filt, texts: list[str]) -> tuple[float, list[bool]]:
    keeps = []
    started = time.process_time()
    for i, text in enumerate(texts):
        try:
            result = filt.filter(Document(text=text, id=str(i)))
        except (ZeroDivisionError, ValueError, IndexError):  # e.g. a document without words
            result = False
        keeps.append(result is True or (isinstance(result, tuple) and result[0]))
    return time.process_time() - started, keeps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="MB of the bench corpus for dataprep")
    parser.add_argument("--datatrove-mb", type=float, default=5.0, help="MB of it for datatrove (slower)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per Arrow batch")
    args = parser.parse_args()
    texts = read_texts(corpus_prefix(args.mb))
    small = read_texts(corpus_prefix(args.datatrove_mb))
    size = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    small_size = sum(len(t.encode("utf-8")) for t in small) / 1e6
    print(machine())
    print(f"dataprep: {len(texts):,} documents, {size:.1f} MB; datatrove: {len(small):,} documents, {small_size:.1f} MB")
    theirs = datatrove_filters()
    print(f"{'filter':<18} {'dataprep MB/s':>13} {'drops':>6} {'datatrove MB/s':>14} {'drops':>6} {'agree':>6}  others' CPU")
    for name in quality.FILTERS:
        with Contention() as busy:
            seconds, keeps, drops = run_ours(name, texts, args.batch)
            line = f"{name:<18} {size / seconds:>13.1f} {1 - sum(keeps) / len(keeps):>6.1%}"
            if theirs is not None:
                _, mine, _ = run_ours(name, small, args.batch)
                their_seconds, their_keeps = run_theirs(theirs[0], theirs[1][name], small)
                agree = sum(a == b for a, b in zip(mine, their_keeps)) / len(small)
                line += f" {small_size / their_seconds:>14.1f} {1 - sum(their_keeps) / len(small):>6.1%} {agree:>6.1%}"
        print(f"{line}  {busy.others:.0%}")
        print("    " + ", ".join(f"{reason} {count}" for reason, count in drops.most_common()))
    bench_pii(texts, size, theirs is not None)
    drop_shares(args.batch)


def bench_pii(texts: list[str], size: float, datatrove: bool) -> None:
    array = pa.array(texts, pa.string())
    for kinds in (["email", "ip", "phone"], ["email", "ip"]):
        started = time.process_time()
        _, counts = pii.redact(array, kinds)
        line = f"pii {'+'.join(kinds):<14} {size / (time.process_time() - started):>13.1f} {dict(counts)}"
        if datatrove and kinds == ["email", "ip"]:
            from datatrove.pipeline.formatters import PIIFormatter

            formatter, started = PIIFormatter(), time.process_time()
            changed = sum(formatter.format(text) != text for text in texts)
            line += f"; datatrove PIIFormatter {size / (time.process_time() - started):.1f} MB/s, {changed} documents changed"
        print(line)


def drop_shares(batch: int) -> None:
    wikitext = (DATA / "wikitext2_valid.txt").read_text(encoding="utf-8")
    corpora = {
        "c4_demo": [json.loads(line)["text"] for line in (DATA / "c4_demo.jsonl").open(encoding="utf-8")],
        "wikitext2": [a for a in re.split(r"\n(?= = [^=].* = \n)", wikitext) if a.strip()],
        "wiki_demo": [t for t in (DATA / "wiki_demo.txt").read_text(encoding="utf-8").split("\n") if t],
    }
    print("share of documents dropped (each filter alone; all four chained)")
    print(f"{'corpus':<10} {'docs':>5} " + " ".join(f"{name:>17}" for name in quality.FILTERS) + f" {'chained':>8}")
    for corpus, texts in corpora.items():
        shares = [1 - sum(run_ours(name, texts, batch)[1]) / len(texts) for name in quality.FILTERS]
        drops = Counter()
        keep, _ = quality.apply_quality(pa.array(texts), quality.quality_filters(dict.fromkeys(quality.FILTERS, True)), drops)
        print(f"{corpus:<10} {len(texts):>5} " + " ".join(f"{s:>17.1%}" for s in shares) + f" {1 - keep.mean():>8.1%}")
        print("    " + ", ".join(f"{reason} {count}" for reason, count in drops.most_common()))


if __name__ == "__main__":
    main()
