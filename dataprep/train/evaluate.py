"""What the model scores on held-out data: validation loss, task accuracy, and both before training.

The task check decodes held-out prompts (short answers only: exact match means something for
demo-sft's sums or a class label, not for a paragraph) or, with a classification head, scores
the head's predictions; see :mod:`dataprep.train.proofs` for how answers are judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dataprep.train import data_proofs, fewshot_eval, proofs
from dataprep.train.device import to_device
from dataprep.train.model import attention_backend
from dataprep.train.loader import ArrowRows, Batches
from dataprep.train.setup import Setup


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loss_fn: Callable[[dict[str, Any]], tuple[torch.Tensor, int]],
                    rows: ArrowRows, collator: Any, *, batch_size: int, eval_rows: int, device: torch.device) -> float:
    """Token-weighted loss over the first ``eval_rows`` rows of ``rows``, in file order (the same rows every time)."""
    model.eval()
    total, count = 0.0, 0
    steps = max(1, -(-min(eval_rows, len(rows)) // batch_size))
    for batch in Batches(rows, collator, batch_size=batch_size, shuffle=False, num_steps=steps):
        t, c = loss_fn(to_device(batch, device))
        total, count = total + float(t), count + c
    model.train()
    return total / max(count, 1)


def validation_loss_of(setup: Setup) -> float:
    """:func:`validation_loss` of a next-token run, with its settings."""
    return validation_loss(setup.model, setup.loss, setup.val_rows, setup.collator, batch_size=setup.batch_size,
                           eval_rows=setup.cfg.eval_rows, device=setup.device)


@dataclass
class TaskPlan:
    """Whether the task check runs, and on what: (prompt, answer) pairs and how they were split."""

    on: bool
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    split_by: str | None = None  # "template marker" or "assistant_masks"
    decoder: Any | None = None   # the dataset's tokenizers.Tokenizer, to show samples as text


def task_plan(setup: Setup) -> TaskPlan:
    """Whether and how a run checks the task: ``task_proof`` (``auto``: short-answer fine-tuning data)."""
    cfg, info = setup.cfg, setup.info
    on = cfg.task_proof == "on" or (cfg.task_proof == "auto" and info.task == "sft" and bool(info.stop_ids))
    plan = TaskPlan(on=on, decoder=proofs.load_decoder(info))
    if on and not setup.head:
        plan.pairs, plan.split_by = proofs.task_examples(info, setup.val_rows, limit=cfg.task_examples)
        # "auto": exact match means something only for short answers (demo-sft, class labels)
        if cfg.task_proof == "auto" and (not plan.pairs or np.median([len(a) for _, a in plan.pairs]) > 16):
            plan.on = False
    return plan


def task_accuracy(setup: Setup, plan: TaskPlan) -> dict[str, Any]:
    """Head accuracy on the validation split, or greedy exact match on the plan's pairs."""
    if not setup.head:
        return proofs.task_proof(setup.model, plan.pairs, stop_ids=setup.info.stop_ids, pad_id=setup.info.pad_id,
                                 device=setup.device, decoder=plan.decoder)
    model = setup.model
    model.eval()
    right = count = 0
    with torch.no_grad():
        for batch in Batches(setup.val_rows, setup.collator, batch_size=setup.batch_size, shuffle=False):
            _, n, pred = model.class_loss(to_device(batch, setup.device))
            right += int((pred.cpu() == batch["class_labels"]).sum())
            count += n
    model.train()
    return {"accuracy": right / max(count, 1), "examples": count}


def fewshot_accuracy(setup: Setup, plan: TaskPlan) -> dict[str, Any] | None:
    """Zero-shot and k-shot exact match on ``--eval-fewshot``'s queries, or None without it."""
    if setup.fewshot is None:
        return None
    return fewshot_eval.evaluate(setup.model, setup.fewshot, pad_id=setup.info.pad_id, device=setup.device,
                                 decoder=plan.decoder)


def data_checks(setup: Setup, plan: TaskPlan) -> tuple[dict[str, Any], list[Any]]:
    """The proofs about the data (no model needed): targets, heldout, labels; and the validation
    examples the independent reference rendered, for the ``learned`` check. Computed once per run
    (the rows and the sources do not change while it trains)."""
    if setup.data_found is not None:
        return setup.data_found
    info = setup.info
    rows = info.manifest.rows
    index = data_proofs.index_examples({"train": setup.train_rows, "validation": setup.val_rows},
                                       stream=rows is not None and rows.layout == "stream")
    targets, refs = data_proofs.targets_proof(info, index, decoder=plan.decoder, limit=data_proofs.REFERENCE_RECORDS,
                                              chat_template=setup.cfg.reference_chat_template)
    setup.data_found = ({"targets": targets, "heldout": data_proofs.heldout_check(index, decoder=plan.decoder),
                         "labels": data_proofs.labels_check(info, index, decoder=plan.decoder)}, refs[: data_proofs.LEARNED_EXAMPLES])
    return setup.data_found


def reference_losses(setup: Setup, refs: list[Any]) -> dict[str, float] | None:
    """The model's loss on the reference's target and prompt tokens (fp32 attention), or None without a reference."""
    if not refs or setup.head:
        return None
    with attention_backend(setup.model, proofs.fp32_backend(setup.model)):
        return data_proofs.token_losses(setup.model, refs, pad_id=setup.info.pad_id, device=setup.device)


def before_training(setup: Setup, plan: TaskPlan) -> dict[str, Any]:
    """The proofs of the code at initialization (collator, attention), and the scores an untrained model gets
    (the data proofs need no model: :func:`data_checks` runs after training, for the report)."""
    cfg = setup.cfg
    singles = list(proofs.examples(setup.val_rows, limit=cfg.proof_examples))
    _, refs = data_checks(setup, plan)  # the reference's validation examples: their loss before training
    return {
        "mask": proofs.mask_proof(setup.model, singles, setup.collator, setup.device, seed=cfg.seed),
        "packing": proofs.packing_proof(setup.model, singles, setup.collator, setup.device, seq_len=setup.info.seq_len),
        "reference_losses": reference_losses(setup, refs),
        "val_loss": validation_loss_of(setup),
        "task": task_accuracy(setup, plan) if plan.on else None,
        "fewshot": fewshot_accuracy(setup, plan),
    }
