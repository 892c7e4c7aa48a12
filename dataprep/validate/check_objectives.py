"""Row rules of the objectives and few-shot prompts, per batch of structurally sound rows.

**MLM, static masks** (``mlm-row``): ``labels`` as long as ``input_ids``; every label is
``IGNORE_INDEX`` or a real id; a label (a chosen position) never sits on a special token or in
padding, and its input is the mask token, a non-special token or the label itself; the mask
token never appears without a label.

**Span corruption** (``span-row``): ``labels`` exactly ``objective.labels_length`` long, ids in
the vocabulary; the sentinels appear in order (``<extra_id_0>``, ``<extra_id_1>``, ...), once
each, in ``input_ids`` and in ``labels``, and ``labels`` starts with the first one; both end with
EOS. Then the two merge at the sentinels into ``objective.raw_length`` tokens: the row reconstructs.

**Few-shot** (``fewshot-row``): ``query_start`` lies inside the row, and no target comes before it.
"""

from __future__ import annotations

import numpy as np

from .. import columns as C
from ..dataset.manifest_tasks import Mlm, Span
from .check_rows import RowBatch, Scope
from .check_tokens import Pieces
from .contract import Contract


def _per_row_lengths(rows: RowBatch, scope: Scope, expected: np.ndarray, what: str) -> np.ndarray:
    """Rows whose ``labels`` have the expected length (flag the others)."""
    got = np.diff(rows.labels_starts)
    bad = np.flatnonzero(got != expected)
    want = expected[bad] if expected.ndim else np.full(len(bad), int(expected))
    scope.flag("labels_length", rows.row[bad], None, lambda i: f"labels has {int(got[bad][i])} ids, {what} {int(want[i])}")
    return got == expected


def check_mlm(rows: RowBatch, pieces: Pieces, c: Contract, scope: Scope) -> tuple[int, int]:
    """Static MLM labels; returns (chosen positions, maskable positions) of the batch."""
    if rows.labels is None:
        return 0, 0
    mlm = c.objective if isinstance(c.objective, Mlm) else None
    never_masked, mask_id = (mlm.never_masked_ids, mlm.mask_token_id) if mlm is not None else ((), None)
    if not _per_row_lengths(rows, scope, np.diff(rows.starts), "as long as input_ids:").all():
        return 0, 0
    ids, labels = rows.ids, rows.labels.astype(np.int64)
    special = np.zeros(max(c.vocab_size, int(ids.max(initial=0)) + 1), dtype=bool)
    special[[i for i in never_masked if i < len(special)]] = True
    bad = np.flatnonzero((labels != C.IGNORE_INDEX) & ((labels < 0) | (labels >= c.vocab_size)))
    row, pos = rows.where(bad)
    values = labels[bad]
    scope.flag("label_value", row, pos, lambda i: f"label {int(values[i])} is neither {C.IGNORE_INDEX} nor an id below vocab_size {c.vocab_size}")
    chosen = (labels >= 0) & (labels < c.vocab_size)
    in_pad = np.repeat(pieces.pad, (pieces.end - pieces.start))
    for kind, where, why in (
        ("label_at_special", chosen & special[np.where(chosen, labels, 0)], "is a special token, which is never masked"),
        ("label_in_padding", chosen & in_pad, "is in the pad piece, which is never masked"),
    ):
        flat = np.flatnonzero(where)
        row, pos = rows.where(flat)
        got = labels[flat]
        scope.flag(kind, row, pos, lambda i, why=why: f"label {int(got[i])} {why}")
    replaced = chosen & (ids != labels) & (ids != mask_id) & special[ids]
    flat = np.flatnonzero(replaced)
    row, pos = rows.where(flat)
    got = ids[flat]
    scope.flag("masked_input", row, pos, lambda i: f"a chosen position holds special token {int(got[i])}; it must be the mask token {mask_id}, a non-special token or the original")
    flat = np.flatnonzero(~chosen & (ids == mask_id))
    row, pos = rows.where(flat)
    scope.flag("mask_without_label", row, pos, lambda i: f"mask token {mask_id} with no label: the model could never learn what it hides")
    maskable = int((~special[np.where(chosen, labels, ids)] & ~in_pad).sum())  # of the original tokens
    return int(chosen.sum()), maskable


def check_span(rows: RowBatch, c: Contract, scope: Scope) -> None:
    """Span-corruption rows: labels length, sentinel order in both columns, EOS, reconstruction length."""
    span = c.objective
    if rows.labels is None or not isinstance(span, Span):
        return
    target = span.labels_length
    ok = _per_row_lengths(rows, scope, np.asarray(target), "the manifest's objective.labels_length is")
    bad = np.flatnonzero((rows.labels < 0) | (rows.labels >= c.vocab_size))
    if len(bad):
        r = np.searchsorted(rows.labels_starts, bad, side="right") - 1
        values = rows.labels[bad]
        scope.flag("label_value", rows.row[r], bad - rows.labels_starts[r], lambda i: f"label {int(values[i])} is not an id below vocab_size {c.vocab_size}")
    sentinels = np.asarray(span.sentinel_ids, dtype=np.int64)
    rank = np.full(max(c.vocab_size, int(sentinels.max(initial=0)) + 1, int(rows.ids.max(initial=0)) + 1,
                       int(rows.labels.max(initial=0)) + 1), -1, dtype=np.int64)
    rank[sentinels] = np.arange(len(sentinels))
    eos = span.eos_id
    spans = span.spans
    for column, values, starts in (("input_ids", rows.ids, rows.starts), ("labels", rows.labels, rows.labels_starts)):
        r_of = np.repeat(np.arange(rows.n), np.diff(starts))
        found = np.where(values >= 0, rank[np.clip(values, 0, None)], -1)
        hit = np.flatnonzero(found >= 0)
        order = np.arange(len(hit)) - np.searchsorted(hit, starts[:-1])[r_of[hit]]  # occurrence number in its row
        wrong = hit[found[hit] != order]
        rr = r_of[wrong]
        got, pos = found[wrong], wrong - starts[rr]
        scope.flag("sentinel_order", rows.row[rr], pos, lambda i, column=column: f"{column}: sentinel {int(got[i])} is out of order")
        counts = np.bincount(r_of[hit], minlength=rows.n)
        bad_rows = np.flatnonzero(counts != spans)
        n_got = counts[bad_rows]
        scope.flag("sentinel_count", rows.row[bad_rows], None, lambda i, column=column: f"{column} holds {int(n_got[i])} sentinels, the row has {spans} spans")
        if eos is not None:
            lengths = np.diff(starts)
            last = starts[1:][lengths > 0] - 1
            miss = np.flatnonzero(values[last] != eos)
            rows_missing = np.flatnonzero(lengths > 0)[miss]
            scope.flag("span_eos", rows.row[rows_missing], None, lambda i, column=column: f"{column} does not end with EOS {eos}")
    firsts = rows.labels[rows.labels_starts[:-1][ok & (target > 0)]] if target else np.zeros(0)
    if len(sentinels) and len(firsts):
        bad_rows = np.flatnonzero(ok & (target > 0))[firsts != sentinels[0]]
        scope.flag("sentinel_order", rows.row[bad_rows], None, lambda i: f"labels do not start with the first sentinel {int(sentinels[0])}")


def check_fewshot(rows: RowBatch, c: Contract, scope: Scope) -> None:
    """``query_start`` inside the row and before the query's first target."""
    if rows.query_start is None or rows.mask is None:
        return
    lengths = np.diff(rows.starts)
    has = np.add.reduceat(rows.mask.astype(np.int64), rows.starts[:-1]) if len(rows.mask) else np.zeros(rows.n, np.int64)
    first = np.full(rows.n, np.iinfo(np.int64).max)
    targets = np.flatnonzero(rows.mask)
    if len(targets):
        r = np.searchsorted(rows.starts, targets, side="right") - 1
        np.minimum.at(first, r, targets - rows.starts[r])
    bad = np.flatnonzero((rows.query_start < 0) | (rows.query_start >= lengths) | ((has > 0) & (rows.query_start >= first)))
    q = rows.query_start[bad]
    scope.flag("query_start", rows.row[bad], None, lambda i: f"query_start {int(q[i])} is not inside the row before the query's first target")
