"""The bundled trainer: train a small transformer on a dataprep dataset and prove the data trains.

One run, top to bottom (nanoGPT style), in :func:`train`; each step names the module that does it::

    read the manifest                               loader.read_info
    -> data, device, model, optimizer               setup.build (seeded: the same settings, the same losses)
    -> proofs at initialization (mask, packing),    evaluate.before_training
       validation loss and task accuracy before     (or, resuming, save.load_checkpoint)
    -> train: AdamW, warmup + cosine                steps.train_steps, step.optimizer_step, schedule.lr_at
    -> validation loss, task accuracy after         evaluate
    -> the checks and the verdict                   checks (tokens/s reported by speed, never checked)
    -> RUN/checkpoint.pt, RUN/verify.json, RUN/loss.png   save
    -> where to look next, then the verdict          save.look_next, checks.verdict

While it trains, a progress line (loss, tokens/s, elapsed time, ETA) every ``progress_every``
seconds (:class:`~dataprep.train.speed.Progress`). torch's CPU threads are ``threads``, by default
the cores this process may run on (:func:`~dataprep.train.device.available_cores`).

The settings are :class:`~dataprep.train.config.TrainConfig` (``--set KEY=VALUE``). A dataset whose
manifest has an ``objective`` section (mlm, span corruption) trains in :mod:`dataprep.train.objectives`,
a preference dataset (chosen / rejected pairs) with DPO from ``--init-from RUN`` in :mod:`dataprep.train.dpo`.

Classification datasets (rows with ``label_id`` / ``label_ids``) train as their recipe says
(``classification.train``, in the manifest): the generative label target by default, or with
``head`` a linear head on each example's last prompt token, and the task check becomes head
accuracy vs the majority class. ``classification=`` (``--classification``) overrides it.

What the default config reaches on demo-sft, and how fast, is measured in the README's training
section; ``tests/test_train.py`` shows that copies with planted broken masks (the prompt trained
instead of the answer, or the stop token not trained) fail the task check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dataprep.errors import ConfigError
from dataprep.train import evaluate, fewshot_eval, save, speed
from dataprep.train.checks import KINDS, learned_check, learning_check, passed, task_check, task_skipped, verdict
from dataprep.train.config import TrainConfig, config_from, is_folder_model
from dataprep.train.device import Contention, busy_hint, pick_device, use_threads
from dataprep.train.dpo import train_preference
from dataprep.train.evaluate import TaskPlan
from dataprep.train.loader import read_info
from dataprep.train.objectives import train_objective
from dataprep.train.setup import Setup, build
from dataprep.train.step import History
from dataprep.train.steps import train_steps

__all__ = ["TrainConfig", "config_from", "train", "verdict"]


def train(dataset: str | Path, out: str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
          overwrite: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on ``dataset`` and write ``verify.json``, ``loss.png`` and ``checkpoint.pt`` to ``out``.

    Args:
        dataset: a dataprep output folder.
        out: the run folder (created).
        cfg: the run's settings (default: :class:`TrainConfig`).
        resume: continue from ``out/checkpoint.pt`` (same data order, same result).
        overwrite: replace a finished run in ``out``.
        echo: where progress lines go.

    Returns:
        The verification report (what ``verify.json`` holds).

    Raises:
        InputError: ``dataset`` is not a dataprep dataset.
        OutputError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        ConfigError: settings that cannot work with this dataset or machine.
    """
    cfg = cfg or TrainConfig()
    out = Path(out)
    checkpoint = save.checkpoint_path(out, resume=resume, overwrite=overwrite)
    info = read_info(dataset)
    threads = use_threads(cfg.threads)
    if info.task == "preference":  # pairs: DPO from a fine-tuned run (dpo.py)
        return train_preference(info, out, cfg, checkpoint=checkpoint, resume=resume, threads=threads, echo=echo)
    if info.manifest.objective is not None:  # mlm / span_corruption: an encoder or a prefix LM
        if resume or cfg.eval_fewshot or cfg.init_from:
            raise ConfigError(f"{info.path} is {info.manifest.objective.name} data: --resume, --eval-fewshot and "
                              "--init-from apply to next-token training only",
                              fix="train it without --resume, --eval-fewshot and --init-from")
        if is_folder_model(cfg.model):
            raise ConfigError(f"{info.path} is {info.manifest.objective.name} data: --model {cfg.model} (a transformers "
                              "causal LM) trains next-token data only", fix="--model cpu (or gpu, auto)")
        return train_objective(info, out, cfg, device=pick_device(cfg.device), echo=echo)

    # --- data, device, model, optimizer; what the task check decodes
    setup = build(info, cfg)
    echo(f"{setup.describe()}, {threads} CPU thread{'s' if threads > 1 else ''}")
    for line in setup.origin():
        echo(line)
    hint = busy_hint(threads) if setup.device.type == "cpu" else None
    if hint:
        echo(hint)
    plan = evaluate.task_plan(setup)

    # --- the proofs at initialization, or where a stopped run left off
    if resume:
        step, history, before = save.load_checkpoint(checkpoint, setup)
        echo(f"resumed at step {step}")
    else:
        echo(f"proofs at initialization, and the untrained model's scores{' on the task' if plan.on else ''}")
        step, history, before = 0, History(), evaluate.before_training(setup, plan)
        history.add_validation(0, before["val_loss"])

    # --- train, then the validation loss and a checkpoint of the finished run
    contention = Contention(threads, auto=cfg.threads is None and setup.device.type == "cpu")
    step = train_steps(setup, history, step, before=before, checkpoint=checkpoint, echo=echo,
                       validate=lambda: evaluate.validation_loss_of(setup), contention=contention)
    history.add_validation(step, evaluate.validation_loss_of(setup))
    save.save_checkpoint(checkpoint, setup, step=step, history=history, before=before)

    # --- the checks, the report, the run folder; where to look next, and the verdict last
    echo(f"scoring the trained model{' on the task' if plan.on or setup.head else ''}")
    report = make_report(setup, plan, history, before, step=step, echo=echo)
    report["threads"] = threads if contention.threads == threads else {"start": threads, "end": contention.threads}
    save.write_report(out, report)
    save.plot(history, out / save.CURVE, title=f"{info.name}: {setup.model_name} model, {step} steps")
    echo(save.look_next(dataset, out, report["checks"]))
    echo(verdict(report))
    return report


def make_report(setup: Setup, plan: TaskPlan, history: History, before: dict[str, Any], *, step: int,
                echo: Callable[[str], None]) -> dict[str, Any]:
    """What ``verify.json`` holds: the checks after training, the speed, the settings and the model."""
    cfg, info = setup.cfg, setup.info
    loader = speed.loader_tokens_per_s(setup.batches(seed=cfg.seed + 1, start=0, count=None))  # the same loader, alone
    data, refs = evaluate.data_checks(setup, plan)  # the model plays no part: the same as at initialization
    checks: dict[str, Any] = {
        "learning": learning_check(history.loss, val_before=before["val_loss"], val_after=history.val_loss[-1],
                                   required_drop=cfg.loss_drop),
    }
    if plan.on or setup.head:
        checks["task"] = task_check(setup, plan, before["task"], evaluate.task_accuracy(setup, plan))
    else:
        checks["task"] = task_skipped(info.task, cfg.task_proof)
    checks.update(data)
    checks["learned"] = learned_check(before.get("reference_losses"), evaluate.reference_losses(setup, refs),
                                      required_drop=cfg.loss_drop)
    checks["collator"], checks["attention"] = before["mask"], before["packing"]
    for name, check in checks.items():
        check["proves"] = KINDS[name]
    fewshot = None
    if setup.fewshot is not None:
        fewshot = fewshot_eval.summary(setup.fewshot, before["fewshot"], evaluate.fewshot_accuracy(setup, plan),
                                       base=setup.init is not None)
        echo(fewshot_eval.table(fewshot))
    return {
        "dataset": str(info.path), "task": info.task, "init_from": setup.init, "transformers": getattr(setup.model, "about", None), "fewshot": fewshot, "device": str(setup.device),
        "attention": setup.attention, "peak_lr": setup.peak_lr, "batch_size": setup.batch_size,
        "loader_workers": setup.workers,
        "model": {"preset": setup.model_name, "params": setup.params, **asdict(setup.model_cfg)}, "config": asdict(cfg),
        "steps": step, "train_seconds": history.seconds, "train_tokens": history.tokens,
        "checks": checks,
        "throughput": speed.throughput(history.tokens_per_s, loader, expected_ratio=cfg.loader_ratio),
        "passed": passed(checks),
    }
