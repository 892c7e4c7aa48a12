"""`dataprep report`'s filters section: what a run removed, per reason (grouped) and per input, from
its manifest; near-duplicate clusters and redactions. Planted drops give the figures to expect."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import yaml
from click.testing import CliRunner

from dataprep.build import accounting
from dataprep.build.ordered import NO_TOKENS
from dataprep.build.run import run
from dataprep.cli import cli
from dataprep.dataset.reader import open_dataset
from dataprep.look import report, stats
from dataprep.recipe import load_recipe
from dataprep.tasks.bad_records import UNKNOWN_LABEL

from .conftest import DATA

GPT2 = DATA / "tokenizers" / "gpt2"


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    """Two inputs through every filter. a.jsonl: 20 C4 documents (the fifth with an e-mail address
    added), an exact copy and a near copy (one word changed); b.jsonl: 3 German and 3 English XQuAD
    paragraphs of 600+ characters."""
    folder = tmp_path_factory.mktemp("filtered")
    c4 = [json.loads(line)["text"] for line in (DATA / "corpora" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()[:20]]
    c4[4] += " Questions? Write to jane.doe@example.org and we will answer."
    a = c4 + [c4[1], c4[2].replace("happy", "glad", 1)]
    xquad = [json.loads(line) for line in (DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl").open(encoding="utf-8")]
    b = [r["text"] for lang in ("de", "en") for r in [r for r in xquad if r["lang"] == lang and len(r["text"]) > 600][:3]]
    for name, texts in (("a.jsonl", a), ("b.jsonl", b)):
        (folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    recipe = {
        "task": "pretrain",
        "inputs": [{"path": "a.jsonl"}, {"path": "b.jsonl"}],
        "normalize": {"pii": {"email": "redact"}},
        "filter": {"min_chars": 200, "dedup": "minhash", "languages": ["en"],
                   "quality": {"gopher_quality": True, "gopher_repetition": True}},
        "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_eos": True},
        "packing": {"mode": "wrap", "seq_len": 256},
        "split": {"validation": 0.1},
    }
    (folder / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run(load_recipe(folder / "r.yaml"), folder / "out", workers=1)
    return folder / "out"


def test_filters_section_holds_the_planted_drops(filtered):
    ds = open_dataset(filtered)
    m = ds.manifest
    f = report.compute(ds).summary["filters"]
    groups = {g["group"]: g for g in f["groups"]}
    reasons = {r["reason"]: r for g in f["groups"] for r in g["reasons"]}
    assert {k: r["records"] for k, r in reasons.items()} == m.counts.dropped  # every reason, once
    assert all(r["share"] == round(r["records"] / m.counts.records_read, 6) for r in reasons.values())
    assert f["dropped"] == sum(m.counts.dropped.values()) == sum(g["records"] for g in groups.values())
    a, b = f["inputs"]
    assert a["path"].endswith("a.jsonl") and b["path"].endswith("b.jsonl")
    assert b["groups"]["language"] == 3 and "dedup" not in b["groups"]  # the three German paragraphs
    assert a["groups"]["dedup"] == 2 and a["reasons"]["duplicate"] == a["reasons"]["near_duplicate"] == 1
    assert f["near_duplicates"] == {"documents": 1, "clusters": 1, "largest_cluster": 2,  # the near copy and its original
                                    "candidates_rejected": m.counts.near_duplicates.candidates_rejected}
    assert f["redacted"]["email"] >= 1  # the planted address, in a kept document
    for entry, recorded in zip(f["inputs"], m.inputs):
        assert entry["reasons"] == recorded.dropped and entry["dropped"] == sum(recorded.dropped.values())
        assert entry["share"] == round(entry["dropped"] / recorded.records_read, 6)
    by_group = Counter()
    for entry in f["inputs"]:
        by_group.update(entry["groups"])
    assert by_group == Counter({g: v["records"] for g, v in groups.items()})  # the inputs add up to the totals
    assert f["languages"] == [{"language": "en", "documents": m.counts.languages["en"]["documents"],  # only English kept
                               "tokens": m.counts.languages["en"]["tokens"], "share": 1.0}]
    assert f["examples"] == m.counts.dropped_examples and f["mixture"] is None  # no mixture here


def test_text_and_html_show_the_tables(filtered, tmp_path):
    ds = open_dataset(filtered)
    s = report.compute(ds).summary
    f, text = s["filters"], report.summary_text(s)
    language = next(g for g in f["groups"] if g["group"] == "language")
    counts = ds.manifest.counts
    assert dict(report.summary_rows(s))["records"] == (f"{counts.records_read:,} read, {counts.records_written:,} written, "
                                                       f"{f['dropped']:,} dropped (per reason and input: the filters tables)")
    assert "\nfilters: records dropped per reason\n  group " in text
    row = next(line for line in text.splitlines() if line.startswith("  language  language "))
    assert row.split() == ["language", "language", f"{language['records']:,}", f"{language['share']:.2%}"]
    near = f["near_duplicates"]
    assert (f"  near-duplicates  {near['documents']} dropped in {near['clusters']} clusters (largest "
            f"{near['largest_cluster']} documents)") in text
    assert f"  redacted         email {f['redacted']['email']} (placeholders written)" in text
    html = report.render_html(s, {})
    assert "<h2>Filters</h2>" in html and "<td>near_duplicate</td>" in html
    result = CliRunner().invoke(cli, ["report", str(filtered), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0 and "filters: per input" in result.output


def test_no_filters_table_when_nothing_was_dropped(filtered, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(filtered, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["counts"]["dropped"] = {}
    del manifest["counts"]["redacted"], manifest["counts"]["near_duplicates"], manifest["counts"]["languages"]
    for entry in manifest["inputs"]:
        entry["dropped"] = {}
    (out / "manifest.json").write_text(json.dumps(manifest))
    s = report.compute(open_dataset(out)).summary
    assert s["filters"]["groups"] == [] and report.filter_tables(s["filters"]) == {}
    assert "filters:" not in report.summary_text(s) and "<h2>Filters</h2>" not in report.render_html(s, {})


def test_groups_are_the_runs_reasons():
    """The report spells two producer reasons (it may not import the producer): they must agree, and
    its damage group must be exactly what the run's accounting calls damage."""
    assert (stats.NO_TOKENS, stats.UNKNOWN_LABEL) == (NO_TOKENS, UNKNOWN_LABEL)
    known = sorted(accounting.CHOSEN | {"gopher_dup_5gram", "c4_curly_bracket", "fineweb_list_like", "invalid_json",
                                        "missing_field", "template_raised", "special_token_text", "empty_field"})
    for long_is_damage, chosen in ((False, accounting.CHOSEN), (True, accounting.CHOSEN - {"too_long"})):
        damage = {r for r in known if stats.reason_group(r, long_is_damage=long_is_damage) == "damage"}
        assert damage == set(accounting.damage(Counter(dict.fromkeys(known, 1)), chosen))
    assert stats.reason_group("too_long") == "length" and stats.reason_group("too_long", long_is_damage=True) == "damage"
    assert [stats.reason_group(r) for r in ("language", "gopher_stop_words", "c4_lorem_ipsum", "fineweb_line_punct",
                                            "duplicate", "near_duplicate", "unknown_label", "no_tokens", "mixture",
                                            "contaminated")] == [
        "language", "quality", "quality", "quality", "dedup", "dedup", "label", "length", "mixture", "decontamination"]


def test_a_mixture_has_its_table(tmp_path):
    """The shipped continued-pretraining recipe: one row per source and split, asked and realized shares,
    epochs, documents drawn of those available, documents written (repeats counted) and tokens."""
    from .conftest import RECIPES

    run(load_recipe(RECIPES / "continued-pretrain-code.yaml"), tmp_path / "out", workers=1)
    s = report.compute(open_dataset(tmp_path / "out")).summary
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    head, rows = report.filter_tables(s["filters"])[report.MIXTURE]
    expected = [[src["name"], split, f"{d['requested_share']:.2%}", f"{d['share']:.2%}", f"{d['epochs']:.2f}",
                 f"{d['documents']:,} of {d['available_documents']:,}", f"{d['occurrences']:,}", f"{d['tokens']:,}"]
                for src in m["mixture"]["sources"] for split in ("train", "validation") for d in [src[split]]]
    assert rows == expected and [r[:2] for r in rows][::2] == [["code", "train"], ["general", "train"]]
    assert f"\n{report.MIXTURE}\n" in report.summary_text(s)


def test_the_first_dropped_documents_of_each_filter(filtered, tmp_path):
    """The manifest keeps the first documents each filter reason dropped, in input order, with their
    normalized text cut short: the language rule's are b.jsonl's three German paragraphs; the report
    shows them; dedup drops, decided after the workers, have none."""
    m = open_dataset(filtered).manifest
    examples = m.counts.dropped_examples
    assert [e["document"].rsplit("/", 1)[1] for e in examples["language"]] == ["b.jsonl line 1", "b.jsonl line 2", "b.jsonl line 3"]
    german = [json.loads(line)["text"] for line in (filtered.parent / "b.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
    assert [e["text"] for e in examples["language"]] == [" ".join(t.split())[:199] + "…" for t in german]
    assert set(examples) <= set(m.counts.dropped) and not set(examples) & {"duplicate", "near_duplicate"}
    assert all(len(shown) <= 3 and all(len(e["text"]) <= 200 for e in shown) for shown in examples.values())
    text = report.summary_text(report.compute(open_dataset(filtered)).summary)
    assert f"\n{report.EXAMPLES}\n" in text and "b.jsonl line 2" in text
