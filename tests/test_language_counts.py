"""Per-language documents and tokens (`counts.languages`, #19 item 4): summed over exactly the documents
written, so duplicates never count and a mixture's repeats count each time; absent without
`filter.languages`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.text.language_stats import language_stats, per_language
from dataprep.text.normalize import normalize_array

from .conftest import DATA, RECIPES, require_shared

pytest.importorskip("fasttext")  # the `language` extra (`make test` installs it)

XQUAD = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"
BYTES = RECIPES / "data" / "byte_tokenizer"


def recipe(tmp_path: Path, inputs: list[dict], **filter_options):
    return recipe_from_dict({"task": "pretrain", "inputs": inputs, "tokenizer": {"path": str(BYTES)},
                             "packing": {"seq_len": 512, "remainder": "pad"}, "split": {"validation": 0},
                             "filter": filter_options}, base_dir=tmp_path)


def test_stats_sum_to_per_language_counts():
    stats = language_stats(["en", "de", "en"], [3, 5, 7])
    assert {k: v.tolist() for k, v in stats.items()} == {
        "language_documents:de": [0, 1, 0], "language_tokens:de": [0, 5, 0],
        "language_documents:en": [1, 0, 1], "language_tokens:en": [3, 0, 7]}
    assert per_language({k: int(v.sum()) for k, v in stats.items()}) == {"en": {"documents": 2, "tokens": 10},
                                                                       "de": {"documents": 1, "tokens": 5}}


def test_xquad_languages_and_their_tokens(tmp_path):
    """XQuAD's 10 languages filtered to en + de, with each paragraph of the file twice (the copy dropped
    as a duplicate): 240 documents each, their tokens the written content tokens (bytes + EOS); a mixture
    reading German twice counts it twice."""
    require_shared()
    lines = XQUAD.read_text(encoding="utf-8").splitlines()
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text("\n".join(lines + lines[:50]) + "\n", encoding="utf-8")
    r = recipe(tmp_path, [{"path": str(doubled)}], languages=["en", "de"])
    m = run(r, tmp_path / "out", workers=2)
    by_language = Counter(json.loads(line)["lang"] for line in lines)
    languages = m["counts"]["languages"]
    assert {code: v["documents"] for code, v in languages.items()} == {"en": by_language["en"], "de": by_language["de"]}
    assert sum(v["tokens"] for v in languages.values()) == m["counts"]["tokens"]  # padded remainder: every token written
    german = normalize_array(pa.array([json.loads(line)["text"] for line in lines if json.loads(line)["lang"] == "de"]), r.normalize)
    assert languages["de"]["tokens"] == sum(len(t.encode("utf-8")) + 1 for t in german.to_pylist())  # a byte each + EOS

    split = tmp_path / "de.jsonl"
    split.write_text("\n".join(line for line in lines if json.loads(line)["lang"] == "de") + "\n", encoding="utf-8")
    en = tmp_path / "en.jsonl"
    en.write_text("\n".join(line for line in lines if json.loads(line)["lang"] == "en") + "\n", encoding="utf-8")
    mixed = run(recipe(tmp_path, [{"path": str(en)}, {"path": str(split), "epochs": 2}], languages=["en", "de"]),
                tmp_path / "mixed", workers=1)["counts"]["languages"]
    assert mixed == {"de": {"documents": 2 * languages["de"]["documents"], "tokens": 2 * languages["de"]["tokens"]},
                     "en": languages["en"]}
    assert "languages" not in run(recipe(tmp_path, [{"path": str(en)}]), tmp_path / "plain", workers=1)["counts"]
