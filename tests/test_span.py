"""objective: span_corruption: T5 lengths, exact reconstruction (property test), sentinels, validate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import ByteLevelBPETokenizer

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.tasks.span import CORRUPT_BLOCK_ROWS, corrupt, lengths_for
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES, read_split
from .oracles import reconstruct

GPT2 = DATA / "tokenizers" / "gpt2"
C4 = DATA / "corpora" / "c4_demo.jsonl"
EOS = 50256


def make(tmp_path: Path, tokenizer: Path = GPT2, **sections) -> object:
    data = {"task": "pretrain", "objective": "span_corruption", "inputs": [{"path": str(C4)}], "tokenizer": {"path": str(tokenizer)}}
    data.update(sections)
    return recipe_from_dict(data, base_dir=tmp_path)




def test_lengths_match_t5():
    # t5.data.preprocessors.random_spans_helper for inputs_length=512 (density 0.15, mean 3): 568 raw, 114 targets
    assert lengths_for(512, 0.15, 3.0) == {"raw_length": 568, "noise_tokens": 85, "spans": 28, "labels_length": 114}
    for seq_len in (8, 64, 128, 1000):
        for density in (0.1, 0.15, 0.5):
            shape = lengths_for(seq_len, density, 3.0)
            assert shape["raw_length"] - shape["noise_tokens"] + shape["spans"] + 1 == seq_len  # fits exactly


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 6),
    length=st.integers(3, 300),
    density=st.floats(0.01, 0.9),
    mean=st.floats(1.0, 10.0),
    seed=st.integers(0, 2**32 - 1),
    eos=st.booleans(),
)
def test_merging_inputs_and_labels_reconstructs_the_row(rows, length, density, mean, seed, eos):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 1000, (rows, length)).astype(np.int32)
    noise = min(max(int(round(length * density)), 1), length - 1)
    spans = min(max(int(round(noise / mean)), 1), noise, length - noise)
    sentinels = np.arange(5000, 5000 + spans, dtype=np.int32)
    inputs, labels = corrupt(raw, np.random.default_rng(seed + 1), noise=noise, spans=spans, sentinels=sentinels, eos=7 if eos else None)
    assert inputs.shape == (rows, length - noise + spans + eos) and labels.shape == (rows, noise + spans + eos)
    for r in range(rows):
        assert reconstruct(inputs[r], labels[r], sentinels, eos=7 if eos else None) == raw[r].tolist()
        # every sentinel once, in order, in both; labels open with the first
        assert inputs[r][np.isin(inputs[r], sentinels)].tolist() == sentinels.tolist()
        assert labels[r][np.isin(labels[r], sentinels)].tolist() == sentinels.tolist()
        assert labels[r][0] == sentinels[0]


def test_span_lengths_statistics():
    raw = np.zeros((2000, 568), dtype=np.int32)
    sentinels = np.arange(1, 29, dtype=np.int32)
    _, labels = corrupt(raw, np.random.default_rng(0), noise=85, spans=28, sentinels=sentinels, eos=None)
    starts = np.flatnonzero(np.isin(labels.reshape(-1), sentinels))
    run_lengths = np.diff(np.append(starts, labels.size)) - 1
    assert run_lengths.min() >= 1 and run_lengths.sum() == 2000 * 85
    assert abs(run_lengths.mean() - 85 / 28) < 1e-9
    assert 0.2 < np.mean(run_lengths == 1) < 0.5  # spans vary in length, not all equal


def test_rows_reconstruct_the_gpt2_token_stream(tmp_path):
    out = tmp_path / "out"
    manifest = run(make(tmp_path, packing={"seq_len": 128}, split={"validation": 0.0}), out, workers=1)
    obj = manifest["objective"]
    assert obj["added_tokens"] == [f"<extra_id_{i}>" for i in range(obj["spans"])]
    assert obj["sentinel_ids"] == list(range(50257, 50257 + obj["spans"]))  # appended after GPT-2's vocabulary
    assert manifest["tokenizer"]["saved_as"] == "tokenizer" and manifest["tokenizer"]["vocab_size"] == 50257 + obj["spans"]
    reference = ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    texts = list(dict.fromkeys(t for t in (json.loads(line)["text"] for line in C4.read_text(encoding="utf-8").splitlines()) if t.strip()))
    stream = np.concatenate([np.array(reference.encode(t.strip()).ids + [EOS]) for t in texts])
    t = read_split(out)
    inputs, labels = t.column(C.INPUT_IDS).to_pylist(), t.column(C.LABELS).to_pylist()
    raw = obj["raw_length"]
    assert len(inputs) == len(stream) // raw == manifest["counts"]["rows"]["train"]
    for i in (0, 1, len(inputs) // 2, len(inputs) - 1):
        assert len(inputs[i]) == 128 and len(labels[i]) == obj["labels_length"]
        assert reconstruct(np.array(inputs[i]), np.array(labels[i]), np.array(obj["sentinel_ids"]), eos=EOS) == stream[i * raw : (i + 1) * raw].tolist()
    assert manifest["counts"]["remainder_tokens_dropped"] == len(stream) % raw
    assert validate_dataset(out).ok


def test_same_shards_for_any_worker_count_and_existing_sentinels_are_used(tmp_path):
    sections = {"packing": {"seq_len": 64}, "split": {"validation": 0.1}, "output": {"chunk_records": 37, "shard_bytes": 40000}}
    shas = []
    for workers in (1, 2):
        m = run(make(tmp_path, **sections), tmp_path / f"w{workers}", workers=workers)
        shas.append({s: [x["sha256"] for x in m["splits"][s]["shards"]] for s in C.SPLITS})
    assert shas[0] == shas[1] and len(shas[0]["train"]) > 1
    # a tokenizer that already has the sentinels (the one saved above) is used as it is
    again = run(make(tmp_path, tokenizer=tmp_path / "w1" / "tokenizer", **sections), tmp_path / "again", workers=1)
    assert again["objective"]["added_tokens"] == [] and again["tokenizer"]["saved_as"] == "tokenizer"
    assert again["objective"]["sentinel_ids"] == m["objective"]["sentinel_ids"]
    assert [x["sha256"] for x in again["splits"]["train"]["shards"]] == shas[0]["train"]


def test_same_shards_for_any_chunking(tmp_path):
    """Spans are drawn per block of CORRUPT_BLOCK_ROWS rows, not per block the packer emits."""
    shas = []
    for chunk_records in (37, 5000):
        sections = {"packing": {"seq_len": 32}, "split": {"validation": 0.1}, "output": {"chunk_records": chunk_records}}
        m = run(make(tmp_path, **sections), tmp_path / f"c{chunk_records}", workers=1)
        shas.append({s: [x["sha256"] for x in m["splits"][s]["shards"]] for s in C.SPLITS})
        assert m["counts"]["rows"]["train"] > 2 * CORRUPT_BLOCK_ROWS  # several blocks
    assert shas[0] == shas[1]


def test_validate_flags_sentinels_out_of_order(tmp_path):
    out = tmp_path / "out"
    m = run(make(tmp_path, packing={"seq_len": 64}, output={"shard_bytes": 1 << 30}), out, workers=1)
    t = read_split(out)
    column = t.column(C.LABELS).combine_chunks()
    values = column.flatten().to_numpy().copy()
    first, second = m["objective"]["sentinel_ids"][:2]
    values[0] = second  # labels of row 0 open with the wrong sentinel
    broken = t.set_column(t.schema.get_field_index(C.LABELS), C.LABELS, pa.ListArray.from_arrays(column.offsets, pa.array(values)))
    shard = next((out / "train").glob("*.arrow"))
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, broken.schema) as writer:
        writer.write_table(broken)
    report = validate_dataset(out)
    # row 0 and nothing else: the swapped sentinel, the wrong opening one, and the rewritten shard's checksum
    assert [(f.kind, f.split, f.row, f.position) for f in report.findings] == [
        ("sentinel_order", "train", 0, 0), ("sentinel_order", "train", 0, None), ("shard_checksum", "train", None, None),
    ], report.to_text()


def test_recipe_span_c4_runs_and_validates(tmp_path):
    manifest = run(load_recipe(RECIPES / "span-c4.yaml"), tmp_path / "out", workers=2)
    assert manifest["format"] == "dataprep.span/2" and manifest["seq_len"] == 256
    counts = manifest["counts"]
    assert counts["records_read"] == counts["records_written"] + sum(counts["dropped"].values())
    assert validate_dataset(tmp_path / "out").ok
