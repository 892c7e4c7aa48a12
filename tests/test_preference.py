"""task: preference (#18): the four record shapes build from a recipe alone, the rows are exactly
the tokens of the one tokenization of prompt + response (checked against transformers' chat
templates, whose generation-tagged versions mark the response independently), pairs sharing a
prompt share a split, every record is written or counted, and validate catches a planted broken
pair of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.read.preference import IDENTICAL, NO_COMMON_PROMPT, read_pair, read_transcripts, read_unpaired
from dataprep.recipe import load_recipe
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES, require_shared, transformers_tokenizer
from .test_validate_recheck import edit_rows

TEMPLATES = DATA / "chat_templates"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """``build(recipe name or path, *overrides)``: the dataset, made once per module."""
    made: dict[tuple, Path] = {}

    def make(name: str | Path, *overrides: str) -> Path:
        key = (str(name), overrides)
        if key not in made:
            out = tmp_path_factory.mktemp("pref") / "out"
            path = name if isinstance(name, Path) else RECIPES / f"{name}.yaml"
            with pytest.MonkeyPatch.context() as patch:  # the run's transformers comparison: slow, and tested elsewhere
                patch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)
                run(load_recipe(path, list(overrides)), out, workers=1, progress=False)
            made[key] = out
        return made[key]

    return make


def rows_of(out: Path, split: str = "train") -> list[dict]:
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    rows = []
    for shard in manifest["splits"][split]["shards"]:
        with pa.ipc.open_stream((out / split / shard["file"]).read_bytes()) as reader:
            rows += reader.read_all().to_pylist()
    return rows


def hf(name: str):
    folder = DATA / "tokenizers" / name
    if not (folder / "tokenizer.json").is_file():  # gpt2: vocab.json + merges.txt, read by `tokenizers` itself
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
        bpe.add_special_tokens(["<|endoftext|>"])
        return _Gpt2(bpe)
    return transformers_tokenizer(name)  # AutoTokenizer.from_pretrained(folder), once per session


class _Gpt2:
    def __init__(self, bpe):
        self.bpe = bpe

    def __call__(self, text: str) -> dict:
        return {"input_ids": self.bpe.encode(text).ids}

    def decode(self, ids: list[int]) -> str:
        return self.bpe.decode(ids, skip_special_tokens=False)


def oracle(tokenizer, template: str, messages: list[dict]) -> tuple[list[int], list[int]]:
    """transformers' ids of the whole conversation and its assistant mask, from the
    generation-tagged training template (an independent path to the response tokens)."""
    out = tokenizer.apply_chat_template(messages, chat_template=(TEMPLATES / template).read_text(), tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), list(out["assistant_masks"])


def check_against_oracle(rows: list[dict], sequences: dict[tuple, list[int]], response_columns: list[str]) -> int:
    """Every row's prompt + response is one oracle sequence, and the oracle's mask is 1 exactly on
    the response (its last-turn tokens) and its stop token."""
    matched = 0
    for row in rows:
        for column in response_columns:
            ids = row[C.PROMPT_IDS] + row[column]
            mask = sequences.get(tuple(ids))
            if mask is None:
                continue
            matched += 1
            ones = [i for i, m in enumerate(mask) if m]
            # the oracle may mark earlier assistant turns too; the response is its last marked run
            last = [i for i in ones if i >= len(row[C.PROMPT_IDS])]
            assert last == list(range(len(row[C.PROMPT_IDS]), len(ids))), (column, last[:3])
    return matched


def test_dpo_en_demo_rows_are_llama3_chat_tokens_with_the_response_as_target(build):
    require_shared()
    out = build("preference-dpo-en-demo")
    tok = hf("llama-3")
    records = json.loads((DATA / "pairs" / "preference" / "dpo_en_demo.json").read_text())[:40]
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    sequences = {}
    for record in records:
        prompt = [{"role": roles[m["from"]], "content": m["value"]} for m in record["conversations"]]
        for side in ("chosen", "rejected"):
            ids, mask = oracle(tok, "llama3_training.jinja", prompt + [{"role": "assistant", "content": record[side]["value"]}])
            sequences[tuple(ids)] = mask
    rows = rows_of(out) + rows_of(out, "validation")
    assert check_against_oracle(rows, sequences, [C.CHOSEN_IDS, C.REJECTED_IDS]) >= 60  # of the first 40 records' 80
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert all(r[C.CHOSEN_IDS][-1] == eot and r[C.REJECTED_IDS][-1] == eot for r in rows)
    assert all(r[C.PROMPT_IDS][0] == tok.bos_token_id for r in rows)
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    assert m["counts"]["records_read"] == m["counts"]["records_written"] + sum(m["counts"]["dropped"].values())
    assert m["sft"]["stop_token_ids"] == [eot]
    assert validate_dataset(out).ok


def test_kto_en_demo_rows_are_gemma3_chat_tokens_with_labels(build):
    require_shared()
    out = build("preference-kto-en-demo")
    tok = hf("gemma-3")
    stop = tok.convert_tokens_to_ids("<end_of_turn>")
    records = json.loads((DATA / "pairs" / "chat" / "kto_en_demo.json").read_text())[:30]
    sequences, labels = {}, {}
    for record in records:
        ids, mask = oracle(tok, "gemma3_training.jinja", record["messages"])
        end = len(ids) - ids[::-1].index(stop)  # the row stops at the stop token
        sequences[tuple(ids[:end])] = mask[:end]
        labels[tuple(ids[:end])] = record["label"]
    rows = rows_of(out) + rows_of(out, "validation")
    assert check_against_oracle(rows, sequences, [C.COMPLETION_IDS]) >= 25
    for row in rows:
        key = tuple(row[C.PROMPT_IDS] + row[C.COMPLETION_IDS])
        if key in labels:
            assert row[C.KTO_LABEL] is labels[key]
    assert {r[C.KTO_LABEL] for r in rows} == {True, False}
    assert all(r[C.COMPLETION_IDS][-1] == stop for r in rows)
    assert validate_dataset(out).ok


def test_hh_transcripts_split_at_the_last_common_assistant_turn_and_bad_records_are_counted(build):
    require_shared()
    out = build("preference-hh-sample")
    m = json.loads((out / C.MANIFEST_FILE).read_text())
    assert m["counts"]["dropped"] == {IDENTICAL: 1, NO_COMMON_PROMPT: 1}
    assert m["counts"]["records_written"] == 8
    tok = hf("gpt2")
    rows = rows_of(out) + rows_of(out, "validation")
    bread = next(r for r in rows if "white loaf" in tok.decode(r[C.PROMPT_IDS]))
    assert tok.decode(bread[C.PROMPT_IDS]).endswith("A simple white loaf.\n\nAssistant:")
    assert tok.decode(bread[C.REJECTED_IDS]) == " Just buy one at the shop.<|endoftext|>"
    # one tokenization: prompt + response is exactly the tokens of the whole transcript + EOS
    record = json.loads((RECIPES / "data" / "hh_sample.jsonl").read_text().splitlines()[1])
    assert bread[C.PROMPT_IDS] + bread[C.CHOSEN_IDS] == tok(record["chosen"] + "<|endoftext|>")["input_ids"]
    assert validate_dataset(out).ok


def test_readers_of_each_shape():
    pair = read_pair({"prompt": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello"},
                      "rejected": {"from": "gpt", "value": "Go"}})
    assert pair.prompt == [{"role": "user", "content": "Hi"}] and (pair.chosen, pair.rejected) == ("Hello", "Go")
    assert read_pair({"prompt": "Q", "chosen": "a", "rejected": "a"})[0] == "chosen_equals_rejected"
    assert read_pair({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"})[0] == "bad_pair"
    assert read_transcripts({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"})[0] == IDENTICAL
    assert read_transcripts({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: b"})[0] == NO_COMMON_PROMPT
    two = read_transcripts({"chosen": "\n\nHuman: a\n\nAssistant: yes", "rejected": "\n\nHuman: a\n\nAssistant: yeah"})
    assert (two.prompt_text, two.chosen, two.rejected) == ("\n\nHuman: a\n\nAssistant:", " yes", " yeah")
    assert read_unpaired({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": "yes"})[0] == "bad_label"


def test_synthetic_pairs_sharing_a_prompt_share_a_split(build):
    out = build("preference-synthetic")
    train, validation = rows_of(out), rows_of(out, "validation")
    prompts = {split: [tuple(r[C.PROMPT_IDS]) for r in rows] for split, rows in (("train", train), ("validation", validation))}
    assert not set(prompts["train"]) & set(prompts["validation"])
    shared = [p for p in set(prompts["validation"]) if prompts["validation"].count(p) > 1]
    assert shared  # prompts with two pairs reached validation, both pairs together
    assert all(r[C.CHOSEN_IDS] != r[C.REJECTED_IDS] and r[C.CHOSEN_IDS][-1] == 0 for r in train)  # 0: the byte tokenizer's EOS


def test_a_merge_across_the_boundary_is_dropped_or_cut(tmp_path, build):
    require_shared()
    data = tmp_path / "pairs.jsonl"
    # "A: " + "cba": GPT-2 merges the space into " cba" (one token across the boundary)
    data.write_text(json.dumps({"prompt": "Q: reverse abc\nA: ", "chosen": "cba", "rejected": "abc"}) + "\n"
                    + json.dumps({"prompt": "Q: reverse xyz\nA:", "chosen": " zyx", "rejected": " xyz"}) + "\n")
    recipe = {"name": "merge", "task": "preference", "preference": {"shape": "triples"}, "inputs": [{"path": str(data)}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}, "template": "text", "on_error": "skip",
              "max_dropped_fraction": 0.5, "split": {"validation": 0}}
    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump(recipe))
    dropped = build(path)
    assert json.loads((dropped / C.MANIFEST_FILE).read_text())["counts"]["dropped"] == {"boundary_merge": 1}
    cut = build(path, "preference.boundary=cut")
    tok = hf("gpt2")
    rows = rows_of(cut)
    assert len(rows) == 2
    merged = next(r for r in rows if "abc" in tok.decode(r[C.PROMPT_IDS]))
    # cut: the prompt ends at the last token boundary before the response; " c" is the response's first token
    assert tok.decode(merged[C.PROMPT_IDS]) == "Q: reverse abc\nA:"
    assert merged[C.CHOSEN_IDS] == tok(" cba<|endoftext|>")["input_ids"] and tok.decode(merged[C.REJECTED_IDS]) == " abc<|endoftext|>"
    assert merged[C.PROMPT_IDS] + merged[C.CHOSEN_IDS] == tok("Q: reverse abc\nA: cba<|endoftext|>")["input_ids"]


def test_validate_catches_a_planted_broken_pair_of_each_kind(build, tmp_path):
    import shutil

    out = tmp_path / "broken"
    shutil.copytree(build("preference-synthetic"), out)
    assert validate_dataset(out).ok

    def edit(rows):
        rows[0][C.REJECTED_IDS] = list(rows[0][C.CHOSEN_IDS])  # nothing to prefer
        rows[1][C.CHOSEN_IDS] = rows[1][C.CHOSEN_IDS][:-1]  # stop token not the last target
        rows[2][C.CHOSEN_IDS] = rows[2][C.PROMPT_IDS] + rows[2][C.CHOSEN_IDS]  # the prompt trained as a target
        rows[3][C.PROMPT_IDS] = []  # no prompt
        rows[4][C.REJECTED_IDS] = [5] * 70 + [0]  # over max_length 64
        rows[5][C.CHOSEN_IDS] = [10**6, 0]  # outside the vocab

    edit_rows(out, "train", edit)  # sizes and checksums fixed: only the row checks can tell
    counts = validate_dataset(out).counts
    for kind in ("pref_same_response", "pref_stop_not_last", "pref_prompt_in_response", "pref_empty_prompt",
                 "pref_too_long", "token_id_range"):
        assert counts[kind] >= 1, (kind, dict(counts))


def test_inspect_shows_the_prompt_once_and_report_the_length_margin(build):
    from click.testing import CliRunner

    from dataprep.cli import cli

    out = build("preference-synthetic")
    shown = CliRunner().invoke(cli, ["inspect", str(out), "--row", "0", "--no-color"])
    assert shown.exit_code == 0, shown.output
    first = rows_of(out)[0]
    assert shown.output.count("Q: ") == 1 and "chosen" in shown.output and "| rejected" in shown.output
    assert f"prompt {len(first[C.PROMPT_IDS])} tokens; chosen {len(first[C.CHOSEN_IDS])}" in shown.output
    numbers = CliRunner().invoke(cli, ["report", str(out), "--format", "json"])
    assert numbers.exit_code == 0, numbers.output
    train = json.loads(numbers.output)["splits"]["train"]
    rows = rows_of(out)
    margins = [len(r[C.CHOSEN_IDS]) - len(r[C.REJECTED_IDS]) for r in rows]
    assert train["margin"]["count"] == len(rows) and train["margin"]["max"] == max(margins)
    assert train["chosen_longer"] == round(sum(m > 0 for m in margins) / len(margins), 6)


def test_gpt_oss_pairs_train_the_channel_header_as_trls_template_marks_it(build):
    """gpt-oss's generation prompt ends at ``<|start|>assistant``; the model writes ``<|channel|>final<|message|>``
    itself, so each response starts with it, as TRL's gpt-oss training template marks it (its mark also covers
    the generation prompt, which the prompt holds: the one convention not compared)."""
    import datetime

    require_shared()
    today = datetime.date.today().isoformat()  # transformers prints today where the template calls strftime_now
    out = build("preference-dpo-en-demo", "tokenizer.path=../../shared/data/tokenizers/gpt-oss", f"chat.date={today}")
    tok = hf("gpt-oss")
    header = tok.encode("<|channel|>final<|message|>", add_special_tokens=False)
    generation_prompt = tok.encode("<|start|>assistant", add_special_tokens=False)
    records = json.loads((DATA / "pairs" / "preference" / "dpo_en_demo.json").read_text())[:30]
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    sequences = {}
    for record in records:
        prompt = [{"role": roles[m["from"]], "content": m["value"]} for m in record["conversations"]]
        for side in ("chosen", "rejected"):
            ids, mask = oracle(tok, "gptoss_training.jinja", prompt + [{"role": "assistant", "content": record[side]["value"]}])
            sequences[tuple(ids)] = mask
    rows = rows_of(out) + rows_of(out, "validation")
    matched = 0
    for row in rows:
        assert row[C.PROMPT_IDS][-len(generation_prompt):] == generation_prompt
        for column in (C.CHOSEN_IDS, C.REJECTED_IDS):
            assert row[column][: len(header)] == header
            ids = row[C.PROMPT_IDS] + row[column]
            mask = sequences.get(tuple(ids))
            if mask is None:
                continue
            matched += 1
            start = len(row[C.PROMPT_IDS]) - len(generation_prompt)
            marked = [i for i, m in enumerate(mask) if m and i >= start]
            assert marked == list(range(start, len(ids))), column  # the response and its stop: nothing more or less
    assert matched >= 40  # of the first 30 records' 60 sequences


def test_transcripts_through_a_chat_template_end_the_prompt_with_its_generation_prompt(build):
    """An HH transcript's shared prefix ends with "\\n\\nAssistant:": that is where the template's generation
    prompt goes, not an empty assistant turn (every record was dropped as empty_field before)."""
    import re

    require_shared()
    out = build("preference-hh-sample", "template=chat", "tokenizer.path=../../shared/data/tokenizers/llama-3")
    tok = hf("llama-3")
    expected = set()
    for line in (RECIPES / "data" / "hh_sample.jsonl").read_text().splitlines():
        record = json.loads(line)
        turns = re.split(r"\n\n(Human|Assistant):", record["chosen"])[1:]
        messages = [{"role": {"Human": "user", "Assistant": "assistant"}[turns[i]], "content": turns[i + 1].strip()}
                    for i in range(0, len(turns), 2)]
        prompt = messages[:-1]  # the chosen transcript's last turn is its response
        expected.add(tuple(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]))
    rows = rows_of(out) + rows_of(out, "validation")
    manifest = json.loads((out / C.MANIFEST_FILE).read_text())
    assert len(rows) == 8 and manifest["counts"]["dropped"] == {"identical_transcripts": 1, "no_common_prompt": 1}
    assert all(tuple(r[C.PROMPT_IDS]) in expected for r in rows)


def test_special_token_text_in_a_pair_is_dropped_and_counted_among_clean_pairs(tmp_path, build):
    """The chunk-wide search for special-token text (RecordWorker._special_suspects) finds the one pair
    whose chosen response holds GPT-2's <|endoftext|>: it is dropped and counted, the clean pairs
    around it are written."""
    require_shared()
    data = tmp_path / "pairs.jsonl"
    pairs = [{"prompt": f"Q: question {i}\nA:", "chosen": f" good {i}" + ("<|endoftext|>" if i == 3 else ""),
              "rejected": f" bad {i}"} for i in range(6)]
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    recipe = {"name": "special", "task": "preference", "preference": {"shape": "triples"}, "inputs": [{"path": str(data)}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}, "template": "text", "on_error": "skip",
              "max_dropped_fraction": 0.5, "split": {"validation": 0}}
    path = tmp_path / "special.yaml"
    path.write_text(yaml.safe_dump(recipe))
    manifest = json.loads((build(path) / C.MANIFEST_FILE).read_text())
    assert manifest["counts"]["dropped"] == {"special_token_text": 1} and manifest["counts"]["records_written"] == 5
