"""The optimizer-step loop every causal-LM run shares: fine-tuning and pretraining (loop.py) and DPO (dpo.py).

A run's setup brings its batches, model, optimizer and loss; the loop brings the schedule, the
progress lines, the validation points and the checkpoints, so each objective writes only what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataprep.train import save, speed
from dataprep.train.device import Contention, to_device
from dataprep.train.schedule import lr_at
from dataprep.train.step import Clock, History, optimizer_step


def train_steps(setup: Any, history: History, step: int, *, before: dict[str, Any], checkpoint: Path,
                echo: Callable[[str], None], validate: Callable[[], float], contention: Contention | None = None) -> int:
    """Optimizer steps from ``step`` to ``cfg.steps``; returns the last step.

    A progress line after the first step, every ``progress_every`` seconds and at the last; the
    validation loss (``validate()``) every ``validation_every`` steps and a checkpoint every
    ``checkpoint_every`` steps. With ``contention``, each interval's tokens/s may move training to one
    thread (see :class:`Contention`). ``setup`` is a fine-tuning/pretraining ``Setup`` or DPO's ``PairSetup``.
    """

    cfg = setup.cfg
    setup.model.train()
    echo(f"training {cfg.steps - step:,} steps (a line every {cfg.progress_every:g} s)")
    progress = speed.Progress(start=step, total=cfg.steps, every=cfg.progress_every)
    clock = Clock(setup.device)  # training time only: evaluations and checkpoints are not counted
    seen = (history.tokens, history.seconds)  # at the last progress line: this interval's rate
    every = cfg.validation_every
    for batch in setup.batches(seed=cfg.seed, start=step, count=max(0, cfg.steps - step)):
        lr = lr_at(step, cfg, setup.peak_lr)
        loss = optimizer_step(setup.model, setup.opt, setup.loss, to_device(batch, setup.device), lr=lr,
                              grad_clip=cfg.grad_clip)
        step += 1
        history.add_step(step, loss, lr, batch["num_tokens"])
        elapsed = progress.due(step)  # wall time: no CUDA sync
        evaluate_now = every and step % every == 0 and step != cfg.steps
        save_now = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
        if elapsed is None and not evaluate_now and not save_now:
            continue
        history.seconds += clock.lap()
        if elapsed is not None:
            echo(progress.line(step, loss=loss, lr=lr, tokens_per_s=history.tokens_per_s, elapsed=elapsed))
            rate = (history.tokens - seen[0]) / max(history.seconds - seen[1], 1e-9)
            changed = contention.update(rate) if contention and step > 1 else None  # step 1: warm-up
            if changed:
                echo(changed)
            seen = (history.tokens, history.seconds)
        if evaluate_now:
            history.add_validation(step, validate())
            echo(f"           validation loss {history.val_loss[-1]:.4f}")
        if save_now:
            save.save_checkpoint(checkpoint, setup, step=step, history=history, before=before)
        clock.restart()
    return step
