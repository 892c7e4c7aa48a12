"""What a training run writes in its folder, and how it reads a run back to resume it.

    RUN/checkpoint.pt   weights, optimizer, step, history, the proofs at initialization, config
    RUN/verify.json     the report: every check's numbers and pass/fail, the settings, the model
    RUN/loss.png        training and validation loss per step, and the learning rate

Files are written to ``NAME.tmp`` and renamed, so a run stopped mid-write keeps its last
checkpoint whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dataprep.errors import ConfigError, OutputError
from dataprep.train.step import History

if TYPE_CHECKING:
    from dataprep.train.setup import Setup

CHECKPOINT = "checkpoint.pt"
VERIFY = "verify.json"
CURVE = "loss.png"
# Settings of the machine, not of the run: a run may resume with others (how fast it goes, what it prints).
MACHINE_SETTINGS = ("threads", "progress_every")
# What each check proves when it passes, for the lines a run ends with.
PROVES = {
    "learning": "a model learns from these rows: the training and the held-out loss fall",
    "task": "the trained model answers held-out prompts exactly, and stops after the answer",
    "targets": "the rows train exactly the responses and stop tokens of the source records, rendered another way",
    "heldout": "no validation example is a training example",
    "labels": "every label id names the class its target text spells",
    "learned": "the model learned the answers, wherever the rows put the loss",
    "collator": "(code) the loss reads the tokens the rows mark as targets, and nothing else",
    "attention": "(code) examples packed into one row never see each other",
}


def checkpoint_path(out: Path, *, resume: bool, overwrite: bool) -> Path:
    """The checkpoint of the run folder ``out``, once it is clear the run may write there.

    The folder itself is made by the first file written, so a run stopped by an error before
    training leaves nothing behind.

    Raises:
        OutputError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set, or
            ``resume`` is set and there is no checkpoint.
    """
    checkpoint = out / CHECKPOINT
    if checkpoint.exists() and not (resume or overwrite):
        raise OutputError(f"{out} already holds a run", fix="pass --resume to continue it or --overwrite to start again")
    if resume and not checkpoint.exists():
        raise OutputError(f"nothing to resume: {checkpoint} does not exist", fix="run again without --resume")
    return checkpoint


def atomic_save(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path.tmp``, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, setup: Setup, *, step: int, history: History, before: dict[str, Any]) -> None:
    """Everything :func:`load_checkpoint` needs to continue the run exactly."""
    from dataprep.train.init_from import tokenizer_identity

    hf = getattr(setup.model, "hf", None)  # --model PATH: the architecture, to rebuild it for --init-from
    atomic_save({"model": setup.model.state_dict(), "optimizer": setup.opt.state_dict(), "step": step,
                 "history": asdict(history), "before": before, "config": asdict(setup.cfg),
                 "model_config": asdict(setup.model_cfg), "preset": setup.model_name, "peak_lr": setup.peak_lr,
                 **({"hf_config": hf.config.to_dict()} if hf is not None else {}),
                 "tokenizer": tokenizer_identity(setup.info)}, path)


def load_checkpoint(path: Path, setup: Setup) -> tuple[int, History, dict[str, Any]]:
    """Load weights and optimizer into ``setup``; return the step, the history and the proofs before training.

    Raises:
        ConfigError: the checkpoint was trained with other settings (another schedule, model or
            seed would not continue the same run).
    """
    state = torch.load(path, map_location=setup.device, weights_only=False)
    settings = asdict(setup.cfg)
    changed = {k: v for k, v in state["config"].items() if settings.get(k) != v and k not in MACHINE_SETTINGS}
    if changed:
        saved = " ".join(f"--set {k}={v}" for k, v in changed.items())
        raise ConfigError(f"{path} was trained with other settings: "
                          f"{', '.join(f'{k}={v} (now {settings.get(k)})' for k, v in changed.items())}",
                          fix=f"resume with the same settings ({saved}), or --overwrite to start again")
    setup.model.load_state_dict(state["model"])
    setup.opt.load_state_dict(state["optimizer"])
    return state["step"], History(**state["history"]), state["before"]


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``verify.json``: the report as indented JSON."""
    out.mkdir(parents=True, exist_ok=True)
    (out / VERIFY).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def plot(history: History, path: Path, *, title: str, ylabel: str = "loss (per target token)") -> None:
    """Training loss per step and validation loss (log scale) over the learning rate, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, (ax, lr) = plt.subplots(2, 1, figsize=(7, 5), dpi=100, sharex=True, height_ratios=(3, 1))
    ax.plot(history.step, history.loss, lw=0.8, label="train")
    ax.plot(history.val_step, history.val_loss, "o-", ms=3, label=f"validation ({len(history.val_step)} points)")
    ax.set(ylabel=ylabel, yscale="log", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    lr.plot(history.step, history.lr, lw=0.8, color="tab:green")
    lr.set(xlabel="step", ylabel="learning rate")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def look_next(dataset: str | Path, out: Path, checks: dict[str, Any]) -> str:
    """The lines before the verdict: where to look next, and what each check proves when it passes."""
    import shlex

    data = shlex.quote(str(dataset))
    where = {f"dataprep inspect {data}": "the rows as text, the trained tokens highlighted",
             f"dataprep report {data}": "an HTML report: lengths, targets, drops, plots",
             str(out / VERIFY): f"every figure below ({CURVE}: the loss curve)"}
    width = max(map(len, where)) + 2
    lines = ["look next:", *(f"  {what:<{width}}{why}" for what, why in where.items()),
             "what each check proves when it passes:"]
    lines += [f"  {name:<9} {proves}" for name, proves in PROVES.items() if checks.get(name, {}).get("pass") is not None]
    return "\n".join(lines)
