"""`dataprep report`: numbers equal an independent per-row recount; HTML self-contained; PNGs valid."""

from __future__ import annotations

import dataclasses

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.look import plots, report
from dataprep.cli import cli
from dataprep.dataset.reader import open_dataset
from dataprep.dataset.manifest import read_json
from dataprep.build.run import run
from dataprep.recipe import load_recipe

from .conftest import RECIPES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sft_dataset(tmp_path_factory):
    """demo-sft (bundled byte tokenizer), packed with bfd so rows hold several examples and pad."""
    out = tmp_path_factory.mktemp("sft") / "out"
    run(load_recipe(RECIPES / "demo-sft.yaml", ["packing.mode=bfd", "packing.seq_len=128"]), out, workers=1)
    return out


@pytest.fixture(scope="module")
def pretrain_dataset(tmp_path_factory):
    """demo-pretrain (trains its tokenizer, wrap packing, remainder padded), read from two input files."""
    folder = tmp_path_factory.mktemp("pre")
    lines = (RECIPES / "data" / "tiny_corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "a.jsonl").write_text("".join(lines[:200]), encoding="utf-8")
    (folder / "b.jsonl").write_text("".join(lines[200:]), encoding="utf-8")
    recipe = load_recipe(RECIPES / "demo-pretrain.yaml", [f"inputs.0.path={folder}"])
    out = folder / "out"
    run(recipe, out, workers=1)
    return out


def recount(ds) -> dict:
    """The report's numbers, recounted row by row in plain Python (the independent oracle)."""
    eos = ds.manifest.tokenizer.special_ids["eos"]
    out = {}
    for split in ds.splits:
        rows = ds.table(split).to_pylist()
        lengths, targets, fills, docs, open_doc = [], [], [], [], 0
        tokens = pad = 0
        for row in rows:
            pieces = row["seq_lengths"][:-1] if row["num_pad"] else row["seq_lengths"]
            content = len(row["input_ids"]) - row["num_pad"]
            tokens += content
            pad += row["num_pad"]
            fills.append(content / ds.seq_len)
            at = 0
            for n in pieces:
                lengths.append(n)
                if "assistant_masks" in row:
                    targets.append(sum(row["assistant_masks"][at : at + n]))
                at += n
            for t in row["input_ids"][:content]:  # documents end at EOS, across rows (pretraining)
                open_doc += 1
                if t == eos:
                    docs.append(open_doc)
                    open_doc = 0
        out[split] = dict(rows=len(rows), tokens=tokens, pad=pad, lengths=lengths, targets=targets, fills=fills, docs=docs)
    return out


def test_sft_numbers_equal_a_row_by_row_recount(sft_dataset):
    ds = open_dataset(sft_dataset)
    result = report.compute(ds)
    s, expected = result.summary, recount(ds)
    for split, e in expected.items():
        got, arrays = s["splits"][split], result.arrays[split]
        assert (got["rows"], got["tokens"], got["pad_tokens"]) == (e["rows"], e["tokens"], e["pad"])
        assert arrays.lengths.tolist() == e["lengths"] and arrays.targets.tolist() == e["targets"]
        assert np.allclose(arrays.fill, e["fills"])
        assert got["documents"] == len(e["lengths"]) == ds.manifest.counts.documents[split]
        assert got["target_tokens"] == sum(e["targets"])
        assert got["efficiency"] == round(e["tokens"] / (e["rows"] * ds.seq_len), 6)
        assert got["length"]["max"] == max(e["lengths"]) and got["length"]["p50"] == float(np.median(e["lengths"]))
        prompts = [n - t for n, t in zip(e["lengths"], e["targets"])]
        assert got["prompt_length"]["mean"] == round(float(np.mean(prompts)), 4)
    tokens = sum(e["tokens"] for e in expected.values())
    targets = sum(sum(e["targets"]) for e in expected.values())
    assert s["total"]["tokens"] == tokens and s["total"]["target_tokens"] == targets
    assert s["total"]["target_ratio"] == round(targets / tokens, 6)
    assert s["records"] == {"read": 6000, "written": 6000, "dropped": {}, "dropped_total": 0}
    assert s["sources"][0]["tokens"] == tokens and s["sources"][0]["documents"] == 6000
    assert s["mismatches"] == []
    assert s["seq_len"] == 128 and s["packing"] == "bfd" and s["recipe_hash"] == ds.manifest.recipe_hash


def test_pretrain_document_lengths_cross_rows_and_sources_add_up(pretrain_dataset):
    ds = open_dataset(pretrain_dataset)
    result = report.compute(ds)
    s, expected = result.summary, recount(ds)
    assert s["documents_are"] == "eos_delimited"
    for split, e in expected.items():
        assert result.arrays[split].lengths.tolist() == e["docs"]
        # remainder: pad, so every kept document is whole and counted
        assert s["splits"][split]["documents"] == ds.manifest.counts.documents[split]
        assert result.arrays[split].targets is None
    assert s["total"]["tokens"] == sum(e["tokens"] for e in expected.values()) == ds.manifest.counts.tokens
    # tokens per source: recorded by run, after dedup; they add up to the dataset's
    sources = s["sources"]
    assert [Path(x["path"]).name for x in sources] == ["a.jsonl", "b.jsonl"]
    assert sum(x["tokens"] for x in sources) == s["total"]["tokens"] + s["remainder_tokens_dropped"]
    assert sum(x["documents"] for x in sources) == ds.manifest.counts.records_written
    assert all(x["tokens"] > 0 for x in sources)
    assert s["records"]["dropped"] == dict(ds.manifest.counts.dropped) and s["mismatches"] == []


def test_tokens_per_source_match_separate_runs(tmp_path):
    """Each source's tokens equal the tokens of a dataset built from that source alone."""
    lines = (RECIPES / "data" / "sft_tasks.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_text("".join(lines[:300]), encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("".join(lines[300:700]), encoding="utf-8")
    both = run(load_recipe(RECIPES / "demo-sft.yaml", [f"inputs.0.path={tmp_path}"]), tmp_path / "both", workers=1)
    for entry in both["inputs"]:
        alone = run(load_recipe(RECIPES / "demo-sft.yaml", [f"inputs.0.path={entry['path']}"]), tmp_path / Path(entry["path"]).stem, workers=1)
        assert (entry["tokens"], entry["documents"]) == (alone["counts"]["tokens"], alone["counts"]["records_written"])


def test_html_is_self_contained_and_pngs_are_valid(sft_dataset, tmp_path):
    result = report.compute(open_dataset(sft_dataset))
    page = report.write_report(result, tmp_path / "rep")
    html = page.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    assert pngs == ["drops.png", "fill.png", "lengths.png", "sources.png", "targets.png"]
    # nothing external: no URLs, no linked files, every image inline (base64 itself may hold "//")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", html)
    assert not re.search(r"https?:|ftp:|//[a-z]|url\(", text, re.I)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", text, re.I)
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == len(pngs) and all(src.startswith("data:image/png;base64,") for src in sources)
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in sources)
    assert embedded == sorted((page.parent / name).read_bytes() for name in pngs)
    for name in pngs:
        data = (page.parent / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and 5_000 < len(data) < 300_000
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert (width, height) == (800, 400)
        with Image.open(page.parent / name) as image:
            image.verify()
    # the summary table is at the top, with the numbers
    assert html.index("<table>") < html.index("<img")
    assert f"{result.summary['total']['tokens']:,}" in html and result.summary["recipe_hash"] in html


def test_cli_report_text_and_json(sft_dataset, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(sft_dataset), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "packing efficiency" in result.output and f"wrote {tmp_path / 'r' / 'report.html'} (+ 5 PNGs)" in result.output
    numbers = runner.invoke(cli, ["report", str(sft_dataset), "--format", "json", "--out", str(tmp_path / "j")])
    assert numbers.exit_code == 0
    assert json.loads(numbers.output) == report.compute(open_dataset(sft_dataset)).summary
    assert not (tmp_path / "j").exists()  # numbers alone: no files


def test_mismatch_between_data_and_manifest_is_reported(sft_dataset, tmp_path):
    ds = open_dataset(sft_dataset)
    ds.manifest = dataclasses.replace(ds.manifest, counts=dataclasses.replace(ds.manifest.counts, tokens=ds.manifest.counts.tokens + 1))
    assert report.compute(ds).summary["mismatches"] == [
        f"tokens: the data has {ds.manifest.counts.tokens - 1:,}, the manifest says {ds.manifest.counts.tokens:,}"
    ]


def large_split(rows: int, length: int = 64) -> tuple[pa.Table, np.ndarray]:
    """``rows`` packed rows of ``length`` tokens: pieces of 20 and 40 tokens, then a pad piece of 4;
    a random loss mask (pad positions included: the report must not count them)."""
    rng = np.random.default_rng(0)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * length)
    mask = rng.integers(0, 2, (rows, length), dtype=np.uint8)
    pieces = np.tile(np.array([20, 40, length - 60], dtype=np.int32), rows)
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(rng.integers(0, 200, rows * length, dtype=np.int32))),
            "seq_lengths": pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * 3), pa.array(pieces)),
            "num_pad": pa.array(np.full(rows, length - 60, dtype=np.int32)),
            "assistant_masks": pa.ListArray.from_arrays(offsets, pa.array(mask.reshape(-1))),
        }
    )
    return table, mask


def test_a_large_split_is_counted_exactly(sft_dataset, tmp_path):
    """Columnar scans over 200k rows give the exact counts. How fast (1M rows) is measured by
    benchmarks/report_throughput.py, never asserted here."""
    ds = open_dataset(sft_dataset)
    n = 200_000
    table, mask = large_split(n)
    ds._tables = {"train": table, "validation": table.slice(0, 0)}
    result = report.compute(ds)
    report.write_report(result, tmp_path / "big")
    train, arrays = result.summary["splits"]["train"], result.arrays["train"]
    targets = mask[:, :20].sum(axis=1), mask[:, 20:60].sum(axis=1)
    assert (train["rows"], train["documents"], train["tokens"], train["pad_tokens"]) == (n, 2 * n, 60 * n, 4 * n)
    assert train["target_tokens"] == int(mask[:, :60].sum())
    assert np.array_equal(arrays.lengths, np.tile([20, 40], n)) and np.array_equal(arrays.targets, np.stack(targets, 1).reshape(-1))
    assert sorted(p.name for p in (tmp_path / "big").iterdir()) == ["drops.png", "fill.png", "lengths.png", "report.html", "sources.png", "targets.png"]


# --- unknown tokens (issue 14) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def lossy_dataset(tmp_path_factory):
    """A T5-like Unigram tokenizer (tests/test_special_tokens.py) writes <unk> for every { and },
    read from two input files whose braces are counted here."""
    from dataprep.recipe import recipe_from_dict

    from .test_special_tokens import t5_like

    folder = tmp_path_factory.mktemp("lossy")
    texts = {
        "a.jsonl": [f"step {i}: call f {{ x }} then stop." for i in range(30)],
        "b.jsonl": [f"plain line {i} without any braces." for i in range(20)] + ["one { here."],
    }
    for name, lines in texts.items():
        (folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in lines), encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": str(folder / "*.jsonl")}], "tokenizer": {"path": str(t5_like(folder / "t5"))},
         "packing": {"mode": "wrap", "seq_len": 32, "remainder": "pad"}, "split": {"validation": 0.2}},
        base_dir=folder,
    )
    run(recipe, folder / "out", workers=1, progress=False)
    braces = {name: sum(t.count("{") + t.count("}") for t in lines) for name, lines in texts.items()}
    return folder / "out", braces


def _unknown_manifest(out: Path, braces: dict, per_split: dict) -> None:
    """The manifest as the run writes it with counts.unknown_tokens and inputs[i].unknown_tokens."""
    path = out / "manifest.json"
    m = json.loads(path.read_text())
    m["counts"]["unknown_tokens"] = per_split
    for entry in m["inputs"]:
        entry["unknown_tokens"] = braces[Path(entry["path"]).name]
    path.write_text(json.dumps(m))


def test_unknown_tokens_per_split_and_input(lossy_dataset, tmp_path):
    built, braces = lossy_dataset
    out = tmp_path / "out"
    shutil.copytree(built, out)
    ds = open_dataset(out)
    unk = ds.manifest.tokenizer.special_tokens["unk"].id
    assert unk == 2
    counted = {s: sum(row["input_ids"].count(unk) for row in ds.table(s).to_pylist()) for s in ds.splits}
    assert sum(counted.values()) == sum(braces.values()) and all(counted.values())  # remainder: pad drops nothing
    _unknown_manifest(out, braces, counted)
    result = report.compute(open_dataset(out))
    s = result.summary
    tokens = {split: s["splits"][split]["tokens"] for split in counted}
    sources = {Path(i["path"]).name: {**i, "path": ds.manifest.resolve(i["path"])} for i in read_json(out)["inputs"]}  # the report shows where they are
    assert s["unknown_tokens"] == {
        "id": 2,
        "token": "<unk>",
        "splits": {split: {"count": n, "share": round(n / tokens[split], 6)} for split, n in counted.items()},
        "inputs": [
            {"path": sources[name]["path"], "count": braces[name], "share": round(braces[name] / sources[name]["tokens"], 6)}
            for name in ("a.jsonl", "b.jsonl")
        ],
    }
    assert s["mismatches"] == []
    rows = report.summary_rows(s)
    unknown_rows = [(k, v) for k, v in rows if k in ("unknown tokens", "  from input")]
    share = {split: n / tokens[split] for split, n in counted.items()}
    assert unknown_rows == [
        ("unknown tokens", f"train {counted['train']} ({share['train']:.4%}), validation {counted['validation']} ({share['validation']:.4%}); id 2 '<unk>'"),
        ("  from input", f"{sources['a.jsonl']['path']}: {braces['a.jsonl']} ({braces['a.jsonl'] / sources['a.jsonl']['tokens']:.4%})"),
        ("  from input", f"{sources['b.jsonl']['path']}: 1 ({1 / sources['b.jsonl']['tokens']:.4%})"),
    ]
    html = report.render_html(s, {})
    assert "<th>unknown_tokens</th>" in html and f"<td>{counted['train']:,}</td>" in html
    # the data and the manifest disagree: listed
    _unknown_manifest(out, braces, {**counted, "train": counted["train"] + 1})
    assert report.compute(open_dataset(out)).summary["mismatches"] == [
        f"train unknown tokens: the data has {counted['train']:,}, the manifest says {counted['train'] + 1:,}"
    ]


def test_no_unknown_tokens_shown_without_an_unknown_token(sft_dataset):
    """The bundled byte tokenizer can write every text: it has no unknown token, nothing to show."""
    s = report.compute(open_dataset(sft_dataset)).summary
    assert "unknown_tokens" not in s and "unknown_tokens" not in s["splits"]["train"]
    assert not [k for k, _ in report.summary_rows(s) if k.startswith("unknown")]


def test_fewshot_prompts_are_reported_as_examples_with_their_targets(tmp_path):
    """Few-shot rows are whole prompts with an answer target: the report counts examples and their
    target tokens (recounted from the rows), as it does for fine-tuning; not document pieces."""
    out = tmp_path / "fewshot"
    run(load_recipe(RECIPES / "fewshot-demo.yaml"), out, workers=1)
    ds = open_dataset(out)
    s = report.compute(ds).summary
    targets = {split: sum(sum(row["assistant_masks"]) for row in ds.table(split).to_pylist()) for split in ds.splits}
    assert s["documents_are"] == "examples"
    assert {split: s["splits"][split]["target_tokens"] for split in ds.splits} == targets
    assert s["total"]["target_tokens"] == sum(targets.values()) > 0
    assert s["boundary_straddles"] == ds.manifest.sft.examples.with_boundary_straddle
    rows = dict(report.summary_rows(s))
    assert rows["examples"] == ", ".join(f"{k} {v['documents']:,}" for k, v in s["splits"].items())
    assert rows["target tokens"].startswith(f"{sum(targets.values()):,} ")
    assert "targets.png" in plots.draw_all(report.compute(ds))
