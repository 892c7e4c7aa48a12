"""TRL's DPOTrainer trains on a preference dataset as written (#18): the rows are in the columns
its collator reads (prompt_ids, chosen_ids, rejected_ids), so the only thing to skip is TRL's own
text preparation (it tokenizes `prompt`/`chosen`/`rejected` text, which pre-tokenized rows have
none of). Its collator's completion mask counts exactly the dataset's response tokens."""

from __future__ import annotations

import copy
import json
import math

import pyarrow as pa
import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe

from .conftest import RECIPES

pytest.importorskip("trl")


def test_trl_dpo_trainer_consumes_the_rows_and_counts_the_same_targets(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "pref"
    run(load_recipe(RECIPES / "preference-synthetic.yaml"), out, workers=1, progress=False)
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    shard = out / "train" / manifest["splits"]["train"]["shards"][0]["file"]
    train = Dataset(pa.ipc.open_stream(shard.read_bytes()).read_all())  # the rows as they are, zero-copy

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(RECIPES / "data" / "byte_tokenizer" / "tokenizer.json"),
                                        eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=manifest["tokenizer"]["vocab_size"], hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id))

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):  # the rows are already prompt_ids/chosen_ids/rejected_ids
            return dataset

    args = DPOConfig(output_dir=str(tmp_path / "trl"), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-3,
                     logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", max_length=None)
    reference = copy.deepcopy(model)  # built from a config, not loadable by name: pass the reference model
    trainer = PretokenizedDPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train, processing_class=tokenizer)
    rows = train.select(range(8)).to_list()
    batch = trainer.data_collator(rows)
    # chosen sequences first, then rejected: their completion tokens are the dataset's response tokens
    assert int(batch["completion_mask"].sum()) == sum(len(r[C.CHOSEN_IDS]) + len(r[C.REJECTED_IDS]) for r in rows)
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert first == rows[0][C.PROMPT_IDS] + rows[0][C.CHOSEN_IDS]
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
