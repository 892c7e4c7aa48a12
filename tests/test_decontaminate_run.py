"""`decontaminate:` in a run (#19 item 6): the documents (pretraining) and rendered examples (fine-tuning)
that share a 13-word n-gram with an evaluation item are dropped as `contaminated`, counted per set in the
manifest, and named with their item in `contamination.jsonl`; the same for any worker count and on Ray
(tests/test_engine_ray.py). What the
index matches is proven in tests/test_decontaminate.py; here, that a recipe gets exactly that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.build.run import run
from dataprep.errors import RecipeError
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES
from .test_engine_ray import shard_hashes

GPT2 = DATA / "tokenizers" / "gpt2"
C4 = DATA / "corpora" / "c4_demo.jsonl"
DIALOGSUM = DATA / "pairs" / "summarization" / "dialogsum_dev.jsonl"
PLANTED = (3, 17, 40)  # DialogSum records whose dialogue is pasted into a C4 page


def corpus(folder: Path) -> Path:
    """C4's 300 pages, then three more: C4 pages with a DialogSum dialogue pasted in the middle."""
    pages = [json.loads(line)["text"] for line in C4.read_text(encoding="utf-8").splitlines()]
    dialogues = [json.loads(line) for line in DIALOGSUM.read_text(encoding="utf-8").splitlines()]
    planted = [pages[i][:300] + "\n" + dialogues[k]["dialogue"] + "\n" + pages[i][300:] for i, k in enumerate(PLANTED)]
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in pages + planted), encoding="utf-8")
    return path


def pretrain(folder: Path, **extra):
    return recipe_from_dict({
        "task": "pretrain", "inputs": [{"path": str(corpus(folder))}],
        "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_eos": True},
        "packing": {"seq_len": 256}, "output": {"chunk_records": 32},
        "decontaminate": [{"path": str(DIALOGSUM), "fields": ["dialogue", "summary"], "id_field": "fname"}], **extra,
    }, base_dir=folder)


def test_planted_dialogues_are_dropped_and_named(tmp_path):
    r = pretrain(tmp_path)
    one, two = run(r, tmp_path / "one", workers=1), run(r, tmp_path / "two", workers=2)
    assert shard_hashes(one) == shard_hashes(two)
    assert one["counts"]["dropped"]["contaminated"] == 3 and one["counts"]["records_written"] == 300
    found = [json.loads(line) for line in (tmp_path / "one" / "contamination.jsonl").read_text(encoding="utf-8").splitlines()]
    ids = [json.loads(line)["fname"] for line in DIALOGSUM.read_text(encoding="utf-8").splitlines()]
    assert [(f["set"], f["item"], f["document"].rsplit(" line ", 1)[1]) for f in found] == [
        ("dialogsum_dev", ids[k], str(301 + i)) for i, k in enumerate(PLANTED)]
    assert (tmp_path / "two" / "contamination.jsonl").read_bytes() == (tmp_path / "one" / "contamination.jsonl").read_bytes()
    section = one["decontamination"]
    assert section["ngram"] == 13 == section["min_words"] and section["file"] == "contamination.jsonl"
    assert section["sets"]["dialogsum_dev"]["documents"] == 3 and section["sets"]["dialogsum_dev"]["items"] > 400
    assert [e["document"].rsplit(" line ", 1)[1] for e in one["counts"]["dropped_examples"]["contaminated"]] == ["301", "302", "303"]
    assert validate_dataset(tmp_path / "one").ok
    # the proof can fail: without the dialogues' field, nothing of them is indexed and nothing is dropped
    summaries = pretrain(tmp_path, decontaminate=[{"path": str(DIALOGSUM), "fields": ["summary"]}])
    assert "contaminated" not in run(summaries, tmp_path / "summaries", workers=1)["counts"]["dropped"]


def test_a_datasets_validation_split_is_kept_out_of_a_fine_tuning_recipe(tmp_path):
    """dialogsum.yaml built once; a second recipe over the same file (no validation split), decontaminated
    against the first dataset's validation split (decoded from its rows), drops those examples from training."""
    first = run(load_recipe(RECIPES / "dialogsum.yaml"), tmp_path / "first", workers=1)
    held_out = first["counts"]["documents"]["validation"]
    r = load_recipe(RECIPES / "dialogsum.yaml", ["split.validation=0"])
    data = {**r.resolved, "decontaminate": [{"path": str(tmp_path / "first"), "name": "first"}]}
    second = run(recipe_from_dict(data, base_dir=r.base_dir), tmp_path / "second", workers=1)
    dropped = second["counts"]["dropped"]["contaminated"]
    assert dropped == second["decontamination"]["sets"]["first"]["documents"]
    # every held-out example, and the few training examples that share a 13-gram with one (4 in DialogSum dev)
    assert held_out <= dropped <= held_out * 1.1
    assert second["counts"]["documents"]["train"] == first["counts"]["records_written"] - dropped


def test_decontaminate_mistakes(tmp_path):
    with pytest.raises(RecipeError, match="decontamination is for pretraining and fine-tuning"):
        recipe_from_dict({"task": "preference", "inputs": [{"path": "a"}], "tokenizer": {"path": str(GPT2)},
                          "decontaminate": [{"path": "x.jsonl"}]}, base_dir=tmp_path)
    plain = pretrain(tmp_path)
    assert "decontamination" not in recipe_from_dict({"task": "pretrain", "inputs": [{"path": "a"}],
                                                      "tokenizer": {"path": str(GPT2)}}, base_dir=tmp_path).resolved
    assert plain.resolved["decontaminate"][0]["split"] == "validation"  # defaults recorded


def test_the_report_shows_each_set(tmp_path):
    from dataprep.dataset.reader import open_dataset
    from dataprep.look import report

    m = run(pretrain(tmp_path), tmp_path / "out", workers=1)
    s = report.compute(open_dataset(tmp_path / "out")).summary
    head, rows = report.filter_tables(s["filters"])[report.DECONTAMINATION]
    counts = m["decontamination"]["sets"]["dialogsum_dev"]
    assert head[3] == "13-grams" and rows == [["dialogsum_dev", f"{counts['items']:,}", f"{counts['short_items']:,}",
                                              f"{counts['ngrams']:,}", "3"]]
    assert report.DECONTAMINATION in report.summary_text(s)
