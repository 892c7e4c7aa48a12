"""TRL's DPO and KTO trainers train on dataprep's preference rows as written (#18), through
:mod:`dataprep.api.trl_trainers` (TRL's own trainers re-tokenize text, which these rows have none of):
the collators' completion masks count exactly the dataset's response tokens, and a few steps run."""

from __future__ import annotations

import copy
import json
import math

import pyarrow as pa
import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe

from .conftest import RECIPES, require_shared

pytest.importorskip("trl")


def built(tmp_path, name: str):
    """The train split of recipe ``name`` as a ``datasets.Dataset`` (the shard's rows as they are) and the
    dataset's tokenizer as transformers loads it from the dataset's folder."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    out = tmp_path / name
    with pytest.MonkeyPatch.context() as patch:  # the run's transformers comparison: slow, and tested elsewhere
        patch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)
        run(load_recipe(RECIPES / f"{name}.yaml"), out, workers=1, progress=False)
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    tables = [pa.ipc.open_stream((out / "train" / s["file"]).read_bytes()).read_all() for s in manifest["splits"]["train"]["shards"]]
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Dataset(pa.concat_tables(tables)), tokenizer, manifest


def tiny_llama(vocab_size: int, pad_id: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                                        pad_token_id=pad_id))


def losses_of(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_trl_dpo_trainer_consumes_the_rows_and_counts_the_same_targets(tmp_path):
    from trl import DPOConfig

    from dataprep.api.trl_trainers import DPOTrainer

    train, tokenizer, manifest = built(tmp_path, "preference-synthetic")
    model = tiny_llama(manifest["tokenizer"]["vocab_size"], tokenizer.pad_token_id)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-3,
                     logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", max_length=None)
    reference = copy.deepcopy(model)  # built from a config, not loadable by name: pass the reference model
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train, processing_class=tokenizer)
    assert trainer.train_dataset.column_names == [C.PROMPT_IDS, C.CHOSEN_IDS, C.REJECTED_IDS]  # kept, not re-tokenized
    rows = train.select(range(8)).to_list()
    batch = trainer.data_collator(rows)
    # chosen sequences first, then rejected: their completion tokens are the dataset's response tokens
    assert int(batch["completion_mask"].sum()) == sum(len(r[C.CHOSEN_IDS]) + len(r[C.REJECTED_IDS]) for r in rows)
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert first == rows[0][C.PROMPT_IDS] + rows[0][C.CHOSEN_IDS]
    trainer.train()
    losses = losses_of(trainer)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


def test_trl_kto_trainer_consumes_the_rows_with_its_kl_pairs(tmp_path):
    from trl import KTOConfig

    from dataprep.api.trl_trainers import KTOTrainer

    require_shared()
    train, tokenizer, manifest = built(tmp_path, "preference-kto-en-demo")  # Gemma 3's chat template
    # the 8 shortest examples: Gemma 3's 262k-token vocabulary makes every logit row 1 MB
    lengths = [len(p) + len(c) for p, c in zip(train[C.PROMPT_IDS], train[C.COMPLETION_IDS])]
    train = train.select(sorted(range(len(lengths)), key=lengths.__getitem__)[:8])
    assert set(train[C.KTO_LABEL]) == {True, False}
    model = tiny_llama(manifest["tokenizer"]["vocab_size"], tokenizer.pad_token_id)
    args = KTOConfig(output_dir=str(tmp_path / "kto"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                     logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", max_length=None)
    trainer = KTOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=train, processing_class=tokenizer)
    prepared = trainer.train_dataset
    assert prepared.column_names == [C.PROMPT_IDS, C.COMPLETION_IDS, C.KTO_LABEL, "KL_completion_ids"]
    rows = prepared.select(range(4)).to_list()
    # KL pairs: each prompt with the previous example's completion, rotated within the batch of 4, as TRL does
    assert [r["KL_completion_ids"] for r in rows] == [rows[3][C.COMPLETION_IDS]] + [r[C.COMPLETION_IDS] for r in rows[:3]]
    batch = trainer.data_collator(rows)
    assert int(batch["completion_mask"].sum()) == sum(len(r[C.COMPLETION_IDS]) for r in rows)
    assert batch["label"].tolist() == [r[C.KTO_LABEL] for r in rows]
    trainer.train()
    losses = losses_of(trainer)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
