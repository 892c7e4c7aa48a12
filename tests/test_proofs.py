"""Every proof about the data fails on data planted to be wrong, and only its own proof does.

The datasets are real builds of shipped recipes; each plant rewrites their shards with pyarrow
(the manifest is copied unchanged: the trainer does not read shard checksums). The data proofs
need no model, so these tests call them directly (about 8 s in all). ``learned`` needs training:
``tests/test_train.py::test_planted_broken_masks_fail_the_task_proof`` trains the good data and the
planted prompts-as-targets data (200 tiny steps each, runs the suite already pays for the task
check) and asserts it passes on the one and fails on the other, where collator and attention pass.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.train import data_proofs
from dataprep.train.loader import ArrowRows, read_info

from .conftest import DATA, RECIPES, require_shared

Table = pa.Table


def rewrite(src: Path, dst: Path, change: Callable[[str, Table, Table], Table]) -> Path:
    """A copy of dataset ``src`` whose shards are ``change(split, table, train table)``."""
    shutil.copytree(src, dst)
    read = lambda shard: pa.ipc.open_stream(pa.memory_map(str(shard))).read_all()  # noqa: E731
    train_table = pa.concat_tables(read(s) for s in sorted((src / "train").glob("data-*.arrow")))
    for split in C.SPLITS:
        for shard in sorted((dst / split).glob("data-*.arrow")):
            table = change(split, read(shard), train_table)
            tmp = shard.with_name(shard.name + ".tmp")  # never truncate a memory-mapped file
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, shard)
    return dst


def masks(how: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[str, Table, Table], Table]:
    """A plant that replaces every row's assistant_masks with ``how(ids, mask)``."""
    def change(split: str, table: Table, _: Table) -> Table:
        new = [how(np.array(ids), np.array(mask, dtype=np.uint8)) for ids, mask in
               zip(table.column(C.INPUT_IDS).to_pylist(), table.column(C.LOSS_MASK).to_pylist())]
        return table.set_column(table.schema.get_field_index(C.LOSS_MASK), C.LOSS_MASK, pa.array(new, type=pa.list_(pa.uint8())))
    return change


def prompt_as_target(ids, mask):
    flipped = 1 - mask
    flipped[0] = 0
    return flipped


def shifted_by_one(ids, mask):
    return np.concatenate([[0], mask[:-1]]).astype(np.uint8)


def merged_segments(split: str, table: Table, _: Table) -> Table:
    """In every row with two or more examples, the first two become one segment."""
    lengths = [list(x) for x in table.column(C.SEQ_LENS).to_pylist()]
    pads = table.column(C.NUM_PAD).to_pylist()
    for row, pad in zip(lengths, pads):
        if len(row) - (1 if pad else 0) >= 2:
            row[0:2] = [row[0] + row[1]]
    return table.set_column(table.schema.get_field_index(C.SEQ_LENS), C.SEQ_LENS, pa.array(lengths, type=pa.list_(pa.int32())))


def validation_from_train(split: str, table: Table, train_table: Table) -> Table:
    """The validation split gets 5 training rows added (a leak)."""
    return pa.concat_tables([table, train_table.slice(0, 5)]) if split == "validation" else table


def swapped_labels(split: str, table: Table, _: Table) -> Table:
    return table.set_column(table.schema.get_field_index(C.LABEL_ID), C.LABEL_ID,
                            pa.array([1 - x for x in table.column(C.LABEL_ID).to_pylist()], type=pa.int32()))


def proofs(path: Path) -> dict[str, dict]:
    """targets, heldout and labels of the dataset at ``path``, as the trainer computes them."""
    info = read_info(path)
    decoder = info.dataset.tokenizer().tokenizer
    index = data_proofs.index_examples({s: ArrowRows(info.dataset, s) for s in C.SPLITS})
    targets, _ = data_proofs.targets_proof(info, index, decoder=decoder, limit=data_proofs.REFERENCE_RECORDS)
    return {"targets": targets, "heldout": data_proofs.heldout_check(index, decoder=decoder),
            "labels": data_proofs.labels_check(info, index, decoder=decoder)}


def verdicts(found: dict[str, dict]) -> dict[str, bool | None]:
    return {name: check["pass"] for name, check in found.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proofs")
    run(load_recipe(RECIPES / "demo-sft.yaml"), root / "sft", workers=1)
    run(load_recipe(RECIPES / "demo-sft.yaml", ["packing.mode=bfd", "packing.seq_len=256"]), root / "packed", workers=1)
    return root


def test_the_good_datasets_pass_every_data_proof(built):
    for name in ("sft", "packed"):
        found = proofs(built / name)
        assert verdicts(found) == {"targets": True, "heldout": True, "labels": None}, found
        assert found["targets"]["found"] == found["targets"]["masks_equal"] == 512


@pytest.mark.parametrize("plant, data_trains, reference_trains", [
    (prompt_as_target, ": reverse idp\nA: ", "pdi<|endoftext|>"),  # record line 1; the first token is never a target
    (lambda ids, mask: np.where(ids == 0, 0, mask).astype(np.uint8), "", "<|endoftext|>"),  # the stop token not trained
    (shifted_by_one, "", "p"),  # one position late: the answer's first token is lost
])
def test_a_broken_mask_fails_targets_and_only_targets(built, tmp_path, plant, data_trains, reference_trains):
    found = proofs(rewrite(built / "sft", tmp_path / "planted", masks(plant)))
    assert verdicts(found) == {"targets": False, "heldout": True, "labels": None}
    first = found["targets"]["first_mismatch"]
    assert first["record"].endswith("sft_tasks.jsonl line 1")
    assert (first["data_trains_not_reference"], first["reference_trains_not_data"]) == (data_trains, reference_trains)
    assert found["targets"]["found"] == 512 and found["targets"]["masks_equal"] == 0


def test_two_examples_merged_into_one_segment_fail_targets(built, tmp_path):
    found = proofs(rewrite(built / "packed", tmp_path / "merged", merged_segments))
    assert verdicts(found) == {"targets": False, "heldout": True, "labels": None}
    targets = found["targets"]
    # each merged pair is one example the reference never renders: neither half is found
    assert targets["masks_equal"] == targets["found"] < 0.9 * targets["rendered"]
    assert re.fullmatch(r".*sft_tasks\.jsonl line \d+", targets["first_not_found"])


def test_validation_rows_copied_from_train_fail_heldout(built, tmp_path):
    found = proofs(rewrite(built / "sft", tmp_path / "leak", validation_from_train))
    assert verdicts(found) == {"targets": True, "heldout": False, "labels": None}
    assert found["heldout"]["in_both_splits"] == 5 and found["heldout"]["first"].startswith("Q: ")


def test_a_swapped_label_map_fails_labels(tmp_path):
    require_shared()
    good = tmp_path / "cls"
    run(load_recipe(RECIPES / "classification.yaml"), good, workers=1)
    assert verdicts(proofs(good)) == {"targets": None, "heldout": True, "labels": True}
    found = proofs(rewrite(good, tmp_path / "swapped", swapped_labels))
    assert verdicts(found) == {"targets": None, "heldout": True, "labels": False}
    assert found["labels"]["wrong"] == found["labels"]["examples"] == 5170
    assert found["labels"]["first_wrong"]["target_text"] != found["labels"]["first_wrong"]["names"]



def test_a_token_stream_with_train_rows_in_validation_fails_heldout(tmp_path):
    """Pretraining rows (wrap packing): the whole documents inside each row are compared, not the rows."""
    good = tmp_path / "pretrain"
    run(load_recipe(RECIPES / "demo-pretrain.yaml"), good, workers=1)
    stream = lambda path: data_proofs.heldout_check(  # noqa: E731
        data_proofs.index_examples({s: ArrowRows(read_info(path).dataset, s) for s in C.SPLITS}, stream=True), decoder=None)
    assert stream(good)["pass"] and stream(good)["examples"]["validation"] > 0
    found = stream(rewrite(good, tmp_path / "leak", validation_from_train))
    # each copied row brings the documents it holds whole: all but its first and last piece (and the pad)
    table = pa.ipc.open_stream(pa.memory_map(str(sorted((good / "train").glob("data-*.arrow"))[0]))).read_all().slice(0, 5)
    whole = sum(len(lengths) - 2 - (pad > 0) for lengths, pad in
                zip(table.column(C.SEQ_LENS).to_pylist(), table.column(C.NUM_PAD).to_pylist()))
    assert found["pass"] is False and found["in_both_splits"] == whole > 0


def test_chat_records_re_rendered_through_a_generation_tagged_template(tmp_path):
    """recipes/chat.yaml (Phi-3's template) against phi3_training.jinja, rendered by transformers' Jinja renderer.
    Every other chat family: tests/test_proofs_chat_families.py."""
    require_shared()
    pytest.importorskip("transformers")
    chat = tmp_path / "chat"
    run(load_recipe(RECIPES / "chat.yaml"), chat, workers=1)
    template = str(DATA / "chat_templates" / "phi3_training.jinja")

    def targets(path: Path, chat_template: str | None = template) -> dict:
        info = read_info(path)
        index = data_proofs.index_examples({s: ArrowRows(info.dataset, s) for s in C.SPLITS})
        return data_proofs.targets_proof(info, index, decoder=info.dataset.tokenizer().tokenizer, limit=512,
                                         chat_template=chat_template)[0]

    assert targets(chat, None)["skipped"].startswith("chat template: give a {% generation %}-tagged copy")
    # every record found token for token, every mask equal: each assistant turn through its <|end|>, the
    # last one also through the <|endoftext|> the template appends (the training template marks it too)
    found = targets(chat)
    assert (found["rendered"], found["found"], found["masks_equal"], found["pass"]) == (500, 500, 500, True)
    prompts = targets(rewrite(chat, tmp_path / "prompts", masks(prompt_as_target)))
    first = prompts["first_mismatch"]
    assert (prompts["found"], prompts["masks_equal"], prompts["pass"]) == (500, 0, False)
    assert first["data_trains_not_reference"].startswith("<|user|> Who are you?")
    eos = read_info(chat).manifest.tokenizer.special_ids["eos"]
    unended = targets(rewrite(chat, tmp_path / "eos", masks(lambda ids, mask: np.where(ids == eos, 0, mask).astype(np.uint8))))
    assert (unended["found"], unended["masks_equal"], unended["pass"]) == (500, 0, False)  # the final EOS not trained
    assert unended["first_mismatch"]["data_trains_not_reference"] == ""
    assert unended["first_mismatch"]["reference_trains_not_data"] == "<|endoftext|>"
