"""validate on preference datasets (#18 item 4): ``--recheck-sources`` re-makes pairs (and KTO
examples) from their records and compares them column by column with the rows; no validation
prompt is a training prompt; the printed figures are pairs and tokens per column; a planted
broken pair of each kind the row checks know is its own finding, and nothing else.

Every plant is made on a copy that validates clean (the shipped-recipe test), with the shard's
checksums and the manifest's counts rewritten to agree, so only the check under test can tell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner
from tokenizers import Tokenizer

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.build.write import shard_digests
from dataprep.cli import cli
from dataprep.dataset.paths import resolve
from dataprep.recipe import load_recipe
from dataprep.validate import validate_dataset

from .conftest import RECIPES, require_shared
from .test_validate_recheck import assert_samples_find, edit_rows, findings, head_of, stored_rows

# shipped preference recipe -> input records to build from (None: all; a head keeps the runs
# through Llama 3's and Gemma 3's chat templates short, as test_validate_recheck does for chat)
SHIPPED = {"preference-synthetic": None, "preference-hh-sample": None, "preference-dpo-en-demo": 120, "preference-kto-en-demo": 120}
SHARED = ("preference-dpo-en-demo", "preference-kto-en-demo")  # read ../shared/data
PAIR_COLUMNS = (C.PROMPT_IDS, C.CHOSEN_IDS, C.REJECTED_IDS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built(recipe)``: the shipped recipe's dataset (over the head of its input), made once per module."""
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name in SHARED:
            require_shared()
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            sets = []
            if SHIPPED[name] is not None:
                recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
                sets.append(f"inputs.0.path={head_of((RECIPES / recipe['inputs'][0]['path']).resolve(), SHIPPED[name], folder)}")
            with pytest.MonkeyPatch.context() as patch:  # the run's transformers comparison: slow, and tested elsewhere
                patch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)
                run(load_recipe(RECIPES / f"{name}.yaml", sets), folder / "out", workers=1, progress=False)
            made[name] = folder / "out"
        return made[name]

    return make


@pytest.fixture
def synthetic(built, tmp_path) -> Path:
    """A fresh copy of preference-synthetic's dataset, which validates clean."""
    out = tmp_path / "out"
    shutil.copytree(built("preference-synthetic"), out)
    return out


def columns_of(rows: list[dict]) -> list[str]:
    return [name for name in rows[0] if name != C.KTO_LABEL] if rows else []


def forge(out: Path) -> None:
    """Make the manifest agree with the shards again: each shard's rows, tokens (every list value:
    the prompt once), bytes and checksums; the split and total counts; the response tokens and the
    preference section's figures."""
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    every = []
    for split in C.SPLITS:
        for entry in m["splits"][split]["shards"]:
            path = out / split / entry["file"]
            rows = pa.ipc.open_stream(path.read_bytes()).read_all().to_pylist()
            entry["rows"], entry["bytes"] = len(rows), path.stat().st_size
            entry["tokens"] = sum(len(r[name]) for r in rows for name in columns_of(rows))
            entry["sha256"], entry["xxh3_128"] = shard_digests(path)
            every += rows
        shards = m["splits"][split]["shards"]
        m["counts"]["rows"][split] = m["packing"][split]["rows"] = sum(s["rows"] for s in shards)
        m["packing"][split]["content_tokens"] = sum(s["tokens"] for s in shards)
    m["counts"]["tokens"] = sum(m["packing"][s]["content_tokens"] for s in C.SPLITS)
    m["sft"]["target_tokens"] = sum(len(r[name]) for r in every for name in columns_of(every) if name != C.PROMPT_IDS)
    m["preference"] = {**m.get("preference", {}), **stated_figures(every)}
    (out / C.MANIFEST_FILE).write_text(json.dumps(m))


def stated_figures(rows: list[dict]) -> dict[str, int]:
    """The manifest's preference figures, counted from the rows."""
    figures = {name.replace("_ids", "_tokens"): sum(len(r[name]) for r in rows) for name in columns_of(rows)}
    if C.KTO_LABEL in rows[0]:
        figures["desirable"] = sum(r[C.KTO_LABEL] is True for r in rows)
        figures["undesirable"] = len(rows) - figures["desirable"]
    else:
        figures["chosen_longer"] = sum(len(r[C.CHOSEN_IDS]) > len(r[C.REJECTED_IDS]) for r in rows)
    return figures


def plant(out: Path, split: str, edit) -> None:
    edit_rows(out, split, edit)
    forge(out)


def decode(out: Path, ids: list[int]) -> str:
    """The dataset's own tokenizer copy, read by `tokenizers` itself (not dataprep's loader)."""
    return Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json")).decode(ids, skip_special_tokens=False)


def source_of(out: Path) -> Path:
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    return Path(resolve(m, m["inputs"][0]["path"]))


# --- shipped recipes: clean, and the figures validate prints -----------------------------------


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_recipe_rechecks_clean_with_every_record(built, name):
    out = built(name)
    report = validate_dataset(out, recheck="all")
    assert report.ok, report.to_text()
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    counts = m["counts"]
    assert report.stats["recheck"]["sampled"] == counts["records_read"]  # every record re-made (all readable here)
    assert report.stats["recheck"].get("duplicates", 0) == counts["dropped"].get("duplicate", 0)
    assert report.stats["recheck"].get("dropped_by_recipe", 0) == sum(counts["dropped"].values()) - counts["dropped"].get("duplicate", 0)
    # the figures: pairs (KTO: examples) per split and tokens per column, counted here from the rows
    rows = {split: stored_rows(out, split) for split in C.SPLITS}
    kto = m["format"] == "dataprep.kto/1"
    assert report.stats["examples" if kto else "pairs"] == {split: len(rows[split]) for split in C.SPLITS}
    for name in (C.PROMPT_IDS, C.COMPLETION_IDS) if kto else PAIR_COLUMNS:
        assert report.stats[name.replace("_ids", "_tokens")] == sum(len(r[name]) for split in C.SPLITS for r in rows[split])
    if kto:
        assert report.stats["desirable"] == {split: sum(r[C.KTO_LABEL] for r in rows[split]) for split in C.SPLITS}
    assert not {"rows", "documents", "target_ratio", "target_tokens"} & set(report.stats)
    assert "examples" not in report.stats or kto


def test_seeded_samples_recheck_clean(built):
    out = built("preference-synthetic")
    for seed in range(4):
        report = validate_dataset(out, recheck=200, seed=seed)
        assert report.ok and report.stats["recheck"]["sampled"] == 200, (seed, report.to_text())


def test_printed_figures_of_run_and_validate(tmp_path):
    runner = CliRunner()
    made = runner.invoke(cli, ["run", str(RECIPES / "preference-synthetic.yaml"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert made.exit_code == 0, made.output
    m = json.loads((tmp_path / "out" / C.MANIFEST_FILE).read_text())
    rows = {split: stored_rows(tmp_path / "out", split) for split in C.SPLITS}
    prompts = sum(len(r[C.PROMPT_IDS]) for split in C.SPLITS for r in rows[split])
    responses = sum(len(r[name]) for split in C.SPLITS for r in rows[split] for name in (C.CHOSEN_IDS, C.REJECTED_IDS))
    assert f"  pairs: train {len(rows['train']):,}, validation {len(rows['validation']):,} (one per row, max_length 64)" in made.output
    assert f"  tokens: {prompts + responses:,}: prompts {prompts:,} (stored once per row), responses {responses:,}" in made.output
    assert "packing" not in made.output and "documents" not in made.output and m["counts"]["tokens"] == prompts + responses
    shown = runner.invoke(cli, ["validate", str(tmp_path / "out")])
    assert shown.exit_code == 0, shown.output
    chosen = sum(len(r[C.CHOSEN_IDS]) for split in C.SPLITS for r in rows[split])
    assert f"pairs {{validation: {len(rows['validation']):,}, train: {len(rows['train']):,}}}" in shown.output
    assert f"prompt_tokens {prompts:,}; chosen_tokens {chosen:,}; rejected_tokens {responses - chosen:,}" in shown.output
    assert "examples" not in shown.output and "target_ratio" not in shown.output
    rechecked = runner.invoke(cli, ["validate", str(tmp_path / "out"), "--recheck-sources", "--sample", "all"])
    assert rechecked.exit_code == 0 and f"ok, no findings\nstats: recheck {{sampled: {m['counts']['records_read']:,}}}; pairs" in rechecked.output, rechecked.output


@pytest.mark.parametrize("name", ["preference-synthetic", "preference-kto-en-demo"])
def test_the_manifest_figures_are_the_rows(built, tmp_path, name):
    """The preference section states what the rows hold (recounted here); one figure off is its finding."""
    out = tmp_path / "out"
    shutil.copytree(built(name), out)
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    rows = stored_rows(out, "train") + stored_rows(out, "validation")
    assert {k: m["preference"][k] for k in stated_figures(rows)} == stated_figures(rows)
    figure = "desirable" if "desirable" in m["preference"] else "chosen_longer"
    m["preference"][figure] += 1
    (out / C.MANIFEST_FILE).write_text(json.dumps(m))
    report = validate_dataset(out)
    assert [(f.kind, f.path) for f in report.findings] == [("manifest_inconsistent", f"preference.{figure}")], report.to_text()
    assert f"preference.{figure} is {m['preference'][figure]:,} but the rows hold {m['preference'][figure] - 1:,}" in report.findings[0].message


# --- --recheck-sources: planted pairs, each found with its record -----------------------------


def _chosen_token(rows):
    rows[7][C.CHOSEN_IDS][1] += 1


def _longer_chosen(rows):
    rows[7][C.CHOSEN_IDS] = [rows[7][C.CHOSEN_IDS][0]] + rows[7][C.CHOSEN_IDS]


def _swapped(rows):
    rows[7][C.CHOSEN_IDS], rows[7][C.REJECTED_IDS] = rows[7][C.REJECTED_IDS], rows[7][C.CHOSEN_IDS]


def _prompt_token(rows):
    rows[7][C.PROMPT_IDS][3] += 1


def _moved_boundary(rows):  # the prompt's last token moved to the head of chosen: the same tokens end to end
    rows[7][C.CHOSEN_IDS].insert(0, rows[7][C.PROMPT_IDS].pop())


# plant -> (kind, column named, position in it, words of the message)
PLANTS = {
    "one chosen token": (_chosen_token, "recheck_tokens", C.CHOSEN_IDS, 1, "the other columns are as the record gives"),
    "chosen one token longer": (_longer_chosen, "recheck_tokens", C.CHOSEN_IDS, 1, "tokens stored, "),
    "chosen and rejected swapped": (_swapped, "recheck_tokens", C.CHOSEN_IDS, None, "rejected_ids differs too"),
    "one prompt token": (_prompt_token, "recheck_tokens", C.PROMPT_IDS, 3, "1 of "),
    "prompt end moved into the responses": (_moved_boundary, "recheck_mask", None, None, "split into other columns"),
}


@pytest.mark.parametrize("case", list(PLANTS))
def test_a_planted_pair_is_found_with_its_record(synthetic, case):
    edit, kind, column, position, words = PLANTS[case]
    before = stored_rows(synthetic, "train")[7]
    plant(synthetic, "train", edit)
    report = validate_dataset(synthetic, recheck="all")
    assert [(f.kind, f.split, f.row, f.file, f.path) for f in report.findings] == [
        (kind, "train", 7, str(source_of(synthetic)), column)], report.to_text()
    found = report.findings[0]
    assert words in found.message, found.message
    if position is not None:
        assert found.position == position
    if column == C.CHOSEN_IDS:
        stored = stored_rows(synthetic, "train")[7][C.CHOSEN_IDS]
        k = found.position
        assert f"chosen_ids[{k}] is {stored[k]} where the record gives {before[C.CHOSEN_IDS][k]}" in found.message
    # the record named is the one the row was made of: its prompt and responses, decoded from the unplanted row
    record = json.loads(source_of(synthetic).read_text().splitlines()[int(found.line.split()[1]) - 1])
    assert decode(synthetic, before[C.PROMPT_IDS]) == record["prompt"]
    assert decode(synthetic, before[C.CHOSEN_IDS]) == record["chosen"] + "<|endoftext|>"  # the byte tokenizer's EOS (id 0)
    if case == "one chosen token":
        assert_samples_find(synthetic, findings(report), size=1200)  # a seeded sample finds the same, or nothing


def test_a_flipped_kto_label(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built("preference-kto-en-demo"), out)
    label = stored_rows(out, "train")[5][C.KTO_LABEL]

    def flip(rows):
        rows[5][C.KTO_LABEL] = not label

    plant(out, "train", flip)
    report = validate_dataset(out, recheck="all")
    assert [(f.kind, f.split, f.row, f.path) for f in report.findings] == [("recheck_label", "train", 5, "label")], report.to_text()
    found = report.findings[0]
    words = {True: "true (desirable)", False: "false (undesirable)"}
    assert f"holds label {words[not label]} where the record's label is {words[label]}" in found.message
    record = json.loads(source_of(out).read_text())[int(found.line.split()[1]) - 1]  # json: "record N", 1-based
    assert record["label"] is label


def test_a_source_line_edited_after_the_build(tmp_path):
    """The source changed: the dataset is stale, and the finding names the edited line and the column."""
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("\n".join((RECIPES / "data" / "preference_tasks.jsonl").read_text().splitlines()[:200]) + "\n")
    shutil.copytree(RECIPES / "data" / "byte_tokenizer", folder / "tok")
    recipe = yaml.safe_load((RECIPES / "preference-synthetic.yaml").read_text())
    recipe.update(inputs=[{"path": "pairs.jsonl"}], tokenizer={"path": "tok"})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run(load_recipe(folder / "recipe.yaml"), folder / "out", workers=1, progress=False)
    assert validate_dataset(folder / "out", recheck="all").ok
    source = folder / "pairs.jsonl"
    lines = source.read_text().splitlines()
    record = json.loads(lines[4])
    record["rejected"] = record["rejected"][::-1] + "x"
    lines[4] = json.dumps(record)
    source.write_text("\n".join(lines) + "\n")
    report = validate_dataset(folder / "out", recheck="all")
    assert [(f.kind, f.file, f.line, f.path) for f in report.findings] == [
        ("source_changed", str(source), None, None),
        ("recheck_tokens", str(source), "line 5", C.REJECTED_IDS),
    ], report.to_text()
    assert "the other columns are as the record gives" in report.findings[1].message


# --- no validation prompt is a training prompt --------------------------------------------------


def test_a_training_prompt_copied_into_validation(synthetic):
    train = stored_rows(synthetic, "train")
    prompts = [tuple(r[C.PROMPT_IDS]) for r in train]
    copied = next(i for i, p in enumerate(prompts) if prompts.count(p) == 1)  # a prompt of one train pair
    validation = len(stored_rows(synthetic, "validation"))

    def append(rows):
        rows.append(dict(train[copied]))

    plant(synthetic, "validation", append)
    report = validate_dataset(synthetic)
    shard = json.loads((synthetic / C.MANIFEST_FILE).read_text())["splits"]["validation"]["shards"][0]["file"]
    assert [(f.kind, f.file, f.split, f.row) for f in report.findings] == [
        ("pref_prompt_in_both_splits", f"validation/{shard}", "validation", validation)], report.to_text()
    message = report.findings[0].message
    assert repr(decode(synthetic, train[copied][C.PROMPT_IDS])) in message and "Q: " in message
    assert f"is also the prompt of train/{shard} row {copied}:" in message


# --- a broken pair of each kind: its own finding, nothing else ----------------------------------


BROKEN = {
    "pref_empty_prompt": lambda r: r.update({C.PROMPT_IDS: []}),
    "pref_no_response": lambda r: r.update({C.REJECTED_IDS: []}),
    "pref_prompt_in_response": lambda r: r.update({C.CHOSEN_IDS: r[C.PROMPT_IDS] + r[C.CHOSEN_IDS]}),
    "pref_stop_not_last": lambda r: r.update({C.CHOSEN_IDS: r[C.CHOSEN_IDS][:-1]}),
    "pref_same_response": lambda r: r.update({C.REJECTED_IDS: list(r[C.CHOSEN_IDS])}),
    "pref_too_long": lambda r: r.update({C.REJECTED_IDS: [5] * 70 + [0]}),  # over max_length 64
    "token_id_range": lambda r: r.update({C.CHOSEN_IDS: [10**6, 0]}),  # the byte tokenizer has 261 ids
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_pair_of_each_kind(synthetic, kind):
    assert len(stored_rows(synthetic, "train")[3][C.CHOSEN_IDS]) > 1  # so that cutting the stop leaves a response

    def edit(rows):
        BROKEN[kind](rows[3])

    plant(synthetic, "train", edit)
    report = validate_dataset(synthetic)
    assert [(f.kind, f.split, f.row) for f in report.findings] == [(kind, "train", 3)], report.to_text()


@pytest.mark.parametrize("fault", ["int label", "null label"])
def test_a_kto_label_not_a_bool(built, tmp_path, fault):
    out = tmp_path / "out"
    shutil.copytree(built("preference-kto-en-demo"), out)
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    entry = m["splits"]["train"]["shards"][0]
    path = out / "train" / entry["file"]
    table = pa.ipc.open_stream(path.read_bytes()).read_all()
    labels = table.column(C.KTO_LABEL).to_pylist()
    if fault == "int label":
        column, field = pa.array(np.asarray(labels, dtype=np.int8)), pa.field(C.KTO_LABEL, pa.int8())
    else:
        column, field = pa.array(labels[:3] + [None] + labels[4:], pa.bool_()), table.schema.field(C.KTO_LABEL)
    schema = table.schema.set(2, field)
    with pa.ipc.new_stream(str(path), schema) as writer:
        writer.write_table(pa.Table.from_arrays([table.column(0), table.column(1), column], schema=schema))
    forge(out)
    report = validate_dataset(out)
    expected = ("row_schema", None, "column 'label' is int8, expected bool") if fault == "int label" else \
        ("null_value", 3, "column 'label' holds nulls")
    assert [(f.kind, f.row) for f in report.findings] == [expected[:2]], report.to_text()
    assert expected[2] in report.findings[0].message
