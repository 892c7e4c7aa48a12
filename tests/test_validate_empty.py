"""validate reports an empty dataset or an empty split the recipe asks for (issue 14), unless the
recorded recipe says ``allow_empty: true``.

``run`` refuses to write such a dataset, so each one here is built with ``allow_empty: true`` and
its manifest's recipe then rewritten to ``allow_empty: false`` (or to an older manifest without
the key), with ``recipe_hash`` recomputed so that the only finding is the empty output.
Checked: without ``iter_empty`` in ``iter_consistency`` every test here but the one expecting no
finding fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict, recipe_hash
from dataprep.validate import validate_dataset

from .conftest import DATA

GPT2 = DATA / "tokenizers" / "gpt2"


def build(tmp_path: Path, texts: list[str], **sections) -> Path:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    data = {"task": "pretrain", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)}, "allow_empty": True}
    data.update(sections)
    out = tmp_path / "out"
    run(recipe_from_dict(data, base_dir=tmp_path), out, workers=1)
    return out


def disallow(out: Path, how: str) -> None:
    """Record the recipe as one without ``allow_empty`` (``false``, or an older manifest without the key)."""
    path = out / C.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if how == "false":
        manifest["recipe"]["allow_empty"] = False
    else:
        del manifest["recipe"]["allow_empty"]
    manifest["recipe_hash"] = recipe_hash(manifest["recipe"])
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def kinds(out: Path) -> list[tuple[str, str | None]]:
    return [(f.kind, f.split) for f in validate_dataset(out).findings]


@pytest.mark.parametrize("how", ["false", "absent"])
def test_a_dataset_with_no_row_is_a_finding_unless_allowed(tmp_path, how):
    out = build(tmp_path, ["", "   ", "a"], filter={"min_chars": 2}, packing={"seq_len": 8})
    assert validate_dataset(out).ok  # allow_empty: true, as recorded
    disallow(out, how)
    report = validate_dataset(out)
    assert [f.kind for f in report.findings] == ["empty_dataset"] and report.counts == {"empty_dataset": 1}
    finding = report.findings[0]
    assert "no row: 3 records read, 0 written (dropped: empty 2, too_short 1)" in finding.message
    assert "allow_empty: true" in finding.expected and finding.file == C.MANIFEST_FILE


def test_an_empty_validation_split_is_a_finding_when_the_recipe_asks_for_one(tmp_path):
    texts = ["the first document", "a second one", "and a third"]
    out = build(tmp_path, texts, split={"validation": 0.01}, packing={"seq_len": 4, "remainder": "pad"})
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    assert manifest["counts"]["documents"] == {"train": 3, "validation": 0}  # the setup: validation is empty
    assert validate_dataset(out).ok
    disallow(out, "false")
    report = validate_dataset(out)
    assert kinds(out) == [("empty_split", "validation")]
    finding = report.findings[0]
    assert finding.message == "the validation split has 0 rows from 0 documents, and the recipe asks for it (split.validation is 0.01)"
    assert finding.path == "splits.validation" and "allow_empty: true" in finding.expected


def test_no_validation_split_asked_for_is_no_finding(tmp_path):
    out = build(tmp_path, ["the first document", "a second one"], split={"validation": 0.0}, packing={"seq_len": 4, "remainder": "pad"})
    disallow(out, "false")
    assert validate_dataset(out).ok


def test_a_split_whose_documents_all_fell_in_the_wrap_remainder_is_a_finding(tmp_path):
    # 3 short documents, seq_len 64, remainder drop: 3 documents in train, no row
    out = build(tmp_path, ["one two", "three", "four five six"], split={"validation": 0.0}, packing={"seq_len": 64, "remainder": "drop"})
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    assert manifest["counts"]["documents"]["train"] == 3 and manifest["counts"]["rows"]["train"] == 0
    assert validate_dataset(out).ok
    disallow(out, "false")
    report = validate_dataset(out)
    # no row at all: one finding for the dataset, not one per split
    assert [f.kind for f in report.findings] == ["empty_dataset"]
    assert "no row: 3 records read, 3 written (dropped: none)" in report.findings[0].message


def test_an_empty_train_split_beside_a_full_validation_split_is_a_finding(tmp_path):
    # split.validation 1: every document goes to validation, train is empty
    out = build(tmp_path, ["one two", "three", "four five six"], split={"validation": 1.0}, packing={"seq_len": 4, "remainder": "pad"})
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    assert manifest["counts"]["documents"] == {"train": 0, "validation": 3}
    assert validate_dataset(out).ok
    disallow(out, "false")
    assert kinds(out) == [("empty_split", "train")]
    assert "(train is always wanted)" in validate_dataset(out).findings[0].message
