"""`--recheck-sources`: sampled source records, re-made with the recipe, are found in the rows;
an edited source or a swapped tokenizer makes the dataset stale, and says where."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dataprep.pipeline import run
from dataprep.recipe import load_recipe
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES


def small_sft(folder: Path, records: int = 300) -> Path:
    """demo-sft over its first ``records`` records and a copy of its tokenizer, all under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (RECIPES / "data" / "sft_tasks.jsonl").read_text().splitlines()[:records]
    (folder / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copytree(RECIPES / "data" / "byte_tokenizer", folder / "tok")
    recipe = yaml.safe_load((RECIPES / "demo-sft.yaml").read_text())
    recipe["inputs"] = [{"path": "tasks.jsonl"}]
    recipe["tokenizer"] = {"path": "tok"}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = folder / "out"
    run(load_recipe(folder / "recipe.yaml"), out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return small_sft(tmp_path_factory.mktemp("recheck"))


def test_recheck_finds_every_sampled_record(built):
    report = validate_dataset(built, recheck=120, seed=3)
    assert report.ok, report.to_text()
    assert report.stats["recheck"] == {"sampled": 120}


@pytest.mark.parametrize("name", ["demo-pretrain", "chat", "classification"])
def test_recheck_on_shipped_recipes(tmp_path, name):
    out = tmp_path / name
    run(load_recipe(RECIPES / f"{name}.yaml"), out, workers=1, progress=False)
    report = validate_dataset(out, recheck=40)
    assert report.ok, report.to_text()
    assert report.stats["recheck"]["sampled"] == 40


def test_an_edited_source_record_is_stale(tmp_path):
    folder = tmp_path / "small"
    small_sft(folder)
    source = folder / "tasks.jsonl"
    lines = source.read_text().splitlines()
    record = json.loads(lines[4])
    record["completion"] = "qqqq-edited"
    lines[4] = json.dumps(record)
    source.write_text("\n".join(lines) + "\n")
    report = validate_dataset(folder / "out", recheck=300)
    assert [(f.kind, f.file, f.line) for f in report.findings] == [
        ("source_changed", str(source), None),
        ("recheck_tokens", str(source), "line 5"),
    ]
    assert "the dataset is stale" in report.findings[1].message


def test_a_swapped_tokenizer_is_stale(tmp_path):
    folder = tmp_path / "small"
    small_sft(folder, records=50)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / "tok" / name).unlink()
    for name in ("vocab.json", "merges.txt"):  # GPT-2 where the byte tokenizer was
        shutil.copy(DATA / "tokenizers" / "gpt2" / name, folder / "tok" / name)
    report = validate_dataset(folder / "out", recheck=10)
    kinds = [f.kind for f in report.findings]
    assert kinds[0] == "tokenizer_changed" and report.findings[0].path == "tokenizer.fingerprint"
    assert kinds[1:] == ["recheck_tokens"] * 10
