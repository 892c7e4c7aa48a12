"""Language identification and the quality rules as recipe options (#19): `filter.languages` and
`filter.quality` run in every pretraining worker after the length rules, and every document they drop
is counted in the manifest under its own reason. What each rule decides is proven in
tests/test_language.py and tests/test_quality_filters.py; here, that a recipe gets exactly that."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.build.run import run
from dataprep.dataset.manifest import Manifest
from dataprep.errors import RecipeError
from dataprep.recipe import recipe_from_dict
from dataprep.text.normalize import normalize_array

from .conftest import DATA, RECIPES, require_shared

pytest.importorskip("fasttext")  # the `language` extra (`make test` installs it)


def recipe(path: Path, **filter_options):
    return recipe_from_dict({"name": "filters", "task": "pretrain", "inputs": [{"path": str(path)}],
                             "tokenizer": {"path": str(RECIPES / "data" / "byte_tokenizer")},
                             "packing": {"seq_len": 512}, "filter": filter_options}, base_dir=Path.cwd())


def test_languages_keep_the_named_ones_and_count_the_rest(tmp_path):
    require_shared()
    xquad = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"
    by_language = Counter(json.loads(line)["lang"] for line in xquad.read_text().splitlines())
    run(recipe(xquad, languages=["en", "de"]), tmp_path / "out", workers=2, progress=False)
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.counts.records_written == by_language["en"] + by_language["de"] == 480
    assert manifest.counts.dropped == {"language": sum(by_language.values()) - 480}
    assert Manifest.load(tmp_path / "out").recipe["filter"]["language_threshold"] == 0.65  # the default, recorded


def test_quality_rules_drop_what_the_module_drops_and_c4_rewrites_the_kept(tmp_path):
    require_shared()
    from dataprep.text.quality import apply_quality, quality_filters

    c4 = DATA / "corpora" / "c4_demo.jsonl"
    options = {"gopher_repetition": True, "gopher_quality": True, "c4": {"min_sentences": 5}, "fineweb": True}
    r = recipe(c4, quality=options, dedup="none")
    run(r, tmp_path / "out", workers=2, progress=False)
    manifest = Manifest.load(tmp_path / "out")
    texts = normalize_array(pa.array([json.loads(line)["text"] for line in c4.read_text().splitlines()]), r.normalize)
    expected: Counter = Counter()
    _, kept = apply_quality(texts, quality_filters(options), expected)
    assert sum(expected.values()) > 30 and expected["c4_too_few_sentences"] > 0  # a real share is dropped
    assert manifest.counts.dropped == dict(expected)
    assert manifest.counts.records_written == len(kept)
    # the rewritten documents are what was tokenized: a byte each, plus EOS (wrap's last partial row dropped)
    written = manifest.counts.tokens + manifest.counts.remainder_tokens_dropped
    assert written == sum(len(t.encode("utf-8")) for t in kept.to_pylist()) + len(kept)


def test_an_unknown_language_or_quality_option_is_a_recipe_error_naming_it():
    with pytest.raises(RecipeError, match=r"filter.languages\[0\]: 'english' is not one of"):
        recipe(Path("x.txt"), languages=["english"])
    with pytest.raises(RecipeError, match="min_sentence"):
        recipe(Path("x.txt"), quality={"c4": {"min_sentence": 2}})


def test_personal_data_is_redacted_in_the_shards_and_counted(tmp_path):
    require_shared()
    from dataprep.text.pii import redact

    from .conftest import read_split

    c4 = DATA / "corpora" / "c4_demo.jsonl"
    r = recipe_from_dict({"name": "pii", "task": "pretrain", "inputs": [{"path": str(c4)}],
                          "tokenizer": {"path": str(RECIPES / "data" / "byte_tokenizer")},
                          "packing": {"seq_len": 512, "remainder": "pad"},
                          "normalize": {"pii": {"email": "redact", "ip": "redact", "phone": "redact"}},
                          "filter": {"dedup": "none"}}, base_dir=Path.cwd())
    assert r.normalize.pii == ("email", "ip", "phone")
    run(r, tmp_path / "out", workers=2, progress=False)
    manifest = Manifest.load(tmp_path / "out")
    texts = [json.loads(line)["text"] for line in c4.read_text().splitlines()]
    _, expected = redact(normalize_array(pa.array(texts), r.normalize), r.normalize.pii)
    assert manifest.counts.records_written == len(texts)  # every c4_demo document is kept: all its redactions count
    assert expected["email"] > 0 and expected["phone"] > 0
    assert manifest.counts.redacted == {kind: expected[kind] for kind in r.normalize.pii}
    from tokenizers import Tokenizer

    byte_level = Tokenizer.from_file(str(RECIPES / "data" / "byte_tokenizer" / "tokenizer.json"))
    # each split's rows in order are its token stream (wrap): decoded whole, a placeholder cut by a row end is whole
    written = "".join(byte_level.decode([t for row in read_split(tmp_path / "out", split).column("input_ids").to_pylist()
                                         for t in row]) for split in ("train", "validation"))
    for kind, placeholder in (("email", "<EMAIL>"), ("ip", "<IP>"), ("phone", "<PHONE>")):
        assert written.count(placeholder) == expected[kind] + sum(t.count(placeholder) for t in texts)


def test_personal_data_redaction_is_refused_where_no_worker_does_it():
    with pytest.raises(RecipeError, match="normalize.pii: personal-data redaction is for task: pretrain"):
        recipe_from_dict({"task": "sft", "template": "chat", "inputs": [{"path": "x.jsonl"}], "tokenizer": {"path": "t"},
                          "normalize": {"pii": {"email": "redact"}}}, base_dir=Path.cwd())
