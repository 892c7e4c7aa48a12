"""`normalize.fix_mojibake` (#19 item 3): real text made into mojibake (its UTF-8 read as Windows-1252)
comes back byte for byte, clean text in any script is left alone, and each repaired document is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.build.run import run
from dataprep.errors import RecipeError
from dataprep.recipe import recipe_from_dict
from dataprep.text.mojibake import fix_mojibake

from .conftest import DATA
from .test_engine_ray import shard_hashes

pytest.importorskip("ftfy")  # the `mojibake` extra (`make test` installs it)

GPT2 = DATA / "tokenizers" / "gpt2"
XQUAD = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"
C4 = DATA / "corpora" / "c4_demo.jsonl"


def garbled(text: str) -> str | None:
    """``text``'s UTF-8 bytes read as Windows-1252 (None where a byte has no character there)."""
    try:
        return text.encode("utf-8").decode("cp1252")
    except UnicodeDecodeError:
        return None


def originals() -> list[str]:
    """Real documents with non-ASCII text whose mojibake Windows-1252 can spell: C4 pages (curly quotes,
    dashes) and German and Spanish XQuAD paragraphs."""
    c4 = [json.loads(line)["text"] for line in C4.read_text(encoding="utf-8").splitlines()]
    xquad = [json.loads(line) for line in XQUAD.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in c4 if not t.isascii()][:30] + [r["text"] for r in xquad if r["lang"] in ("de", "es")][:30]
    return [t for t in texts if garbled(t) is not None]


def test_garbled_text_comes_back_and_clean_text_is_left_alone():
    texts = originals()
    assert len(texts) >= 40
    fixed, changed = fix_mojibake(pa.array([garbled(t) for t in texts]))
    assert fixed.to_pylist() == texts and changed.tolist() == [1] * len(texts)
    clean = [json.loads(line)["text"] for line in XQUAD.read_text(encoding="utf-8").splitlines()[::24]]  # 10 languages
    clean += ["plain ASCII", "naïve café – “quoted” ½", None]
    same, changed = fix_mojibake(pa.array(clean))
    # one XQuAD paragraph (Turkish) really holds mojibake: "1â\x81„2" is the fraction slash of "1⁄2" read as
    # Windows-1252; it is repaired, and nothing else changes
    assert changed.nonzero()[0].tolist() == [72] and "1â\x81„2" in clean[72]
    assert same.to_pylist() == clean[:72] + [clean[72].replace("1â\x81„2", "1⁄2")] + clean[73:]


def recipe(tmp_path: Path, path: Path, **normalize):
    return recipe_from_dict({"task": "pretrain", "inputs": [{"path": str(path)}], "normalize": normalize,
                             "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
                             "packing": {"seq_len": 256}, "split": {"validation": 0}}, base_dir=tmp_path)


def test_a_garbled_corpus_builds_the_shards_of_the_clean_one(tmp_path):
    texts = originals()
    clean, bad = tmp_path / "clean.jsonl", tmp_path / "garbled.jsonl"
    clean.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    bad.write_text("".join(json.dumps({"text": garbled(t)}) + "\n" for t in texts), encoding="utf-8")
    expected = run(recipe(tmp_path, clean), tmp_path / "clean", workers=1)
    repaired = run(recipe(tmp_path, bad, fix_mojibake=True), tmp_path / "repaired", workers=1)
    assert shard_hashes(repaired) == shard_hashes(expected)
    assert repaired["counts"]["mojibake_fixed"] == len(texts) and "mojibake_fixed" not in expected["counts"]
    assert shard_hashes(run(recipe(tmp_path, bad), tmp_path / "left", workers=1)) != shard_hashes(expected)  # can fail
    from dataprep.dataset.reader import open_dataset
    from dataprep.look import report

    text = report.summary_text(report.compute(open_dataset(tmp_path / "repaired")).summary)
    assert f"mojibake fixed  {len(texts)} documents written" in text


def test_only_for_pretraining(tmp_path):
    with pytest.raises(RecipeError, match="mojibake repair is for task: pretrain"):
        recipe_from_dict({"task": "sft", "inputs": [{"path": "a"}], "tokenizer": {"path": str(GPT2)}, "template": "alpaca",
                          "normalize": {"fix_mojibake": True}}, base_dir=tmp_path)
    assert "fix_mojibake" not in recipe(tmp_path, Path("a.jsonl")).resolved["normalize"]  # other recipes hash as before
