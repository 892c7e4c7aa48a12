"""What a training run writes in its output folder: the checkpoint, ``verify.json`` (the proofs'
report) and ``loss.png`` (:func:`plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"
VERIFY = "verify.json"
CURVE = "loss.png"


def plot(history: dict[str, Any], path: Path, *, title: str) -> None:
    """Training loss per step and validation loss, on a log scale, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(history["step"], history["loss"], lw=0.8, label="train")
    ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    ax.set(xlabel="step", ylabel="loss (per target token)", yscale="log", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
