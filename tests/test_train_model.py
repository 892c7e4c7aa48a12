"""Where a run's model comes from: ``--init-from RUN`` (another run's, its tokenizer enforced) and
``--model PATH`` (a local transformers causal LM, trained and proved like the bundled model).

The transformers models are tiny Llamas built from a ``LlamaConfig`` here, saved to tmp as
``config.json`` alone and with ``model.safetensors``; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import AddedToken, Tokenizer

from dataprep.build.run import run
from dataprep.cli import main
from dataprep.errors import ConfigError, OutputError
from dataprep.recipe import load_recipe
from dataprep.train import proofs
from dataprep.train.loader import ArrowRows, Collator, read_info
from dataprep.train.loop import config_from, train

from .conftest import RECIPES

transformers = pytest.importorskip("transformers")

TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "batch_size": 16, "eval_rows": 64, "checkpoint_every": 0,
        "task_proof": "off", "eval_every": 0, "lr": 3e-3}
HF = {k: v for k, v in TINY.items() if k not in ("d_model", "n_layers", "n_heads")}
quiet = lambda _: None  # noqa: E731


def llama_config(vocab_size: int = 257, dropout: float = 0.1) -> "transformers.LlamaConfig":
    return transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                    tie_word_embeddings=True, attention_dropout=dropout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """demo-sft and demo-pretrain built, a 30-step base run on demo-sft, and two tiny Llama folders."""
    root = tmp_path_factory.mktemp("model")
    run(load_recipe(RECIPES / "demo-sft.yaml"), root / "sft", workers=1)
    run(load_recipe(RECIPES / "demo-pretrain.yaml"), root / "pretrain", workers=1)
    train(root / "sft", root / "base", config_from(steps=30, **TINY), echo=quiet)
    llama_config().save_pretrained(root / "llama-config")
    torch.manual_seed(1)
    transformers.LlamaForCausalLM(llama_config()).save_pretrained(root / "llama-weights")
    return root


# --- --model PATH -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_run(runs) -> tuple[dict, list[str]]:
    """40 steps of the tiny Llama (config.json only: random weights) on demo-sft: its report and lines."""
    lines: list[str] = []
    report = train(runs / "sft", runs / "hf", config_from(steps=40, model=str(runs / "llama-config"), **dict(HF, lr=1e-2)),
                   echo=lines.append)
    return report, lines


def test_a_transformers_model_trains_with_every_proof(runs, hf_run):
    report, lines = hf_run
    checks = report["checks"]
    assert set(checks) == {"learning", "task", "targets", "heldout", "labels", "learned", "collator", "attention"}
    assert all(check["pass"] is not False for check in checks.values()), checks  # each passes, or says why it skips
    assert checks["collator"]["pass"] and checks["collator"]["loss_diff"] == 0.0
    assert checks["attention"]["pass"] and checks["attention"]["rows"] < checks["attention"]["examples"]
    assert checks["learning"]["pass"], checks["learning"]
    assert report["model"]["preset"] == f"llama random init ({runs / 'llama-config'})"
    assert report["model"]["d_model"] == 32 and report["model"]["vocab_size"] == 257 and report["attention"] == "sdpa (transformers)"
    assert report["peak_lr"] == 1e-2 and report["config"]["model"] == str(runs / "llama-config")
    # dropout would make two forward passes differ: it is turned off, and the run says so
    assert any("dropout turned off (attention_dropout=0.1 -> 0" in line for line in lines)
    state = torch.load(runs / "hf" / "checkpoint.pt", weights_only=False)
    assert state["hf_config"]["model_type"] == "llama" and state["hf_config"]["attention_dropout"] == 0.0


def test_the_attention_check_catches_a_model_whose_packed_rows_meet(runs):
    """The cache trap of transformers 5: with ``use_cache`` left to the config (True), the restarts of
    ``position_ids`` are ignored and packed examples attend to each other; the check fails on it."""
    from dataprep.train.hf_model import HFCausalLM

    info = read_info(runs / "sft")
    singles = list(proofs.examples(ArrowRows(info.dataset, "validation"), limit=16))
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(llama_config(dropout=0.0))
    collator = Collator(pad_id=info.pad_id)
    safe = proofs.packing_proof(HFCausalLM(llama), singles, collator, torch.device("cpu"), seq_len=info.seq_len)
    unsafe = proofs.packing_proof(HFCausalLM(llama, use_cache=None), singles, collator, torch.device("cpu"),
                                  seq_len=info.seq_len)
    assert llama.config.use_cache is True
    assert safe["pass"] and safe["abs_diff"] <= 1e-5
    assert not unsafe["pass"] and unsafe["abs_diff"] > 5 * unsafe["tolerance"]  # 7.5e-4: seeded, the same every run
    assert unsafe["one_at_a_time_loss"] == safe["one_at_a_time_loss"]  # alone, there is nothing to leak


def test_a_folder_with_weights_loads_them_and_scores_as_transformers_does(runs):
    from dataprep.train import hf_model

    info = read_info(runs / "sft")
    model, about = hf_model.load(runs / "llama-weights", vocab_size=257, longest=300, tokenizer=info.dataset.tokenizer().tokenizer)
    saved = transformers.LlamaForCausalLM.from_pretrained(runs / "llama-weights", local_files_only=True)
    assert about["weights"] == "model.safetensors" and about["architecture"] == "LlamaForCausalLM"
    assert all(torch.equal(a, b) for a, b in zip(model.hf.state_dict().values(), saved.state_dict().values()))
    row = next(proofs.examples(ArrowRows(info.dataset, "validation"), limit=1))
    batch = Collator(pad_id=info.pad_id)([row])
    total, count = model.lm_loss(batch)
    with torch.no_grad():
        theirs = saved(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss
    assert count == int(np.asarray(row["assistant_masks"]).sum()) and count > 0
    assert torch.allclose(total / count, theirs, atol=1e-6)
    # the task check's greedy decoding (left padding as a segment of its own) answers as transformers'
    # generate does on each prompt alone
    prompts = [np.asarray(row["input_ids"][:n]) for n in (9, 4)]
    ours = proofs.greedy(model, prompts, stop_ids=(-1,), pad_id=info.pad_id, max_new=6, device=torch.device("cpu"))
    for prompt, answer in zip(prompts, ours):
        alone = saved.generate(torch.tensor(prompt)[None], max_new_tokens=6, do_sample=False, pad_token_id=info.pad_id)
        assert answer.tolist() == alone[0, len(prompt):].tolist()
    assert hf_model.name(about) == f"llama ({runs / 'llama-weights'})"
    assert about["tokenizer"] == "not checked: the folder has no tokenizer.json"


def test_pretrained_weights_need_the_models_tokenizer(runs, tmp_path):
    """The folder's tokenizer.json against the dataset's: the same ids pass, another tokenizer is refused."""
    from dataprep.train import hf_model

    shutil.copytree(runs / "llama-weights", tmp_path / "m")
    sft, pretrain = read_info(runs / "sft"), read_info(runs / "pretrain")
    shutil.copy(RECIPES / "data" / "byte_tokenizer" / "tokenizer.json", tmp_path / "m")
    _, about = hf_model.load(tmp_path / "m", vocab_size=257, longest=300, tokenizer=sft.dataset.tokenizer().tokenizer)
    assert about["tokenizer"] == "the folder's tokenizer.json: every token has the model's id"
    with pytest.raises(ConfigError, match="the dataset was built with another tokenizer than the model's") as err:
        hf_model.load(tmp_path / "m", vocab_size=257, longest=300, tokenizer=pretrain.dataset.tokenizer().tokenizer)
    assert f"tokenizer: {{path: {tmp_path / 'm'}}}" in err.value.fix


@pytest.mark.parametrize("value, message, fix", [
    ("meta-llama/Llama-3.2-1B", "looks like a Hugging Face Hub id, and dataprep never downloads",
     "hf download meta-llama/Llama-3.2-1B --local-dir models/Llama-3.2-1B"),
    ("no/such/folder", "is neither a preset (auto, cpu, gpu) nor a folder", "--model cpu"),
])
def test_a_model_that_is_not_a_local_folder_is_refused(value, message, fix):
    with pytest.raises(ConfigError, match="--model " + value) as err:
        config_from(model=value)
    assert message in err.value.message and fix in err.value.fix


def test_what_a_transformers_model_cannot_take_is_refused(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="the folder has no config.json"):
        config_from(model=str(tmp_path / "empty"))
    llama_config(vocab_size=100).save_pretrained(tmp_path / "small")
    with pytest.raises(ConfigError, match="has 100 embedding rows, but the dataset's tokenizer has 257 ids") as err:
        train(runs / "sft", tmp_path / "r1", config_from(steps=1, model=str(tmp_path / "small"), **HF), echo=quiet)
    assert "resize_token_embeddings(257)" in err.value.fix
    folder = str(runs / "llama-config")
    with pytest.raises(ConfigError, match="--set d_model does not apply to it"):
        train(runs / "sft", tmp_path / "r2", config_from(steps=1, model=folder, d_model=64, **HF), echo=quiet)
    with pytest.raises(ConfigError, match="--init-from does not apply to it"):
        train(runs / "sft", tmp_path / "r3", config_from(steps=1, model=folder, init_from=str(runs / "base"), **HF), echo=quiet)
    # a classification head: refused (the label words train generatively instead)
    from dataprep.train.setup import make_model

    with pytest.raises(ConfigError, match="--classification head does not apply to it") as err:
        make_model(read_info(runs / "sft"), config_from(model=folder), torch.device("cpu"), torch.float32, longest=64, num_labels=3)
    assert "--classification generative" in err.value.fix
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_a_transformers_run_is_a_base_for_init_from(runs, hf_run, tmp_path):
    base = torch.load(runs / "hf" / "checkpoint.pt", weights_only=False)
    report = train(runs / "sft", tmp_path / "next", config_from(steps=1, init_from=str(runs / "hf"), **HF), echo=quiet)
    after = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=False)
    assert after["history"]["val_loss"][0] == base["history"]["val_loss"][-1]
    assert report["model"]["preset"] == base["preset"] and report["init_from"]["step"] == 40


# --- --init-from RUN --------------------------------------------------------------------------------

def test_a_run_starts_where_its_base_ended(runs, tmp_path):
    base = torch.load(runs / "base" / "checkpoint.pt", weights_only=False)
    report = train(runs / "sft", tmp_path / "next", config_from(steps=1, init_from=str(runs / "base"), **TINY), echo=quiet)
    after = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=False)
    # the same weights on the same validation rows: the new run's loss before training is the base's last
    assert after["history"]["val_loss"][0] == base["history"]["val_loss"][-1]
    assert report["init_from"] == {"path": str(runs / "base" / "checkpoint.pt"), "step": 30, "added_tokens": 0,
                                   "tokenizer": base["tokenizer"]["fingerprint"], "preset": "cpu"}
    assert json.loads((tmp_path / "next" / "verify.json").read_text())["init_from"] == report["init_from"]
    assert report["model"]["d_model"] == 32 and report["model"]["n_layers"] == 1
    # the base itself started from random weights (same seed, same shape): a much higher loss
    assert base["history"]["val_loss"][0] > 1.3 * base["history"]["val_loss"][-1]


def test_resume_takes_the_weights_from_its_own_run_and_keeps_init_from(runs, tmp_path):
    """--resume continues the run in --out; --init-from is one of its settings, so it must be given again
    (the resumed run's weights come from its own checkpoint)."""
    shutil.copytree(runs / "base", tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    state["config"]["init_from"] = str(runs / "base")  # a run that started from the base
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ConfigError, match=r"init_from=.*base \(now None\)") as err:
        train(runs / "sft", tmp_path / "run", config_from(steps=30, **TINY), resume=True, echo=quiet)
    assert f"--set init_from={runs / 'base'}" in err.value.fix
    with pytest.raises(OutputError, match="already holds a run"):
        train(runs / "sft", tmp_path / "run", config_from(steps=30, init_from=str(runs / "base"), **TINY), echo=quiet)


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
    assert any("1 new token get embedding rows at the mean of the old ones" in line for line in lines)
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
    with pytest.raises(SystemExit):
        main(["train", str(runs / "sft"), "--out", str(tmp_path / "r"), "--model", "Qwen/Qwen3-0.6B"])
    assert "never downloads" in capsys.readouterr().err
