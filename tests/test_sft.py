"""Fine-tuning recipes end to end: exact tokens and masks on real tokenizers, every policy, every error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from dataprep import columns as C
from dataprep.errors import ConfigError, InputError
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict

from .conftest import DATA, RECIPES

GPT2 = DATA / "tokenizers" / "gpt2"
PHI3 = DATA / "tokenizers" / "phi-3-mini"
EOT = 50256  # GPT-2 <|endoftext|>
PHI3_END, PHI3_EOS = 32007, 32000  # <|end|>, <|endoftext|>


def table(out: Path, split: str = "train") -> pa.Table:
    state = json.loads((out / split / "state.json").read_text())
    return pa.concat_tables(
        pa.ipc.open_stream(pa.memory_map(str(out / split / f["filename"]))).read_all() for f in state["_data_files"]
    )


def all_rows(out: Path) -> list[dict]:
    return [row for split in C.SPLITS for row in table(out, split).to_pylist()]


def pairs_recipe(tmp_path: Path, records: list[dict], **extra) -> object:
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    data = {
        "task": "sft",
        "inputs": [{"path": str(src)}],
        "tokenizer": {"path": str(GPT2)},
        "template": "prompt_completion",
        "split": {"validation": 0.0},
    }
    data.update(extra)
    return recipe_from_dict(data, base_dir=tmp_path)


def test_prompt_completion_exact_ids_and_mask_gpt2(tmp_path):
    recipe = pairs_recipe(tmp_path, [{"prompt": "Reverse abc:", "completion": " cba"}])
    manifest = run(recipe, tmp_path / "out", workers=1)
    row = table(tmp_path / "out").to_pylist()[0]
    # "Reverse abc:" -> Reverse, ' abc', ':' ; " cba" -> ' c', 'ba' ; then <|endoftext|>
    assert row[C.INPUT_IDS] == [49, 964, 325, 450, 66, 25, 269, 7012, EOT]
    assert row[C.LOSS_MASK] == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert row[C.SEQ_LENS] == [9] and row[C.NUM_PAD] == 0
    assert manifest["sft"]["target_tokens"] == 3 and manifest["sft"]["masking"] == "completion"
    assert manifest["format"] == "dataprep.sft/2"


def test_demo_sft_rows_are_byte_exact(tmp_path):
    manifest = run(load_recipe(RECIPES / "demo-sft.yaml"), tmp_path / "out", workers=1)
    records = [json.loads(line) for line in (RECIPES / "data" / "sft_tasks.jsonl").read_text().splitlines()]
    by_text = {}
    for r in records:
        by_text[f"Q: {r['prompt']}\nA: {r['completion']}"] = r
    rows = all_rows(tmp_path / "out")
    assert len(rows) == len(records) == manifest["counts"]["records_written"]
    for row in rows[:200]:
        ids, mask = row[C.INPUT_IDS], row[C.LOSS_MASK]
        assert ids[-1] == 0 and mask[-1] == 1  # <|endoftext|> is id 0 in the byte tokenizer, and a target
        text = bytes(_byte_decode(ids[:-1])).decode("utf-8")
        record = by_text[text]
        answer = record["completion"]
        n = len(answer.encode())
        assert mask == [0] * (len(ids) - n - 1) + [1] * (n + 1)
        assert bytes(_byte_decode(ids[-n - 1 : -1])).decode() == answer


def _byte_decode(ids: list[int]) -> list[int]:
    """Byte-level tokenizer ids -> raw bytes, through the tokenizer's own byte alphabet."""
    tok = Tokenizer.from_file(str(RECIPES / "data" / "byte_tokenizer" / "tokenizer.json"))
    alphabet = {ch: b for b, ch in enumerate(_bytes_to_unicode())}
    return [alphabet[tok.id_to_token(i)] for i in ids]


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table (written out independently of tokenizers)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def test_alpaca_phi3_rows_match_reference_encoding(tmp_path):
    reference = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    recipe = load_recipe(RECIPES / "alpaca.yaml", ["split.validation=0"])
    manifest = run(recipe, tmp_path / "out", workers=1)
    records = json.loads((DATA / "pairs" / "instruction" / "alpaca_en_demo.json").read_text())
    rows = table(tmp_path / "out").to_pylist()
    from dataprep.tasks.sft.templates import TEMPLATES

    seen = set()
    checked = 0
    for record in records:
        text = TEMPLATES["alpaca"].render(record, stop_text="<|endoftext|>").text
        if text in seen:
            continue
        seen.add(text)
        row = rows[len(seen) - 1]
        expected = reference.encode(text, add_special_tokens=False).ids
        assert row[C.INPUT_IDS] == expected
        mask = np.array(row[C.LOSS_MASK])
        target_ids = np.array(expected)[mask == 1].tolist()
        assert target_ids[-1] == PHI3_EOS
        assert reference.decode(target_ids, skip_special_tokens=False) == record["output"] + "<|endoftext|>"
        first = int(np.argmax(mask))
        assert mask[first:].all()  # one contiguous target: the response and its stop token
        checked += 1
        if checked == 50:
            break
    assert manifest["counts"]["dropped"].get("duplicate", 0) == 14
    targets = sum(sum(row[C.LOSS_MASK]) for row in rows)  # every example is a train row (validation 0, no packing)
    content = sum(len(row[C.INPUT_IDS]) - row[C.NUM_PAD] for row in rows)
    assert (manifest["sft"]["target_tokens"], manifest["sft"]["target_ratio"]) == (targets, targets / content)


def test_chat_recipe_matches_chat_template_and_ends_turns_with_end(tmp_path):
    from dataprep.tasks.sft.chat import ChatTemplate
    from dataprep.read import normalize_messages

    reference = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    template = ChatTemplate.from_tokenizer_folder(PHI3)
    recipe = load_recipe(RECIPES / "chat.yaml", ["packing.mode=none", "split.validation=0"])
    run(recipe, tmp_path / "out", workers=1)
    records = json.loads((DATA / "pairs" / "chat" / "sharegpt_dummy_conversation.json").read_text())
    rows = table(tmp_path / "out").to_pylist()
    assert len(rows) == len(records)
    for record, row in list(zip(records, rows))[:40]:
        messages = normalize_messages(record["conversations"])
        text = template.render(messages)
        ids = reference.encode(text, add_special_tokens=False).ids
        assert row[C.INPUT_IDS] == ids
        mask = row[C.LOSS_MASK]
        # each assistant turn's targets end with its <|end|>; the last turn's also with the <|endoftext|>
        # the template appends after it (every conversation here ends with an assistant turn)
        turns = sum(1 for m in messages if m["role"] == "assistant")
        ends = [i for i, (t, m) in enumerate(zip(ids, mask)) if m and t == PHI3_END]
        assert len(ends) == turns and messages[-1]["role"] == "assistant"
        assert ids[-1] == PHI3_EOS and mask[-1] == 1 and ends[-1] == len(ids) - 2
        # target runs = assistant turns; each run ends at an <|end|>, the last at the <|endoftext|>
        runs = np.flatnonzero(np.diff(np.concatenate(([0], mask, [0]))) == -1) - 1
        assert runs.tolist() == ends[:-1] + [len(ids) - 1]


@pytest.mark.parametrize("policy", ["all_assistant", "last_assistant", "all"])
def test_multi_turn_policies(tmp_path, policy):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    src = tmp_path / "chats.jsonl"
    src.write_text(json.dumps({"messages": conversation}) + "\n")
    recipe = recipe_from_dict(
        {"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(PHI3)}, "template": "chat",
         "masking": policy, "split": {"validation": 0.0}},
        base_dir=tmp_path,
    )
    run(recipe, tmp_path / "out", workers=1)
    row = table(tmp_path / "out").to_pylist()[0]
    reference = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    ids, mask = np.array(row[C.INPUT_IDS]), np.array(row[C.LOSS_MASK])
    targets = ids[mask == 1].tolist()
    # Phi-3: '▁Hello' 15043, '.' 29889, '<|end|>' 32007; '▁Good' 7197, 'bye' 26966; the final turn's
    # target ends with the '<|endoftext|>' 32000 the template appends after it
    if policy == "all_assistant":
        assert targets == [15043, 29889, PHI3_END, 7197, 26966, 29889, PHI3_END, PHI3_EOS]
        assert [reference.id_to_token(i) for i in targets[:3]] == ["▁Hello", ".", "<|end|>"]
    elif policy == "last_assistant":
        assert targets == [7197, 26966, 29889, PHI3_END, PHI3_EOS]
    else:
        assert mask[0] == 0 and mask[1:].all()  # everything but the first token


def test_classification_labels_and_manifest(tmp_path):
    manifest = run(load_recipe(RECIPES / "classification.yaml"), tmp_path / "out", workers=1)
    assert manifest["sft"]["labels"] == {"ham": 0, "spam": 1}
    rows = all_rows(tmp_path / "out")
    from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

    tok = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=tmp_path).tokenizer
    for row in rows[:100]:
        ids, mask = np.array(row[C.INPUT_IDS]), np.array(row[C.LOSS_MASK])
        label = tok.decode(ids[mask == 1].tolist(), skip_special_tokens=False)
        assert label == [" ham", " spam"][row[C.LABEL_ID]] + "<|endoftext|>"
    counts = manifest["counts"]
    assert counts["records_read"] == 5574
    assert counts["records_read"] == counts["records_written"] + sum(counts["dropped"].values())
    # every written example ends its prompt with ": " (one straddle each); duplicates never count
    assert manifest["sft"]["examples"]["with_boundary_straddle"] == counts["records_written"]
    written_targets = sum(sum(r[C.LOSS_MASK]) for r in rows)
    assert manifest["sft"]["target_tokens"] == written_targets


def test_classification_labels_from_data_and_unknown_labels(tmp_path):
    src = tmp_path / "labels.tsv"
    src.write_text("label\ttext\npos\tgood film\nneg\tbad film\npos\tgreat film\nmeh\tok film\n")
    base = {"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)}, "template": "classification",
            "split": {"validation": 0.0}}
    manifest = run(recipe_from_dict(dict(base, classification={}), base_dir=tmp_path), tmp_path / "a", workers=1)
    assert manifest["sft"]["labels"] == {"meh": 0, "neg": 1, "pos": 2}
    assert [r[C.LABEL_ID] for r in table(tmp_path / "a").to_pylist()] == [2, 1, 2, 0]
    strict = dict(base, classification={"labels": ["neg", "pos"]})
    with pytest.raises(InputError) as info:
        run(recipe_from_dict(strict, base_dir=tmp_path), tmp_path / "b", workers=1)
    assert "labels.tsv, line 5: label 'meh' is not one of the labels (neg, pos)" in str(info.value)
    assert "classification.unknown_label: drop" in str(info.value)
    lenient = dict(base, classification={"labels": ["neg", "pos"], "unknown_label": "drop"})
    manifest = run(recipe_from_dict(lenient, base_dir=tmp_path), tmp_path / "c", workers=1)
    assert manifest["counts"]["dropped"] == {"unknown_label": 1}


def test_overflow_policies(tmp_path):
    long_prompt = "word " * 60
    records = [{"prompt": long_prompt + "Answer:", "completion": " yes"}, {"prompt": "Q:", "completion": " short"}]
    # drop: counted
    manifest = run(pairs_recipe(tmp_path, records, max_length=20, overflow="drop"), tmp_path / "drop", workers=1)
    assert manifest["counts"]["dropped"]["too_long"] == 1 and manifest["counts"]["records_written"] == 1
    # error: names file and line
    with pytest.raises(InputError, match=r"pairs.jsonl, line 1: example is \d+ tokens, over max_length 20"):
        run(pairs_recipe(tmp_path, records, max_length=20, overflow="error"), tmp_path / "err", workers=1)
    # truncate_prompt: the prompt loses tokens from the left; the response and EOS stay whole
    manifest = run(pairs_recipe(tmp_path, records, max_length=20, overflow="truncate_prompt"), tmp_path / "cut", workers=1)
    rows = table(tmp_path / "cut").to_pylist()
    assert len(rows[0][C.INPUT_IDS]) == 20
    assert rows[0][C.INPUT_IDS][-2:] == [3763, EOT]  # ' yes' <|endoftext|>
    assert rows[0][C.LOSS_MASK][-2:] == [1, 1] and sum(rows[0][C.LOSS_MASK]) == 2
    assert manifest["sft"]["examples"]["truncated"] == 1
    # a response that cannot fit is never cut: it is dropped (counted) ...
    huge = [{"prompt": "Q:", "completion": " answer" * 40}]
    manifest = run(pairs_recipe(tmp_path, huge, max_length=20, overflow="truncate_prompt", on_error="skip", max_dropped_fraction=1, allow_empty=True), tmp_path / "huge", workers=1)
    assert manifest["counts"]["dropped"] == {"response_too_long": 1}
    # ... or an error naming the fix
    with pytest.raises(InputError, match="raise `max_length`"):
        run(pairs_recipe(tmp_path, huge, max_length=20, overflow="truncate_prompt"), tmp_path / "huge2", workers=1)


def test_bfd_packs_whole_examples_and_never_trains_first_tokens(tmp_path):
    recipe = load_recipe(RECIPES / "dialogsum.yaml")
    manifest = run(recipe, tmp_path / "out", workers=1)
    unpacked = run(load_recipe(RECIPES / "dialogsum.yaml", ["packing.mode=none"]), tmp_path / "flat", workers=1)
    examples = sorted(tuple(r[C.INPUT_IDS]) for r in all_rows(tmp_path / "flat"))
    masks = {tuple(r[C.INPUT_IDS]): r[C.LOSS_MASK] for r in all_rows(tmp_path / "flat")}
    pieces = []
    for row in all_rows(tmp_path / "out"):
        assert len(row[C.INPUT_IDS]) == 1024 and sum(row[C.SEQ_LENS]) == 1024
        start = 0
        lens = row[C.SEQ_LENS][:-1] if row[C.NUM_PAD] else row[C.SEQ_LENS]
        for n in lens:
            ids = tuple(row[C.INPUT_IDS][start : start + n])
            mask = row[C.LOSS_MASK][start : start + n]
            assert mask[0] == 0 and mask[-1] == 1 and ids[-1] == EOT
            assert mask == masks[ids]  # the same example, packed or not, has the same mask
            pieces.append(ids)
            start += n
        assert row[C.LOSS_MASK][start:] == [0] * row[C.NUM_PAD]
    assert sorted(pieces) == examples
    rows = all_rows(tmp_path / "out")
    content = sum(len(row[C.INPUT_IDS]) - row[C.NUM_PAD] for row in rows)
    assert manifest["counts"]["packing_efficiency"] == content / (1024 * len(rows)) > 0.9
    assert unpacked["sft"]["target_tokens"] == manifest["sft"]["target_tokens"]


def test_identical_shards_for_any_worker_count_sft(tmp_path):
    hashes = []
    for workers in (1, 2):
        recipe = load_recipe(RECIPES / "chat.yaml", ["output.chunk_records=64", "split.validation=0.2"])
        manifest = run(recipe, tmp_path / f"w{workers}", workers=workers)
        hashes.append({s: [sh["sha256"] for sh in manifest["splits"][s]["shards"]] for s in C.SPLITS})
    assert hashes[0] == hashes[1]


def test_bad_records_name_file_line_and_reason(tmp_path):
    records = [{"prompt": "ok", "completion": " fine"}, {"prompt": "no completion"}, {"prompt": "x", "completion": ""}]
    with pytest.raises(InputError) as info:
        run(pairs_recipe(tmp_path, records), tmp_path / "a", workers=1)
    assert "pairs.jsonl, line 2: missing field 'completion'" in str(info.value)
    manifest = run(pairs_recipe(tmp_path, records, on_error="skip", max_dropped_fraction=1), tmp_path / "b", workers=1)
    assert manifest["counts"]["dropped"] == {"empty_field": 1, "missing_field": 1}
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}) + "\n")
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": str(chats)}], "tokenizer": {"path": str(PHI3)}, "template": "chat"}, base_dir=tmp_path)
    with pytest.raises(InputError, match=r"chats.jsonl, line 1: message 1 has role 'robot'"):
        run(recipe, tmp_path / "c", workers=1)


def test_recipe_checks_for_sft(tmp_path):
    from dataprep.errors import RecipeError

    with pytest.raises(RecipeError, match="template, masking, classification, overflow and max_length apply to task: sft only"):
        recipe_from_dict({"task": "pretrain", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}, "template": "alpaca"}, base_dir=tmp_path)
    with pytest.raises(RecipeError, match=r"packing.mode: 'wrap' is not one of 'none', 'bfd'"):
        recipe_from_dict({"task": "sft", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}, "template": "alpaca", "packing": {"mode": "wrap"}}, base_dir=tmp_path)
    with pytest.raises(RecipeError, match="'template' is required"):
        recipe_from_dict({"task": "sft", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}}, base_dir=tmp_path)
    chat = recipe_from_dict({"task": "sft", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}, "template": "chat"}, base_dir=tmp_path)
    pair = recipe_from_dict({"task": "sft", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}, "template": "alpaca"}, base_dir=tmp_path)
    assert chat.sft.target_policy == "all_assistant" and pair.sft.target_policy == "completion"
    assert pair.packing.mode == "none" and pair.sft.max_length == 2048 and pair.sft.overflow == "drop"
    pretrain = recipe_from_dict({"task": "pretrain", "inputs": [{"path": "a"}], "tokenizer": {"path": "t"}}, base_dir=tmp_path)
    assert pretrain.packing.mode == "wrap" and "masking" not in pretrain.resolved and "classification" not in pretrain.resolved
    bad_fields = pairs_recipe(tmp_path, [{"prompt": "a", "completion": "b"}], inputs=[{"path": str(tmp_path / "pairs.jsonl"), "fields": {"answer": "completion"}}])
    with pytest.raises(ConfigError, match="names 'answer', which the template does not use"):
        run(bad_fields, tmp_path / "o", workers=1)


def test_fields_apply_to_every_file_of_a_glob_input(tmp_path):
    """`fields:` belongs to the recipe input, so every file a glob or folder matches uses it."""
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(json.dumps({"q": f"Question {name}:", "a": " answer"}) + "\n")
    recipe = recipe_from_dict(
        {"task": "sft", "inputs": [{"path": "*.jsonl", "fields": {"prompt": "q", "completion": "a"}}],
         "tokenizer": {"path": str(GPT2)}, "template": "prompt_completion", "split": {"validation": 0.0}},
        base_dir=tmp_path,
    )
    manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["counts"]["records_written"] == 2
    assert [i["documents"] for i in manifest["inputs"]] == [1, 1]


def test_special_token_text_in_a_field_is_a_bad_record_unless_kept(tmp_path):
    """"<|endoftext|>" typed inside a completion would encode as GPT-2's stop token mid-answer."""
    records = [{"prompt": "Say hi:", "completion": " hi"}, {"prompt": "Quote:", "completion": " a<|endoftext|>b"}]
    with pytest.raises(InputError, match=r"pairs\.jsonl, line 2: field 'completion' holds '<\|endoftext\|>', the text of a special token") as info:
        run(pairs_recipe(tmp_path, records), tmp_path / "out", workers=1)
    assert "special_text: keep" in str(info.value)
    skipped = run(pairs_recipe(tmp_path, records, on_error="skip", max_dropped_fraction=1), tmp_path / "skip", workers=1)
    assert skipped["counts"]["dropped"] == {"special_token_text": 1} and skipped["counts"]["records_written"] == 1
    kept = run(pairs_recipe(tmp_path, records, special_text="keep"), tmp_path / "keep", workers=1)
    assert kept["counts"]["records_written"] == 2
    row = [r for r in table(tmp_path / "keep").to_pylist() if r[C.INPUT_IDS].count(EOT) == 2][0]
    assert row[C.INPUT_IDS][-1] == EOT  # the typed one encoded as EOS in the middle, as asked


def test_special_token_text_in_real_chats_is_counted(tmp_path):
    """Real KTO demo conversations quote Phi-3's `<|user|>` and `</s>` inside messages."""
    recipe = load_recipe(RECIPES / "chat.yaml", ["inputs.0.path=../../shared/data/pairs/chat/kto_en_demo.json",
                                                  "inputs.0.fields.messages.path=messages", "on_error=skip", "packing.mode=none"])
    manifest = run(recipe, tmp_path / "out", workers=1)
    dropped = manifest["counts"]["dropped"].get("special_token_text", 0)
    conversations = json.loads((DATA / "pairs" / "chat" / "kto_en_demo.json").read_text(encoding="utf-8"))
    specials = [t.content for t in Tokenizer.from_file(str(PHI3 / "tokenizer.json")).get_added_tokens_decoder().values() if t.special]
    quoting = sum(any(s in m["content"] for m in c["messages"] for s in specials) for c in conversations)
    assert dropped == quoting > 0


def test_pairs_rendered_a_chunk_at_a_time_give_what_one_at_a_time_gives(tmp_path, monkeypatch):
    """The worker renders a pair template's plain records a column at a time (_pairs_at_once) and
    leaves the rest to the per-record path: the chunk's ids, masks, stats, drops and their samples
    are what the per-record path alone gives, with history turns, system prompts, blanks, numbers,
    missing fields and Alpaca's optional input among the records (the reader drops numbers and
    missing fields before the worker sees them; a chunk with special-token text goes one at a time)."""
    from collections import Counter

    from dataprep.read import resolve_inputs
    from dataprep.tasks.sft.records import iter_chunks
    from dataprep.tasks.sft.worker import SftWorker
    from dataprep.text.tokenizer import load_tokenizer

    records = [
        {"instruction": "Name a color.", "input": "", "output": "Red."},
        {"instruction": "Add", "input": "2 and 3", "output": 5},
        {"instruction": "Again?", "output": "Yes.", "history": [["Hi", "Hello!"], ["How are you?", "Fine."]]},
        {"instruction": "With a system prompt", "output": "Sure.", "system": "Be brief."},
        {"instruction": "   ", "output": "blank instruction"},
        {"output": "no instruction"},
        {"instruction": "Input is a list", "input": ["x"], "output": "bad type"},
        {"instruction": "Über café", "input": "\u3000", "output": "ünïcode"},
    ] * 3
    recipe = pairs_recipe(tmp_path, records, template="alpaca", on_error="skip")
    tokenizer = load_tokenizer(recipe.tokenizer, base_dir=tmp_path, warn=False)
    files = resolve_inputs(recipe.inputs, base_dir=tmp_path)

    def chunk_results():
        worker = SftWorker(recipe, tokenizer, files, None)
        return [worker(item) for item in iter_chunks(files, recipe, Counter(), Counter())]

    rendered_at_once = []
    pairs_at_once = SftWorker._pairs_at_once
    monkeypatch.setattr(SftWorker, "_pairs_at_once", lambda self, columns, n: rendered_at_once.append(
        sum(r is not None for r in pairs_at_once(self, columns, n))) or pairs_at_once(self, columns, n))
    at_once = chunk_results()
    assert rendered_at_once == [3 * 3]  # the color, system-prompt and Unicode records
    monkeypatch.setattr(SftWorker, "_pairs_at_once", lambda self, columns, n: [None] * n)
    one_by_one = chunk_results()
    assert len(at_once) == len(one_by_one) == 1
    fast, slow = at_once[0], one_by_one[0]
    assert fast.tokens.tolist() == slow.tokens.tolist() and fast.lengths.tolist() == slow.lengths.tolist()
    assert fast.extras.keys() == slow.extras.keys() and all(fast.extras[k].tolist() == slow.extras[k].tolist() for k in fast.extras)
    assert fast.doc_stats.keys() == slow.doc_stats.keys()
    assert all(fast.doc_stats[k].tolist() == slow.doc_stats[k].tolist() for k in fast.doc_stats)
    assert fast.hashes == slow.hashes and fast.drops == slow.drops and fast.drop_samples == slow.drop_samples
    assert fast.doc_stats["system_not_rendered"].sum() == 3 and fast.drops == Counter(empty_field=3)
