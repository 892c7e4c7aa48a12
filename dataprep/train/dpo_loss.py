"""The DPO loss and what it is computed from: a batch of pairs as 2B sequences, and each sequence's
summed log-probability over its response tokens (:mod:`dataprep.train.dpo` trains with them,
:mod:`dataprep.train.dpo_checks` scores held-out pairs with them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dataprep import columns as C
from dataprep.train.loader import Collator


class PairCollator:
    """Pair rows -> one batch of ``2B`` sequences: ``prompt + chosen`` for each pair, then ``prompt + rejected``.

    The :class:`~dataprep.train.loader.Collator`'s batch (``input_ids``, ``labels``, positions,
    segments) with the response tokens as the labels (the stop token included, the prompt never),
    and ``pairs`` = B. ``labels[t]`` is what position ``t - 1`` predicts, as for fine-tuning.
    """

    def __init__(self, *, pad_id: int, pad_to: int | None = None):
        self.base = Collator(pad_id=pad_id, pad_to=pad_to)

    def __call__(self, rows: Sequence[Mapping[str, Any]], *, step: int | None = None) -> dict[str, Any]:
        seqs = [sequence(r, side) for side in (C.CHOSEN_IDS, C.REJECTED_IDS) for r in rows]
        batch = self.base(seqs)
        batch["pairs"] = len(rows)
        return batch


def sequence(row: Mapping[str, Any], side: str) -> dict[str, Any]:
    """One side of a pair as a fine-tuning row: ``prompt + response``, the response the targets."""
    prompt, response = np.asarray(row[C.PROMPT_IDS]), np.asarray(row[side])
    ids = np.concatenate([prompt, response])
    mask = np.concatenate([np.zeros(len(prompt), dtype=np.uint8), np.ones(len(response), dtype=np.uint8)])
    return {C.INPUT_IDS: ids, C.SEQ_LENS: np.array([len(ids)]), C.NUM_PAD: 0, C.LOSS_MASK: mask}


def sequence_logps(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The summed log-probability of each sequence's targets, ``[2B]`` (float32).

    Only target positions reach the output layer (as ``lm_loss``), so a large vocabulary costs
    memory only for the response tokens."""
    h = model.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"],
                     cu_seqlens=batch.get("cu_seqlens"), max_seqlen=batch.get("max_seqlen"))
    shifted = batch["labels"][:, 1:]
    keep = shifted != C.IGNORE_INDEX
    token = -F.cross_entropy(model.logits(h[:, :-1][keep]).float(), shifted[keep], reduction="none")
    rows = keep.nonzero()[:, 0]
    return torch.zeros(shifted.shape[0], device=token.device, dtype=torch.float32).index_add(0, rows, token)


def dpo_loss(policy: torch.Tensor, reference: torch.Tensor, *, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair sigmoid DPO loss, chosen rewards and rejected rewards, from ``[2B]`` sequence
    log-probabilities (the B chosen, then the B rejected) of the policy and the reference."""
    pairs = policy.shape[0] // 2
    rewards = beta * (policy - reference)
    chosen, rejected = rewards[:pairs], rewards[pairs:]
    return -F.logsigmoid(chosen - rejected), chosen, rejected
