"""`validate` against the tokenizer files (check 9): the special roles derived again, the vocab
size, the files' digests, and the unknown tokens in the rows.

Datasets are built from tokenizers made in ``tests/test_special_tokens.py``: a T5-like Unigram
that writes its unknown token for ``{`` and ``}`` (so the unknown tokens are known from the corpus
alone), and a Qwen3-like byte BPE with no BOS. Each test corrupts a copy of the manifest or the
tokenizer files so that exactly the finding under test fires.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.validate import validate_dataset
from dataprep.dataset.paths import resolve
from dataprep.validate.check_tokenizer import unknown_tokens
from dataprep.dataset.manifest import Manifest

from .test_special_tokens import qwen3_like, t5_like
from .test_validate_dataset import copy, manifest, rewrite, rows_of, save_manifest, shard_path

UNK = 2  # the T5-like <unk>
TEXTS = [f"item {i}: when x is ready {{ print y }} done." if i % 3 else f"plain item {i}, no braces here." for i in range(60)]
BRACES = sum(t.count("{") + t.count("}") for t in TEXTS)  # each one is a separate unknown token


def _build(folder: Path, tokenizer: Path, texts: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": "corpus.jsonl"}], "tokenizer": {"path": str(tokenizer)},
         "packing": {"mode": "wrap", "seq_len": 32, "remainder": "pad"}, "split": {"validation": 0.25}},
        base_dir=folder,
    )
    out = folder / "out"
    run(recipe, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("t5")
    return _build(folder, t5_like(folder / "t5-tokenizer"), TEXTS)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qwen")
    return _build(folder, qwen3_like(folder / "qwen-tokenizer"), [f"<s>struck</s> line {i}" for i in range(20)])


def unknown_in_rows(ds: Path, split: str) -> int:
    """The independent recount: unknown ids in every row of the split, in plain Python."""
    shards = manifest(ds)["splits"][split]["shards"]
    return sum(row["input_ids"].count(UNK) for i in range(len(shards)) for row in rows_of(ds, split, i))


def with_tokenizer_copy(ds: Path, tmp_path: Path) -> Path:
    """Copy the tokenizer folder beside the dataset and point the manifest at the copy, as a dataset
    made before the tokenizer was copied into it (``saved_as`` null: the source files are checked)."""
    m = manifest(ds)
    source = Path(resolve(m, m["tokenizer"]["source"]))
    folder = tmp_path / "tokenizer-copy"
    shutil.copytree(source, folder)
    m["tokenizer"]["source"] = str(folder)
    m["tokenizer"]["saved_as"] = None
    for entry in m["tokenizer"]["files"]:
        entry["path"] = str(folder / Path(entry["path"]).name)
    save_manifest(ds, m)
    return folder


# --- clean ------------------------------------------------------------------------------------


def test_clean_dataset_counts_its_unknown_tokens(t5):
    report = validate_dataset(t5)
    assert report.ok, report.to_text()
    counted = {split: unknown_in_rows(t5, split) for split in ("train", "validation")}
    assert report.stats["unknown_tokens"] == counted and sum(counted.values()) == BRACES and all(counted.values())
    tokens = sum(report.stats["tokens"].values())
    assert report.stats["unknown_share"] == round(BRACES / tokens, 6)
    assert f"unknown_tokens {{train: {counted['train']:,}, validation: {counted['validation']:,}}}" in report.to_text()
    assert manifest(t5)["tokenizer"]["special_tokens"]["unk"] == {"token": "<unk>", "id": UNK, "source": "tokenizer_config"}


def test_no_unknown_token_no_count(qwen):
    report = validate_dataset(qwen)
    assert report.ok, report.to_text()
    assert "unknown_tokens" not in report.stats


def test_unknown_count_stated_in_the_manifest(t5, tmp_path):
    ds = copy(t5, tmp_path)
    m = manifest(ds)
    counted = {split: unknown_in_rows(t5, split) for split in ("train", "validation")}
    m["counts"]["unknown_tokens"] = dict(counted)
    save_manifest(ds, m)
    assert validate_dataset(ds).ok
    m["counts"]["unknown_tokens"]["validation"] = counted["validation"] + 1
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert [(f.kind, f.path, f.message) for f in report.findings] == [(
        "unknown_tokens", "counts.unknown_tokens.validation",
        f"the rows hold {counted['validation']:,} unknown tokens (id {UNK} '<unk>'), counts.unknown_tokens.validation "
        f"says {counted['validation'] + 1:,}",
    )]


# --- the tokenizer against the manifest ------------------------------------------------------------


def test_vocab_size_raised_to_hide_an_out_of_vocabulary_id(t5, tmp_path):
    ds = copy(t5, tmp_path)
    real = manifest(ds)["tokenizer"]["vocab_size"]
    rows = rows_of(ds, "train")
    rows[1]["input_ids"][5] = real  # one past the last id of the tokenizer
    rewrite(ds, "train", 0, rows)
    m = manifest(ds)
    m["tokenizer"]["vocab_size"] = real + 100  # the forgery that would hide it
    save_manifest(ds, m)
    report = validate_dataset(ds)
    name = f"train/{shard_path(ds, 'train').name}"
    assert [(f.kind, f.file, f.row, f.position, f.message) for f in report.findings] == [
        ("tokenizer_vocab_size", "manifest.json", None, None,
         f"tokenizer.vocab_size is {real + 100:,} but the tokenizer files hold {real:,} tokens"),
        ("token_out_of_vocab", name, 1, 5, f"id {real} is not in [0, vocab_size {real})"),
    ]


def test_a_bos_an_old_dataprep_guessed_is_caught(qwen, tmp_path):
    """Before issue 14, the Qwen3-like tokenizer got BOS <s> (an ordinary entry) by its name."""
    ds = copy(qwen, tmp_path)
    m = manifest(ds)
    assert "bos" not in m["tokenizer"]["special_tokens"]
    m["tokenizer"]["special_tokens"]["bos"] = {"token": "<s>", "id": 0, "source": "well_known_name"}
    m["tokenizer"]["special_ids"]["bos"] = 0
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert dict(report.counts) == {"tokenizer_special_tokens": 1}
    finding = report.findings[0]
    assert (finding.path, finding.message) == (
        "tokenizer.special_tokens.bos", "the manifest records BOS '<s>' (id 0), the tokenizer files give no BOS token"
    )
    del m["tokenizer"]["special_tokens"]  # a manifest from before special_tokens: its ids are checked
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert [(f.kind, f.path, f.message) for f in report.findings] == [
        ("tokenizer_special_tokens", "tokenizer.special_ids.bos", "the manifest records BOS id 0, the tokenizer files give no BOS token")
    ]


def test_special_ids_must_repeat_special_tokens(qwen, tmp_path):
    ds = copy(qwen, tmp_path)
    m = manifest(ds)
    m["tokenizer"]["special_ids"]["pad"] = m["tokenizer"]["special_ids"]["eos"]
    save_manifest(ds, m)
    report = validate_dataset(ds)
    eos, pad = m["tokenizer"]["special_tokens"]["eos"]["id"], m["tokenizer"]["special_tokens"]["pad"]["id"]
    assert [(f.kind, f.path, f.message) for f in report.findings if f.kind == "manifest_inconsistent"] == [
        ("manifest_inconsistent", "tokenizer.special_ids.pad",
         f"tokenizer.special_ids.pad is {eos}, tokenizer.special_tokens.pad says PAD '<|endoftext|>' (id {pad})")
    ]


def test_tokenizer_file_changed_after_the_run(t5, tmp_path):
    ds = copy(t5, tmp_path)
    folder = with_tokenizer_copy(ds, tmp_path)
    assert validate_dataset(ds).ok
    config = folder / "tokenizer_config.json"
    config.write_text(json.dumps({"eos_token": "<pad>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    report = validate_dataset(ds)
    kinds = [(f.kind, f.file, f.path) for f in report.findings if f.kind.startswith("tokenizer_")]
    index = [Path(e["path"]).name for e in manifest(ds)["tokenizer"]["files"]].index("tokenizer_config.json")
    assert kinds == [
        ("tokenizer_file_changed", str(config), f"tokenizer.files[{index}]"),
        ("tokenizer_special_tokens", "manifest.json", "tokenizer.special_tokens.eos"),
    ]
    assert report.findings[1].message == "the manifest records EOS '</s>' (id 1), the tokenizer files give EOS '<pad>' (id 0)"


def test_missing_tokenizer_files_skip_the_checks_with_a_note(t5, tmp_path):
    ds = copy(t5, tmp_path)
    folder = with_tokenizer_copy(ds, tmp_path)
    shutil.rmtree(folder)
    report = validate_dataset(ds)
    assert report.ok
    m = manifest(ds)
    first = resolve(m, m["tokenizer"]["files"][0]["path"])
    assert f"tokenizer checks skipped: {first} (tokenizer.files[0]) is not there" in report.notes
    assert sum(report.stats["unknown_tokens"].values()) == BRACES  # with the unk id the manifest records


# --- where the files are -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["run", "top-level"])
def test_relative_tokenizer_paths_are_found_through_the_recipe_folder(t5, tmp_path, layout):
    """``run.recipe_dir``, or the top-level ``recipe_dir`` of datasets made before it moved
    (dataprep.dataset.paths.resolve; its own tests are in test_manifest_portable.py)."""
    ds = copy(t5, tmp_path)
    folder = with_tokenizer_copy(ds, tmp_path)
    m = manifest(ds)
    if layout == "run":
        m.pop("recipe_dir", None)
        m["run"].update(recipe_dir=str(tmp_path), created_unix=m.pop("created_unix", m["run"].get("created_unix")))
    else:
        m["run"].pop("recipe_dir", None)
        m.update(recipe_dir=str(tmp_path), created_unix=m["run"].pop("created_unix", m.get("created_unix")))
    m["tokenizer"]["source"] = folder.name
    for entry in m["tokenizer"]["files"]:
        entry["path"] = f"{folder.name}/{Path(entry['path']).name}"
    save_manifest(ds, m)
    report = validate_dataset(ds)
    assert report.ok and not [n for n in report.notes if n.startswith("tokenizer checks skipped")]
    (folder / "tokenizer_config.json").write_text("{}")
    assert "tokenizer_file_changed" in validate_dataset(ds).counts


def test_a_dropped_tail_may_hold_unknown_tokens_the_manifest_counted(t5):
    """The run counts unknown tokens before packing; wrap with `remainder: drop` may drop some."""
    d = manifest(t5)
    assert d["tokenizer"]["special_tokens"]["unk"] == {"token": "<unk>", "id": UNK, "source": d["tokenizer"]["special_tokens"]["unk"]["source"]}
    d["counts"]["unknown_tokens"] = {"train": 7, "validation": 2}
    d["packing"]["train"]["dropped_tokens"], d["packing"]["validation"]["dropped_tokens"] = 3, 0
    m = Manifest.from_dict(d)
    stats, findings = unknown_tokens(m, {"train": 5, "validation": 2}, {"train": 1000, "validation": 200}, UNK)
    assert stats == {"unknown_tokens": {"train": 5, "validation": 2}, "unknown_share": 0.005833} and findings == []
    _, findings = unknown_tokens(m, {"train": 3, "validation": 2}, {"train": 1000, "validation": 200}, UNK)
    assert [(f.path, f.message) for f in findings] == [(
        "counts.unknown_tokens.train",
        "the rows hold 3 unknown tokens (id 2 '<unk>'), counts.unknown_tokens.train says 7 "
        "(3 tokens of the split were dropped, which may hold up to that many)",
    )]


def test_a_saved_tokenizer_is_checked_by_its_fingerprint(tmp_path):
    """demo-pretrain trains its tokenizer and saves it in the dataset (tokenizer.saved_as)."""
    from dataprep.recipe import load_recipe

    from .conftest import RECIPES

    out = tmp_path / "out"
    run(load_recipe(RECIPES / "demo-pretrain.yaml"), out, workers=1, progress=False)
    m = manifest(out)
    assert m["tokenizer"]["saved_as"] == "tokenizer" and m["tokenizer"]["special_tokens"] == {
        "eos": {"token": "<|endoftext|>", "id": 0, "source": "trained"},
        "pad": {"token": "<|endoftext|>", "id": 0, "source": "trained"},
    }
    assert validate_dataset(out).ok
    config = out / "tokenizer" / "tokenizer_config.json"
    original = config.read_text()
    config.write_text(json.dumps({**json.loads(original), "bos_token": "<|endoftext|>"}))
    report = validate_dataset(out)  # the config is not in the fingerprint: its roles are compared
    assert [(f.kind, f.path, f.message) for f in report.findings] == [(
        "tokenizer_special_tokens", "tokenizer.special_tokens.bos",
        "the manifest records no BOS token, the tokenizer files give BOS '<|endoftext|>' (id 0)",
    )]
    config.write_text(original)
    saved = json.loads((out / "tokenizer" / "tokenizer.json").read_text())
    saved["added_tokens"].append({"id": m["tokenizer"]["vocab_size"], "content": "<extra>", "single_word": False,
                                  "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    (out / "tokenizer" / "tokenizer.json").write_text(json.dumps(saved))
    report = validate_dataset(out)
    assert [(f.kind, f.path) for f in report.findings] == [
        ("tokenizer_file_changed", "tokenizer.fingerprint"),
        ("tokenizer_vocab_size", "tokenizer.vocab_size"),
    ]
