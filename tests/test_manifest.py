"""The typed manifest (:class:`dataprep.dataset.manifest.Manifest`): the one writer and reader of
``manifest.json``.

Every shipped task's manifest reads back to the same JSON, byte for byte; the facts the run
decided (``rows``, ``sft.stop_token_ids``) are stated, and a manifest written before they were is
read with the same facts filled in; a manifest with a key of the wrong type, a missing or an
unknown key is refused with an :class:`~dataprep.errors.InputError` that names the key; and the
shards are the bytes the run wrote before the manifest was typed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from dataprep.build.run import run
from dataprep.dataset.manifest import Manifest, section
from dataprep.dataset.manifest_parts import Rows
from dataprep.dataset.manifest_tasks import Mlm, Objective, Span
from dataprep.dataset.reader import open_dataset
from dataprep.errors import InputError
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.train.loader import read_info

from .conftest import DATA, RECIPES

# one shipped recipe per task (and the facts each states), plus clm's other packing
BUILT = {
    "demo-pretrain": {"packing": "wrap", "layout": "stream", "fixed_length": True, "ends_with_eos": True},
    "demo-sft": {"packing": "none", "layout": "examples", "fixed_length": False, "label_column": None},
    "classification": {"layout": "examples", "label_column": "label_id"},
    "chat": {"packing": "bfd", "layout": "examples", "fixed_length": True},
    "fewshot-demo": {"packing": "none", "layout": "examples", "fixed_length": False},
    "mlm-wikitext": {"packing": "bfd", "layout": "pieces", "cut_documents": True, "starts_with_bos": True, "ends_with_eos": True},
    "span-c4": {"packing": "wrap", "layout": "corrupted", "fixed_length": True},
    "clm-bfd": {"packing": "bfd", "layout": "pieces", "cut_documents": True, "fixed_length": True},
}
CLM_BFD = {"task": "pretrain", "inputs": [{"path": str(RECIPES / "data" / "tiny_corpus.jsonl")}],
           "tokenizer": {"train": {"vocab_size": 600}}, "packing": {"mode": "bfd", "seq_len": 64}, "split": {"validation": 0.1}}
# sha256 of every shard, from the commit before the manifest was typed (fca9310): the rows are
# not the manifest's business, so typing it changed none of their bytes
SHARDS_BEFORE = {
    "demo-pretrain": {"train": "56ab44ddc14364fcf7dab39bb7b0046315d1446566a49d1b7a85b3fa26ecdea6",
                     "validation": "3086e6829f466ac300d073cc89aca1f2b7c6b4c9bb95008d224992100e4a363f"},
    "demo-sft": {"train": "99b1cf4e11a05c6fcb630454440b5206276295436c0187fd90ae62f199787d4d",
                "validation": "922c0e163a3963eceb0e4494ac8e4cdd684bfc8486182139b03cd2f193979496"},
    "classification": {"train": "bc3ce8d1a124a0e58fac966aeb8255963a191e088091aa63e40c377237a63ae8",
                      "validation": "30baac2eaa557af0131e310ea86f8201887d193860e424d73fc68bb095eecb60"},
    "chat": {"train": "ae49062836ddc2e7bdd784f8100f367a6f665a890bc196679571e404994cbe11",
            "validation": "70f6c6cbd90b404d25cfabed63ce174ede997d3d8385473507c5d93f0b11489e"},
    "fewshot-demo": {"train": "75f8c3a651621f0646369ea4bf776db8328eb3af8a165dea7a9d9d62842b902e",
                    "validation": "3ff3415c10b6c1aa901739e39328263a7b1cbd0bd598d15ea3fbb9db04dd2395"},
    "mlm-wikitext": {"train": "49779beb0374e09b10d86929013f6fd34a59dc9f8a7e6c3516ece8e110e29548",
                    "validation": "abb3813fb5184cbec570ff3b87f98b202b52f7b015b72f075d83500dc671f708"},
    "span-c4": {"train": "7d6d392deb9b56ab2fe37478dcbefeb55fe678da4aeea660df295e059de5ee0e",
               "validation": "5edbbd8efeb9dcaaac92ad4594d5b70f111f7bd52887b112eaf8c5578b64e5c7"},
    "clm-bfd": {"train": "4cff996c700d84091fda07c007e0acf7048a50509ab2c191a457e5dd3017fd84",
               "validation": "588b9de3c6302c5c70ad93201636b78c16c7bc9c70bd5812d0d8a66506d5f734"},
}


# what closes a target, as the tokenizer files name it: a pair template's EOS, Phi-3's end of turn
STOP_TOKENS = {
    "demo-sft": (RECIPES / "data" / "byte_tokenizer", "<|endoftext|>", 0),
    "classification": (DATA / "tokenizers" / "gpt2", "<|endoftext|>", 50256),
    "chat": (DATA / "tokenizers" / "phi-3-mini", "<|end|>", 32007),
    "fewshot-demo": (RECIPES / "data" / "byte_tokenizer", "<|endoftext|>", 0),
}


def token_id(folder: Path, token: str) -> int | None:
    """The id the tokenizer files give ``token`` (read here, not by dataprep's loader)."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id(token)
    return json.loads((folder / "vocab.json").read_text(encoding="utf-8")).get(token)


def assert_stop_ids(m: Manifest, name: str) -> None:
    """Fine-tuning states exactly the one id that closes its targets; pretraining has no sft section."""
    if name not in STOP_TOKENS:
        assert m.task == "pretrain" and m.sft is None and m.stop_ids is None
        return
    folder, token, expected = STOP_TOKENS[name]
    assert token_id(folder, token) == expected  # the table is the files' own
    assert m.sft.stop_token_ids == m.stop_ids == (expected,), (name, m.sft.stop_token_ids)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifest")
    outs = {}
    for name in BUILT:
        recipe = recipe_from_dict(CLM_BFD, base_dir=root) if name == "clm-bfd" else load_recipe(RECIPES / f"{name}.yaml")
        run(recipe, root / name, workers=1, progress=False)
        outs[name] = root / name
    return outs


def on_disk(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(BUILT))
def test_every_task_reads_back_to_the_same_bytes(built, name):
    out = built[name]
    text = (out / "manifest.json").read_text(encoding="utf-8")
    m = Manifest.load(out)
    assert m.to_dict() == json.loads(text)
    assert json.dumps(m.to_dict(), indent=2, ensure_ascii=False) + "\n" == text  # the writer's own format
    assert Manifest.from_dict(m.to_dict()) == m


@pytest.mark.parametrize("name", list(BUILT))
def test_the_run_states_its_decisions(built, name):
    m = Manifest.load(built[name])
    for fact, value in BUILT[name].items():
        assert getattr(m.rows, fact) == value, fact
    assert m.rows.length == m.seq_len
    assert_stop_ids(m, name)
    assert isinstance(m.objective, Mlm) == (name == "mlm-wikitext") and isinstance(m.objective, Span) == (name == "span-c4")


def test_stated_facts_are_the_ones_readers_used_to_work_out(built):
    chat, sft, classification, mlm = (Manifest.load(built[n]) for n in ("chat", "demo-sft", "classification", "mlm-wikitext"))
    assert chat.sft.stop_token_ids == (32007,)  # Phi-3's <|end|>, from its chat template
    assert sft.sft.stop_token_ids == (0,)  # the byte tokenizer's EOS closes a pair template's response
    assert classification.rows.label_column == "label_id" and classification.sft.labels == {"ham": 0, "spam": 1}
    assert mlm.objective.frame.prefix == (101,) and mlm.objective.frame.suffix == (102,)  # [CLS] piece [SEP]
    assert sum(mlm.packing[s].split_documents for s in ("train", "validation")) > 0  # mlm counts the documents it cut
    info = read_info(built["chat"])
    assert (info.stop_ids, info.seq_len, info.pad_id) == ((32007,), chat.rows.length, chat.padding.pad_token_id)


@pytest.mark.parametrize("name", list(BUILT))
def test_a_manifest_from_before_the_facts_were_stated_reads_the_same(built, name):
    """Without ``rows`` (and, for a pair template, ``sft.stop_token_ids``), the reader fills in
    exactly what the run states today."""
    d = on_disk(built[name])
    stated = Manifest.from_dict(d)
    old = copy.deepcopy(d)
    del old["rows"]
    if "sft" in old and old["recipe"].get("template") != "chat":
        del old["sft"]["stop_token_ids"]
    read = Manifest.from_dict(old)
    assert read.rows == stated.rows  # (mlm: an older run did not count its cuts; the reader assumes them, and here they are)
    assert read.stop_ids == stated.stop_ids


def test_an_old_chat_manifest_has_no_stop_ids_and_validate_says_so(built, tmp_path):
    from dataprep.validate import validate_dataset
    import shutil

    out = tmp_path / "chat"
    shutil.copytree(built["chat"], out)
    d = on_disk(out)
    del d["sft"]["stop_token_ids"]
    (out / "manifest.json").write_text(json.dumps(d, indent=2))
    assert Manifest.load(out).stop_ids is None
    report = validate_dataset(out)
    assert report.ok and any("does not record sft.stop_token_ids" in note for note in report.notes)


@pytest.mark.parametrize("edit, key, words", [
    (lambda d: d["counts"].update(tokens="many"), "counts.tokens", "'many' is not of type 'integer'"),
    (lambda d: d["tokenizer"].pop("vocab_size"), "tokenizer", "'vocab_size' is required"),
    (lambda d: d["splits"]["train"]["shards"][0].update(sha="0" * 64), "splits.train.shards[0].sha", "unknown key 'sha'"),
    (lambda d: d["rows"].update(layout="rows"), "rows.layout", "'rows' is not one of"),
    (lambda d: d["rows"].pop("fixed_length"), "rows", "'fixed_length' is required"),
    (lambda d: d["sft"].update(stop_token_ids=["0"]), "sft.stop_token_ids[0]", "is not of type 'integer'"),
])
def test_a_bad_manifest_is_refused_naming_the_key(built, tmp_path, edit, key, words):
    d = on_disk(built["demo-sft"])
    edit(d)
    with pytest.raises(InputError) as caught:
        Manifest.from_dict(d)
    assert caught.value.location == key and words in str(caught.value)
    assert "fix: rebuild the dataset" in str(caught.value)
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match=key.replace("[", r"\[").replace("]", r"\]")):
        Manifest.load(tmp_path)
    with pytest.raises(InputError, match="does not match manifest.schema.json"):
        open_dataset(tmp_path)  # every reader goes through the same check


def test_the_writer_refuses_a_manifest_that_breaks_the_schema(built):
    m = Manifest.load(built["demo-sft"])
    with pytest.raises(InputError) as caught:
        dataclasses.replace(m, run=None).to_dict()  # the run section is what the run adds last
    assert caught.value.location == "(top level)" and "'run' is required" in str(caught.value)
    bad = dataclasses.replace(m, rows=dataclasses.replace(m.rows, length=0))
    with pytest.raises(InputError, match=r"rows\.length"):
        bad.to_dict()


def test_a_task_section_as_json_is_typed_and_an_unknown_key_named():
    span = {"name": "span_corruption", "noise_density": 0.15, "mean_span_length": 3.0, "seed": 0, "raw_length": 9,
               "noise_tokens": 1, "spans": 1, "labels_length": 3, "input_length": 8, "sentinel_ids": [5], "eos_id": 0,
               "added_tokens": [], "raw_tokens": 90}
    assert isinstance(section(Objective, span, "objective"), Span)
    with pytest.raises(InputError) as caught:
        section(Objective, {**span, "noise": 1}, "objective")
    assert caught.value.location == "objective.noise"
    with pytest.raises(InputError, match="objective.name"):
        section(Objective, {**span, "name": "clm"}, "objective")


@pytest.mark.parametrize("name", list(BUILT))
def test_shards_are_the_bytes_written_before(built, name):
    for split, sha in SHARDS_BEFORE[name].items():
        (shard,) = Manifest.load(built[name]).splits[split].shards
        assert hashlib.sha256((built[name] / split / shard.file).read_bytes()).hexdigest() == shard.sha256 == sha


def test_rows_record_matches_the_schema_keys():
    from dataprep.schema import load_schema

    keys = list(load_schema("manifest")["$defs"]["rows"]["properties"])
    assert keys == [f.name for f in dataclasses.fields(Rows)]
