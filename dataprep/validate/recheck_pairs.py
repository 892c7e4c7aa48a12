"""``--recheck-sources`` on preference rows: a pair (or KTO example) as one recheck *unit*.

The recheck compares re-made units with stored ones (:mod:`.recheck`); a preference row is one
unit, its columns laid end to end, with a *segment* per token saying which column it is in (the
loss-mask slot of a fine-tuning example) and, for KTO, the label as its label::

    row     prompt_ids [5 6 7]  chosen_ids [8 0]  rejected_ids [9 9 0]
    unit    tokens     5 6 7 8 0 9 9 0
            segments   0 0 0 1 1 2 2 2          (KTO: 0 prompt, 1 completion; label 0/1)

The re-made side is the producer's own worker (:class:`~dataprep.tasks.preference.worker.PreferenceWorker`
over the recipe's fine-tuning view, as ``run`` builds it; :mod:`.recheck_remake` builds it, the one
module of validate that runs the producer): it makes exactly this flat piece and segment array for
each pair before the writer splits it into columns, so a record re-made here is compared token for
token, column for column, with what the run wrote. Using the producer's code means
this proves the rows are what the recipe's code makes of the sources *now* (a stale or edited
dataset, an edited source line, a changed tokenizer); it cannot find a bug both sides share, which
the row checks (:mod:`.check_preference`) and the oracle tests (tokens against transformers' chat
templates) are for.

Near misses are looked up by the prompt and by the responses (the two halves of a pair unit are
cut at the prompt's end, not at its middle), so a pair whose chosen response was rewritten, even
to another length, is still found by its prompt, and the finding names the column (its ``path``)
and the position in that column. A pair whose prompt and responses both changed is not near any
stored one: it is reported as stale (``recheck_tokens`` with its record), and with ``--sample all``
the stored row as ``recheck_extra``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .. import columns as C
from .check_rows import _list

PAIR_PARTS = (C.PROMPT_IDS, C.CHOSEN_IDS, C.REJECTED_IDS)
KTO_PARTS = (C.PROMPT_IDS, C.COMPLETION_IDS)
TASK = "preference"
KTO_ROWS = "kto-row"  # the row schema of a KTO dataset (contract.ROW_SCHEMAS)


def parts_of(batch: pa.RecordBatch | pa.Schema) -> tuple[str, ...]:
    names = batch.names if isinstance(batch, pa.Schema) else batch.schema.names
    return KTO_PARTS if C.COMPLETION_IDS in names else PAIR_PARTS


def stored_units(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """A batch of preference rows as units: ``(ids, segments, lengths, labels, prompt lengths)``, the
    rows' columns laid end to end (row order, then column order); ``labels`` (KTO) 0/1 per row, else None."""
    parts = [_list(batch.column(name)) for name in parts_of(batch)]
    lens = [np.diff(off) for _, off in parts]
    total = np.sum(lens, axis=0) if lens else np.zeros(batch.num_rows, np.int64)
    row_start = np.cumsum(total) - total
    ids = np.zeros(int(total.sum()), dtype=np.int32)
    segments = np.zeros(len(ids), dtype=np.uint8)
    before = np.zeros(batch.num_rows, dtype=np.int64)
    for s, ((values, off), n) in enumerate(zip(parts, lens)):
        # token i of column s in row r goes to row_start[r] + before[r] + (i - off[r])
        dest = np.repeat(row_start + before - off[:-1], n) + np.arange(len(values), dtype=np.int64)
        ids[dest] = values
        segments[dest] = s
        before += n
    labels = None
    if C.KTO_LABEL in batch.schema.names:
        labels = np.asarray(batch.column(C.KTO_LABEL).to_numpy(zero_copy_only=False), dtype=np.int64)
    return ids, segments, total.astype(np.int64), labels, lens[0].astype(np.int64)


def prompt_length(segments: np.ndarray | None) -> int:
    """Tokens of the prompt at the head of a unit (segment 0)."""
    if segments is None or not len(segments):
        return 0
    later = np.flatnonzero(segments != 0)
    return int(later[0]) if len(later) else len(segments)


def cuts(prompts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where to cut each unit into the halves its near-miss keys cover: at the prompt's end
    (``prompts``: each unit's prompt tokens), kept inside ``[1, length - 1]`` (a 1-token unit: 1)
    as the middle cut is."""
    return np.clip(np.asarray(prompts, dtype=np.int64), 1, np.maximum(np.asarray(lengths, dtype=np.int64) - 1, 1))


def split_parts(tokens: np.ndarray, segments: np.ndarray, kto: bool) -> dict[str, np.ndarray]:
    """A unit's tokens per column (segments from the worker or :func:`stored_units` are in column order)."""
    names = KTO_PARTS if kto else PAIR_PARTS
    return {name: tokens[segments == s] for s, name in enumerate(names)}


def difference(stored: tuple[np.ndarray, np.ndarray], made: tuple[np.ndarray, np.ndarray], kto: bool) -> tuple[str, int, str] | None:
    """The first column where a stored pair and a re-made one differ: ``(column, position in it, why)``,
    ``why`` naming the other columns that differ too; None when every column is the same tokens."""
    a, b = split_parts(*stored, kto), split_parts(*made, kto)
    differ = [name for name in (KTO_PARTS if kto else PAIR_PARTS) if not np.array_equal(a[name], b[name])]
    if not differ:
        return None
    name = differ[0]
    x, y = a[name], b[name]
    n = min(len(x), len(y))
    diff = np.flatnonzero(x[:n] != y[:n])
    if len(diff):
        k = int(diff[0])
        why = f"{name}[{k}] is {int(x[k])} where the record gives {int(y[k])} ({len(diff):,} of {n:,} positions differ"
        why += f"; {len(x):,} tokens stored, {len(y):,} re-made)" if len(x) != len(y) else ")"
    else:
        k = n
        why = f"{name} holds {len(x):,} tokens where the record gives {len(y):,} (the first {n:,} agree)"
    others = differ[1:]
    why += f"; {' and '.join(others)} differ{'s' if len(others) == 1 else ''} too" if others else "; the other columns are as the record gives"
    return name, k, why


def score(stored: tuple[np.ndarray, np.ndarray], made: tuple[np.ndarray, np.ndarray], kto: bool) -> int:
    """How far apart two pairs are (for picking the nearest stored one): differing positions plus
    the length differences, over the columns."""
    a, b = split_parts(*stored, kto), split_parts(*made, kto)
    total = 0
    for name in a:
        x, y = a[name], b[name]
        n = min(len(x), len(y))
        total += int(np.count_nonzero(x[:n] != y[:n])) + abs(len(x) - len(y))
    return total


def layout(tokens: np.ndarray, segments: np.ndarray | None, kto: bool) -> str:
    """How many tokens each column of a unit holds: ``prompt_ids 15, chosen_ids 6, rejected_ids 5``."""
    if segments is None:
        return "no columns"
    return ", ".join(f"{name} {len(part):,}" for name, part in split_parts(tokens, segments, kto).items())


def label_word(label: int | None) -> str:
    return "none" if label is None else ("true (desirable)" if label else "false (undesirable)")
