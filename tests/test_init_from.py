"""``dataprep train --init-from RUN``: a run starts from another run's model, with its tokenizer enforced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import AddedToken, Tokenizer

from dataprep.build.run import run
from dataprep.cli import main
from dataprep.errors import ConfigError
from dataprep.recipe import load_recipe
from dataprep.train.loader import read_info
from dataprep.train.loop import config_from, train

from .conftest import RECIPES

TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "batch_size": 16, "eval_rows": 64, "checkpoint_every": 0,
        "task_proof": "off", "eval_every": 0, "lr": 3e-3}
quiet = lambda _: None  # noqa: E731


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """demo-sft and demo-pretrain built, and a 30-step base run on demo-sft."""
    root = tmp_path_factory.mktemp("init")
    run(load_recipe(RECIPES / "demo-sft.yaml"), root / "sft", workers=1)
    run(load_recipe(RECIPES / "demo-pretrain.yaml"), root / "pretrain", workers=1)
    train(root / "sft", root / "base", config_from(steps=30, **TINY), echo=quiet)
    return root


def test_a_run_starts_where_its_base_ended(runs, tmp_path):
    base = torch.load(runs / "base" / "checkpoint.pt", weights_only=False)
    report = train(runs / "sft", tmp_path / "next", config_from(steps=5, init_from=str(runs / "base"), **TINY), echo=quiet)
    after = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=False)
    # the same weights on the same validation rows: the new run's loss before training is the base's last
    assert after["history"]["val_loss"][0] == base["history"]["val_loss"][-1]
    assert report["init_from"] == {"path": str(runs / "base" / "checkpoint.pt"), "step": 30, "added_tokens": 0,
                                   "tokenizer": base["tokenizer"]["fingerprint"], "preset": "cpu"}
    assert report["model"]["d_model"] == 32 and report["model"]["n_layers"] == 1
    # without --init-from the same run starts from random weights: a much higher loss
    fresh = torch.load(_fresh(runs, tmp_path), weights_only=False)
    assert fresh["history"]["val_loss"][0] > 1.3 * base["history"]["val_loss"][-1]


def _fresh(runs: Path, tmp_path: Path) -> Path:
    train(runs / "sft", tmp_path / "fresh", config_from(steps=1, **TINY), echo=quiet)
    return tmp_path / "fresh" / "checkpoint.pt"


def test_another_tokenizer_is_refused_with_both_named(runs, tmp_path):
    with pytest.raises(ConfigError, match="was built with another tokenizer than the --init-from run") as err:
        train(runs / "pretrain", tmp_path / "x", config_from(steps=1, init_from=str(runs / "base"), **TINY), echo=quiet)
    assert f"({read_info(runs / 'pretrain').vocab_size:,} ids)" in str(err.value) and "(257 ids)" in str(err.value)
    assert "OUT/tokenizer" in err.value.fix


def test_a_shape_setting_that_differs_is_refused(runs, tmp_path):
    with pytest.raises(ConfigError, match="has d_model=32, not d_model=64"):
        train(runs / "sft", tmp_path / "x", config_from(steps=1, init_from=str(runs / "base"), **dict(TINY, d_model=64)),
              echo=quiet)


def test_added_special_tokens_get_new_embedding_rows(runs, tmp_path):
    """The base tokenizer plus one special token: the old rows load unchanged, the new row is their mean."""
    folder = tmp_path / "tok"
    shutil.copytree(RECIPES / "data" / "byte_tokenizer", folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<|tool|>", special=True)])
    tok.save(str(folder / "tokenizer.json"))
    run(load_recipe(RECIPES / "demo-sft.yaml", [f"tokenizer.path={folder}"]), tmp_path / "sft2", workers=1)
    lines: list[str] = []
    report = train(tmp_path / "sft2", tmp_path / "run", config_from(steps=1, lr=1e-12, min_lr=0, init_from=str(runs / "base"),
                                                                    **{k: v for k, v in TINY.items() if k != "lr"}),
                   echo=lines.append)
    assert report["init_from"]["added_tokens"] == 1
    assert any("1 new token get embedding rows" in line for line in lines)
    old = torch.load(runs / "base" / "checkpoint.pt", weights_only=False)["model"]["embed.weight"]
    new = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["embed.weight"]
    assert new.shape == (258, 32) and old.shape == (257, 32)
    assert torch.allclose(new[:257], old, atol=1e-6) and torch.allclose(new[257], old.mean(0), atol=1e-6)


def test_cli_names_a_folder_without_a_checkpoint(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["train", str(runs / "sft"), "--out", str(tmp_path / "r"), "--init-from", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert info.value.code != 0 and "no checkpoint.pt there" in err and "fix:" in err
    assert not (tmp_path / "r").exists()
