"""The manifest's typed ``preference`` section (#18): the shape, the boundary policy, and what the written
pairs hold, each figure re-counted here from the rows themselves; and a merged boundary's error."""

from __future__ import annotations

import json

import pytest
import yaml

from dataprep import columns as C
from dataprep.dataset.manifest import Manifest
from dataprep.validate import validate_dataset

from . import test_preference
from .conftest import DATA, require_shared
from .test_preference import rows_of

build = test_preference.build  # the datasets, made once per module


def both_splits(out):
    return rows_of(out, "train") + rows_of(out, "validation")


def test_pairs_section_counts_what_the_rows_hold(build):
    out = build("preference-synthetic")
    section = Manifest.load(out).preference
    rows = both_splits(out)
    assert section.shape == "triples" and section.boundary == "drop" and section.boundary_cuts == 0
    assert section.prompt_tokens == sum(len(r[C.PROMPT_IDS]) for r in rows)
    assert section.chosen_tokens == sum(len(r[C.CHOSEN_IDS]) for r in rows)
    assert section.rejected_tokens == sum(len(r[C.REJECTED_IDS]) for r in rows)
    longer = sum(len(r[C.CHOSEN_IDS]) > len(r[C.REJECTED_IDS]) for r in rows)
    assert section.chosen_longer == longer and 0 < longer < len(rows)
    assert section.completion_tokens is None and section.desirable is None
    raw = json.loads((out / C.MANIFEST_FILE).read_text())
    assert "completion_tokens" not in raw["preference"] and raw["sft"]["masking"] == "last_assistant"
    assert validate_dataset(out).ok  # the manifest schema takes the section


def test_kto_section_counts_labels_and_completions(build):
    require_shared()
    out = build("preference-kto-en-demo")
    section = Manifest.load(out).preference
    rows = both_splits(out)
    assert section.shape == "kto" and section.chosen_tokens is None and section.chosen_longer is None
    assert section.completion_tokens == sum(len(r[C.COMPLETION_IDS]) for r in rows)
    assert section.desirable == sum(r[C.KTO_LABEL] for r in rows) > 0
    assert section.undesirable == sum(not r[C.KTO_LABEL] for r in rows) > 0


def merge_recipe(tmp_path, on_error: str = "skip"):
    require_shared()
    data = tmp_path / "pairs.jsonl"  # GPT-2 merges "A: " + "cba" into " cba": one token across the boundary
    data.write_text(json.dumps({"prompt": "Q: reverse xyz\nA:", "chosen": " zyx", "rejected": " xyz"}) + "\n"
                    + json.dumps({"prompt": "Q: reverse abc\nA: ", "chosen": "cba", "rejected": "abc"}) + "\n")
    recipe = {"name": "merge", "task": "preference", "preference": {"shape": "triples"}, "inputs": [{"path": str(data)}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}, "template": "text", "on_error": on_error,
              "max_dropped_fraction": 0.5, "split": {"validation": 0}}
    path = tmp_path / f"merge-{on_error}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_boundary_cuts_count_the_pairs_kept_by_cutting(build, tmp_path):
    path = merge_recipe(tmp_path)
    dropped = Manifest.load(build(path))
    assert dropped.preference.boundary_cuts == 0 and dropped.counts.dropped == {"boundary_merge": 1}
    cut = Manifest.load(build(path, "preference.boundary=cut"))
    assert cut.preference.boundary == "cut" and cut.preference.boundary_cuts == 1 and not cut.counts.dropped


def test_a_merged_boundary_stops_the_run_with_the_record_and_the_fix(tmp_path):
    from dataprep.build.run import run
    from dataprep.errors import InputError
    from dataprep.recipe import load_recipe

    with pytest.raises(InputError) as raised:
        run(load_recipe(merge_recipe(tmp_path, on_error="raise")), tmp_path / "out", workers=1, progress=False)
    message = str(raised.value)
    assert "pairs.jsonl" in message and "line 2" in message and "spans the end of the prompt" in message
    assert "`preference.boundary: cut`" in raised.value.fix


def test_report_summarizes_pairs_without_packing_figures(build, tmp_path):
    from click.testing import CliRunner

    from dataprep.cli import cli

    out = build("preference-synthetic")
    section = Manifest.load(out).preference
    rows = {split: len(rows_of(out, split)) for split in ("train", "validation")}
    shown = CliRunner().invoke(cli, ["report", str(out)])
    assert shown.exit_code == 0, shown.output
    lines = {line.split("  ")[0]: line for line in shown.output.splitlines()}
    assert f"train {rows['train']:,}, validation {rows['validation']:,} (one per row" in lines["pairs"]
    assert f"chosen {section.chosen_tokens:,}, rejected {section.rejected_tokens:,}" in lines["tokens"]
    assert f"{section.chosen_longer:,} of {sum(rows.values()):,} pairs" in lines["chosen longer"]
    assert "packing efficiency" not in shown.output and "examples" not in lines


def test_pair_rows_fill_two_sequences_so_efficiency_stays_a_share(build):
    """A pair row stores the prompt once and two responses: up to nearly 2 x max_length tokens, so its
    efficiency is against two padded sequences (it was against one: 1.08 on dpo_en_demo at 256, which the
    manifest schema refused)."""
    out = build("preference-synthetic", "max_length=20", "overflow=truncate_prompt")
    manifest = Manifest.load(out)
    rows = both_splits(out)
    assert max(len(r[C.PROMPT_IDS]) + len(r[C.CHOSEN_IDS]) + len(r[C.REJECTED_IDS]) for r in rows) > 20
    stored = sum(len(r[C.PROMPT_IDS]) + len(r[C.CHOSEN_IDS]) + len(r[C.REJECTED_IDS]) for r in rows)
    assert manifest.counts.packing_efficiency == stored / (len(rows) * 2 * 20) <= 1
    assert manifest.packing.train.seq_len == 40 and manifest.rows.length == 20
