"""`--recheck-sources`: source records re-made with the recipe are found in the rows, every token,
loss_mask value and label_id compared. Shipped recipes recheck clean; one changed token, one
flipped mask bit, one flipped label_id (shard checksum fixed, so only the recheck can see it) are
each a finding naming the split, the row and the record; an edited source or a swapped tokenizer
makes the dataset stale, and says where."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from dataprep import columns as C
from dataprep.cli import main
from dataprep.dataset.paths import recipe_dir, resolve
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.text.tokenizer import load_tokenizer
from dataprep.validate import validate_dataset
from dataprep.dataset.manifest import Manifest
from dataprep.validate.findings import Findings
from dataprep.validate.recheck import compare, prepare
from dataprep.build.write import shard_digests

from .conftest import DATA, RECIPES

EOS = 50256  # GPT-2's, code-pretrain's document mark

# --- building and editing datasets ---------------------------------------------------------


def small_sft(folder: Path, records: int = 300, **changes) -> Path:
    """demo-sft over its first ``records`` records and a copy of its tokenizer, all under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (RECIPES / "data" / "sft_tasks.jsonl").read_text().splitlines()[:records]
    (folder / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copytree(RECIPES / "data" / "byte_tokenizer", folder / "tok")
    recipe = yaml.safe_load((RECIPES / "demo-sft.yaml").read_text())
    recipe["inputs"] = [{"path": "tasks.jsonl"}]
    recipe["tokenizer"] = {"path": "tok"}
    recipe.update(changes)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = folder / "out"
    run(load_recipe(folder / "recipe.yaml"), out, workers=1, progress=False)
    return out


def head_of(path: Path, n: int, folder: Path) -> Path:
    """A copy of an input with its first ``n`` records (json array, or lines after a tsv header)."""
    copy = folder / path.name
    if path.suffix == ".json":
        copy.write_text(json.dumps(json.loads(path.read_text())[:n]))
    else:
        lines = path.read_text().splitlines(keepends=True)
        copy.write_text("".join(lines[: n + (path.suffix == ".tsv")]))
    return copy


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """``build(recipe, *overrides, head=N)``: the dataset, made once per module (``head``: over a copy
    of the input's first N records, to keep the run small)."""
    made: dict[tuple, Path] = {}

    def make(name: str, *overrides: str, head: int | None = None) -> Path:
        key = (name, overrides, head)
        if key not in made:
            folder = tmp_path_factory.mktemp(name)
            sets = list(overrides)
            if head is not None:
                recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
                source = (RECIPES / recipe["inputs"][0]["path"]).resolve()
                sets.append(f"inputs.0.path={head_of(source, head, folder)}")
            with pytest.MonkeyPatch.context() as patch:  # the run's transformers comparison: a warning, and slow
                patch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)
                run(load_recipe(RECIPES / f"{name}.yaml", sets), folder / "out", workers=1, progress=False)
            made[key] = folder / "out"
        return made[key]

    return make


def edit_rows(out: Path, split: str, edit, manifest_edit=None) -> None:
    """Rewrite the split's first shard with ``edit(rows: list[dict])`` applied, and fix its size and
    checksums in the manifest (so only the recheck can tell)."""
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    entry = manifest["splits"][split]["shards"][0]
    path = out / split / entry["file"]
    with pa.ipc.open_stream(path.read_bytes()) as reader:
        schema, rows = reader.schema, reader.read_all().to_pylist()
    edit(rows)
    with pa.ipc.new_stream(str(path), schema) as writer:
        writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    entry["sha256"], entry["xxh3_128"] = shard_digests(path)
    entry["bytes"] = path.stat().st_size
    if manifest_edit:
        manifest_edit(manifest)
    (out / C.MANIFEST_FILE).write_text(json.dumps(manifest))


def stored_rows(out: Path, split: str) -> list[dict]:
    entry = json.loads((out / C.MANIFEST_FILE).read_text())["splits"][split]["shards"][0]
    return pa.ipc.open_stream((out / split / entry["file"]).read_bytes()).read_all().to_pylist()


def findings(report: Findings) -> list[tuple]:
    return [(f.kind, f.split, f.row, f.position, f.file, f.line) for f in report.findings]


# --- shipped recipes: no false findings -----------------------------------------------------

# (recipe, overrides, head): every packing mode each recipe allows (wrap with remainder drop
# and pad, bfd, unpacked); head keeps a slow tokenizer's run small (N input records).
SHIPPED = {
    "demo-pretrain": ("demo-pretrain", (), None),  # wrap, remainder pad
    "demo-pretrain-drop": ("demo-pretrain", ("packing.remainder=drop",), None),
    "demo-pretrain-bfd": ("demo-pretrain", ("packing.mode=bfd",), None),
    "code-pretrain": ("code-pretrain", (), None),  # wrap, remainder drop (the default)
    "code-pretrain-bfd": ("code-pretrain", ("packing.mode=bfd", "packing.seq_len=256"), None),  # long documents cut into pieces
    "demo-sft": ("demo-sft", (), 2000),  # unpacked
    "demo-sft-bfd": ("demo-sft", ("packing.mode=bfd",), 2000),
    "classification": ("classification", (), None),  # label_id; duplicates and a too-long record dropped
    "classification-bfd": ("classification", ("packing.mode=bfd", "packing.seq_len=512"), 1500),  # label_ids
    "alpaca": ("alpaca", (), 300),
    "dialogsum": ("dialogsum", (), None),  # bfd, prompts truncated
    "dialogsum-none": ("dialogsum", ("packing.mode=none",), 200),
    "chat": ("chat", (), None),
    "chat-none": ("chat", ("packing.mode=none",), 200),
    "chat-tools": ("chat-tools", (), 60),
    "chat-gpt-oss": ("chat-gpt-oss", (), 60),
    "fewshot-demo": ("fewshot-demo", (), None),  # not re-made record by record: a note says so
    "mlm-wikitext": ("mlm-wikitext", (), None),
    "span-c4": ("span-c4", (), None),
}


# Shipped recipes --recheck-sources cannot re-make yet, each with why (validate says so as a finding).
NOT_RECHECKED = {
    "preference-dpo-en-demo": "rechecked with every record in tests/test_preference_validate.py (pairs are one unit each)",
    "preference-kto-en-demo": "rechecked with every record in tests/test_preference_validate.py (pairs are one unit each)",
    "preference-hh-sample": "rechecked with every record in tests/test_preference_validate.py (pairs are one unit each)",
    "preference-synthetic": "rechecked with every record in tests/test_preference_validate.py (pairs are one unit each)",
    "two-stage-pretrain": "the same paths as demo-pretrain (a trained tokenizer, wrap), rechecked there",
    "two-stage-sft": "reads the tokenizer two-stage-pretrain trains; tests/test_two_stage.py checks its rows exactly",
    "two-stage-fewshot": "reads the tokenizer two-stage-pretrain trains; tests/test_two_stage.py checks its rows exactly",
    "continued-pretrain-code": "a mixture: tests/test_mixture.py rechecks one with every record, and finds a changed token",
}


def test_every_shipped_recipe_is_covered():
    shipped = {path.stem for path in RECIPES.glob("*.yaml")}
    assert shipped == {name for name, _, _ in SHIPPED.values()} | set(NOT_RECHECKED)


@pytest.mark.parametrize("case", list(SHIPPED))
def test_shipped_recipe_rechecks_clean_with_every_record(build, case):
    # --sample all: every record is found exactly as made, so no seeded sample (a subset of the
    # records) has anything to find either; the paths only a sample takes (the remainder worked out
    # from the inputs' last records, duplicates of unsampled records) run in the seeds test below
    name, overrides, head = SHIPPED[case]
    out = build(name, *overrides, head=head)
    report = validate_dataset(out, recheck="all")
    assert report.ok, report.to_text()
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    if manifest.get("objective") or manifest["task"] == "fewshot":
        assert any(note.startswith("recheck skipped: rows of") for note in report.notes)
        return
    stats = report.stats["recheck"]
    counts = manifest["counts"]
    assert stats["sampled"] == counts["records_read"]  # every record, each re-made (no unreadable ones here)
    assert stats.get("duplicates", 0) == counts["dropped"].get("duplicate", 0)
    if case.endswith("-drop") or case == "code-pretrain":  # the remainder cut a document: its head was compared
        assert stats.get("cut_by_remainder", 0) + stats.get("in_remainder", 0) >= 1


@pytest.mark.parametrize("case", ["demo-pretrain-drop", "code-pretrain", "demo-sft-bfd", "classification"])
def test_seeds_at_the_default_sample(build, case):
    name, overrides, head = SHIPPED[case]
    out = build(name, *overrides, head=head)
    for seed in range(7):
        report = validate_dataset(out, recheck=200, seed=seed)
        assert report.ok, (seed, report.to_text())


def test_cli_sample_all(build, capsys):
    out = build("demo-pretrain", "packing.remainder=drop")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(out), "--recheck-sources", "--sample", "all"])
    assert info.value.code == 0 and "recheck {sampled: 600, duplicates: 5, cut_by_remainder: 2}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["validate", str(out), "--recheck-sources", "--sample", "most"])
    assert info.value.code == 2 and "'most' is not a valid integer range" in capsys.readouterr().err


# --- planted changes: each found, with split, row and record ---------------------------------


def _example(out: Path, split: str, row: int) -> tuple[list[int], str]:
    """Row ``row``'s tokens (an unpacked example) and the line of tasks.jsonl that made them (found
    by rendering each record through the recipe's template here)."""
    from tokenizers import Tokenizer

    tokens = stored_rows(out, split)[row][C.INPUT_IDS]
    text = Tokenizer.from_file(str(out.parent / "tok" / "tokenizer.json")).decode(tokens[:-1])  # less the EOS
    lines = (out.parent / "tasks.jsonl").read_text().splitlines()
    line = next(i for i, s in enumerate(lines, 1) if text == "Q: {prompt}\nA: {completion}".format(**json.loads(s)))
    return tokens, f"line {line}"


@pytest.fixture
def sft_copy(tmp_path_factory, tmp_path):
    """A fresh copy of a small demo-sft dataset (made once per module)."""
    cache = tmp_path_factory.getbasetemp() / "recheck-sft"
    if not cache.exists():
        small_sft(cache)
    shutil.copytree(cache, tmp_path / "sft")
    return tmp_path / "sft" / "out"


def test_one_changed_token(sft_copy):
    tokens, line = _example(sft_copy, "train", 7)
    position = len(tokens) - 3  # inside the response, not the stop token
    old = tokens[position]

    def change(rows):
        rows[7][C.INPUT_IDS][position] = old + 1 if old + 1 != 0 else old + 2

    edit_rows(sft_copy, "train", change)
    report = validate_dataset(sft_copy, recheck="all")
    m = json.loads((sft_copy / C.MANIFEST_FILE).read_text())
    source = resolve(m, m["inputs"][0]["path"])  # the copy's recipe_dir is the original's
    assert findings(report) == [("recheck_tokens", "train", 7, position, source, line)], report.to_text()
    assert f"holds id {old + 1} where the record gives {old}: 1 of the {len(tokens)} tokens differ" in report.findings[0].message
    assert_samples_find(sft_copy, findings(report))


def assert_samples_find(out: Path, expected: list[tuple], size: int = 150) -> None:
    """Seeded samples (a subset of all records) find exactly the same, or nothing when the
    record is not sampled; some seed samples it."""
    seen = [findings(validate_dataset(out, recheck=size, seed=seed)) for seed in range(6)]
    assert all(found in ([], expected) for found in seen) and expected in seen, seen


def test_one_flipped_mask_bit(sft_copy):
    tokens, line = _example(sft_copy, "validation", 3)
    mask = stored_rows(sft_copy, "validation")[3][C.LOSS_MASK]
    position = len(tokens) - 2  # a target inside the response: 1 -> 0
    assert mask[position] == 1

    def flip(rows):
        rows[3][C.LOSS_MASK][position] = 0

    def fewer_targets(manifest):  # the manifest's count agrees, so only the recheck can tell
        manifest["sft"]["target_tokens"] -= 1

    edit_rows(sft_copy, "validation", flip, fewer_targets)
    report = validate_dataset(sft_copy, recheck="all")
    m = json.loads((sft_copy / C.MANIFEST_FILE).read_text())
    source = resolve(m, m["inputs"][0]["path"])  # the copy's recipe_dir is the original's
    assert findings(report) == [("recheck_mask", "validation", 3, position, source, line)], report.to_text()
    assert "has assistant_masks 0 where the record gives 1 (1 of" in report.findings[0].message
    assert_samples_find(sft_copy, findings(report))


@pytest.mark.parametrize("packing", ["none", "bfd"])
def test_one_flipped_label_id(build, tmp_path, packing):
    out = tmp_path / "out"
    shutil.copytree(build("classification", f"packing.mode={packing}", "packing.seq_len=512", head=400), out)
    rows = stored_rows(out, "train")
    row = next(i for i, r in enumerate(rows) if i > 4 and (r[C.LABEL_ID] == 0 if packing == "none" else r[C.LABEL_IDS][-1] == 0))

    def flip(rows):  # ham -> spam; the text still ends "Label: ham"
        if packing == "none":
            rows[row][C.LABEL_ID] = 1
        else:
            rows[row][C.LABEL_IDS][-1] = 1

    edit_rows(out, "train", flip)
    report = validate_dataset(out, recheck="all")
    assert [(f.kind, f.split, f.row) for f in report.findings] == [("recheck_label", "train", row)], report.to_text()
    found = report.findings[0]
    assert found.file.endswith("sms_spam_collection.tsv") and found.line.startswith("line ")
    assert "holds label_id 1 ('spam')" in found.message and "the record's label 'ham' is label_id 0 in the manifest's sft.labels" in found.message
    # that line of the input is indeed a ham message
    lines = Path(found.file).read_text().splitlines()
    assert lines[int(found.line.split()[1]) - 1].startswith("ham\t")


def code_tokens(line: str) -> list[int]:
    """The tokens code-pretrain makes of one HumanEval record (its text template, GPT-2, EOS)."""
    recipe = load_recipe(RECIPES / "code-pretrain.yaml")
    record = json.loads((recipe.base_dir / recipe.inputs[0].path).read_text().splitlines()[int(line.split()[1]) - 1])
    tokens, _ = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir).encode_docs([record["prompt"] + record["canonical_solution"]])
    return list(tokens)


def test_a_changed_token_in_a_document_across_rows(build, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(build("code-pretrain"), out)
    rows = stored_rows(out, "train")
    # the document that starts in row 10 and runs on into row 11: change its first token in row 11
    start = max(i for i, t in enumerate(rows[10][C.INPUT_IDS]) if t == EOS) + 1
    head, old = rows[10][C.INPUT_IDS][start:], rows[11][C.INPUT_IDS][0]
    assert head and old != EOS

    def change(rows):
        rows[11][C.INPUT_IDS][0] = old + 1

    edit_rows(out, "train", change)
    report = validate_dataset(out, recheck="all")
    assert [(f.kind, f.split, f.row, f.position) for f in report.findings] == [("recheck_tokens", "train", 11, 0)], report.to_text()
    found = report.findings[0]
    assert f"differ in the document stored at train/data-00000-of-00001.arrow row 10 position {start}" in found.message
    assert code_tokens(found.line)[: len(head) + 1] == head + [old]  # the record named is the one stored there


def test_the_wrap_remainder(build, tmp_path):
    # code-pretrain drops each split's final partial row: the last document is stored in part
    out = tmp_path / "out"
    shutil.copytree(build("code-pretrain"), out)
    assert json.loads((out / C.MANIFEST_FILE).read_text())["packing"]["train"]["dropped_tokens"] > 0
    rows = stored_rows(out, "train")
    last = len(rows) - 1
    ids = rows[last][C.INPUT_IDS]
    start = max(i for i, t in enumerate(ids) if t == EOS) + 1  # the cut document's stored head
    position = start + 1

    def change(rows):
        rows[last][C.INPUT_IDS][position] += 1

    edit_rows(out, "train", change)
    report = validate_dataset(out, recheck="all")
    assert [(f.kind, f.split, f.row, f.position) for f in report.findings] == [("recheck_tokens", "train", last, position)], report.to_text()
    assert "the rest fell in the dropped remainder" in report.findings[0].message
    made = code_tokens(report.findings[0].line)
    assert made[: len(ids) - start] == ids[start:] and len(made) > len(ids) - start  # that record, cut by the remainder
    assert_samples_find(out, findings(report))  # found from the last records of the inputs alone


# --- stale datasets ---------------------------------------------------------------------------


def test_an_edited_source_record_is_stale(tmp_path):
    folder = tmp_path / "small"
    small_sft(folder)
    source = folder / "tasks.jsonl"
    lines = source.read_text().splitlines()
    record = json.loads(lines[4])
    record["completion"] = "qqqq-edited"
    lines[4] = json.dumps(record)
    source.write_text("\n".join(lines) + "\n")
    report = validate_dataset(folder / "out", recheck=300)  # every record
    assert [(f.kind, f.file, f.line) for f in report.findings] == [
        ("source_changed", str(source), None),
        ("recheck_tokens", str(source), "line 5"),
        ("recheck_extra", "train/data-00000-of-00001.arrow", None),  # the example line 5 made then
    ]
    assert "the dataset is stale" in report.findings[1].message
    assert report.findings[2].row == 4 and "that no source record re-makes" in report.findings[2].message


@pytest.mark.parametrize("where", ["dataset copy", "source"])
def test_a_swapped_tokenizer_is_stale(tmp_path, where):
    """The dataset's own tokenizer copy swapped for another is stale; the source folder swapped after
    the build is not (the dataset carries the copy it was built with)."""
    folder = tmp_path / "small"
    small_sft(folder, records=50)
    swapped = folder / "out" / "tokenizer" if where == "dataset copy" else folder / "tok"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (swapped / name).unlink()
    for name in ("vocab.json", "merges.txt"):  # GPT-2 where the byte tokenizer was
        shutil.copy(DATA / "tokenizers" / "gpt2" / name, swapped / name)
    report = validate_dataset(folder / "out", recheck=10)
    if where == "source":
        assert report.ok, report.to_text()
        return
    kinds = [f.kind for f in report.findings]
    assert kinds == ["tokenizer_file_changed", "tokenizer_vocab_size", "tokenizer_special_tokens", "tokenizer_special_tokens",
                     "tokenizer_changed"] + ["recheck_tokens"] * 10
    assert report.findings[0].path == report.findings[4].path == "tokenizer.fingerprint"


# --- manifest paths: both layouts -------------------------------------------------------------


def test_paths_relative_to_run_recipe_dir(sft_copy):
    manifest = json.loads((sft_copy / C.MANIFEST_FILE).read_text())
    base = str(recipe_dir(manifest))
    for entry in manifest["inputs"]:
        entry["path"] = os.path.relpath(resolve(manifest, entry["path"]), base)
    manifest["tokenizer"]["source"] = os.path.relpath(resolve(manifest, manifest["tokenizer"]["source"]), base)
    manifest.pop("recipe_dir", None)
    manifest["run"]["recipe_dir"] = base
    assert resolve(manifest, "tasks.jsonl") == str(Path(base) / "tasks.jsonl")
    assert resolve(manifest, "/abs/x.jsonl") == "/abs/x.jsonl"
    report = Findings(str(sft_copy), "dataset")
    expected = prepare(Manifest.from_dict(manifest), sft_copy, sample="all", seed=0, report=report)
    assert expected is not None and report.ok and report.notes == [], report.to_text()
    assert compare(expected) == [] and report.stats["recheck"] == {"sampled": 300}
    del manifest["run"]["recipe_dir"]  # neither (a manifest older than both, created_unix at the top level):
    manifest["created_unix"] = manifest["run"].pop("created_unix")  # recovered from the recorded paths, as before
    manifest["tokenizer"]["source"] = str(Path(base) / manifest["tokenizer"]["source"])
    manifest["inputs"][0]["path"] = str(Path(base) / manifest["inputs"][0]["path"])
    report = Findings(str(sft_copy), "dataset")
    assert compare(prepare(Manifest.from_dict(manifest), sft_copy, sample=20, seed=1, report=report)) == [] and report.ok


def test_duplicates_are_counted_not_found(tmp_path):
    # records whose content an earlier record had are dropped by dedup: with every record re-made
    # they are counted, and the stored unit is claimed once
    folder = tmp_path / "dups"
    folder.mkdir()
    out = small_sft(folder, records=40)
    lines = (folder / "tasks.jsonl").read_text().splitlines()
    (folder / "tasks.jsonl").write_text("\n".join(lines + lines[:5]) + "\n")
    shutil.rmtree(out)
    run(load_recipe(folder / "recipe.yaml"), out, workers=1, progress=False)
    report = validate_dataset(out, recheck="all")
    assert report.ok and report.stats["recheck"] == {"sampled": 45, "duplicates": 5}, report.to_text()
