"""Issue 14, never silent: every input record is written or counted as dropped with its reason, and
no run loses data and exits 0.

- the ``max_dropped_fraction`` ceiling of ``on_error: skip`` (damage only, per input, inclusive);
- empty outputs (no example, an empty split, a split emptied by the wrap remainder) unless ``allow_empty``;
- ``no_tokens`` documents and unknown-token counts, against independent tokenizer references;
- an input that changes or disappears during a run;
- hypothesis: random mixes of good, bad, empty and duplicate records in four formats, each one
  accounted for in the manifest, per input and per reason.

Each test was checked to fail when the behaviour it pins is broken; the comment above it says how
(a temporary edit to the named line, then reverted).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

from dataprep import columns as C
from dataprep.build import run as pipeline
from dataprep.cli import main
from dataprep.errors import DataLossError, InputError
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.validate import validate_dataset

from .conftest import DATA, read_split

GPT2 = DATA / "tokenizers" / "gpt2"
BERT = DATA / "tokenizers" / "bert-base-cased"
MALFORMED = b'{"text": "cut'
BAD_UTF8 = b'{"text": "bad \xff byte"}'


def line(record: dict) -> bytes:
    return json.dumps(record).encode("utf-8")


def jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    return path


def docs(n: int, tag: str = "doc") -> list[bytes]:
    """``n`` distinct good jsonl lines."""
    return [line({"text": f"{tag} number {i} says hello"}) for i in range(n)]


def damaged(path: Path, good: int, bad: dict[int, bytes]) -> Path:
    """``good`` good lines with ``bad`` lines put in at the given 1-based line numbers."""
    lines = docs(good, path.stem)
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    return jsonl(path, lines)


def pretrain(tmp_path: Path, inputs: list[Path], **sections):
    data = {"task": "pretrain", "inputs": [{"path": str(p)} for p in inputs], "tokenizer": {"path": str(GPT2)},
            "packing": {"seq_len": 16}, "split": {"validation": 0.0}}
    data.update(sections)
    return recipe_from_dict(data, base_dir=tmp_path)


def pairs(tmp_path: Path, records: list[dict], **extra):
    src = jsonl(tmp_path / "pairs.jsonl", [line(r) for r in records])
    data = {"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)},
            "template": "prompt_completion", "split": {"validation": 0.0}}
    data.update(extra)
    return recipe_from_dict(data, base_dir=tmp_path)


def left(tmp_path: Path) -> list[str]:
    """What the folder holds: a failed run leaves neither ``out`` nor ``out.incomplete``."""
    return sorted(p.name for p in tmp_path.iterdir())


def balanced(manifest: dict) -> None:
    """Every record read is written or dropped, overall and per input."""
    c = manifest["counts"]
    assert c["records_read"] == c["records_written"] + sum(c["dropped"].values())
    assert c["records_read"] == sum(i["records_read"] for i in manifest["inputs"])
    assert c["records_written"] == sum(i["documents"] for i in manifest["inputs"])
    total = Counter()
    for i in manifest["inputs"]:
        assert i["records_read"] == i["documents"] + sum(i["dropped"].values()), i["path"]
        total.update(i["dropped"])
    assert dict(total) == c["dropped"]


# --- 1. the ceiling ------------------------------------------------------------------------------


# Checked: `>` changed to `>=` in check_losses fails test_one_damaged_record... and the 0.5 case
# of test_max_dropped_fraction...; records_read summed over all inputs fails
# test_the_ceiling_is_per_input[damaged last].
def test_two_damaged_records_of_100_fail_the_run_naming_file_and_reasons(tmp_path):
    src = damaged(tmp_path / "d.jsonl", 98, {11: MALFORMED, 51: BAD_UTF8})
    with pytest.raises(DataLossError) as info:
        run(pretrain(tmp_path, [src], on_error="skip"), tmp_path / "out", workers=1)
    message = str(info.value)
    assert "more than max_dropped_fraction (1.0%) of an input's records were dropped" in message
    assert f"{src}: 2 of 100 records dropped (2.0%): malformed_json 1, invalid_utf8 1" in message
    assert info.value.fix.startswith("fix the records") and "raise `max_dropped_fraction`" in info.value.fix
    assert left(tmp_path) == ["d.jsonl"]


def test_one_damaged_record_of_100_is_within_the_default_ceiling(tmp_path):
    src = damaged(tmp_path / "d.jsonl", 99, {40: BAD_UTF8})
    manifest = run(pretrain(tmp_path, [src], on_error="skip"), tmp_path / "out", workers=1)  # 1% of 100: inclusive
    (entry,) = manifest["inputs"]
    assert (entry["records_read"], entry["documents"], entry["dropped"]) == (100, 99, {"invalid_utf8": 1})
    assert entry["encoding"] == "utf-8"
    balanced(manifest)


@pytest.mark.parametrize("fraction, fails", [(1, False), (0.5, False), (0.49, True), (0, True)])
def test_max_dropped_fraction_sets_the_ceiling(tmp_path, fraction, fails):
    src = damaged(tmp_path / "d.jsonl", 10, {n: MALFORMED for n in range(2, 21, 2)})  # 10 of 20 damaged
    recipe = pretrain(tmp_path, [src], on_error="skip", max_dropped_fraction=fraction)
    if fails:
        with pytest.raises(DataLossError, match=r"10 of 20 records dropped \(50\.0%\): malformed_json 10"):
            run(recipe, tmp_path / "out", workers=1)
        assert left(tmp_path) == ["d.jsonl"]
    else:
        assert run(recipe, tmp_path / "out", workers=1)["counts"]["dropped"] == {"malformed_json": 10}


@pytest.mark.parametrize("broken", [29, 57, 58])
def test_the_ceiling_is_inclusive_at_every_fraction(tmp_path, broken):
    src = damaged(tmp_path / "d.jsonl", 100 - broken, {n: MALFORMED for n in range(1, broken + 1)})
    manifest = run(pretrain(tmp_path, [src], on_error="skip", max_dropped_fraction=broken / 100), tmp_path / "out", workers=1)
    assert manifest["inputs"][0]["dropped"] == {"malformed_json": broken}


@pytest.mark.parametrize("order", ["damaged first", "damaged last"])
def test_the_ceiling_is_per_input(tmp_path, order):
    # 2 of 310 records (0.6%) over both inputs, but 2 of 10 (20%) of the small one
    big = jsonl(tmp_path / "big.jsonl", docs(300, "big"))
    small = damaged(tmp_path / "small.jsonl", 8, {3: MALFORMED, 6: BAD_UTF8})
    inputs = [small, big] if order == "damaged first" else [big, small]
    with pytest.raises(DataLossError) as info:
        run(pretrain(tmp_path, inputs, on_error="skip", output={"chunk_records": 64}), tmp_path / "out", workers=1)
    message = str(info.value)
    assert f"{small}: 2 of 10 records dropped (20.0%): malformed_json 1, invalid_utf8 1" in message
    assert str(big) not in message
    assert left(tmp_path) == ["big.jsonl", "small.jsonl"]


# Checked: CHOSEN emptied (every drop counted as damage) fails this test, the unknown_label one
# and the no_tokens one.
def test_filter_drops_and_duplicates_never_count(tmp_path):
    good = [f"kept document {i} here" for i in range(50)]
    texts = (good + [""] * 10 + ["abc"] * 10 + ["word " * 20] * 10 + ["singleword"] * 10 + good[:10])
    src = jsonl(tmp_path / "d.jsonl", [line({"text": t}) for t in texts])
    recipe = pretrain(tmp_path, [src], on_error="skip", filter={"min_chars": 5, "max_chars": 60, "min_words": 2})
    manifest = run(recipe, tmp_path / "out", workers=1)  # 50% dropped, none of it damage
    assert manifest["inputs"][0]["dropped"] == {"duplicate": 10, "empty": 10, "too_few_words": 10, "too_long": 10, "too_short": 10}
    assert manifest["counts"]["records_written"] == 50
    balanced(manifest)


def test_unknown_label_dropped_by_the_recipe_never_counts(tmp_path):
    src = tmp_path / "labels.tsv"
    rows = [f"{label}\ttext number {i}" for i, label in enumerate(["pos", "neg", "meh", "neg", "meh", "pos", "meh", "pos"])]
    src.write_text("label\ttext\n" + "\n".join(rows) + "\n", encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)}, "template": "classification",
         "classification": {"labels": ["neg", "pos"], "unknown_label": "drop"}, "split": {"validation": 0.0}, "on_error": "skip"},
        base_dir=tmp_path,
    )
    manifest = run(recipe, tmp_path / "out", workers=1)  # 3 of 8 dropped, by the recipe's choice
    assert manifest["inputs"][0]["dropped"] == {"unknown_label": 3}
    balanced(manifest)


BOOM = (
    "{% for m in messages %}{% if m['content'] == 'boom' %}{{ raise_exception('no boom allowed') }}{% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
)


# Checked: dropping the worker's drops from input_drops (stage.source_drops) fails both cases.
@pytest.mark.parametrize("case", ["empty completion", "template raises"])
def test_fine_tuning_worker_drops_count_and_are_located(tmp_path, case):
    if case == "empty completion":
        records = [{"prompt": f"Q{i}:", "completion": "" if i in (3, 8) else f" answer {i}"} for i in range(100)]
        recipe = pairs(tmp_path, records, on_error="skip")
        reason, detail = "empty_field", "field 'completion' is empty"
    else:
        (tmp_path / "boom.jinja").write_text(BOOM, encoding="utf-8")
        records = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "boom" if i in (3, 8) else f"a{i}"}]}
                   for i in range(100)]
        recipe = recipe_from_dict(
            {"task": "sft", "inputs": [{"path": str(jsonl(tmp_path / "pairs.jsonl", [line(r) for r in records]))}],
             "tokenizer": {"path": str(GPT2)}, "template": "chat", "chat": {"template": "boom.jinja"},
             "split": {"validation": 0.0}, "on_error": "skip"},
            base_dir=tmp_path,
        )
        reason, detail = "template_raised", "the chat template raised an error: no boom allowed"
    with pytest.raises(DataLossError) as info:
        run(recipe, tmp_path / "out", workers=1)
    message = str(info.value)
    assert f"pairs.jsonl: 2 of 100 records dropped (2.0%): {reason} 2" in message
    assert f"    line 4: {reason}: " in message and f"    line 9: {reason}: " in message and detail in message
    assert "out" not in left(tmp_path) and "out.incomplete" not in left(tmp_path)
    records[3] = records[4]  # 1 of 100 left bad (a duplicate is no damage): within the ceiling
    (tmp_path / "pairs.jsonl").write_bytes(b"".join(line(r) + b"\n" for r in records))
    manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["inputs"][0]["dropped"] == {reason: 1, "duplicate": 1}
    balanced(manifest)


def test_examples_over_max_length_with_overflow_error_count_as_damage(tmp_path):
    records = [{"prompt": f"Q{i}:", "completion": " a" * (40 if i % 2 else 3)} for i in range(20)]
    recipe = pairs(tmp_path, records, on_error="skip", overflow="error", max_length=20)
    with pytest.raises(DataLossError, match=r"10 of 20 records dropped \(50\.0%\): too_long 10"):
        run(recipe, tmp_path / "out", workers=1)  # today: exits 0 having dropped half the examples


def test_on_error_raise_is_unaffected_by_the_ceiling(tmp_path):
    src = damaged(tmp_path / "d.jsonl", 99, {40: BAD_UTF8})
    for fraction in (0.01, 1):
        with pytest.raises(InputError, match=r"d\.jsonl, line 40: invalid UTF-8"):
            run(pretrain(tmp_path, [src], max_dropped_fraction=fraction), tmp_path / "out", workers=1)
    assert left(tmp_path) == ["d.jsonl"]


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_cli_exits_1_with_error_and_fix_and_prints_drops_first(tmp_path, capsys):
    src = damaged(tmp_path / "d.jsonl", 98, {11: MALFORMED, 51: BAD_UTF8})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "pretrain", "inputs": [{"path": "d.jsonl"}], "tokenizer": {"path": str(GPT2)},
                                      "packing": {"seq_len": 16}, "split": {"validation": 0.0}, "on_error": "skip"}),
                      encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = invoke(["run", str(recipe), "--out", str(out), "-w", "1"], capsys)
    assert code == 1 and stdout == ""
    assert stderr.count("error: more than max_dropped_fraction (1.0%)") == 1
    assert f"{src}: 2 of 100 records dropped (2.0%): malformed_json 1, invalid_utf8 1" in stderr
    assert "\n  fix: fix the records" in stderr and "Traceback" not in stderr
    assert not out.exists() and not Path(f"{out}.incomplete").exists()
    code, stdout, _ = invoke(["run", str(recipe), "--out", str(out), "-w", "1", "--set", "max_dropped_fraction=0.02"], capsys)
    assert code == 0
    assert stdout.startswith("dropped 2 of 100 records: invalid_utf8 1, malformed_json 1 (`dataprep report ")


# --- 2. empty outputs ----------------------------------------------------------------------------


def small_corpus(tmp_path: Path, texts: list[str]) -> Path:
    return jsonl(tmp_path / "d.jsonl", [line({"text": t}) for t in texts])


def allowed(tmp_path: Path, recipe) -> dict:
    """The same recipe with ``allow_empty: true`` runs, and its dataset validates."""
    data = dict(recipe.resolved, allow_empty=True)
    manifest = run(recipe_from_dict(data, base_dir=tmp_path), tmp_path / "out", workers=1)
    report = validate_dataset(tmp_path / "out")
    assert report.ok, report.to_text()
    return manifest


# Checked: removing the `written == 0` branch of check_output fails this test.
def test_every_record_filtered_out_is_an_error_naming_the_drops(tmp_path):
    recipe = pretrain(tmp_path, [small_corpus(tmp_path, ["", "  ", "a"])], filter={"min_chars": 2})
    with pytest.raises(DataLossError) as info:
        run(recipe, tmp_path / "out", workers=1)
    assert info.value.reason_message == "the run wrote no example at all (dropped: empty 2, too_short 1)"
    assert "set `allow_empty: true`" in info.value.fix
    assert left(tmp_path) == ["d.jsonl"]
    manifest = allowed(tmp_path, recipe)
    assert manifest["counts"]["records_written"] == 0 and manifest["counts"]["dropped"] == {"empty": 2, "too_short": 1}


def test_an_empty_validation_split_is_an_error_naming_it_and_the_fix(tmp_path):
    recipe = pretrain(tmp_path, [small_corpus(tmp_path, ["the first document", "a second one", "and a third"])],
                      split={"validation": 0.01}, packing={"seq_len": 4, "remainder": "pad"})
    with pytest.raises(DataLossError) as info:
        run(recipe, tmp_path / "out", workers=1)
    assert info.value.reason_message == "the validation split is empty: no document of 3 fell in it"
    assert info.value.fix.startswith("raise `split.validation`, or set it to 0 for no validation split")
    assert "allow_empty: true" in info.value.fix
    assert left(tmp_path) == ["d.jsonl"]
    assert allowed(tmp_path, recipe)["counts"]["documents"] == {"train": 3, "validation": 0}


def test_a_split_emptied_by_the_wrap_remainder_is_an_error_naming_the_remainder(tmp_path):
    texts = ["one two", "three", "four five six"]
    reference = ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    tokens = sum(len(reference.encode(t).ids) + 1 for t in texts)  # + EOS each
    assert tokens < 64
    recipe = pretrain(tmp_path, [small_corpus(tmp_path, texts)], packing={"seq_len": 64, "remainder": "drop"})
    with pytest.raises(DataLossError) as info:
        run(recipe, tmp_path / "out", workers=1)
    assert info.value.reason_message == (
        f"the train split has 3 documents but no row: all their {tokens} tokens were dropped as the packing remainder")
    assert "`packing.remainder: pad`" in info.value.fix and "lower `packing.seq_len`" in info.value.fix
    assert left(tmp_path) == ["d.jsonl"]
    manifest = allowed(tmp_path, recipe)
    assert manifest["counts"]["rows"]["train"] == 0 and manifest["counts"]["remainder_tokens_dropped"] == tokens


# --- 3. no_tokens ----------------------------------------------------------------------------------


# "\u200b" (zero-width space) survives normalization (not whitespace, not a control character),
# and BERT's WordPiece encodes it to nothing: with add_eos false such a document has no token.
# Checked: without the `keep = result.lengths > 0` drop in OrderedStage.add, records_written is 4.
def test_a_document_with_no_token_is_dropped_as_no_tokens(tmp_path):
    reference = BertWordPieceTokenizer(str(BERT / "vocab.txt"), lowercase=False)
    texts = ["Hello world", "\u200b", "A second text", "\u200b \u200b"]
    assert [len(reference.encode(t, add_special_tokens=False).ids) for t in texts] == [2, 0, 3, 0]
    recipe = pretrain(tmp_path, [small_corpus(tmp_path, texts)], tokenizer={"path": str(BERT), "add_eos": False},
                      packing={"seq_len": 5, "remainder": "pad"}, on_error="skip")  # 2 of 4: not damage
    manifest = run(recipe, tmp_path / "out", workers=1)
    c = manifest["counts"]
    assert c["dropped"] == {"no_tokens": 2} and manifest["inputs"][0]["dropped"] == {"no_tokens": 2}
    assert c["records_written"] == 2 and c["documents"]["train"] == 2
    balanced(manifest)
    rows = read_split(tmp_path / "out")
    expected = reference.encode("Hello world", add_special_tokens=False).ids + reference.encode("A second text", add_special_tokens=False).ids
    assert rows.column(C.INPUT_IDS).to_pylist() == [expected]
    assert rows.column(C.SEQ_LENS).to_pylist() == [[2, 3]]
    assert validate_dataset(tmp_path / "out").ok


# --- 4. unknown tokens -------------------------------------------------------------------------------

# BERT-cased has no piece for emoji, runes, most CJK or the snowman: each word holding one becomes
# [UNK] (a CJK character is a word of its own).
ODD = ["😀", "東京", "☃", "ᚠᚢᚦ", "🎉 🎉", "𠀀"]


def unknown_texts(tag: str, n: int) -> list[str]:
    return [f"{tag} text {i} " + (ODD[i % len(ODD)] if i % 3 else "plain words") for i in range(n)]


# Checked: counting `tokens == unk_id` over result.tokens instead of the split's tokens makes the
# per-split counts wrong; warn_unknown warning unconditionally fails the GPT-2 test.
def test_unknown_tokens_per_split_and_input_match_an_independent_count(tmp_path, caplog):
    reference = BertWordPieceTokenizer(str(BERT / "vocab.txt"), lowercase=False)
    unk = reference.token_to_id("[UNK]")
    assert unk == 100
    texts = {"a": unknown_texts("alpha", 40), "b": unknown_texts("beta", 25)}
    inputs = [jsonl(tmp_path / f"{name}.jsonl", [line({"text": t}) for t in ts]) for name, ts in texts.items()]
    expected = {name: sum(reference.encode(t, add_special_tokens=False).ids.count(unk) for t in ts) for name, ts in texts.items()}
    assert all(expected.values())
    recipe = pretrain(tmp_path, inputs, tokenizer={"path": str(BERT)}, split={"validation": 0.4},
                      packing={"seq_len": 16, "remainder": "pad"})
    with caplog.at_level(logging.WARNING, logger="dataprep.run"):
        manifest = run(recipe, tmp_path / "out", workers=1)
    assert [i["unknown_tokens"] for i in manifest["inputs"]] == [expected["a"], expected["b"]]
    assert manifest["counts"]["remainder_tokens_dropped"] == 0  # every document's tokens are in the rows
    per_split = {split: int(np.count_nonzero(read_split(tmp_path / "out", split).column(C.INPUT_IDS).combine_chunks().flatten().to_numpy() == unk))
                 for split in C.SPLITS}
    assert all(per_split.values())  # both splits hold some
    assert manifest["counts"]["unknown_tokens"] == per_split
    assert sum(per_split.values()) == sum(expected.values())
    total = sum(expected.values())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "unknown token" in r.getMessage()]
    assert len(warnings) == 1 and f"encoded {total} pieces of text as its unknown token [UNK]" in warnings[0]


def test_a_tokenizer_without_unknown_token_records_none_and_warns_not(tmp_path, caplog):
    inputs = [jsonl(tmp_path / "a.jsonl", [line({"text": t}) for t in unknown_texts("alpha", 40)])]
    recipe = pretrain(tmp_path, inputs, split={"validation": 0.4}, packing={"seq_len": 16, "remainder": "pad"})
    with caplog.at_level(logging.WARNING, logger="dataprep.run"):
        manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["counts"]["unknown_tokens"] == {"train": 0, "validation": 0}
    assert manifest["inputs"][0]["unknown_tokens"] == 0
    assert not [r for r in caplog.records if "unknown token" in r.getMessage()]


# --- 5. an input that changes or disappears during the run -----------------------------------------


def after_first_result(monkeypatch, action) -> None:
    """Run ``action()`` once the run has taken the first chunk result."""
    original = pipeline.run_chunks

    def wrapper(*args, **kwargs):
        for i, result in enumerate(original(*args, **kwargs)):
            yield result
            if i == 0:
                action()

    monkeypatch.setattr(pipeline, "run_chunks", wrapper)


# Checked: without `sources.check_unchanged()` in run, both cases (and the deletion "after it was
# read" below) exit 0.
@pytest.mark.parametrize("change", ["append", "same size"])
def test_an_input_changed_during_the_run_fails_it(tmp_path, monkeypatch, change):
    src = jsonl(tmp_path / "d.jsonl", docs(40))
    size = src.stat().st_size

    def edit():
        if change == "append":
            with src.open("ab") as fh:
                fh.write(line({"text": "written during the run"}) + b"\n")
        else:
            src.write_bytes(src.read_bytes().replace(b"number 7", b"number X"))

    after_first_result(monkeypatch, edit)
    with pytest.raises(InputError) as info:
        run(pretrain(tmp_path, [src], output={"chunk_records": 8}), tmp_path / "out", workers=1)
    what = (f"its size went from {size:,} to {src.stat().st_size:,} bytes" if change == "append"
            else "its content changed (SHA-256)")
    assert str(info.value).startswith(f"{src}: the input changed while the run read it: {what}")
    assert "do not write to a run's inputs while it runs" in info.value.fix
    assert left(tmp_path) == ["d.jsonl"]


@pytest.mark.parametrize("when", ["after resolve", "before its turn", "after it was read"])
def test_an_input_deleted_during_the_run_cannot_be_read(tmp_path, monkeypatch, when):
    a = jsonl(tmp_path / "a.jsonl", docs(40, "a"))
    b = jsonl(tmp_path / "b.jsonl", docs(40, "b"))
    if when == "after resolve":
        original = pipeline.resolve_inputs

        def resolve(*args, **kwargs):
            files = original(*args, **kwargs)
            b.unlink()
            return files

        monkeypatch.setattr(pipeline, "resolve_inputs", resolve)
        inputs = [a, b]
    elif when == "before its turn":  # a is being read; b is not opened yet
        after_first_result(monkeypatch, b.unlink)
        inputs = [a, b]
    else:  # b is read to its end in one chunk, then deleted before the final check
        after_first_result(monkeypatch, b.unlink)
        inputs = [b]
    with pytest.raises(InputError) as info:
        run(pretrain(tmp_path, inputs, output={"chunk_records": 8 if when != "after it was read" else 1000}), tmp_path / "out", workers=1)
    assert str(info.value).startswith(f"{b}: cannot read the ")
    assert "No such file or directory" in str(info.value)
    assert left(tmp_path) == ["a.jsonl"]


# --- 6. property: every record accounted for -------------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "delta"]
GOOD = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(" ".join)  # 20 texts: duplicates are common
FORMATS = ["jsonl", "csv", "txt", "parquet"]
# what each format can hold: reason -> how a bad record of that kind is written
BAD = {
    "jsonl": ["invalid_utf8", "malformed_json", "missing_field", "non_string_field", "empty"],
    "csv": ["invalid_utf8", "bad_row", "empty"],
    "txt": ["invalid_utf8"],  # blank lines are no records in a txt file
    "parquet": ["non_string_field", "empty"],
}


@st.composite
def corpora(draw):
    inputs = []
    for n in range(draw(st.integers(1, 4))):
        fmt = draw(st.sampled_from(FORMATS))
        kinds = st.one_of(GOOD.map(lambda t: ("good", t)), st.sampled_from(BAD[fmt]).map(lambda r: (r, None)))
        inputs.append((fmt, draw(st.lists(kinds, min_size=1, max_size=14))))
    return inputs, draw(st.sampled_from([3, 2048])), draw(st.sampled_from([1, 2]))


def write_input(folder: Path, n: int, fmt: str, records: list[tuple[str, str | None]]) -> dict:
    path = folder / f"in{n}.{fmt}"
    if fmt == "parquet":
        texts = {"good": None, "empty": "", "non_string_field": None}
        pq.write_table(pa.table({"text": pa.array([t if k == "good" else texts[k] for k, t in records], pa.string())}), path)
        return {"path": str(path)}
    out = []
    for i, (kind, text) in enumerate(records):
        if fmt == "jsonl":
            out.append({"good": lambda: line({"text": text}), "empty": lambda: line({"text": ""}), "invalid_utf8": lambda: BAD_UTF8,
                        "malformed_json": lambda: MALFORMED, "missing_field": lambda: line({"title": "x"}),
                        "non_string_field": lambda: line({"text": 7})}[kind]())
        elif fmt == "csv":
            out.append({"good": f"{i},{text}".encode(), "empty": f"{i},".encode(), "invalid_utf8": f"{i},bad ".encode() + b"\xff",
                        "bad_row": f"{i},two,too many".encode()}[kind])
        else:
            out.append(text.encode() if kind == "good" else b"bad \xff")
    header = [b"id,text"] if fmt == "csv" else []
    path.write_bytes(b"\n".join(header + out) + b"\n")
    return {"path": str(path), **({"txt_unit": "line"} if fmt == "txt" else {})}


def expected_drops(inputs) -> list[tuple[int, Counter]]:
    """(documents, drops by reason) per input: bad records as planted, exact duplicates in input order."""
    seen, result = set(), []
    for _, records in inputs:
        drops, written = Counter(), 0
        for kind, text in records:
            if kind != "good":
                drops[kind] += 1
            elif text in seen:
                drops["duplicate"] += 1
            else:
                seen.add(text)
                written += 1
        result.append((written, drops))
    return result


def check_accounted(manifest: dict, inputs, expected) -> None:
    balanced(manifest)
    for entry, (fmt, records), (written, drops) in zip(manifest["inputs"], inputs, expected, strict=True):
        assert entry["records_read"] == len(records), entry
        assert entry["documents"] == written, entry
        assert entry["dropped"] == dict(drops), entry
        assert ("encoding" in entry) == (fmt != "parquet")
    assert manifest["counts"]["records_written"] == sum(w for w, _ in expected)


# Checked: `readable + dropped.total()` in ChunkReader.file_chunks counting readable records only
# fails the three property tests (per-input records_read), as does a duplicate counted on input 0.
# 45 examples in all cover every format x reason planted here; 29 of them hold duplicates.
@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=corpora())
def test_property_every_pretraining_record_is_written_or_dropped_with_its_reason(tmp_path_factory, case):
    inputs, chunk_records, workers = case
    folder = tmp_path_factory.mktemp("mix")
    specs = [write_input(folder, n, fmt, records) for n, (fmt, records) in enumerate(inputs)]
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": specs, "tokenizer": {"path": str(GPT2)}, "packing": {"seq_len": 8},
         "split": {"validation": 0.3}, "on_error": "skip", "max_dropped_fraction": 1, "allow_empty": True,
         "output": {"chunk_records": chunk_records}},
        base_dir=folder,
    )
    check_accounted(run(recipe, folder / "out", workers=workers), inputs, expected_drops(inputs))


@st.composite
def pair_corpora(draw):
    kinds = st.one_of(
        st.tuples(GOOD, GOOD).map(lambda pc: ("good", f"{pc[0]}: {pc[1]}")),
        st.sampled_from(["missing_field", "empty_field", "non_string_field", "malformed_json", "invalid_utf8"]).map(lambda r: (r, None)),
    )
    return [("jsonl", draw(st.lists(kinds, min_size=1, max_size=12))) for _ in range(draw(st.integers(1, 3)))]


def pair_line(kind: str, text: str | None) -> bytes:
    if kind == "good":  # "alpha beta: gamma" -> prompt "alpha beta:", completion " gamma" (the one colon splits it)
        prompt, completion = text.split(":")
        return line({"prompt": prompt + ":", "completion": completion})
    return {"missing_field": line({"prompt": "Q:"}), "empty_field": line({"prompt": "Q:", "completion": ""}),
            "non_string_field": line({"prompt": "Q:", "completion": 7}), "malformed_json": MALFORMED,
            "invalid_utf8": b'{"prompt": "\xff", "completion": "a"}'}[kind]


@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=pair_corpora())
def test_property_every_fine_tuning_record_is_written_or_dropped_with_its_reason(tmp_path_factory, inputs):
    folder = tmp_path_factory.mktemp("pairs")
    paths = [jsonl(folder / f"in{n}.jsonl", [pair_line(k, t) for k, t in records]) for n, (_, records) in enumerate(inputs)]
    recipe = recipe_from_dict(
        {"task": "sft", "inputs": [{"path": str(p)} for p in paths], "tokenizer": {"path": str(GPT2)},
         "template": "prompt_completion", "split": {"validation": 0.3}, "on_error": "skip", "max_dropped_fraction": 1,
         "allow_empty": True, "output": {"chunk_records": 4}},
        base_dir=folder,
    )
    check_accounted(run(recipe, folder / "out", workers=1), inputs, expected_drops(inputs))


@settings(max_examples=12, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 4)), min_size=1, max_size=3),
       fraction=st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_property_the_run_fails_exactly_when_an_input_passes_the_ceiling(tmp_path_factory, bad, fraction):
    folder = tmp_path_factory.mktemp("ceiling")
    paths = [damaged(folder / f"in{n}.jsonl", good, {i + 1: MALFORMED for i in range(broken)}) for n, (good, broken) in enumerate(bad)]
    over = [p for p, (good, broken) in zip(paths, bad) if Fraction(broken, good + broken) > Fraction(str(fraction))]
    recipe = pretrain(folder, paths, on_error="skip", max_dropped_fraction=fraction, allow_empty=True)
    if not over:
        balanced(run(recipe, folder / "out", workers=1))
        return
    with pytest.raises(DataLossError) as info:
        run(recipe, folder / "out", workers=1)
    named = [p for p in paths if f"{p}: " in str(info.value)]
    # only inputs over the ceiling are named, the first of them always (the run may stop there: an
    # input is checked as soon as it is read to its end)
    assert named and set(named) <= set(over) and named[0] == over[0]
