"""Row checks of a preference dataset (``dataprep.preference/1``: prompt_ids, chosen_ids,
rejected_ids; ``dataprep.kto/1``: prompt_ids, completion_ids, label), from the manifest's facts
alone (stop ids, ``max_length``, vocab size).

Per row::

    pref_empty_prompt      the prompt has no token (nothing to condition on)
    pref_no_response       a response has no token
    pref_prompt_in_response a response starts with the whole prompt (or BOS): the prompt's tokens would be
                           trained as a target, the fault "masks cover the prompt" takes in this layout
    pref_stop_not_last     a response does not end in a stop id (sft.stop_token_ids)
    pref_same_response     chosen_ids == rejected_ids: nothing to prefer
    pref_too_long          prompt + the longer response over max_length
    token_id_range         an id outside [0, vocab_size)

Across splits (:func:`prompt_in_both_splits`, with :func:`.units.overlap`)::

    pref_prompt_in_both_splits  a validation pair's prompt_ids equal a training pair's: the run
                           splits by prompt, so a held-out score never sees a trained prompt

The prompt is stored once, so "the same prompt tokens in both" and "targets only after the
prompt" hold by the layout; what can still go wrong is a response holding prompt tokens,
which ``pref_prompt_in_response`` catches. KTO labels are a bool column: the row schema
(``kto-row``) checks the type, ``null_value`` the nulls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.validate.check_rows import Scope, _list
from dataprep.validate.contract import Contract
from dataprep.validate.findings import Finding

PREFERENCE_ROWS = ("preference-row", "kto-row")
SHOWN = 160  # characters of a decoded prompt a finding shows
DESIRABLE = "desirable"  # KTO examples labelled true (a key of check_preference's counts, and a stat)
CHOSEN_LONGER = "chosen_longer"  # pairs whose chosen response has more tokens than the rejected one
COUNTS = (DESIRABLE, CHOSEN_LONGER)  # check_preference's counts that are not tokens


def check_preference(batch: pa.RecordBatch, first: int, c: Contract, scope: Scope) -> Counter:
    """Every check of the module docstring on one batch; returns its tokens per column
    (``prompt_ids`` ...: the prompt counted once, as the manifest counts a shard's) and, for KTO,
    its ``desirable`` examples."""
    prompt, p_off = _list(batch.column(C.PROMPT_IDS))
    names = [C.COMPLETION_IDS] if c.schema_name == "kto-row" else [C.CHOSEN_IDS, C.REJECTED_IDS]
    responses = [_list(batch.column(name)) for name in names]
    rows = np.arange(batch.num_rows) + first
    p_len = np.diff(p_off)
    scope.flag("pref_empty_prompt", rows[p_len == 0], None, lambda i: "the prompt has no token")
    longest = np.zeros(batch.num_rows, dtype=np.int64)
    tokens = Counter({C.PROMPT_IDS: len(prompt)})
    for name, (ids, off) in zip(names, responses):
        _check_response(name, prompt, p_off, ids, off, rows, c, scope)
        longest = np.maximum(longest, np.diff(off))
        tokens[name] = len(ids)
    total = p_len + longest
    over = np.flatnonzero(total > c.seq_len)
    scope.flag("pref_too_long", rows[over], None, lambda i: f"prompt + the longer response is {total[over[i]]} tokens, "
               f"over max_length {c.seq_len}")
    if len(responses) == 2:
        tokens[CHOSEN_LONGER] = int(np.count_nonzero(np.diff(responses[0][1]) > np.diff(responses[1][1])))
        same = [r for r in range(batch.num_rows) if np.array_equal(_row(*responses[0], r), _row(*responses[1], r))]
        scope.flag("pref_same_response", rows[same], None, lambda i: "chosen_ids and rejected_ids are the same tokens")
    for ids in [prompt] + [ids for ids, _ in responses]:
        bad = np.flatnonzero((ids < 0) | (ids >= c.vocab_size))
        scope.flag("token_id_range", rows[np.searchsorted(p_off if ids is prompt else off, bad, side="right") - 1]
                   if len(bad) else bad, None, lambda i: f"a token id outside [0, {c.vocab_size})")
    if C.KTO_LABEL in batch.schema.names:
        tokens[DESIRABLE] = int(np.count_nonzero(batch.column(C.KTO_LABEL).to_numpy(zero_copy_only=False)))
    return tokens


def _check_response(name: str, prompt, p_off, ids, off, rows, c: Contract, scope: Scope) -> None:
    lengths = np.diff(off)
    scope.flag("pref_no_response", rows[lengths == 0], None, lambda i: f"{name} has no token")
    have = np.flatnonzero(lengths > 0)
    if c.stop_ids:
        last = ids[off[1:][have] - 1]
        bad = have[~np.isin(last, c.stop_ids)]
        scope.flag("pref_stop_not_last", rows[bad], None,
                   lambda i: f"{name} ends in {int(ids[off[bad[i] + 1] - 1])}, not a stop id {list(c.stop_ids)}")
    leaking = []
    for r in have.tolist():
        response, p = _row(ids, off, r), _row(prompt, p_off, r)
        starts_bos = c.bos_id is not None and response[0] == c.bos_id
        if starts_bos or (len(p) and len(response) >= len(p) and np.array_equal(response[: len(p)], p)):
            leaking.append(r)
    scope.flag("pref_prompt_in_response", rows[leaking], None,
               lambda i: f"{name} starts with the prompt's tokens (or BOS): the prompt would be trained as a target")


def _row(values: np.ndarray, offsets: np.ndarray, r: int) -> np.ndarray:
    return values[offsets[r]:offsets[r + 1]]


def prompt_in_both_splits(out: Path, decode: Callable[[np.ndarray], str | None]) -> Callable[[str, int, int, str], str]:
    """The why of a validation prompt that is also a training prompt (:func:`.units.overlap`'s
    ``describe``): where, and the prompt decoded (its ids where the tokenizer cannot be loaded)."""

    def describe(file: str, row: int, length: int, train_place: str) -> str:
        ids = _stored_prompt(out / file, row)
        text = None if ids is None else decode(ids)
        shown = "(unreadable)" if ids is None else repr(text if text is not None else ids.tolist())
        if len(shown) > SHOWN:
            shown = shown[: SHOWN - 3] + "..."
        return (f"this pair's prompt ({length:,} tokens) is also the prompt of {train_place.rsplit(' position ', 1)[0]}: "
                f"{shown}; pairs that share a prompt must share a split, or the validation scores a trained prompt")

    return describe


def _stored_prompt(path: Path, row: int) -> np.ndarray | None:
    try:
        for batch in pa.ipc.open_stream(pa.memory_map(str(path))):
            if row < batch.num_rows:
                return np.asarray(batch.column(C.PROMPT_IDS)[row].values.to_numpy(zero_copy_only=False))
            row -= batch.num_rows
    except (pa.ArrowInvalid, OSError):
        return None
    return None


def pair_stats(c: Contract, totals: dict[str, Any]) -> dict[str, Any]:
    """validate's figures for preference rows: pairs (KTO: examples, and how many are desirable)
    and tokens per split, then tokens per column over both splits (the prompt counted once per row).
    Nothing about packing: pairs are not packed."""
    kto = c.schema_name == "kto-row"
    parts: Counter = sum(totals["parts"].values(), Counter())
    stats: dict[str, Any] = {"examples" if kto else "pairs": totals["rows"]}
    if kto:
        stats[DESIRABLE] = {split: counts.get(DESIRABLE, 0) for split, counts in totals["parts"].items()}
    stats["tokens"] = totals["tokens"]
    for name in (C.PROMPT_IDS, C.COMPLETION_IDS) if kto else (C.PROMPT_IDS, C.CHOSEN_IDS, C.REJECTED_IDS):
        stats[name.replace("_ids", "_tokens")] = parts.get(name, 0)
    if c.stop_ids is not None:
        stats["stop_token_ids"] = list(c.stop_ids)
    return stats


def iter_stated(section: Any, totals: dict[str, Any]) -> Iterator[Finding]:
    """The manifest's ``preference`` figures against the rows' (each a ``manifest_inconsistent``):
    tokens per column, pairs whose chosen is longer, KTO's desirable and undesirable examples."""
    if section is None:
        return
    parts: Counter = sum(totals["parts"].values(), Counter())
    rows = sum(totals["rows"].values())
    counted = {"prompt_tokens": parts.get(C.PROMPT_IDS, 0), "chosen_tokens": parts.get(C.CHOSEN_IDS, 0),
               "rejected_tokens": parts.get(C.REJECTED_IDS, 0), "completion_tokens": parts.get(C.COMPLETION_IDS, 0),
               CHOSEN_LONGER: parts.get(CHOSEN_LONGER, 0), DESIRABLE: parts.get(DESIRABLE, 0),
               "undesirable": rows - parts.get(DESIRABLE, 0)}
    for name, value in counted.items():
        stated = getattr(section, name, None)
        if stated is not None and stated != value:
            why = f"preference.{name} is {stated:,} but the rows hold {value:,}"
            yield Finding("manifest_inconsistent", why, file=C.MANIFEST_FILE, path=f"preference.{name}")
