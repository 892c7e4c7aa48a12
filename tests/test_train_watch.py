"""Training you can watch (#17 item 6): a schedule that fits short runs, a validation curve, the LR in
loss.png, and time-based progress lines for every objective."""

from __future__ import annotations

import math
import re

import pytest
import torch

from dataprep.build.run import run
from dataprep.errors import ConfigError
from dataprep.recipe import load_recipe
from dataprep.train.config import TrainConfig, config_from
from dataprep.train.loop import train
from dataprep.train.schedule import lr_at

from .conftest import RECIPES

TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "batch_size": 8, "eval_rows": 16, "checkpoint_every": 0,
        "task_proof": "off", "progress_every": 0}


def test_a_short_run_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(steps=100, min_lr=1e-4)  # warmup 0.05: 5 steps
    peak = 4e-3
    lrs = [lr_at(step, cfg, peak) for step in range(cfg.steps)]
    assert cfg.warmup_steps == 5
    assert lrs[:5] == pytest.approx([peak * k / 5 for k in range(1, 6)])  # linear warmup to the peak
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:]))  # then only down
    # the cosine over the 95 steps after warmup: the last step used is one step short of min_lr
    assert lrs[-1] == pytest.approx(1e-4 + 0.5 * (peak - 1e-4) * (1 + math.cos(math.pi * 94 / 95)))
    assert lrs[-1] < 1e-4 + 0.001 * peak
    # a 2,000-step run warms up 100 steps, as the old fixed warmup did
    assert TrainConfig(steps=2000).warmup_steps == 100 and TrainConfig(steps=10, warmup=0).warmup_steps == 0


def test_warmup_is_a_fraction_and_an_old_step_count_says_so():
    with pytest.raises(ConfigError, match=r"warmup=100.0 is out of range: it must be a fraction from 0 to 1") as err:
        config_from({"warmup": "100"})
    assert "--set warmup=0.05" in err.value.fix


def test_validation_points_default_to_a_curve():
    assert TrainConfig(steps=100).validation_every == 5
    assert TrainConfig(steps=10).validation_every == 1
    assert TrainConfig(steps=100, eval_every=0).validation_every == 0
    assert TrainConfig(steps=100, eval_every=30).validation_every == 30


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    run(load_recipe(RECIPES / "demo-pretrain.yaml"), root / "pretrain", workers=1)
    run(load_recipe(RECIPES / "mlm-wikitext.yaml", ["packing.seq_len=64", "mlm.masking=dynamic"]), root / "mlm", workers=1)
    return root


def test_a_run_draws_a_validation_curve_and_the_lr(datasets, tmp_path):
    lines: list[str] = []
    train(datasets / "pretrain", tmp_path / "run", config_from(steps=40, **TINY), echo=lines.append)
    history = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["history"]
    assert history["val_step"] == list(range(0, 41, 2))  # before training, every 2 steps, after
    assert len(history["lr"]) == 40 and max(history["lr"]) == history["lr"][1] and history["lr"][-1] < history["lr"][1] / 10
    assert sum("validation loss" in line for line in lines) == 19  # the 19 in the middle are printed
    png = (tmp_path / "run" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlm_runs_print_elapsed_and_eta_and_validate_along_the_way(datasets, tmp_path):
    lines: list[str] = []
    train(datasets / "mlm", tmp_path / "mlm", config_from(steps=20, **TINY), echo=lines.append)
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 20  # progress_every=0: a line every step
    assert all(re.search(r"tok/s  elapsed \d+:\d\d  ETA (\d+:\d\d|\?)$", line) for line in steps)
    assert steps[-1].endswith("ETA 0:00")
