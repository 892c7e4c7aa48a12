"""The loader: memory-mapped rows, a seeded resumable order, and exact collated batches."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from dataprep.columns import IGNORE_INDEX
from dataprep.errors import ConfigError, DataError, InputError
from dataprep.train.loader import ArrowRows, Batches, Collator, StepSampler, read_info
from dataprep.build.run import run
from dataprep.recipe import load_recipe

from .conftest import RECIPES

X = IGNORE_INDEX


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "demo-sft"
    run(load_recipe(RECIPES / "demo-sft.yaml"), out, workers=1)
    return out


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "demo-pretrain"
    run(load_recipe(RECIPES / "demo-pretrain.yaml", ["output.batch_tokens=4096"]), out, workers=1)
    return out


PACKED_SFT = {  # two examples and a 2-token pad piece (the docstring of dataprep/train/loader.py)
    "input_ids": [5, 6, 7, 8, 9, 10, 11, 0, 0],
    "seq_lengths": [4, 3, 2],
    "num_pad": 2,
    "assistant_masks": [0, 0, 1, 1, 0, 1, 1, 0, 0],
}


def test_collator_packed_fine_tuning_row_exact():
    batch = Collator(pad_id=0, attention_mask=True)([PACKED_SFT])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 0, 0]]
    assert batch["labels"].tolist() == [[X, X, 7, 8, X, 10, 11, X, X]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 2, 2]]
    assert batch["cu_seqlens"].tolist() == [0, 4, 7, 9] and batch["cu_seqlens"].dtype == torch.int32
    assert (batch["max_seqlen"], batch["num_tokens"], batch["num_targets"]) == (4, 7, 4)
    expected = np.array(
        [
            [1, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 1, 0, 0, 0, 0],  # the second example starts blind to the first
            [0, 0, 0, 0, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 1, 0],  # pad sees only pad: no row is empty
            [0, 0, 0, 0, 0, 0, 0, 1, 1],
        ],
        dtype=bool,
    )
    assert batch["attention_mask"].shape == (1, 1, 9, 9)
    assert (batch["attention_mask"][0, 0].numpy() == expected).all()


def test_collator_pretraining_rows_label_everything_but_piece_starts_and_pad():
    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "seq_lengths": [2, 3], "num_pad": 0},
        {"input_ids": [6, 7, 8], "seq_lengths": [3], "num_pad": 0},  # shorter: the collator pads it
    ]
    batch = Collator(pad_id=99)(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 99, 99]]
    assert batch["labels"].tolist() == [[X, 2, X, 4, 5], [X, 7, 8, X, X]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 1, 2, 0, 1]]
    assert batch["document_ids"].tolist() == [[0, 0, 1, 1, 1], [2, 2, 2, 3, 3]]
    assert batch["cu_seqlens"].tolist() == [0, 2, 5, 8, 10]
    assert (batch["num_tokens"], batch["num_targets"], batch["max_seqlen"]) == (8, 5, 3)
    assert "attention_mask" not in batch


def test_collator_pad_to_and_label_values():
    row = dict(PACKED_SFT, label_values=[50, 51, 52, 53, 54, 55, 56, 57, 58])
    batch = Collator(pad_id=0, pad_to=12)([row])
    assert batch["input_ids"].shape == (1, 12)
    # labels come from label_values, still only where the row has targets
    assert batch["labels"].tolist() == [[X, X, 52, 53, X, 55, 56, X, X, X, X, X]]
    assert batch["cu_seqlens"].tolist() == [0, 4, 7, 9, 12]


def test_collator_classification_positions():
    rows = [
        {"input_ids": [3, 4, 5, 0, 6, 7, 0], "seq_lengths": [4, 3], "num_pad": 0,
         "assistant_masks": [0, 0, 1, 1, 0, 1, 1], "label_ids": [1, 0]},
        {"input_ids": [8, 9, 10, 0], "seq_lengths": [4], "num_pad": 0, "assistant_masks": [0, 0, 1, 1], "label_id": 1},
    ]
    batch = Collator(pad_id=0)(rows)
    # the last prompt token of each example, as flat indices into [2, 7]: 1, 4 and 7 + 1
    assert batch["class_positions"].tolist() == [1, 4, 8]
    assert batch["class_labels"].tolist() == [1, 0, 1]


def test_collator_rejects_damaged_rows():
    with pytest.raises(DataError, match="seq_lengths do not sum"):
        Collator(pad_id=0)([{"input_ids": [1, 2, 3], "seq_lengths": [2], "num_pad": 0}])


def test_rows_match_the_arrow_files(sft_dir):
    info = read_info(sft_dir)
    rows = ArrowRows(sft_dir, "validation")
    table = pa.ipc.open_stream(pa.memory_map(str(sft_dir / "validation" / "data-00000-of-00001.arrow"))).read_all()
    assert len(rows) == table.num_rows == info.manifest.counts.rows["validation"]
    assert rows.num_tokens() == info.manifest.splits.validation.shards[0].tokens
    for i in (0, 7, len(rows) - 1):
        expected = table.slice(i, 1).to_pylist()[0]
        got = rows[i]
        assert got["input_ids"].tolist() == expected["input_ids"]
        assert got["assistant_masks"].tolist() == expected["assistant_masks"]
        assert got["seq_lengths"].tolist() == expected["seq_lengths"] and got["num_pad"] == expected["num_pad"]
    assert rows[-1]["input_ids"].tolist() == rows[len(rows) - 1]["input_ids"].tolist()
    with pytest.raises(IndexError):
        rows[len(rows)]
    assert (info.task, info.seq_len, info.vocab_size, info.pad_id, info.stop_ids) == ("sft", 64, 257, 0, (0,))


def test_rows_across_record_batches(pretrain_dir):
    rows = ArrowRows(pretrain_dir, "train")
    assert len(rows._batches) > 1  # batch_tokens=4096: several record batches
    table = pa.ipc.open_stream(pa.memory_map(str(pretrain_dir / "train" / "data-00000-of-00001.arrow"))).read_all()
    ids = table.column("input_ids").to_pylist()
    assert [rows[i]["input_ids"].tolist() for i in range(len(rows))] == ids
    assert "assistant_masks" not in rows[0]


def test_missing_dataset_and_split(tmp_path, sft_dir):
    with pytest.raises(InputError, match="not a dataprep dataset"):
        read_info(tmp_path)
    with pytest.raises(InputError, match="no split .test."):
        ArrowRows(sft_dir, "test")


def test_read_info_takes_the_facts_the_manifest_states(sft_dir, tmp_path):
    """The trainer's facts are the manifest's stated ones (rows.length, sft.stop_token_ids, the pad
    id, the label map), never worked out again from the recipe: change them and they change."""
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(sft_dir, out)
    m = json.loads((out / "manifest.json").read_text())
    m["rows"]["length"] = 96
    m["sft"]["stop_token_ids"] = [10, 0]
    m["padding"]["pad_token_id"] = 3
    m["sft"]["labels"] = {"no": 0, "yes": 1}
    (out / "manifest.json").write_text(json.dumps(m))
    info = read_info(out)
    assert (info.seq_len, info.stop_ids, info.pad_id, info.labels) == (96, (10, 0), 3, {"no": 0, "yes": 1})
    m["rows"]["length"] = "96"
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="rows.length"):
        read_info(out)


def test_sampler_is_seeded_epoch_permutations_and_resumable():
    full = list(StepSampler(10, batch_size=3, seed=7, num_steps=9))
    assert full == list(StepSampler(10, batch_size=3, seed=7, num_steps=9))
    # three batches per epoch (the tenth row waits for another epoch); each epoch: no repeats
    for epoch in range(3):
        seen = sum(full[3 * epoch : 3 * epoch + 3], [])
        assert len(set(seen)) == 9
    assert full[:3] != full[3:6]  # every epoch its own order
    assert list(StepSampler(10, batch_size=3, seed=7, start_step=4, num_steps=5)) == full[4:]
    assert list(StepSampler(10, batch_size=3, seed=8, num_steps=9)) != full
    assert list(StepSampler(5, batch_size=2, shuffle=False)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ConfigError, match="batch_size 8 does not fit a split of 5 rows"):
        StepSampler(5, batch_size=8)


def test_batches_resume_and_workers_give_the_same_stream(sft_dir):
    rows, collator = ArrowRows(sft_dir, "train"), Collator(pad_id=0)
    straight = [b["input_ids"] for b in Batches(rows, collator, batch_size=8, seed=1, num_steps=6)]
    resumed = [b["input_ids"] for b in Batches(rows, collator, batch_size=8, seed=1, start_step=3, num_steps=3)]
    assert len(straight) == 6 and len(resumed) == 3 and straight[0].shape[0] == 8
    assert all(torch.equal(a, b) for a, b in zip(straight[3:], resumed, strict=True))
    loader = DataLoader(Batches(rows, collator, batch_size=8, seed=1, num_steps=6), batch_size=None, num_workers=2)
    assert all(torch.equal(a, b["input_ids"]) for a, b in zip(straight, loader, strict=True))
    # evaluation order: every row once, in file order
    ordered = list(Batches(rows, collator, batch_size=1000, shuffle=False))
    assert sum(b["input_ids"].shape[0] for b in ordered) == len(rows)


def test_two_ranks_split_every_epoch_disjointly_and_say_what_they_leave_out():
    ranks = [StepSampler(10, batch_size=2, seed=3, num_steps=6, rank=r, world_size=2) for r in (0, 1)]
    assert (ranks[0].steps_per_epoch, ranks[0].dropped_per_epoch) == (2, 2)  # 10 // (2 x 2) steps, 2 rows left over
    streams = [list(s) for s in ranks]
    assert streams == [list(StepSampler(10, batch_size=2, seed=3, num_steps=6, rank=r, world_size=2)) for r in (0, 1)]
    for epoch in range(3):
        seen = [sum(stream[2 * epoch : 2 * epoch + 2], []) for stream in streams]
        dropped = ranks[0].dropped(epoch).tolist()
        assert dropped == ranks[1].dropped(epoch).tolist() and len(dropped) == 2
        # each rank its own rows; together with the rows left out, every row exactly once
        assert sorted(seen[0] + seen[1] + dropped) == list(range(10))
    assert ranks[0].dropped(0).tolist() != ranks[0].dropped(1).tolist()  # a different remainder each epoch
    # one rank of two sees, step by step, the halves of what one rank with twice the batch sees
    whole = list(StepSampler(10, batch_size=4, seed=3, num_steps=6))
    assert [a + b for a, b in zip(*streams)] == whole
    # file order: every row once; the last global batch is cut short, here rank 1 gets one row
    assert [list(StepSampler(10, batch_size=3, shuffle=False, rank=r, world_size=2)) for r in (0, 1)] == [
        [[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9]]]
    assert list(StepSampler(7, batch_size=3, shuffle=False, rank=1, world_size=2)) == [[3, 4, 5], []]
    with pytest.raises(ConfigError, match="rank 2 is not in 0..1"):
        StepSampler(10, batch_size=2, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="batch_size 3 on each of 4 ranks does not fit a split of 10 rows"):
        StepSampler(10, batch_size=3, world_size=4)


def test_batches_state_dict_resumes_mid_epoch_with_the_identical_stream(sft_dir):
    rows, collator = ArrowRows(sft_dir, "train"), Collator(pad_id=0)

    def make(**kw):
        return Batches(rows, collator, batch_size=16, seed=5, num_steps=12, rank=1, world_size=2, **kw)

    steps_per_epoch = make().sampler.steps_per_epoch
    assert steps_per_epoch == len(rows) // 32 == 168
    first = make(start_step=steps_per_epoch - 5)  # 5 steps before the end of epoch 0, 7 after it
    stream = iter(first)
    head = [next(stream)["input_ids"] for _ in range(3)]
    state = first.state_dict()
    assert state == {"step": steps_per_epoch - 2, "stop": steps_per_epoch + 7, "seed": 5, "batch_size": 16,
                     "shuffle": True, "rank": 1, "world_size": 2, "num_rows": len(rows)}
    rest = [b["input_ids"] for b in stream]
    again = make()
    again.load_state_dict(json.loads(json.dumps(state)))  # a state survives JSON (a checkpoint)
    resumed = [b["input_ids"] for b in again]
    assert len(head) == 3 and len(rest) == len(resumed) == 9
    assert all(torch.equal(a, b) for a, b in zip(rest, resumed, strict=True))
    # the other rank's batches at the same steps are other rows
    other = Batches(rows, collator, batch_size=16, seed=5, start_step=steps_per_epoch - 2, num_steps=9, rank=0, world_size=2)
    assert not any(torch.equal(a, b["input_ids"]) for a, b in zip(rest, other))
    # with DataLoader workers, batches are counted where they are taken
    workers = make(start_step=steps_per_epoch - 5)
    taken = [b["input_ids"] for _, b in zip(range(3), workers.loader(num_workers=2))]
    assert workers.state_dict()["step"] == steps_per_epoch - 2 and all(torch.equal(a, b) for a, b in zip(head, taken))
    with pytest.raises(ConfigError, match="seed 6 != 5"):
        make().load_state_dict(dict(state, seed=6))


def test_torch_dataloader_with_sampler(sft_dir):
    rows = ArrowRows(sft_dir, "train")
    loader = DataLoader(rows, batch_sampler=StepSampler(len(rows), batch_size=4, seed=0, num_steps=2), collate_fn=Collator(pad_id=0))
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["input_ids"].shape[0] == 4
    first = StepSampler(len(rows), batch_size=4, seed=0).indices(0)
    assert batches[0]["input_ids"][0, : len(rows[int(first[0])]["input_ids"])].tolist() == rows[int(first[0])]["input_ids"].tolist()


def test_every_label_is_the_next_token_of_its_own_segment(sft_dir):
    """On real rows: targets equal input_ids where assistant_masks is 1, never at a segment start."""
    rows = ArrowRows(sft_dir, "train")
    batch = Collator(pad_id=0)([rows[i] for i in range(32)])
    labels, ids, pos = batch["labels"], batch["input_ids"], batch["position_ids"]
    target = labels != X
    assert torch.equal(labels[target], ids[target])
    assert not (target & (pos == 0)).any()
    data_targets = sum(int(rows[i]["assistant_masks"].sum()) for i in range(32))
    assert batch["num_targets"] == int(target.sum()) == data_targets
    manifest = json.loads((sft_dir / "manifest.json").read_text())
    assert manifest["sft"]["masking"] == "completion"


def test_readme_loader_example_runs_as_written(sft_dir, monkeypatch):
    """README.md's "your own training loop" example runs against a real dataset, with a stand-in model."""
    readme = (RECIPES.parent / "README.md").read_text()
    code = readme.split("<!-- loader-example (run by tests/test_loader.py) -->\n```python\n", 1)[1].split("```", 1)[0]
    assert 'read_info("out/demo-sft")' in code and "num_steps=1000" in code
    code = code.replace('"out/demo-sft"', repr(str(sft_dir))).replace("num_steps=1000", "num_steps=3")
    seen = []

    def my_model(input_ids, position_ids):
        seen.append((input_ids.shape, position_ids.shape))
        return torch.zeros(*input_ids.shape, 300, requires_grad=True)

    scope = {"my_model": my_model}
    exec(compile(code, "README.md", "exec"), scope)
    assert len(seen) == 3 and all(a == b and a[0] == 32 for a, b in seen)
    assert scope["loss"].item() == pytest.approx(np.log(300), rel=1e-5)  # uniform logits: log(vocab) per target
