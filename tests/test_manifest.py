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
# not the manifest's business, so typing it changed none of their bytes. Re-pinned when #16 renamed
# seq_lens -> seq_lengths and loss_mask -> assistant_masks: the Arrow schema's names changed, every
# column's values did not (built with the checkout before and after, compared column by column).
# chat re-pinned when a final assistant turn's target came to run through the EOS its template appends
# (#17): input_ids, seq_lengths and num_pad equal, assistant_masks differ in 500 tokens, each the
# final <|endoftext|> of one example, 0 -> 1 (built with the checkout before and after, compared)
SHARDS_BEFORE = {
    "demo-pretrain": {"train": "dd7484a5409f2cd5dbdf80ee0ffd413e8a21d01e77e18f48071645b56991409b",
                      "validation": "e7d044903acedca3b18487c73a0900e9df0f5237020c30a92ca241c99d8a1243"},
    "demo-sft": {"train": "447e2360f898bc560ae6501c979fd0c432a40d1b848089449146c6fcd8499e9d",
                 "validation": "9d3a6369e02d09816556aa115a3d241f37407bfc01c03809aeda1f747463ae21"},
    "classification": {"train": "80c3e3999795df28dbc000834317241e532ddaef416f277431ee01c48bf94b08",
                       "validation": "7544de313c995739271818d66fe3dd1b10bc1005d7c8561e2555ffd0da48f1a4"},
    "chat": {"train": "cd8307e28777f3a9e9dba17533f3197bada44c4ecbb848171ffd9fc6c0d39d92",
             "validation": "d1319d7df31bcd31eb3c03fe45a3a619245abdaa9547acab73733db3c77efb78"},
    "fewshot-demo": {"train": "741d8f2f5c56c49af4fc70523b600281c9ebd21e1ba6edb621f93fce79ad9cd9",
                     "validation": "f8b5978cfc3f686fe3954772427c1cad77a30409ae7ad5e1cf4e9d43797f6d77"},
    "mlm-wikitext": {"train": "c852a138cbb2d8680c34e5b96e6086f4603febf10f971415f0a12e177f8d0b0c",
                     "validation": "01afe16c046d2308b6bbe687a8681ddfac4bc6f76a6ba0e4c3803ff436e47855"},
    "span-c4": {"train": "0dc175f8101e932c3810dfa7a1baf255ee15bb8b60364d1ba44c52554e92f1bb",
                "validation": "a138a30baf37d9c785d45e3df1475e9dfcfc8722c6b8931f9062c5095a21af03"},
    "clm-bfd": {"train": "271a972fbeb0dfcd4ef3737ac7e81f66a3d66c08ae93e31da96ab86cf9c7e384",
                "validation": "af611bdbb861a1d458178d425807fb41a6d8ece222aef83b0c2f6017cbac7b7e"},
}


# what closes a target, as the tokenizer files name it: a pair template's EOS; Phi-3's end of turn,
# and the EOS its template appends after a final assistant turn
STOP_TOKENS = {
    "demo-sft": (RECIPES / "data" / "byte_tokenizer", ("<|endoftext|>",), (0,)),
    "classification": (DATA / "tokenizers" / "gpt2", ("<|endoftext|>",), (50256,)),
    "chat": (DATA / "tokenizers" / "phi-3-mini", ("<|end|>", "<|endoftext|>"), (32007, 32000)),
    "fewshot-demo": (RECIPES / "data" / "byte_tokenizer", ("<|endoftext|>",), (0,)),
}


def token_id(folder: Path, token: str) -> int | None:
    """The id the tokenizer files give ``token`` (read here, not by dataprep's loader)."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id(token)
    return json.loads((folder / "vocab.json").read_text(encoding="utf-8")).get(token)


def assert_stop_ids(m: Manifest, name: str) -> None:
    """Fine-tuning states exactly the ids that close its targets; pretraining has no sft section."""
    if name not in STOP_TOKENS:
        assert m.task == "pretrain" and m.sft is None and m.stop_ids is None
        return
    folder, tokens, expected = STOP_TOKENS[name]
    assert tuple(token_id(folder, token) for token in tokens) == expected  # the table is the files' own
    assert m.sft.stop_token_ids == m.stop_ids == expected, (name, m.sft.stop_token_ids)


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
    assert chat.sft.stop_token_ids == (32007, 32000)  # Phi-3's <|end|>, and the <|endoftext|> its template appends
    assert sft.sft.stop_token_ids == (0,)  # the byte tokenizer's EOS closes a pair template's response
    assert classification.rows.label_column == "label_id" and classification.sft.labels == {"ham": 0, "spam": 1}
    assert mlm.objective.frame.prefix == (101,) and mlm.objective.frame.suffix == (102,)  # [CLS] piece [SEP]
    assert sum(mlm.packing[s].split_documents for s in ("train", "validation")) > 0  # mlm counts the documents it cut
    info = read_info(built["chat"])
    assert (info.stop_ids, info.seq_len, info.pad_id) == ((32007, 32000), chat.rows.length, chat.padding.pad_token_id)


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
