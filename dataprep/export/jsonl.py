"""JSONL: ``SPLIT.jsonl``, one JSON object per row, for eyes and for tools that read JSON.

Each line holds every column of the row as it is (``input_ids``, ``seq_lengths``, ``num_pad``,
``assistant_masks``, labels, ...), so nothing is lost, plus the row decoded by the dataset's tokenizer:

    "text":    one string per content piece (an example, a document or a document's piece; the pad piece left out)
    "targets": (rows with a loss mask) per piece, the decoded runs of target tokens

Special tokens are decoded as their text (``skip_special_tokens=False``), so an EOS shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataprep import columns as C
from dataprep.dataset.reader import Dataset
from dataprep.export.base import Exporter, Written
from dataprep.export.pieces import batches

_ROWS_PER_SLICE = 256


class Jsonl(Exporter):
    name = "jsonl"
    summary = "JSON lines (DEST/SPLIT.jsonl): every column plus decoded text and target spans per piece"

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        decode = ds.tokenizer().tokenizer.decode_batch
        written = Written(files=[f"{split}.jsonl"])
        with open(dest / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for batch in batches(ds, split):
                for start in range(0, batch.num_rows, _ROWS_PER_SLICE):
                    rows = batch.slice(start, _ROWS_PER_SLICE).to_pylist()
                    for row in decoded(rows, decode):
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    written.rows += len(rows)
                    written.tokens += sum(len(r[C.INPUT_IDS]) for r in rows)
        return written


def decoded(rows: list[dict], decode) -> list[dict]:
    """``rows`` with ``text`` (and ``targets`` where there is a loss mask) added, decoded in one call."""
    pieces, spans, where = [], [], []
    for r, row in enumerate(rows):
        ids, mask = row[C.INPUT_IDS], row.get(C.LOSS_MASK)
        lens = list(row[C.SEQ_LENS])
        if row.get(C.NUM_PAD):
            lens = lens[:-1]
        start = 0
        for n in lens:
            pieces.append(ids[start : start + n])
            if mask is not None:
                runs = _runs(mask, start, start + n)
                where.append((r, len(runs)))
                spans.extend(ids[a:b] for a, b in runs)
            start += n
    texts = iter(decode(pieces, skip_special_tokens=False))
    targets = iter(decode(spans, skip_special_tokens=False))
    out = []
    for r, row in enumerate(rows):
        n = len(row[C.SEQ_LENS]) - (1 if row.get(C.NUM_PAD) else 0)
        out.append({**row, "text": [next(texts) for _ in range(n)]})
    for r, count in where:
        out[r].setdefault("targets", []).append([next(targets) for _ in range(count)])
    return out


def _runs(mask: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """The ``[a, b)`` runs of 1s in ``mask[start:end]``."""
    runs, a = [], None
    for i in range(start, end):
        if mask[i] and a is None:
            a = i
        elif not mask[i] and a is not None:
            runs.append((a, i))
            a = None
    if a is not None:
        runs.append((a, end))
    return runs
