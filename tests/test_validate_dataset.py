"""`validate_dataset` on real datasets: every clean one passes, every corruption is caught
with its exact kind, shard, row and position.

Each base dataset is built once per module from a shipped recipe (or real data in
../shared/data) and copied to ``tmp_path`` before a test corrupts it. Corruptions of row
*contents* rewrite the shard and then re-forge the manifest (sizes, checksums, counts) to
match, so that the only thing wrong is the corruption itself and exactly one check fires.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.build.write import shard_digests
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES


def _build(tmp_path_factory, name: str, recipe) -> Path:
    out = tmp_path_factory.mktemp("validate") / name
    run(recipe, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory) -> Path:
    """demo-pretrain, wrap + remainder pad, trained tokenizer (EOS = pad = 0), in small shards."""
    recipe = load_recipe(RECIPES / "demo-pretrain.yaml", ["output.shard_bytes=32768"])
    return _build(tmp_path_factory, "pretrain", recipe)


@pytest.fixture(scope="module")
def pretrain_bos(tmp_path_factory) -> Path:
    """C4 sample, Phi-3 tokenizer with BOS and EOS on every document, wrap."""
    spec = {
        "task": "pretrain",
        "inputs": [{"path": str(DATA / "corpora" / "c4_demo.jsonl")}],
        "tokenizer": {"path": str(DATA / "tokenizers" / "phi-3-mini"), "add_bos": True, "add_eos": True},
        "packing": {"mode": "wrap", "seq_len": 256},
        "split": {"validation": 0.1},
    }
    return _build(tmp_path_factory, "pretrain-bos", recipe_from_dict(spec, base_dir=DATA))


@pytest.fixture(scope="module")
def sft(tmp_path_factory) -> Path:
    """demo-sft: one example per row, byte tokenizer, EOS (0) closes every response."""
    return _build(tmp_path_factory, "sft", load_recipe(RECIPES / "demo-sft.yaml"))


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> Path:
    """chat: Phi-3 chat template, bfd-packed rows, <|end|> (32007) closes every assistant turn, and the
    <|endoftext|> (32000) the template appends closes a final one."""
    return _build(tmp_path_factory, "chat", load_recipe(RECIPES / "chat.yaml"))


# --- helpers ---------------------------------------------------------------------------------


def copy(dataset: Path, tmp_path: Path) -> Path:
    out = tmp_path / dataset.name
    shutil.copytree(dataset, out)
    return out


def manifest(ds: Path) -> dict:
    return json.loads((ds / "manifest.json").read_text())


def save_manifest(ds: Path, m: dict) -> None:
    (ds / "manifest.json").write_text(json.dumps(m, indent=2))


def shard_path(ds: Path, split: str, index: int = 0) -> Path:
    return ds / split / manifest(ds)["splits"][split]["shards"][index]["file"]


def rows_of(ds: Path, split: str, index: int = 0) -> list[dict]:
    return pa.ipc.open_stream(pa.memory_map(str(shard_path(ds, split, index)))).read_all().to_pylist()


def rewrite(ds: Path, split: str, index: int, rows: list[dict]) -> None:
    """Write ``rows`` as the shard, then make the manifest agree with every shard again."""
    path = shard_path(ds, split, index)
    schema = pa.ipc.open_stream(pa.memory_map(str(path))).schema
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    forge(ds)


def forge(ds: Path) -> None:
    """Recompute every shard's bytes, checksums, rows and tokens, and the manifest's totals."""
    m = manifest(ds)
    targets = 0
    for split, entry in ((s, e) for s in ("train", "validation") for e in m["splits"][s]["shards"]):
        path = ds / split / entry["file"]
        table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
        ids = table.column("input_ids").combine_chunks()
        sha, fast = shard_digests(path)
        entry.update(rows=table.num_rows, bytes=path.stat().st_size, sha256=sha, xxh3_128=fast)
        entry["tokens"] = len(ids.values) - int(np.sum(table.column("num_pad").to_numpy()))
        if "assistant_masks" in table.column_names:
            targets += int(np.sum(table.column("assistant_masks").combine_chunks().values.to_numpy()))
    for split in ("train", "validation"):
        shards = m["splits"][split]["shards"]
        m["counts"]["rows"][split] = m["packing"][split]["rows"] = sum(s["rows"] for s in shards)
        m["packing"][split]["content_tokens"] = sum(s["tokens"] for s in shards)
    m["counts"]["tokens"] = sum(m["packing"][s]["content_tokens"] for s in ("train", "validation"))
    if "sft" in m:
        m["sft"]["target_tokens"] = targets
    save_manifest(ds, m)


def found(report) -> list[tuple]:
    return [(f.kind, f.file, f.row, f.position) for f in report.findings]


def pieces(row: dict) -> list[tuple[int, int]]:
    """(start, end) of each piece of a row."""
    ends = np.cumsum(row["seq_lengths"])
    return list(zip((ends - np.asarray(row["seq_lengths"])).tolist(), ends.tolist()))


# --- clean datasets --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo-pretrain", "demo-sft", "dialogsum", "alpaca", "chat", "classification"])
def test_every_shipped_recipe_builds_a_clean_dataset(tmp_path, name):
    out = tmp_path / name
    run(load_recipe(RECIPES / f"{name}.yaml"), out, workers=1, progress=False)
    report = validate_dataset(out)
    assert report.ok, report.to_text()
    assert report.findings == [] and report.counts == {}
    rows = sum(report.stats["rows"].values())
    assert rows == sum(manifest(out)["counts"]["rows"].values()) > 0


def test_clean_datasets_with_shards_bos_and_packing(pretrain, pretrain_bos, sft, chat):
    for ds in (pretrain, pretrain_bos, sft, chat):
        report = validate_dataset(ds)
        assert report.ok, report.to_text()
    assert len(manifest(pretrain)["splits"]["train"]["shards"]) >= 3  # documents cross shard boundaries


def test_stats_report_the_target_ratio_and_stop_tokens(sft, chat):
    report = validate_dataset(sft)
    m = manifest(sft)
    assert report.stats["target_tokens"] == m["sft"]["target_tokens"]
    assert report.stats["target_ratio"] == pytest.approx(m["sft"]["target_ratio"], abs=1e-6)
    assert report.stats["stop_token_ids"] == [0]
    # Phi-3 <|end|>, and the <|endoftext|> the template appends after a final assistant turn
    assert validate_dataset(chat).stats["stop_token_ids"] == [32007, 32000]


# --- check 1: files ---------------------------------------------------------------------------


def test_flipped_byte_in_a_shard(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    path = shard_path(ds, "train", 1)
    # the high byte of the token at row 2, position 5 of this shard: find its offset in the file
    with pa.memory_map(str(path)) as source:
        data = source.read_buffer()
        batch = next(iter(pa.ipc.open_stream(pa.BufferReader(data))))
        ids = batch.column("input_ids")
        values = ids.values
        offset = values.buffers()[1].address - data.address + (ids.offsets[2].as_py() + 5) * 4 + 3
        assert batch.num_rows > 2
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))
    report = validate_dataset(ds)
    name = f"train/{path.name}"
    assert found(report) == [("token_out_of_vocab", name, 2, 5), ("shard_checksum", name, None, None)]
    assert f"is not in [0, vocab_size {manifest(ds)['tokenizer']['vocab_size']})" in report.findings[0].message
    assert "xxh3_128 is" in report.findings[1].message and "the file changed after the run" in report.findings[1].message
    full = validate_dataset(ds, full_hash=True)  # --sha256 checks the sha256 as well
    assert "sha256 is" in full.findings[1].message


def test_truncated_shard(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    path = shard_path(ds, "train", 0)
    entry = manifest(ds)["splits"]["train"]["shards"][0]
    path.write_bytes(path.read_bytes()[: entry["bytes"] // 2])
    report = validate_dataset(ds)
    name = f"train/{path.name}"
    kinds = [(f.kind, f.file) for f in report.findings]
    assert kinds == [("shard_size", name), ("shard_unreadable", name), ("shard_rows", name)]
    assert report.findings[0].message == f"{entry['bytes'] // 2:,} bytes, the manifest says {entry['bytes']:,} (truncated)"
    assert report.findings[1].message.startswith("the Arrow stream breaks off after row ")
    assert report.findings[2].message.endswith(f"rows, the manifest says {entry['rows']:,}")


def test_deleted_and_extra_shards(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    gone = shard_path(ds, "train", 1)
    shutil.copy(gone, ds / "train" / "data-00007-of-00009.arrow")
    gone.unlink()
    report = validate_dataset(ds)
    assert found(report) == [
        ("shard_missing", f"train/{gone.name}", None, None),
        ("shard_extra", "train/data-00007-of-00009.arrow", None, None),
    ]


def test_manifest_row_count_off_by_one(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    m = manifest(ds)
    entry = m["splits"]["validation"]["shards"][0]
    entry["rows"] += 1
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert found(report) == [
        ("manifest_inconsistent", "manifest.json", None, None),
        ("manifest_inconsistent", "manifest.json", None, None),
        ("shard_rows", f"validation/{entry['file']}", None, None),
    ]
    assert [f.path for f in report.findings[:2]] == ["counts.rows.validation", "packing.validation.rows"]
    assert report.findings[2].message == f"{entry['rows'] - 1:,} rows, the manifest says {entry['rows']:,}"


def test_manifest_schema_and_edited_recipe(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    m = manifest(ds)
    m["recipe"]["packing"]["seq_len"] = 64  # the recipe no longer hashes to recipe_hash
    m["splits"]["train"]["shards"][0]["sha"] = m["splits"]["train"]["shards"][0].pop("sha256")
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert [(f.kind, f.path) for f in report.findings] == [
        ("manifest_schema", "splits.train.shards[0].sha"),
        ("manifest_schema", "splits.train.shards[0]"),
        ("manifest_recipe_hash", "recipe_hash"),
    ]
    assert report.findings[0].message == "unknown key 'sha'; did you mean 'sha256'?"
    assert "shard and row checks skipped" in report.notes[0]


def test_not_a_dataset(tmp_path):
    report = validate_dataset(tmp_path)
    assert [f.kind for f in report.findings] == ["manifest_missing"]


# --- checks 3 and 4: ids and structure --------------------------------------------------------


def test_token_id_at_or_above_vocab(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    rows = rows_of(ds, "validation")
    rows[4]["input_ids"][17] = manifest(ds)["tokenizer"]["vocab_size"]
    rewrite(ds, "validation", 0, rows)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("token_out_of_vocab", name, 4, 17)]
    vocab = manifest(ds)["tokenizer"]["vocab_size"]
    assert report.findings[0].message == f"id {vocab} is not in [0, vocab_size {vocab})"


def test_seq_lens_not_summing(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    rows = rows_of(ds, "train", 2)
    rows[3]["seq_lengths"][0] += 1
    rewrite(ds, "train", 2, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train', 2).name}"
    assert found(report) == [("seq_lens_sum", name, 3, None)]
    assert report.findings[0].message == "seq_lengths sum to 129 but the row has 128 tokens"


def test_loss_mask_of_another_length_and_long_row(sft, tmp_path):
    ds = copy(sft, tmp_path)
    rows = rows_of(ds, "train")
    rows[8]["assistant_masks"].append(1)
    rows[9]["input_ids"] = rows[9]["input_ids"] * 4
    rows[9]["assistant_masks"] = rows[9]["assistant_masks"] * 4
    rows[9]["seq_lengths"] = [len(rows[9]["input_ids"])]
    rewrite(ds, "train", 0, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train').name}"
    assert found(report) == [("row_too_long", name, 9, None), ("loss_mask_length", name, 8, None)]


# --- check 5: pretraining documents ------------------------------------------------------------


def test_missing_eos(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    rows = rows_of(ds, "train", 1)
    row = rows[6]
    (start, end), *_ = pieces(row)  # the first piece is followed by another: it ends a document
    assert len(row["seq_lengths"]) >= 2 and row["input_ids"][end - 1] == 0
    row["input_ids"][end - 1] = 65
    rewrite(ds, "train", 1, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train', 1).name}"
    assert found(report) == [("missing_eos", name, 6, end - 1)]
    assert report.findings[0].message == "piece 0 ends a document but its last token is 65, not EOS 0"


def test_eos_inside_a_piece_means_seq_lens_moved(pretrain, tmp_path):
    ds = copy(pretrain, tmp_path)
    rows = rows_of(ds, "train", 0)
    row = rows[10]
    assert len(row["seq_lengths"]) >= 3 and row["seq_lengths"][1] > 3
    row["seq_lengths"][0] += 2  # the boundary moves 2 tokens right: still sums to 128
    row["seq_lengths"][1] -= 2
    end = row["seq_lengths"][0]
    rewrite(ds, "train", 0, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train', 0).name}"
    assert found(report) == [("missing_eos", name, 10, end - 1), ("eos_inside_piece", name, 10, end - 3)]


def test_doubled_bos_in_pretraining(pretrain_bos, tmp_path):
    ds = copy(pretrain_bos, tmp_path)
    rows = rows_of(ds, "train")
    r = next(i for i, row in enumerate(rows) if len(row["seq_lengths"]) >= 2 and row["seq_lengths"][1] >= 3)
    row = rows[r]
    start, end = pieces(row)[1]  # a piece after the first starts a document: BOS first
    assert row["input_ids"][start] == 1
    row["input_ids"][start + 1] = 1
    rewrite(ds, "train", 0, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train').name}"
    assert found(report) == [("doubled_bos", name, r, start + 1)]
    assert report.findings[0].message == "piece 1 starts with BOS 1 twice"


def test_bos_inside_a_document(pretrain_bos, tmp_path):
    ds = copy(pretrain_bos, tmp_path)
    rows = rows_of(ds, "validation")
    start, end = pieces(rows[2])[0]
    middle = (start + end) // 2
    assert end - start > 4 and rows[2]["input_ids"][middle - 1] != 1
    rows[2]["input_ids"][middle] = 1  # BOS text cannot reach a document: split_special_tokens
    rewrite(ds, "validation", 0, rows)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("stray_bos", name, 2, middle)]
    assert report.findings[0].message == "BOS 1 in piece 0, not at its start"


# --- check 6: fine-tuning examples -----------------------------------------------------------


@pytest.mark.parametrize("shift", [1, -1])
def test_mask_shifted_by_one_position(sft, tmp_path, shift):
    ds = copy(sft, tmp_path)
    rows = rows_of(ds, "train")
    mask = rows[21]["assistant_masks"]
    rows[21]["assistant_masks"] = np.roll(mask, shift).tolist()
    rewrite(ds, "train", 0, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train').name}"
    if shift == 1:  # the stop token's target wraps round to the first position
        assert found(report) == [("target_at_start", name, 21, 0)]
    else:  # the targets end one token early: before the stop token
        n = len(mask)
        assert found(report) == [("last_target_not_stop", name, 21, n - 2)]
        assert report.findings[0].message.endswith(f"is id {rows[21]['input_ids'][n - 2]}; it must be its stop token (0, manifest sft.stop_token_ids)")


def test_lost_stop_token_target_in_a_packed_chat_row(chat, tmp_path):
    ds = copy(chat, tmp_path)
    rows = rows_of(ds, "train")
    row = rows[3]
    start, end = pieces(row)[2]
    ids, mask = np.asarray(row["input_ids"]), np.asarray(row["assistant_masks"])
    last = start + int(np.flatnonzero(mask[start:end])[-1])
    assert ids[last - 1 : last + 1].tolist() == [32007, 32000]  # <|end|> <|endoftext|> close the last assistant turn
    row["assistant_masks"][last - 1 : last + 1] = [0, 0]
    rewrite(ds, "train", 0, rows)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train').name}"
    before = start + int(np.flatnonzero(np.asarray(row["assistant_masks"])[start:end])[-1])
    assert found(report) == [("last_target_not_stop", name, 3, before)]
    assert report.findings[0].message.startswith(f"the last target of example 2 is id {ids[before]}; it must be its stop token (32007, 32000, manifest sft.stop_token_ids)")


def test_doubled_bos_in_a_chat_example(chat, tmp_path):
    ds = copy(chat, tmp_path)
    rows = rows_of(ds, "validation")
    start, _ = pieces(rows[0])[4]
    rows[0]["input_ids"][start : start + 2] = [1, 1]
    rewrite(ds, "validation", 0, rows)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("doubled_bos", name, 0, start + 1)]


def test_example_with_no_targets(sft, tmp_path):
    ds = copy(sft, tmp_path)
    rows = rows_of(ds, "validation")
    rows[7]["assistant_masks"] = [0] * len(rows[7]["assistant_masks"])
    rewrite(ds, "validation", 0, rows)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("no_target", name, 7, 0)]
    assert report.findings[0].message == f"example 0 ({len(rows[7]['input_ids'])} tokens) has no target token"


def test_target_in_padding(chat, tmp_path):
    ds = copy(chat, tmp_path)
    rows = rows_of(ds, "validation")
    assert rows[0]["num_pad"] > 0
    rows[0]["assistant_masks"][-1] = 1
    rewrite(ds, "validation", 0, rows)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("target_in_padding", name, 0, len(rows[0]["input_ids"]) - 1)]


# --- check 7: train / validation overlap ------------------------------------------------------


def test_train_validation_overlap_of_examples(sft, tmp_path):
    ds = copy(sft, tmp_path)
    train, validation = rows_of(ds, "train"), rows_of(ds, "validation")
    validation[11] = dict(train[40])
    rewrite(ds, "validation", 0, validation)
    report = validate_dataset(ds)
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert found(report) == [("split_overlap", name, 11, 0)]
    n = len(train[40]["input_ids"])
    assert report.findings[0].message == f"the same {n:,} tokens as train train/{shard_path(ds, 'train').name} row 40 position 0"


def test_train_validation_overlap_of_documents(pretrain, tmp_path):
    """A wrap document is found by content wherever the rows cut it: copy a validation row into
    train, and every whole document in it (EOS before and at its end) is in both splits."""
    ds = copy(pretrain, tmp_path)
    validation, train = rows_of(ds, "validation"), rows_of(ds, "train", 2)
    row = validation[3]
    assert len(row["seq_lengths"]) >= 3 and row["num_pad"] == 0
    train[5] = dict(row)
    rewrite(ds, "train", 2, train)
    report = validate_dataset(ds)
    whole = [a for k, (a, b) in enumerate(pieces(row)) if k >= 1 and row["input_ids"][b - 1] == 0]
    name = f"validation/{shard_path(ds, 'validation').name}"
    assert whole and found(report) == [("split_overlap", name, 3, a) for a in whole]


def test_bfd_pieces_of_split_documents_in_both_splits_are_a_note_not_a_finding(tmp_path):
    """bfd cuts long documents into pieces: different documents can end in the same short tail
    ("...\n" + EOS), so equal pieces in both splits do not prove a leak; validate says so in a note."""
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": str(RECIPES / "data" / "tiny_corpus.jsonl")}],
         "tokenizer": {"train": {"vocab_size": 600}}, "packing": {"mode": "bfd", "seq_len": 64}, "split": {"validation": 0.1}},
        base_dir=tmp_path,
    )
    manifest = run(recipe, tmp_path / "bfd", workers=1)
    assert sum(p["split_documents"] for p in manifest["packing"].values()) > 0
    report = validate_dataset(tmp_path / "bfd")
    assert report.ok and not found(report)
    assert any(note.startswith("split overlap: ") and "equal pieces can come from different documents" in note for note in report.notes)


def test_stop_tokens_without_a_recorded_list(tmp_path):
    """Manifests written before `sft.stop_token_ids` existed: a pair template's stop token is its
    EOS (the manifest reader fills it in); a chat template's end-of-turn tokens are not worked out
    again from the template (validate does not run the producer's code): the check is skipped with a note."""
    from dataprep.dataset.manifest import Manifest
    from dataprep.validate.contract import contract_of

    for recipe, expected in (("demo-sft", (0,)), ("chat", None)):
        out = tmp_path / recipe
        m = run(load_recipe(RECIPES / f"{recipe}.yaml", ["split.validation=0.5"]), out, workers=1)
        assert m["sft"]["stop_token_ids"] and m["rows"]
        del m["sft"]["stop_token_ids"], m["rows"]
        notes: list[str] = []
        contract = contract_of(Manifest.from_dict(m), notes)
        assert contract.stop_ids == expected
        assert bool(notes) == (expected is None)


# --- every task: long documents and a validation split ---------------------------------------


def _pairs(tmp_path: Path) -> Path:
    """Long examples: each tiny_corpus document (100 to 400 bytes) as a response."""
    rows = [json.loads(line) for line in (RECIPES / "data" / "tiny_corpus.jsonl").read_text().splitlines()]
    path = tmp_path / "long_pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about item {r['id']}.", "completion": r["text"]}) + "\n" for r in rows))
    return path


CORPUS = {"inputs": [{"path": str(RECIPES / "data" / "tiny_corpus.jsonl")}], "tokenizer": {"train": {"vocab_size": 600}},
          "split": {"validation": 0.2}}
PAIRS = {"tokenizer": {"path": str(RECIPES / "data" / "byte_tokenizer")}, "split": {"validation": 0.2},
         "template": {"name": "qa", "prompt": "Q: {prompt}\nA: ", "response": "{completion}"}}
LONG = {  # documents several rows long (seq_len 64 against 30 to 100 tokens a document), or examples of hundreds of tokens
    "clm-wrap": {**CORPUS, "task": "pretrain", "packing": {"mode": "wrap", "seq_len": 32}},
    "clm-bfd": {**CORPUS, "task": "pretrain", "packing": {"mode": "bfd", "seq_len": 32}},
    "mlm": {**CORPUS, "task": "pretrain", "objective": "mlm", "packing": {"seq_len": 32}, "mlm": {"masking": "static"}},
    "span_corruption": {**CORPUS, "task": "pretrain", "objective": "span_corruption", "packing": {"seq_len": 32}},
    "sft": {**PAIRS, "task": "sft", "max_length": 512, "packing": {"mode": "bfd", "seq_len": 1024}},
    "fewshot": {**PAIRS, "task": "fewshot", "max_length": 1024, "fewshot": {"k": 2}},
}


@pytest.mark.parametrize("name", list(LONG))
def test_long_documents_with_a_validation_split_validate_clean(tmp_path, name):
    """No task's dataset gets false findings from its own long documents: the pieces of a cut
    document (clm bfd, mlm) or the rows of a wrapped stream are not a leak between the splits."""
    spec = json.loads(json.dumps(LONG[name]))
    if name in ("sft", "fewshot"):
        spec["inputs"] = [{"path": str(_pairs(tmp_path))}]
    out = tmp_path / name
    m = run(recipe_from_dict(spec, base_dir=tmp_path), out, workers=1, progress=False)
    assert m["counts"]["documents"]["validation"] > 50 and m["counts"]["rows"]["validation"] > 0
    if m["task"] == "pretrain":
        assert m["rows"]["cut_documents"] and sum(p["split_documents"] for p in m["packing"].values()) > 100
    else:
        assert m["sft"]["target_tokens"] > 100 * m["counts"]["records_written"]  # long responses
    report = validate_dataset(out)
    assert report.findings == [] and report.ok, report.to_text()


def test_labels_column_of_output_labels_is_checked(tmp_path):
    """``output.labels: true``: a clean dataset passes; one label that is not its target id, and
    a labels list of the wrong length, are each found at their row (and position)."""
    out = tmp_path / "labels"
    run(load_recipe(RECIPES / "demo-sft.yaml", ["output.labels=true", "packing.mode=bfd", "packing.seq_len=128"]), out,
        workers=1, progress=False)
    assert validate_dataset(out).ok
    rows = rows_of(out, "train")
    row = rows[5]
    first = row["assistant_masks"].index(1)
    assert row["labels"][first] == row["input_ids"][first]
    row["labels"][first] = -100  # a target no longer trained
    rows[9]["labels"] = rows[9]["labels"][:-1]
    rewrite(out, "train", 0, rows)
    report = validate_dataset(out)
    name = f"train/{shard_path(out, 'train').name}"
    assert found(report) == [("labels_length", name, 9, None), ("labels_value", name, 5, first)]
