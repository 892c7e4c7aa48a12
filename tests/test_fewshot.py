"""task: fewshot: k-shot prompts from pairs: exact tokens, no leaks, max_length, shots in the manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dataprep import columns as C
from dataprep.errors import RecipeError
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES, read_split

GPT2 = DATA / "tokenizers" / "gpt2"
TASKS = RECIPES / "data" / "sft_tasks.jsonl"
BYTES = RECIPES / "data" / "byte_tokenizer"




@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """fewshot-demo and demo-sft, built once."""
    root = tmp_path_factory.mktemp("fewshot")
    fs = run(load_recipe(RECIPES / "fewshot-demo.yaml"), root / "fs", workers=2)
    run(load_recipe(RECIPES / "demo-sft.yaml"), root / "sft", workers=1)
    return root, fs


def decoded_rows(out: Path, split: str):
    tok = load_tokenizer(TokenizerSpec(path=str(BYTES)), base_dir=Path("."))
    t = read_split(out, split)
    for ids, mask, start in zip(t.column(C.INPUT_IDS).to_pylist(), t.column(C.LOSS_MASK).to_pylist(), t.column(C.QUERY_START).to_pylist()):
        first = mask.index(1)
        yield {
            "context": tok.tokenizer.decode(ids[:start], skip_special_tokens=False),
            "query": tok.tokenizer.decode(ids[start:first], skip_special_tokens=False),
            "answer": tok.tokenizer.decode(ids[first:], skip_special_tokens=True),
            "ids": ids, "mask": mask, "start": start,
        }


def test_prompts_never_leak_the_query_and_use_train_demonstrations(demo):
    root, manifest = demo
    records = [json.loads(line) for line in TASKS.read_text(encoding="utf-8").splitlines()]
    answer_of = {f"Q: {r['prompt']}\nA: ": r["completion"] for r in records}
    seen = {split: [] for split in C.SPLITS}
    for split in C.SPLITS:
        for row in decoded_rows(root / "fs", split):
            demos = [d for d in row["context"].split("\n\n") if d]
            assert row["query"] in answer_of and row["answer"] == answer_of[row["query"]]
            prompts = [d[: d.index("A: ") + 3] for d in demos]
            assert row["query"] not in prompts  # never the query, nor anything with its prompt
            for d, p in zip(demos, prompts):
                assert d == p + answer_of[p]  # a demonstration is a whole record: prompt and its answer
            assert len(demos) == len(row["context"].split("\n\n")) - 1 if demos else row["start"] == 0
            seen[split].append((row["query"], prompts))
    validation_queries = {q for q, _ in seen["validation"]}
    used = {p for split in C.SPLITS for _, prompts in seen[split] for p in prompts}
    assert not used & validation_queries  # held-out queries are nobody's demonstration
    shots = Counter(len(p) for split in C.SPLITS for _, p in seen[split])
    assert {str(n): shots.get(n, 0) for n in range(5)} == manifest["fewshot"]["shots"]
    assert sum(manifest["fewshot"]["shots"].values()) == manifest["counts"]["records_written"]


def test_queries_and_split_match_the_fine_tuning_rows(demo):
    root, _ = demo
    for split in C.SPLITS:
        fs, sft = read_split(root / "fs", split), read_split(root / "sft", split)
        zero_shot = [ids[s:] for ids, s in zip(fs.column(C.INPUT_IDS).to_pylist(), fs.column(C.QUERY_START).to_pylist())]
        masks = [m[s:] for m, s in zip(fs.column(C.LOSS_MASK).to_pylist(), fs.column(C.QUERY_START).to_pylist())]
        assert zero_shot == sft.column(C.INPUT_IDS).to_pylist()  # input_ids[query_start:] is the sft example
        assert masks == sft.column(C.LOSS_MASK).to_pylist()
        full_masks = fs.column(C.LOSS_MASK).to_pylist()
        assert all(sum(f) == sum(m) for f, m in zip(full_masks, masks))  # no target inside the demonstrations


def test_recipe_validates_and_is_the_same_for_any_worker_count(demo, tmp_path):
    root, manifest = demo
    assert validate_dataset(root / "fs").ok
    again = run(load_recipe(RECIPES / "fewshot-demo.yaml"), tmp_path / "w1", workers=1)
    assert [s["sha256"] for s in again["splits"]["train"]["shards"]] == [s["sha256"] for s in manifest["splits"]["train"]["shards"]]


def test_exact_tokens_and_targets_on_gpt2(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    src = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"Capital of {c}?", "completion": f" {k}"} for c, k in
               [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima")]]
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    recipe = recipe_from_dict({"task": "fewshot", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)},
                               "template": "prompt_completion", "fewshot": {"k": 2, "separator": "\n"},
                               "split": {"validation": 0.0}}, base_dir=tmp_path)
    manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["fewshot"]["shots"] == {"0": 0, "1": 0, "2": 5}
    reference = ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    t = read_split(tmp_path / "out", "train")
    for ids, mask, start in zip(t.column(C.INPUT_IDS).to_pylist(), t.column(C.LOSS_MASK).to_pylist(), t.column(C.QUERY_START).to_pylist()):
        assert ids[-1] == 50256
        text = reference.decode(ids[:-1])
        query = next(r for r in records if text.endswith(r["prompt"] + r["completion"]))
        demos = text[: -len(query["prompt"] + query["completion"])].split("\n")[:-1]
        assert len(demos) == 2 and all(d in [r["prompt"] + r["completion"] for r in records if r is not query] for d in demos)
        expected = reference.encode(text).ids + [50256]
        assert ids == expected  # the whole prompt tokenized once, EOS id after the answer
        target = [i for i, m in zip(ids, mask) if m]
        assert target == reference.encode(query["completion"]).ids + [50256]
        assert reference.decode(ids[start:-1]) == query["prompt"] + query["completion"]


def test_shots_shrink_to_fit_max_length(tmp_path):
    recipe = load_recipe(RECIPES / "fewshot-demo.yaml", ["max_length=60", "fewshot.k=8"])
    manifest = run(recipe, tmp_path / "out", workers=1)
    lengths = [len(ids) for split in C.SPLITS for ids in read_split(tmp_path / "out", split).column(C.INPUT_IDS).to_pylist()]
    assert max(lengths) <= 60
    shots = manifest["fewshot"]["shots"]
    assert shots["8"] == 0 and sum(shots.values()) == manifest["counts"]["records_written"] == 6000
    assert manifest["fewshot"]["prompts_with_fewer_shots"] == 6000 and 1 < manifest["fewshot"]["mean_shots"] < 3
    assert validate_dataset(tmp_path / "out").ok


def test_fewshot_recipe_errors_name_the_fix(tmp_path):
    base = {"task": "fewshot", "inputs": [{"path": str(TASKS)}], "tokenizer": {"path": str(BYTES)}}
    with pytest.raises(RecipeError, match="'chat' is not supported"):
        recipe_from_dict({**base, "template": "chat"}, base_dir=tmp_path)
    with pytest.raises(RecipeError, match="fewshot section applies to task: fewshot only"):
        recipe_from_dict({**base, "task": "sft", "template": "prompt_completion", "fewshot": {"k": 2}}, base_dir=tmp_path)


def test_inspect_preview_renders_the_prompts_run_writes(demo):
    from dataprep.look.preview import rows_from_recipe

    root, _ = demo
    views = rows_from_recipe(load_recipe(RECIPES / "fewshot-demo.yaml"), head=3)
    written = {tuple(ids) for split in C.SPLITS for ids in read_split(root / "fs", split).column(C.INPUT_IDS).to_pylist()}
    assert len(views) == 3
    for view in views:
        assert tuple(view.ids.tolist()) in written
        assert any(note.endswith("demonstration(s) in context") for note in view.notes)


def test_validate_flags_a_query_start_past_the_answer(demo, tmp_path):
    import shutil

    import pyarrow as pa

    root, _ = demo
    out = tmp_path / "fs"
    shutil.copytree(root / "fs", out)
    shard = next((out / "validation").glob("*.arrow"))
    t = pa.ipc.open_stream(shard.read_bytes()).read_all()
    starts = t.column(C.QUERY_START).to_numpy().copy()
    starts[2] = len(t.column(C.INPUT_IDS)[2]) - 1  # past the first target of row 2
    broken = t.set_column(t.schema.get_field_index(C.QUERY_START), C.QUERY_START, pa.array(starts))
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, broken.schema) as writer:
        writer.write_table(broken)
    report = validate_dataset(out)
    bad = [f for f in report.findings if f.kind == "query_start"]
    assert len(bad) == 1 and bad[0].row == 2 and bad[0].split == "validation"
