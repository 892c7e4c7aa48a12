"""The learning-rate schedule: linear warmup to the preset's peak, then a cosine down to ``min_lr``."""

from __future__ import annotations

import math
from typing import Any

# Peak learning rate per model preset: "cpu" was tuned on demo-sft; "gpu" is GPT-2 small's.
PEAK_LR = {"cpu": 4e-3, "gpu": 6e-4}


def lr_at(step: int, cfg: Any, peak: float) -> float:
    """Linear warmup to ``peak``, then a cosine down to ``min_lr`` at the last step (``cfg``: a
    :class:`~dataprep.train.config.TrainConfig`: ``warmup_steps``, ``steps``, ``min_lr``).

    Warmup is a fraction of the run, so a 100-step run decays as a 2,000-step one does."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))
