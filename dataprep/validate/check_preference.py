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

The prompt is stored once, so "the same prompt tokens in both" and "targets only after the
prompt" hold by the layout; what can still go wrong is a response holding prompt tokens,
which ``pref_prompt_in_response`` catches. KTO labels are a bool column: the row schema
(``kto-row``) checks the type, ``null_value`` the nulls.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.validate.check_rows import Scope, _list
from dataprep.validate.contract import Contract

PREFERENCE_ROWS = ("preference-row", "kto-row")


def check_preference(batch: pa.RecordBatch, first: int, c: Contract, scope: Scope) -> tuple[int, int]:
    """Every check of the module docstring on one batch; returns ``(tokens, target tokens)``: every
    token stored (the prompt once), as the manifest counts a shard's, and the response tokens."""
    prompt, p_off = _list(batch.column(C.PROMPT_IDS))
    names = [C.COMPLETION_IDS] if c.schema_name == "kto-row" else [C.CHOSEN_IDS, C.REJECTED_IDS]
    responses = [_list(batch.column(name)) for name in names]
    rows = np.arange(batch.num_rows) + first
    p_len = np.diff(p_off)
    scope.flag("pref_empty_prompt", rows[p_len == 0], None, lambda i: "the prompt has no token")
    longest = np.zeros(batch.num_rows, dtype=np.int64)
    targets = 0
    for name, (ids, off) in zip(names, responses):
        _check_response(name, prompt, p_off, ids, off, rows, c, scope)
        longest = np.maximum(longest, np.diff(off))
        targets += len(ids)
    total = p_len + longest
    over = np.flatnonzero(total > c.seq_len)
    scope.flag("pref_too_long", rows[over], None, lambda i: f"prompt + the longer response is {total[over[i]]} tokens, "
               f"over max_length {c.seq_len}")
    if len(responses) == 2:
        same = [r for r in range(batch.num_rows) if np.array_equal(_row(*responses[0], r), _row(*responses[1], r))]
        scope.flag("pref_same_response", rows[same], None, lambda i: "chosen_ids and rejected_ids are the same tokens")
    for ids in [prompt] + [ids for ids, _ in responses]:
        bad = np.flatnonzero((ids < 0) | (ids >= c.vocab_size))
        scope.flag("token_id_range", rows[np.searchsorted(p_off if ids is prompt else off, bad, side="right") - 1]
                   if len(bad) else bad, None, lambda i: f"a token id outside [0, {c.vocab_size})")
    return len(prompt) + targets, targets


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
