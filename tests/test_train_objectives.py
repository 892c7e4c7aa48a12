"""Trainer support for MLM (bidirectional encoder), span corruption (prefix LM) and --eval-fewshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dataprep import columns as C
from dataprep.cli import main
from dataprep.errors import ConfigError
from dataprep.train.fewshot_eval import prepare
from dataprep.train.loader import ArrowRows, read_info
from dataprep.train.model import ModelConfig, Transformer
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.train.loop import config_from, train
from dataprep.train.objectives import MlmCollator, SpanCollator, masker_from_manifest

from .conftest import RECIPES

SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "warmup": 0.05, "lr": 1e-2, "eval_rows": 32, "batch_size": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("objectives")
    run(load_recipe(RECIPES / "mlm-wikitext.yaml", ["packing.seq_len=64", "mlm.masking=dynamic"]), root / "mlm", workers=2)
    run(load_recipe(RECIPES / "span-c4.yaml", ["packing.seq_len=64"]), root / "span", workers=2)
    run(load_recipe(RECIPES / "demo-sft.yaml"), root / "sft", workers=1)
    run(load_recipe(RECIPES / "fewshot-demo.yaml"), root / "fewshot", workers=1)
    return root


def test_dynamic_masks_are_seeded_by_step_and_never_touch_specials(data):
    info = read_info(data / "mlm")
    rows = ArrowRows(info.dataset, "train")
    batch_rows = [rows[i] for i in range(32)]
    collate = MlmCollator(pad_id=info.pad_id, masker=masker_from_manifest(info), seed=0)
    a, b, c = collate(batch_rows, step=7), collate(batch_rows, step=7), collate(batch_rows, step=8)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])  # reproducible
    assert not torch.equal(a["labels"], c["labels"])  # fresh masks at the next step (every epoch too)
    original = MlmCollator(pad_id=info.pad_id, masker=None).base(batch_rows)["input_ids"]
    chosen = a["labels"] != C.IGNORE_INDEX
    assert torch.equal(a["labels"][chosen], original[chosen])
    specials = torch.tensor(list(info.manifest.objective.never_masked_ids))
    assert not torch.isin(original[chosen], specials).any()  # [CLS] [SEP] [PAD] never chosen
    assert torch.equal(a["input_ids"][~chosen], original[~chosen])
    assert a["num_targets"] == int(chosen.sum()) and 0.10 < chosen.float().sum() / (~torch.isin(original, specials)).sum() < 0.20


def test_span_collator_builds_prefix_lm_rows(data):
    info = read_info(data / "span")
    rows = ArrowRows(info.dataset, "train", columns=(C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD, C.LABELS))
    batch = SpanCollator()([rows[0], rows[1]])
    n_labels = info.manifest.objective.labels_length
    assert batch["input_ids"].shape == (2, 64 + n_labels)
    assert batch["prefix_len"].tolist() == [64, 64]
    assert (batch["labels"][:, :64] == C.IGNORE_INDEX).all()
    assert batch["labels"][0, 64:].tolist() == rows[0][C.LABELS].tolist() == batch["input_ids"][0, 64:].tolist()


def test_attention_masks_bidirectional_and_prefix():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    ids = torch.randint(0, 50, (1, 8))
    changed = ids.clone()
    changed[0, 3] = (changed[0, 3] + 1) % 50  # a later token of the first segment
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    doc = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    models = {m: Transformer(cfg, mask=m) for m in ("causal", "bidirectional", "prefix")}
    for m in models.values():
        m.load_state_dict(models["causal"].state_dict())

    def moved(name: str, **kw) -> np.ndarray:
        a = models[name].hidden(ids, pos, doc, **kw)
        b = models[name].hidden(changed, pos, doc, **kw)
        return ((a - b).abs().amax(-1) > 1e-6)[0].numpy()

    assert moved("causal").tolist() == [False, False, False, True, False, False, False, False]
    assert moved("bidirectional").tolist() == [True, True, True, True, False, False, False, False]  # never across segments
    assert moved("prefix", prefix_len=torch.tensor([4])).tolist() == [True, True, True, True, False, False, False, False]
    assert moved("prefix", prefix_len=torch.tensor([2])).tolist() == [False, False, False, True, False, False, False, False]
    with pytest.raises(ValueError, match="prefix_len"):
        models["prefix"].hidden(ids, pos, doc)


@pytest.mark.parametrize("name", ["mlm", "span"])
def test_objective_training_loss_falls(data, tmp_path, name):
    report = train(data / name, tmp_path / "run", config_from({}, steps=25, **SMALL), echo=lambda _: None)
    learning = report["checks"]["learning"]
    assert report["objective"] == {"mlm": "mlm", "span": "span_corruption"}[name]
    assert report["attention_mask"] == {"mlm": "bidirectional", "span": "prefix"}[name]
    assert learning["pass"] and learning["val_loss_after"] < learning["val_loss_before"]
    assert json.loads((tmp_path / "run" / "verify.json").read_text())["passed"]
    assert (tmp_path / "run" / "loss.png").is_file()


def test_fewshot_pairs_are_the_fine_tuning_prompts(data):
    ev = prepare(data / "fewshot", read_info(data / "sft"), limit=10_000)
    assert ev.k == 4 and len(ev.zero_shot) == len(ev.k_shot) == 624
    sft = ArrowRows(read_info(data / "sft").dataset, "validation")
    for (prompt, answer), (shot_prompt, shot_answer), i in zip(ev.zero_shot, ev.k_shot, range(624)):
        row = sft[i]
        first = int(np.argmax(row[C.LOSS_MASK]))
        assert prompt.tolist() == row[C.INPUT_IDS][:first].tolist() and answer.tolist() == row[C.INPUT_IDS][first:].tolist()
        assert shot_answer.tolist() == answer.tolist() and shot_prompt[-len(prompt):].tolist() == prompt.tolist()
        assert len(shot_prompt) > len(prompt)
    with pytest.raises(ConfigError, match="task: fewshot"):
        prepare(data / "sft", read_info(data / "sft"), limit=10)
    with pytest.raises(ConfigError, match="another tokenizer"):
        prepare(data / "fewshot", read_info(data / "mlm"), limit=10)


def test_eval_fewshot_reports_the_comparison_table(data, tmp_path, capsys):
    cfg = config_from({}, steps=10, eval_fewshot=str(data / "fewshot"), task_examples=24, **SMALL)
    report = train(data / "sft", tmp_path / "run", cfg, echo=print)
    result = report["fewshot"]
    assert result["queries"] == 24 and result["k"] == 4
    assert result["zero_shot"] == result["before"]["zero_shot"]["accuracy"]
    assert result["fine_tuned"] == result["after"]["zero_shot"]["accuracy"]
    assert result["before"]["k_shot"]["examples"] == 24
    out = capsys.readouterr().out
    assert "exact match on 24 held-out queries   before training   after fine-tuning" in out
    assert "4-shot (demonstrations in context)" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(data / "mlm"), "--out", str(tmp_path / "bad"), "--eval-fewshot", str(data / "fewshot")])
    assert exit_info.value.code == 1
    assert "--eval-fewshot and --init-from apply to next-token training only" in capsys.readouterr().err


@pytest.mark.slow
def test_in_context_vs_fine_tuning_on_demo_sft(data, tmp_path):
    report = train(data / "sft", tmp_path / "run", config_from({}, eval_fewshot=str(data / "fewshot")), echo=print)
    assert report["fewshot"]["fine_tuned"] >= 0.9 and report["fewshot"]["zero_shot"] == 0.0
