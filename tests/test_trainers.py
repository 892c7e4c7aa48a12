"""TRL, Hugging Face Trainer and a plain loop train a dataprep dataset as it is (#16).

Each README section ("Train with TRL", "Train with HF Trainer", "Train in your own loop") is run
as written, for a few steps, on demo-sft packed with bfd and a tiny Llama built from a config (no
hub). Each test then checks the two ways these set-ups train the wrong thing with no error: the
targets counted in the batches the trainer's own collator makes over both splits equal the
manifest's ``sft.target_tokens`` (prompts not trained), and the loss of a packed batch equals the
loss of the same examples one at a time (packed examples do not attend to each other).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dataprep.build.run import run
from dataprep.columns import IGNORE_INDEX
from dataprep.dataset.manifest import Manifest
from dataprep.errors import ConfigError, ManifestError, RecipeError
from dataprep.recipe import load_recipe
from dataprep.train.loader import ArrowRows, Batches, HFCollator, HFRows, read_info

from .conftest import RECIPES

pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

README = RECIPES.parent / "README.md"
DEMO_SFT_TARGETS = 29_266  # demo-sft's sft.target_tokens (both splits), stated in the README


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding out/demo-sft-packed, as the README's scripts expect."""
    root = tmp_path_factory.mktemp("trainers")
    run(load_recipe(RECIPES / "demo-sft.yaml", ["packing.mode=bfd"]), root / "out" / "demo-sft-packed", workers=1, progress=False)
    return root


def script(tag: str, **replace: str) -> str:
    code = README.read_text(encoding="utf-8").split(f"<!-- {tag} (run by tests/test_trainers.py) -->\n```python\n", 1)[1].split("```", 1)[0]
    for old, new in replace.items():
        assert old in code, old
        code = code.replace(old, new)
    return code


def run_script(code: str, workdir, monkeypatch) -> dict:
    monkeypatch.chdir(workdir)
    scope: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


def tiny_llama(vocab_size: int, pad_id: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=pad_id)
    return LlamaForCausalLM(config).eval()


def targets(batch) -> int:
    return int((batch["labels"] != IGNORE_INDEX).sum())


def one_at_a_time(model, batch) -> float:
    """The token-weighted loss of every example of ``batch`` run alone (examples are where
    ``position_ids`` restart)."""
    total, count = 0.0, 0
    for ids, labels, pos in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
        starts = torch.nonzero(pos == 0).flatten().tolist() + [len(ids)]
        for a, b in zip(starts, starts[1:]):
            n = int((labels[a + 1 : b] != IGNORE_INDEX).sum())
            if n:
                with torch.no_grad():
                    loss = model(input_ids=ids[None, a:b], labels=labels[None, a:b], use_cache=False).loss
                total, count = total + float(loss) * n, count + n
    return total / count


def packed_loss(model, batch) -> float:
    with torch.no_grad():
        return float(model(**batch).loss)


# --- the use_cache trap, on HFCollator's own batches ---------------------------------------------


def test_packed_loss_equals_one_at_a_time_only_with_use_cache_off(workdir):
    info = read_info(workdir / "out" / "demo-sft-packed")
    model = tiny_llama(info.vocab_size, info.pad_id)
    assert model.config.use_cache is True  # the default the trap needs
    rows = HFRows(info.dataset, "train")
    batch = HFCollator(pad_id=info.pad_id)([rows[0], rows[1], rows[2]])
    assert batch["use_cache"] is False and "attention_mask" not in batch
    alone = one_at_a_time(model, batch)
    assert packed_loss(model, batch) == pytest.approx(alone, abs=1e-5)
    unsafe = {k: v for k, v in batch.items() if k != "use_cache"}  # what the model's config decides
    assert abs(packed_loss(model, unsafe) - alone) > 1e-4


def test_hf_collator_exact_and_refuses_rows_without_boundaries():
    row = {"input_ids": [5, 6, 7, 8, 9, 10, 11, 0, 0], "seq_lengths": [4, 3, 2], "num_pad": 2,
           "assistant_masks": [0, 0, 1, 1, 0, 1, 1, 0, 0]}
    X = IGNORE_INDEX
    batch = HFCollator(pad_id=0, pad_to_multiple_of=4)([row, {"input_ids": [3, 4], "seq_lengths": [2], "num_pad": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0, 0], [3, 4] + [0] * 10]
    assert batch["labels"].tolist() == [[X, X, 7, 8, X, 10, 11, X, X, X, X, X], [X, 4] + [X] * 10]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
    # a labels column (output.labels) is taken as it is, piece starts and pad still -100
    with_labels = dict(row, labels=[1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert HFCollator(pad_id=0)([with_labels])["labels"].tolist() == [[X, 2, 3, 4, X, 6, 7, X, X]]
    with pytest.raises(ConfigError, match="HFRows"):
        HFCollator(pad_id=0)([{"input_ids": [1, 2, 3]}])  # what Trainer's remove_unused_columns leaves


# --- the README's scripts ---------------------------------------------------------------------


def test_readme_trl_script(workdir, monkeypatch):
    pytest.importorskip("trl")
    scope = run_script(script("trl-example", **{"max_steps=500": "max_steps=2", "hidden_size=64": "hidden_size=32",
                                                  "intermediate_size=128": "intermediate_size=64"}), workdir, monkeypatch)
    trainer = scope["trainer"]
    assert trainer.state.global_step == 2
    counted = sum(targets(b) for b in trainer.get_train_dataloader()) + sum(targets(b) for b in trainer.get_eval_dataloader())
    manifest = Manifest.load(workdir / "out" / "demo-sft-packed")
    assert counted == manifest.sft.target_tokens == DEMO_SFT_TARGETS
    batch = next(iter(trainer.get_eval_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and (batch["position_ids"] == 0).sum() > 2  # padding-free: examples in one row
    # TRL's batch is, token for token, dataprep's own for the same rows, laid end to end
    rows = ArrowRows(scope["OUT"], "validation")
    ours = [HFCollator(pad_id=0)([rows[i]]) for i in range(trainer.args.per_device_eval_batch_size)]
    for key in ("input_ids", "labels", "position_ids"):
        assert batch[key][0].tolist() == sum((b[key][0].tolist() for b in ours), []), key
    model = trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, dict(batch)))  # TRL's own path (it sets use_cache=False)
    assert loss == pytest.approx(one_at_a_time(model, batch), abs=1e-5)


def test_readme_hf_trainer_script(workdir, monkeypatch):
    scope = run_script(script("hf-trainer-example", **{"max_steps=500": "max_steps=2", "hidden_size=64": "hidden_size=32",
                                                         "intermediate_size=128": "intermediate_size=64"}), workdir, monkeypatch)
    trainer = scope["trainer"]
    assert trainer.state.global_step == 2 and trainer.args.remove_unused_columns is True
    counted = sum(targets(b) for b in trainer.get_train_dataloader()) + sum(targets(b) for b in trainer.get_eval_dataloader())
    assert counted == DEMO_SFT_TARGETS
    batch = next(iter(trainer.get_eval_dataloader()))
    model = trainer.model.eval()
    # Trainer (5.25) sets config.use_cache from TrainingArguments(use_cache=False); a model used with
    # use_cache=True (the argument, or the model outside Trainer) still keeps its examples apart
    model.config.use_cache = True
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, dict(batch)))
        unsafe = float(trainer.compute_loss(model, {k: v for k, v in batch.items() if k != "use_cache"}))
    alone = one_at_a_time(model, batch)
    assert loss == pytest.approx(alone, abs=1e-5) and abs(unsafe - alone) > 1e-4
    # the same Trainer on rows that keep dataprep's columns: Trainer drops them, the collator refuses
    from transformers import Trainer

    bare = Trainer(model=model, args=trainer.args, train_dataset=ArrowRows(scope["OUT"], "train"), data_collator=scope["trainer"].data_collator)
    with pytest.raises(ConfigError, match="remove_unused_columns"):
        next(iter(bare.get_train_dataloader()))


def test_readme_own_loop_script(workdir, monkeypatch):
    code = script("own-loop-example", **{"num_steps=500": "num_steps=3", "taken % 100": "taken % 3",
                                         "hidden_size=64": "hidden_size=32", "intermediate_size=128": "intermediate_size=64"})
    scope = run_script(code, workdir, monkeypatch)
    state = torch.load(workdir / "runs" / "own" / "state.pt")
    assert state["loader"]["step"] == 3 == scope["batches"].state_dict()["step"]
    collator = scope["batches"].collator
    counted = sum(targets(b) for split in ("train", "validation")
                  for b in Batches(ArrowRows(scope["OUT"], split), collator, batch_size=8, shuffle=False))
    assert counted == DEMO_SFT_TARGETS
    batch = next(iter(Batches(ArrowRows(scope["OUT"], "validation"), collator, batch_size=4, shuffle=False)))
    model = scope["model"].eval()
    assert packed_loss(model, batch) == pytest.approx(one_at_a_time(model, batch), abs=1e-5)
    # run again: it resumes from state.pt, which already stands at its last step
    resumed = run_script(code, workdir, monkeypatch)
    assert resumed["batches"].state_dict()["step"] == 3 and len(resumed["batches"]) == 0


# --- the row contract -------------------------------------------------------------------------


def test_output_labels_are_the_targets(tmp_path):
    out = tmp_path / "labels"
    run(load_recipe(RECIPES / "demo-sft.yaml", ["packing.mode=bfd", "output.labels=true"]), out, workers=1, progress=False)
    ds = read_info(out).dataset
    total = 0
    for split in ds.splits:
        table = ds.table(split)
        assert table.column_names == ["input_ids", "seq_lengths", "num_pad", "assistant_masks", "labels"]
        for row in table.to_pylist():
            ids, mask, labels = (np.asarray(row[k]) for k in ("input_ids", "assistant_masks", "labels"))
            assert (labels == np.where(mask == 1, ids, IGNORE_INDEX)).all()
            starts = np.cumsum(row["seq_lengths"]) - row["seq_lengths"]
            assert (labels[starts] == IGNORE_INDEX).all() and (labels[len(ids) - row["num_pad"] :] == IGNORE_INDEX).all()
            total += int((labels != IGNORE_INDEX).sum())
    assert total == Manifest.load(out).sft.target_tokens == DEMO_SFT_TARGETS


def test_output_labels_is_for_sft_only(tmp_path):
    with pytest.raises(RecipeError, match="task"):
        load_recipe(RECIPES / "demo-pretrain.yaml", ["output.labels=true"])


def test_a_dataset_in_the_old_format_is_refused_with_the_fix(workdir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(workdir / "out" / "demo-sft-packed", old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format"] = "dataprep.sft/1"  # seq_lens, loss_mask
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as info:
        read_info(old)
    assert "'dataprep.sft/1' is not one of" in str(info.value) and info.value.location == "format"
    assert "rebuild the dataset" in info.value.fix
