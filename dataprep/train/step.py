"""One optimizer step, and what the steps of a run record (:class:`History`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dataprep.train.device import synchronize

LossFn = Callable[[dict[str, Any]], "tuple[torch.Tensor, int]"]


@dataclass
class History:
    """Per-step training loss and learning rate, validation losses, and tokens and seconds trained.

    Stored in the checkpoint as a dict (``dataclasses.asdict``) and read back with ``History(**d)``.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    def add_step(self, step: int, loss: float, lr: float, tokens: int) -> None:
        self.step.append(step)
        self.loss.append(loss)
        self.lr.append(lr)
        self.tokens += tokens

    def add_validation(self, step: int, loss: float) -> None:
        self.val_step.append(step)
        self.val_loss.append(loss)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, batch: dict[str, Any], *,
                   lr: float, grad_clip: float) -> float:
    """Set the learning rate, then forward, backward, clip and step on one batch.

    Returns:
        The batch's loss: the token-weighted mean over its targets.
    """
    for group in opt.param_groups:
        group["lr"] = lr
    total, count = loss_fn(batch)
    loss = total / max(count, 1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.item()


class Clock:
    """Seconds spent training, between progress reports (evaluations and checkpoints are not counted)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.tick = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last :meth:`restart` (queued CUDA work included)."""
        synchronize(self.device)
        return time.perf_counter() - self.tick

    def restart(self) -> None:
        self.tick = time.perf_counter()
