"""Rows -> batches that a Hugging Face causal LM trains on exactly: ``model(**batch)``.

One row, as :func:`hf_row` turns a dataprep row (two examples and a pad piece) into the keys
Hugging Face models take (``labels`` aligned with ``input_ids``; the model shifts them)::

    input_ids        5    6 7 8 |    9 10 11 |    0    0     seq_lengths [4, 3, 2], num_pad 2
    assistant_masks  0    0 1 1 |    0  1  1 |    0    0
    labels        -100 -100 7 8 | -100 10 11 | -100 -100     each example's first token and pad: -100
    position_ids     0    1 2 3 |    0  1  2 |    0    1     restart at every piece

Packed examples are kept apart by ``position_ids`` alone, with no ``attention_mask``:
transformers 5.x then builds a block-causal mask from the restarts
(``masking_utils.find_packed_sequence_indices``), for eager, SDPA, flex and flash attention alike.
**Only without a KV cache**: a model whose ``config.use_cache`` is True (the default) makes an
empty cache in training too, the restarts are then ignored and packed examples attend to each
other, with no error (#16 measured loss 17.95268 instead of 17.91293, the loss of the same
examples one at a time). So every batch carries ``use_cache=False``; ``model(**batch)`` and
``Trainer`` pass it to the model, whatever its config says.

``Trainer`` (``remove_unused_columns=True``, its default) drops every column that the model's
``forward`` does not name before the collator sees the rows: ``seq_lengths``,
``assistant_masks`` and ``num_pad`` would vanish and packed rows would silently train as one
sequence. :class:`~dataprep.train.loader.HFRows` hands Trainer rows already in the three keys it
keeps; a row reaching :class:`HFCollator` with neither ``seq_lengths`` nor ``position_ids`` is an
error, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.errors import ConfigError, DataError

POSITION_IDS = "position_ids"  # the Hugging Face name: where each token sits in its own example


def hf_row(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``input_ids``, ``labels``, ``position_ids`` (int64) of one dataprep row (diagram above).

    ``labels`` come from the row's ``labels`` column when it has one (``output.labels: true``),
    else from ``assistant_masks`` (fine-tuning), else every token (pretraining); each piece's
    first token and the pad piece are never labels, as in :class:`~dataprep.train.loader.Collator`.

    Raises:
        DataError: ``seq_lengths`` do not sum to the row's length.
    """
    ids = np.asarray(row[C.INPUT_IDS], dtype=np.int64)
    seq = np.asarray(row[C.SEQ_LENS], dtype=np.int64)
    if int(seq.sum()) != len(ids):
        raise DataError("a row's seq_lengths do not sum to its length; the dataset is damaged", fix="run `dataprep validate` on it, and build it again")
    starts = np.cumsum(seq) - seq
    if C.LABELS in row:
        labels = np.asarray(row[C.LABELS], dtype=np.int64).copy()
    else:
        target = np.asarray(row[C.LOSS_MASK], dtype=bool) if C.LOSS_MASK in row else np.ones(len(ids), dtype=bool)
        labels = np.where(target, ids, C.IGNORE_INDEX)
    labels[starts] = C.IGNORE_INDEX
    labels[len(ids) - int(row.get(C.NUM_PAD, 0)) :] = C.IGNORE_INDEX
    return {C.INPUT_IDS: ids, C.LABELS: labels, POSITION_IDS: np.arange(len(ids)) - np.repeat(starts, seq)}


class HFCollator:
    """Rows -> ``input_ids``, ``labels``, ``position_ids`` (``[B, T]`` int64) and ``use_cache=False``.

    Takes dataprep rows (``input_ids``, ``seq_lengths``, ``num_pad``, and ``assistant_masks`` or
    ``labels``) or rows already in Hugging Face form (:class:`~dataprep.train.loader.HFRows`).
    Rows are padded on the right to the longest (rounded up to ``pad_to_multiple_of``); the padding
    is a segment of its own (positions restart, labels -100), so no token attends to it.

    Args:
        pad_id: id written into padding.
        pad_to_multiple_of: round the batch length up to a multiple of this.
        use_cache: the value put in every batch (False keeps packed examples apart, see the module
            docstring); None leaves the key out (for a model whose forward takes no ``use_cache``).

    Raises:
        ConfigError: a row lost the columns that keep its examples apart (``Trainer`` with
            ``remove_unused_columns`` on a dataset other than ``HFRows``).
    """

    def __init__(self, *, pad_id: int, pad_to_multiple_of: int | None = None, use_cache: bool | None = False):
        self.pad_id, self.multiple, self.use_cache = pad_id, pad_to_multiple_of, use_cache

    def __call__(self, rows: Sequence[Mapping[str, Any]], *, step: int | None = None) -> dict[str, Any]:
        # ``step`` (the batch number, from Batches) is unused: the batch depends on the rows alone
        rows = [r if POSITION_IDS in r else self._convert(r) for r in rows]
        T = max(len(r[C.INPUT_IDS]) for r in rows)
        if self.multiple:
            T = -(-T // self.multiple) * self.multiple
        out = {C.INPUT_IDS: np.full((len(rows), T), self.pad_id, dtype=np.int64),
               C.LABELS: np.full((len(rows), T), C.IGNORE_INDEX, dtype=np.int64),
               POSITION_IDS: np.zeros((len(rows), T), dtype=np.int64)}
        for b, r in enumerate(rows):
            n = len(r[C.INPUT_IDS])
            for key in (C.INPUT_IDS, C.LABELS, POSITION_IDS):
                out[key][b, :n] = np.asarray(r[key])
            out[POSITION_IDS][b, n:] = np.arange(T - n)  # the padding: a segment of its own
        batch: dict[str, Any] = {k: torch.from_numpy(v) for k, v in out.items()}
        if self.use_cache is not None:
            batch["use_cache"] = self.use_cache
        return batch

    @staticmethod
    def _convert(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if C.SEQ_LENS not in row:
            raise ConfigError(
                f"a row reached HFCollator with only {sorted(row)}: without seq_lengths or position_ids its examples "
                "would attend to each other. Hugging Face Trainer drops the columns its model does not name "
                "(remove_unused_columns=True): pass dataprep.train.loader.HFRows(OUT, split) as the dataset, "
                "or set remove_unused_columns=False"
            )
        return hf_row(row)
