"""Fine-tuning on real conversations end to end (issue 13): shipped chat recipes run and validate,
and each record shape a recipe can express builds the exact ids and masks the chat template gives.

References are independent of dataprep's reader and renderer: transformers'
``apply_chat_template`` (text) and ``tokenizers`` (ids), on messages written out by hand here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from dataprep import columns as C
from dataprep.errors import InputError
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.validate import validate_dataset
from tests.conftest import DATA, RECIPES, read_split, tokenizer_json

PHI3 = DATA / "tokenizers/phi-3-mini"
LLAMA3 = DATA / "tokenizers/llama-3"
GPT_OSS = DATA / "tokenizers/gpt-oss"
GLAIVE = DATA / "pairs/chat/glaive_toolcall_en_demo.json"


def _rows(out):
    return read_split(out, "train").to_pylist() + read_split(out, "validation").to_pylist()


def _unpack(rows):
    """Every example of packed rows as (ids, mask), in row order."""
    for row in rows:
        at = 0
        for n in row[C.SEQ_LENS]:
            if row[C.NUM_PAD] and at + n == len(row[C.INPUT_IDS]):
                break  # the pad tail
            yield row[C.INPUT_IDS][at : at + n], row[C.LOSS_MASK][at : at + n]
            at += n


def _target_texts(tokenizer: Tokenizer, ids, mask) -> list[str]:
    mask = np.asarray(mask)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask, [0]))))
    return [tokenizer.decode(ids[a:b], skip_special_tokens=False) for a, b in zip(edges[::2], edges[1::2])]


def test_tool_calling_recipe_runs_validates_and_trains_every_assistant_turn(tmp_path):
    manifest = run(load_recipe(RECIPES / "chat-tools.yaml"), tmp_path / "out", workers=1)
    assert manifest["counts"]["records_read"] == 300
    dropped = manifest["counts"]["dropped"]
    assert set(dropped) <= {"duplicate"}  # every conversation rendered, its tools and calls included
    assert validate_dataset(tmp_path / "out").ok
    reference = tokenizer_json("llama-3")  # Tokenizer.from_file(LLAMA3 / "tokenizer.json")
    calls = 0
    for ids, mask in _unpack(_rows(tmp_path / "out")):
        text = reference.decode(ids, skip_special_tokens=False)
        targets = _target_texts(reference, ids, mask)
        assert all(t.endswith("<|eot_id|>") for t in targets)
        assert text.count("<|start_header_id|>assistant<|end_header_id|>") == len(targets)
        calls += sum(t.startswith('{"name": "') for t in targets)  # a tool-call turn is a target
        if "Environment: ipython" in text:
            assert '"type": "function"' in text  # the tool list reached the template
    assert calls >= 100


def test_gpt_oss_recipe_runs_and_validates_with_return_and_end(tmp_path):
    manifest = run(load_recipe(RECIPES / "chat-gpt-oss.yaml"), tmp_path / "out", workers=2)
    assert manifest["counts"]["dropped"] == {}
    assert manifest["sft"]["chat"]["date"] == "2026-01-01"
    assert manifest["sft"]["chat"]["stop_tokens"] == ["<|return|>", "<|end|>", "<|call|>"]
    assert validate_dataset(tmp_path / "out").ok
    reference = tokenizer_json("gpt-oss")  # Tokenizer.from_file(GPT_OSS / "tokenizer.json")
    records = json.loads((DATA / "pairs/chat/sharegpt_dummy_conversation.json").read_text())
    turns = sorted(sum(t["from"] == "gpt" for t in r["conversations"]) for r in records)
    seen = []
    for ids, mask in _unpack(_rows(tmp_path / "out")):
        targets = _target_texts(reference, ids, mask)
        assert targets[-1].endswith("<|return|>") and all(t.endswith("<|end|>") for t in targets[:-1])
        # the generation prompt <|start|>assistant is context; the channel header the model writes after it is a target
        assert all(t.startswith("<|channel|>final<|message|>") and "<|start|>" not in t for t in targets)
        assert "Current date: 2026-01-01" in reference.decode(ids, skip_special_tokens=False)
        seen.append(len(targets))
    assert sorted(seen) == turns


def _chat_recipe(tmp_path, records, tokenizer=PHI3, **extra):
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    recipe = {"task": "sft", "inputs": [{"path": str(src), **extra.pop("input", {})}], "tokenizer": {"path": str(tokenizer)},
              "template": "chat", "split": {"validation": 0.0}, **extra}
    return recipe_from_dict(recipe, base_dir=tmp_path)


def _only_example(tmp_path, recipe):
    run(recipe, tmp_path / "out", workers=1)
    (example,) = list(_unpack(_rows(tmp_path / "out")))
    return example


def _phi3_reference(messages) -> tuple[list[int], list[str]]:
    """Phi-3's own template, written out by hand: ids of the text and each assistant turn's target
    (a final assistant turn's runs through the <|endoftext|> the template appends)."""
    parts, targets = [], []
    for m in messages:
        parts.append(f"<|{m['role']}|>\n{m['content']}<|end|>\n")
        if m["role"] == "assistant":
            targets.append(f"{m['content']}<|end|>")
    if messages[-1]["role"] == "assistant":
        targets[-1] += "<|endoftext|>"
    text = "".join(parts) + "<|endoftext|>"
    return Tokenizer.from_file(str(PHI3 / "tokenizer.json")).encode(text, add_special_tokens=False).ids, targets


def test_top_level_system_string_becomes_the_first_message(tmp_path):
    record = {"system": "Answer in French.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Salut !"}]}
    recipe = _chat_recipe(tmp_path, [record], input={"fields": {"messages": {"path": "conversations", "kind": "messages"}}})
    ids, mask = _only_example(tmp_path, recipe)
    expected, targets = _phi3_reference([{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Salut !"}])
    assert ids == expected
    raw = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    assert [t.strip() for t in _target_texts(raw, ids, mask)] == [t.strip() for t in targets]


def test_alpaca_with_history_renders_prior_turns_through_the_chat_template(tmp_path):
    record = {"instruction": "And 3+3?", "input": "", "output": "6", "history": [["What is 2+2?", "4"]]}
    fields = {"instruction": "instruction", "input": {"path": "input", "required": False}, "output": "output"}
    recipe = _chat_recipe(tmp_path, [record], input={"fields": fields})
    ids, mask = _only_example(tmp_path, recipe)
    expected, _ = _phi3_reference([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
                                   {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}])
    assert ids == expected
    raw = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    assert [t.strip() for t in _target_texts(raw, ids, mask)] == ["4<|end|>", "6<|end|><|endoftext|>"]


def test_alpaca_input_joins_the_instruction_with_a_newline(tmp_path):
    record = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"}
    recipe = _chat_recipe(tmp_path, [record], input={"fields": {"instruction": "instruction", "input": "input", "output": "output"}})
    ids, _ = _only_example(tmp_path, recipe)
    expected, _ = _phi3_reference([{"role": "user", "content": "Translate.\nBonjour"}, {"role": "assistant", "content": "Hello"}])
    assert ids == expected


def test_typed_parts_and_train_flags_from_a_recipe(tmp_path):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello", "train": False},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye", "loss_weight": 1},
    ]
    ids, mask = _only_example(tmp_path, _chat_recipe(tmp_path, [{"messages": messages}]))
    expected, _ = _phi3_reference([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello"},
                                   {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}])
    assert ids == expected
    raw = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    assert [t.strip() for t in _target_texts(raw, ids, mask)] == ["Goodbye<|end|><|endoftext|>"]  # train: false honoured


def test_tools_the_template_cannot_render_stop_the_run_with_file_and_record(tmp_path):
    # a real record whose turns Phi-3 can render but whose tool list its template cannot
    record = next(r for r in json.loads(GLAIVE.read_text()) if r["tools"] != "[]" and {t["from"] for t in r["conversations"]} == {"human", "gpt"})
    fields = {"messages": {"path": "conversations", "kind": "messages"}}
    recipe = _chat_recipe(tmp_path, [record], input={"fields": fields})
    with pytest.raises(InputError, match=r"records.jsonl, line 1: .*never renders `tools`") as info:
        run(recipe, tmp_path / "out", workers=1)
    assert "on_error: skip" in str(info.value)
    # counted under its reason with on_error: skip, never silently dropped
    skip = _chat_recipe(tmp_path, [record, {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}],
                        input={"fields": fields}, on_error="skip", max_dropped_fraction=1)
    manifest = run(skip, tmp_path / "skip", workers=1)
    assert manifest["counts"]["dropped"] == {"unsupported_by_template": 1}


def test_a_conversation_the_template_refuses_is_a_bad_record_not_an_abort(tmp_path):
    gemma = DATA / "tokenizers/gemma-3"
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    bad = {"messages": [{"role": "assistant", "content": "b"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]}
    recipe = _chat_recipe(tmp_path, [good, bad, good], tokenizer=gemma, on_error="skip", max_dropped_fraction=1, filter={"dedup": "none"})
    manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["counts"]["dropped"] == {"template_raised": 1}
    assert manifest["counts"]["records_written"] == 2
    strict = _chat_recipe(tmp_path, [good, bad], tokenizer=gemma)
    with pytest.raises(InputError, match=r"records.jsonl, line 2: .*roles must alternate"):
        run(strict, tmp_path / "strict", workers=1)


GPT2 = DATA / "tokenizers/gpt2"
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{}\n\n### Response:\n"
)


@pytest.mark.parametrize("masking, trained", [("completion", ["b<|endoftext|>"]), ("all_assistant", ["a<|endoftext|>", "b<|endoftext|>"])])
def test_alpaca_history_renders_earlier_turns_through_the_pair_template(tmp_path, masking, trained):
    record = {"instruction": "B", "input": "", "output": "b", "history": [["A", "a"]]}
    src = tmp_path / "alpaca.jsonl"
    src.write_text(json.dumps(record) + "\n")
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)},
                               "template": "alpaca", "masking": masking, "split": {"validation": 0.0}}, base_dir=tmp_path)
    ids, mask = _only_example(tmp_path, recipe)
    text = ALPACA_NO_INPUT.format("A") + "a<|endoftext|>" + ALPACA_NO_INPUT.format("B") + "b<|endoftext|>"
    from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

    tokenizer = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=tmp_path).copy()  # loads share theirs
    tokenizer.encode_special_tokens = False
    assert ids == tokenizer.encode(text, add_special_tokens=False).ids
    assert _target_texts(tokenizer, ids, mask) == trained


def test_a_system_prompt_a_pair_template_cannot_render_is_warned_and_counted(tmp_path, caplog):
    records = [{"instruction": "A", "output": "a", "system": "Be nice."}, {"instruction": "B", "output": "b"}]
    src = tmp_path / "alpaca.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)},
                               "template": "alpaca", "split": {"validation": 0.0}}, base_dir=tmp_path)
    with caplog.at_level("WARNING"):
        manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["sft"]["examples"]["system_not_rendered"] == 1
    assert "1 example(s) hold a `system` prompt that template 'alpaca' has no place for" in caplog.text
    assert "template: chat" in caplog.text


def test_packing_with_a_tokenizer_that_names_no_pad_token_says_which_key_to_set(tmp_path):
    from dataprep.errors import ConfigError

    recipe = _chat_recipe(tmp_path, [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}],
                          tokenizer=LLAMA3, packing={"mode": "bfd", "seq_len": 64}, max_length=64)
    with pytest.raises(ConfigError, match=r"packing.pad_rows needs a pad token .* set `tokenizer.pad_token`"):
        run(recipe, tmp_path / "out", workers=1)


@pytest.mark.parametrize("chat", [{"template": "nope.jinja"}, {"template": "broken.jinja"}])
def test_a_chat_template_that_cannot_load_stops_a_multi_worker_run_with_its_error(tmp_path, chat):
    # a worker whose set-up raises used to be respawned by the pool forever: the run hung
    import subprocess
    import sys

    (tmp_path / "broken.jinja").write_text("{% for m in messages %}")
    (tmp_path / "c.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) + "\n")
    recipe = {"task": "sft", "inputs": [{"path": "c.jsonl"}], "tokenizer": {"path": str(PHI3)}, "template": "chat", "chat": chat}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    cmd = [sys.executable, "-m", "dataprep", "run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--workers", "2", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1
    assert ("cannot read" in done.stderr or "does not compile" in done.stderr) and "Traceback" not in done.stderr
