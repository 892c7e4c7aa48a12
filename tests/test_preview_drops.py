"""`inspect --recipe` on a pretraining recipe: every record `run` would drop, in order, with its reason
and the rule's detail; the reasons counted over the preview equal a real run's manifest."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from click.testing import CliRunner

from dataprep.build.run import run
from dataprep.cli import cli
from dataprep.dataset.reader import open_dataset
from dataprep.look import preview
from dataprep.recipe import load_recipe

from .conftest import DATA

GPT2 = DATA / "tokenizers" / "gpt2"
FILTER = {
    "min_chars": 200, "max_chars": 12000, "min_words": 20, "dedup": "minhash", "languages": ["en"],
    "quality": {"gopher_quality": True, "gopher_repetition": True, "fineweb": True},
}
LONG_WORDS = " ".join(["Supercalifragilisticexpialidocious"] * 10) + "."  # 350 characters, 10 words


def _planted() -> list[str]:
    """The first 30 C4 documents with planted drops: an exact copy of document 2, document 3 with one
    word changed (a near-duplicate), two German XQuAD paragraphs, a blank record, ten long words."""
    c4 = [json.loads(line)["text"] for line in (DATA / "corpora" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()[:30]]
    xquad = (json.loads(line) for line in (DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl").open(encoding="utf-8"))
    german = [r["text"] for r in xquad if r["lang"] == "de"][:2]
    near = c4[2].replace("happy", "glad", 1)
    assert near != c4[2]
    return c4[:5] + [c4[1]] + c4[5:8] + [near] + c4[8:12] + german + c4[12:20] + ["   "] + c4[20:22] + [LONG_WORDS] + c4[22:]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted corpus, a recipe running every filter on it, and that recipe's run."""
    folder = tmp_path_factory.mktemp("planted")
    texts = _planted()
    (folder / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    recipe = {
        "task": "pretrain",
        "inputs": [{"path": "docs.jsonl"}],
        "filter": FILTER,
        "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_eos": True},
        "packing": {"mode": "wrap", "seq_len": 256},
        "split": {"validation": 0.1},
    }
    (folder / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = folder / "out"
    run(load_recipe(folder / "r.yaml"), out, workers=1)
    return folder, len(texts), open_dataset(out).manifest


def test_preview_drops_what_the_run_dropped(planted):
    folder, n, manifest = planted
    rows = preview.rows_from_recipe(load_recipe(folder / "r.yaml"), head=n)
    assert len(rows) == n  # every record shown, kept or dropped, in order
    assert preview.dropped_reasons(rows) == Counter(manifest.counts.dropped)
    assert sum(1 for row in rows if len(row.ids)) == manifest.counts.records_written
    # every planted kind is there: a preview that missed one kind would count differently
    assert {"duplicate", "near_duplicate", "language", "empty", "too_few_words", "too_long", "too_short"} <= set(manifest.counts.dropped)
    assert any(reason.startswith("gopher_") for reason in manifest.counts.dropped)


def test_a_preview_without_the_runs_dedup_disagrees_with_its_manifest(planted):
    """The comparison above can fail: judged with exact dedup only, the near-duplicate is kept."""
    folder, n, manifest = planted
    rows = preview.rows_from_recipe(load_recipe(folder / "r.yaml", ["filter.dedup=exact"]), head=n)
    assert preview.dropped_reasons(rows) != Counter(manifest.counts.dropped)
    assert preview.dropped_reasons(rows) == Counter(manifest.counts.dropped) - Counter({"near_duplicate": 1})


def test_each_drop_says_why_and_shows_the_text(planted):
    folder, n, _ = planted
    rows = {row.title.split(" line ")[1]: row.notes for row in preview.rows_from_recipe(load_recipe(folder / "r.yaml"), head=n)}
    assert rows["6"][0] == "dropped: duplicate of docs.jsonl line 2"
    assert rows["10"][0].startswith("dropped: near_duplicate of docs.jsonl line 3 (estimated Jaccard 0.9")
    assert rows["10"][0].endswith(">= threshold 0.7)")
    assert rows["15"][0].startswith("dropped: language (de 0.") and rows["15"][0].endswith(", wants en)")
    assert rows["25"] == ["dropped: empty (no characters)", "text: "]
    assert rows["28"] == ["dropped: too_few_words (10 words < filter.min_words 20)",
                          f"text: {LONG_WORDS[:preview.TEXT_WIDTH]}… (350 characters)"]
    assert rows["13"][0] == "dropped: too_long (15,760 characters > filter.max_chars 12,000)"
    assert rows["13"][1].endswith("… (15,760 characters)") and len(rows["13"][1]) == len("text: ") + preview.TEXT_WIDTH + len("… (15,760 characters)")
    assert rows["33"][0] == "dropped: too_short (175 characters < filter.min_chars 200)"
    assert rows["33"][1].startswith("text: any circumstance ~ no risk, but it holds a spot for you!↵well")
    assert rows["17"][0] == "dropped: gopher_dup_5gram (filter.quality.gopher_repetition.dup_ngram_char_frac[5-gram] 0.15)"
    assert rows["1"] == ["split: train"]  # a kept document: its split, and its tokens


def test_quality_reasons_name_the_recipe_setting_they_failed():
    from dataprep.text.quality import GopherRepetition, quality_filters

    filters = quality_filters({"gopher_repetition": {"dup_ngram_char_frac": [[5, 0.2], [6, 0.14]]}})
    assert preview._quality_threshold("gopher_dup_5gram", filters) == "filter.quality.gopher_repetition.dup_ngram_char_frac[5-gram] 0.2"
    assert preview._quality_threshold("gopher_dup_para_frac", filters) == (
        f"filter.quality.gopher_repetition.max_dup_para_frac {GopherRepetition().max_dup_para_frac}")
    assert preview._quality_threshold("gopher_short_words", filters) is None  # gopher_quality is off: nothing to name


def test_cli_shows_the_drops(planted):
    folder, n, _ = planted
    result = CliRunner().invoke(cli, ["inspect", "--recipe", str(folder / "r.yaml"), "-n", "6", "--no-color"])
    assert result.exit_code == 0, result.output
    assert "━━ docs.jsonl line 6 ━━\n  dropped: duplicate of docs.jsonl line 2\n  text: To the apparent surprise" in result.output


def test_fine_tuning_drops_say_how_long(tmp_path):
    """``overflow: drop`` counts a long example without a message; the preview asks the same worker with
    ``overflow: error`` for it, and its drops equal a run's on the same records."""
    from .conftest import RECIPES

    lines = (RECIPES / "data" / "sft_tasks.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (tmp_path / "head.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = yaml.safe_load((RECIPES / "demo-sft.yaml").read_text(encoding="utf-8"))
    recipe.update(inputs=[{"path": "head.jsonl"}], max_length=20, overflow="drop", split={"validation": 0.0})
    recipe["tokenizer"]["path"] = str(RECIPES / "data" / "byte_tokenizer")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run(load_recipe(tmp_path / "r.yaml"), tmp_path / "out", workers=1)
    manifest = open_dataset(tmp_path / "out").manifest
    rows = preview.rows_from_recipe(load_recipe(tmp_path / "r.yaml"), head=40)
    assert preview.dropped_reasons(rows) == Counter(manifest.counts.dropped) and manifest.counts.dropped["too_long"] > 0
    first = json.loads(lines[0])
    assert rows[0].notes == ["dropped: too_long (example is 22 tokens, over max_length 20)",
                             f"record: {json.dumps({k: first[k] for k in ('completion', 'prompt')})}"]
    assert all(len(row.ids) <= 20 for row in rows)


def test_language_detail_names_the_language_or_the_threshold_it_missed():
    """The score shown is the model's (detect); a wanted language under the threshold says so."""
    from types import SimpleNamespace

    from dataprep.text.filters import FilterSpec
    from dataprep.text.language import detect

    text = "BUY NOW!!! BEST PRICES ON ALL CARS, CALL TODAY"
    (code,), scores = detect([text])
    strict = SimpleNamespace(filter=FilterSpec(languages=(code,), language_threshold=1.0))
    assert preview._filter_detail("language", text, strict) == f"{code} {scores[0]:.2f} < filter.language_threshold 1.0"
    other = SimpleNamespace(filter=FilterSpec(languages=("ja", "ko")))
    assert preview._filter_detail("language", text, other) == f"{code} {scores[0]:.2f}, wants ja, ko"
    blank = preview._filter_detail("language", " ", SimpleNamespace(filter=FilterSpec(languages="all")))
    assert blank == "no language 0.00 < filter.language_threshold 0.65"


def test_a_mixture_recipe_says_run_draws_it():
    """Which documents a mixture keeps is decided over the whole corpus: the preview says so first."""
    from .conftest import RECIPES

    rows = preview.rows_from_recipe(load_recipe(RECIPES / "continued-pretrain-code.yaml"), head=2)
    assert rows[0].title == "mixture" and rows[0].notes == [preview.MIXTURE_NOTE] and len(rows) == 3
    assert preview.dropped_reasons(rows) == Counter()
