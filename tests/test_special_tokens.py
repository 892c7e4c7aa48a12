"""Where each special token comes from (issue 14): never a silent guess.

Every role (BOS, EOS, pad, unk) is checked, with its source, on every shared tokenizer, and
against transformers' own tokenizer for the same folder where transformers is installed
(``AutoTokenizer.from_pretrained``; GPT-2 and BERT folders have no config naming their class, so
``GPT2TokenizerFast`` / ``BertTokenizerFast``, as ``tests/test_reference.py`` does). Where
dataprep deliberately differs (GPT-2's BOS and pad, BERT's CLS/SEP as BOS/EOS) the difference
itself is asserted.

Tokenizers built here: a RoBERTa-like one (``<|endoftext|>`` an ordinary entry, ``</s>`` the EOS
of its post-processor), a Qwen3-like one (``bos_token: null``, ``<s>`` an ordinary entry), a
bare byte-level BPE whose only special token is ``<|endoftext|>`` (the well-known-name fallback),
and a T5-like Unigram that writes its unknown token for ``{`` (``t5_like``, also used by
``tests/test_validate_tokenizer.py`` and ``tests/test_report.py``).
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from dataprep.errors import InputError, TokenizerError
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.text.special_tokens import unknown_token_id
from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer
from dataprep.text.tokenizer_manifest import tokenizer_manifest

from .conftest import DATA, shared_tokenizer, tokenizer_json, transformers_tokenizer

TOKENIZERS = DATA / "tokenizers"
ROLES = ("bos", "eos", "pad", "unk")
CONFIG, POST, MODEL, NAME = "tokenizer_config", "post_processor", "model", "well_known_name"

# folder -> {role: (token, source)} for every role the tokenizer has
SHARED = {
    "gpt2": {"eos": ("<|endoftext|>", NAME), "pad": ("<|endoftext|>", NAME)},
    "bert-base-cased": {"bos": ("[CLS]", POST), "eos": ("[SEP]", POST), "pad": ("[PAD]", NAME), "unk": ("[UNK]", MODEL)},
    "phi-3-mini": {"bos": ("<s>", CONFIG), "eos": ("<|endoftext|>", CONFIG), "pad": ("<|endoftext|>", CONFIG), "unk": ("<unk>", CONFIG)},
    "llama-3": {"bos": ("<|begin_of_text|>", CONFIG), "eos": ("<|eot_id|>", CONFIG)},
    "gemma-3": {"bos": ("<bos>", CONFIG), "eos": ("<end_of_turn>", CONFIG), "pad": ("<pad>", CONFIG), "unk": ("<unk>", CONFIG)},
    "deepseek-v3": {
        "bos": ("<｜begin▁of▁sentence｜>", CONFIG), "eos": ("<｜end▁of▁sentence｜>", CONFIG), "pad": ("<｜end▁of▁sentence｜>", CONFIG),
    },
    "gpt-oss": {"bos": ("<|startoftext|>", CONFIG), "eos": ("<|return|>", CONFIG), "pad": ("<|endoftext|>", CONFIG)},
}
# Where dataprep and transformers differ on purpose: role -> (dataprep, transformers).
DIFFERENCES = {
    # GPT2TokenizerFast's class defaults name <|endoftext|> for BOS and unk too; dataprep frames GPT-2
    # documents with EOS only (no BOS), pads with EOS (GPT-2 has no pad), and a byte-level BPE never
    # writes an unknown token.
    "gpt2": {"bos": (None, "<|endoftext|>"), "pad": ("<|endoftext|>", None), "unk": (None, "<|endoftext|>")},
    # transformers calls them cls_token and sep_token (compared below); dataprep frames with them.
    "bert-base-cased": {"bos": ("[CLS]", None), "eos": ("[SEP]", None)},
}
HF_CLASS = {"gpt2": "GPT2TokenizerFast", "bert-base-cased": "BertTokenizerFast"}


def roles(loaded) -> dict[str, tuple[str, str]]:
    return {role: (entry["token"], entry["source"]) for role, entry in loaded.special_tokens.items()}


@pytest.fixture(scope="module")
def shared() -> dict:
    return {name: shared_tokenizer(name) for name in SHARED}  # the ones other test modules use too


# --- tokenizers built here -------------------------------------------------------------------


def _byte_vocab(start: int) -> dict[str, int]:
    return {ch: start + i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}


def _byte_level(vocab: dict[str, int], unk: str | None = None) -> Tokenizer:
    """A character-level byte BPE: every text encodes, one token per byte."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def roberta_like(folder: Path) -> Path:
    """RoBERTa's layout: <s> <pad> </s> <unk> special, <|endoftext|> an ordinary vocab entry, the
    RobertaProcessing post-processor (<s> $A </s>), and no tokenizer_config.json."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<|endoftext|>": 4, **_byte_vocab(5)}
    tok = _byte_level(vocab, unk="<unk>")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<s>", "<pad>", "</s>", "<unk>")])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def qwen3_like(folder: Path) -> Path:
    """Qwen3's special-token setup: config bos_token null, eos <|im_end|>; <s> an ordinary entry."""
    vocab = {"<s>": 0, **_byte_vocab(1)}
    tok = _byte_level(vocab)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "unk_token": None}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def bare_byte_level(folder: Path, *, special: bool = True) -> Path:
    """A byte BPE whose one extra token is <|endoftext|> (special or ordinary), with no config."""
    tok = _byte_level({**_byte_vocab(0), "<|endoftext|>": 256})
    if special:
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


T5_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"()-"  # no { or }


def t5_like(folder: Path, *, config: bool = True) -> Path:
    """T5's layout in small: a Unigram over single characters (``{`` and ``}`` are not among them,
    so each becomes <unk>), <pad>=0 </s>=1 <unk>=2 special, the post-processor ``$A </s>``, and
    (with ``config``) T5's tokenizer_config.json roles."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), *((c, -3.0) for c in T5_CHARS)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<pad>", "</s>", "<unk>")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    return folder


# --- shared tokenizers -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SHARED))
def test_roles_and_sources_of_shared_tokenizers(shared, name):
    loaded = shared[name]
    assert roles(loaded) == SHARED[name]
    raw = tokenizer_json(name) if (TOKENIZERS / name / "tokenizer.json").is_file() else None
    for role, entry in loaded.special_tokens.items():
        assert entry["id"] == loaded.tokenizer.token_to_id(entry["token"])
        if raw is not None:
            assert entry["id"] == raw.token_to_id(entry["token"])
    assert loaded.special_ids == {r: e["id"] for r, e in loaded.special_tokens.items() if r != "unk"}


@pytest.mark.parametrize("name", list(SHARED))
def test_roles_match_transformers(shared, name):
    transformers = pytest.importorskip("transformers")
    folder = str(TOKENIZERS / name)
    if name in HF_CLASS:
        options = {"do_lower_case": False} if name == "bert-base-cased" else {}
        hf = getattr(transformers, HF_CLASS[name]).from_pretrained(folder, local_files_only=True, **options)
    else:
        hf = transformers_tokenizer(name)  # AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ours = shared[name].tokens
    theirs = {role: getattr(hf, f"{role}_token") for role in ROLES}
    assert {r: (ours[r], theirs[r]) for r in ROLES if ours[r] != theirs[r]} == DIFFERENCES.get(name, {})
    if name == "bert-base-cased":
        assert (ours["bos"], ours["eos"]) == (hf.cls_token, hf.sep_token)


def test_gpt2_warns_that_eos_and_pad_are_chosen_by_name(caplog):
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        load_tokenizer(TokenizerSpec(path=str(TOKENIZERS / "gpt2")), base_dir=DATA)
    assert [r.getMessage() for r in caplog.records] == [
        f"{TOKENIZERS / 'gpt2' / 'vocab.json'}: nothing names its EOS and pad token (no recipe key, tokenizer_config.json "
        "entry or post-processor); using '<|endoftext|>' as EOS and pad: special token(s) of the tokenizer, chosen by "
        "their well-known names. fix: set `tokenizer.eos_token` and `tokenizer.pad_token` in the recipe"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        named = load_tokenizer(TokenizerSpec(path=str(TOKENIZERS / "gpt2"), eos_token="<|endoftext|>", pad_token="<|endoftext|>"), base_dir=DATA)
    assert caplog.records == [] and roles(named) == {"eos": ("<|endoftext|>", "recipe"), "pad": ("<|endoftext|>", "recipe")}


# --- RoBERTa-like: EOS from the post-processor, not the ordinary <|endoftext|> -----------------------


def test_roberta_like_eos_comes_from_the_post_processor(tmp_path, caplog):
    folder = roberta_like(tmp_path / "roberta")
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id("<|endoftext|>") == 4  # in the vocabulary
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        loaded = load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=tmp_path)
    loading = [r.getMessage() for r in caplog.records]  # what the load said (encoding may log its engine choice)
    assert roles(loaded) == {"bos": ("<s>", POST), "eos": ("</s>", POST), "pad": ("<pad>", NAME), "unk": ("<unk>", MODEL)}
    assert loaded.special_ids == {"bos": 0, "eos": 2, "pad": 1} and loaded.unk_id == 3
    tokens, lengths = loaded.encode_docs(["hi"])
    assert tokens.tolist() == [loaded.tokenizer.token_to_id("h"), loaded.tokenizer.token_to_id("i"), 2]
    assert loading == [
        f"{folder / 'tokenizer.json'}: nothing names its pad token (no recipe key, tokenizer_config.json entry or "
        "post-processor); using '<pad>' as pad: special token(s) of the tokenizer, chosen by their well-known names. "
        "fix: set `tokenizer.pad_token` in the recipe"
    ]
    # <|endoftext|> is not special, so a document's "<|endoftext|>" text is not a special token either
    assert "<|endoftext|>" not in {t.content for t in loaded.tokenizer.get_added_tokens_decoder().values()}


def test_template_processing_in_a_sequence_gives_bos_and_eos(tmp_path):
    tok = _byte_level({"<bos>": 0, "<eos>": 1, **_byte_vocab(2)})
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<bos>", "<eos>")])
    template = processors.TemplateProcessing(single="<bos> $A <eos>", pair="<bos> $A <eos> $B:1 <eos>:1",
                                             special_tokens=[("<bos>", 0), ("<eos>", 1)])
    tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), template])
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(TokenizerSpec(path=str(tmp_path), add_bos=True), base_dir=tmp_path)
    assert roles(loaded) == {"bos": ("<bos>", POST), "eos": ("<eos>", POST)}


# --- Qwen3-like: bos_token null means no BOS ---------------------------------------------------


def test_qwen3_like_has_no_bos_and_add_bos_is_an_error(tmp_path):
    folder = qwen3_like(tmp_path / "qwen3")
    loaded = load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=tmp_path)
    assert loaded.tokenizer.token_to_id("<s>") == 0  # an ordinary entry
    assert roles(loaded) == {"eos": ("<|im_end|>", CONFIG), "pad": ("<|endoftext|>", CONFIG)}
    assert loaded.bos_id is None and loaded.unk_id is None
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(TokenizerSpec(path=str(folder), add_bos=True), base_dir=tmp_path)
    assert str(info.value) == (
        f"{folder}: tokenizer has no BOS token; set `tokenizer.bos_token` in the recipe, or `tokenizer.add_bos: false` "
        f"({folder / 'tokenizer_config.json'} says bos_token: null)"
    )
    named = load_tokenizer(TokenizerSpec(path=str(folder), add_bos=True, bos_token="<|im_start|>"), base_dir=tmp_path)
    assert roles(named)["bos"] == ("<|im_start|>", "recipe")


def test_null_in_the_config_ends_the_search(tmp_path):
    """The post-processor would give BOS <s> and the well-known name pad <pad>, both special: null wins."""
    folder = roberta_like(tmp_path / "roberta")
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": None, "pad_token": None}))
    loaded = load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=tmp_path)
    assert roles(loaded) == {"eos": ("</s>", POST), "unk": ("<unk>", MODEL)}
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": {"content": "</s>", "special": True}}))
    assert roles(load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=tmp_path, warn=False))["bos"] == ("</s>", CONFIG)


def test_qwen3_like_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = qwen3_like(tmp_path / "qwen3")
    hf = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ours = load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=tmp_path).tokens
    assert ours == {role: getattr(hf, f"{role}_token") for role in ROLES} == {
        "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "unk": None,
    }


def _sft(tmp_path: Path, folder: Path, records: list[dict], name: str):
    src = tmp_path / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(folder)},
                               "template": "prompt_completion", "split": {"validation": 0.0}}, base_dir=tmp_path)
    return run(recipe, tmp_path / f"out-{name}", workers=1, progress=False)


def test_s_tag_text_is_fine_but_a_real_special_token_is_not(tmp_path):
    """<s> (HTML strike-through) is an ordinary entry of the Qwen3-like vocabulary; <|im_end|> is special."""
    folder = qwen3_like(tmp_path / "qwen3")
    manifest = _sft(tmp_path, folder, [{"prompt": "Render <s>old</s> price:", "completion": " struck"}], "strike")
    assert manifest["counts"]["records_written"] == 1 and manifest["counts"]["dropped"] == {}
    with pytest.raises(InputError, match=r"field 'completion' holds '<\|im_end\|>', the text of a special token"):
        _sft(tmp_path, folder, [{"prompt": "Quote:", "completion": " a<|im_end|>b"}], "quote")


# --- the well-known-name fallback ----------------------------------------------------------------


def test_well_known_name_only_when_special(tmp_path, caplog):
    special = bare_byte_level(tmp_path / "special")
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        loaded = load_tokenizer(TokenizerSpec(path=str(special)), base_dir=tmp_path)
    assert roles(loaded) == {"eos": ("<|endoftext|>", NAME), "pad": ("<|endoftext|>", NAME)}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [str(special / "tokenizer.json")]
    assert "using '<|endoftext|>' as EOS and pad" in caplog.text and "fix: set `tokenizer.eos_token`" in caplog.text
    ordinary = bare_byte_level(tmp_path / "ordinary", special=False)
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(TokenizerSpec(path=str(ordinary)), base_dir=tmp_path)
    assert str(info.value).endswith(
        "(no recipe key, tokenizer_config.json entry or post-processor names one; "
        "'<|endoftext|>' is only an ordinary token of the vocabulary, not a special one)"
    )
    unframed = load_tokenizer(TokenizerSpec(path=str(ordinary), add_eos=False), base_dir=tmp_path)
    assert unframed.special_tokens == {}


# --- kept with the tokenizer: pickle, save, manifest ------------------------------------------------


def test_sources_survive_pickle_and_save(tmp_path):
    loaded = load_tokenizer(TokenizerSpec(path=str(roberta_like(tmp_path / "r")), pad_token="<pad>"), base_dir=tmp_path)
    again = pickle.loads(pickle.dumps(loaded))
    assert again.special_tokens == loaded.special_tokens and again.sources["pad"] == "recipe"
    qwen = load_tokenizer(TokenizerSpec(path=str(qwen3_like(tmp_path / "q"))), base_dir=tmp_path)
    qwen.save(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert config["bos_token"] is None and config["unk_token"] is None  # written as null: "none", not "unknown"
    reloaded = load_tokenizer(TokenizerSpec(path=str(tmp_path / "saved")), base_dir=tmp_path)
    assert reloaded.tokens == qwen.tokens


def test_manifest_records_every_role_with_its_source(tmp_path):
    folder = roberta_like(tmp_path / "roberta")
    recipe = recipe_from_dict({"task": "pretrain", "inputs": [{"path": "x.jsonl"}], "tokenizer": {"path": str(folder)}}, base_dir=tmp_path)
    loaded = load_tokenizer(recipe.tokenizer, base_dir=tmp_path, warn=False)
    section = tokenizer_manifest(recipe, loaded)
    assert section["special_tokens"] == {
        "bos": {"token": "<s>", "id": 0, "source": POST},
        "eos": {"token": "</s>", "id": 2, "source": POST},
        "pad": {"token": "<pad>", "id": 1, "source": NAME},
        "unk": {"token": "<unk>", "id": 3, "source": MODEL},
    }
    assert section["special_ids"] == {"bos": 0, "eos": 2, "pad": 1}
    assert unknown_token_id(section["special_tokens"]) == 3


# --- a lossy tokenizer ----------------------------------------------------------------------------


def test_t5_like_writes_its_unknown_token_for_braces(tmp_path):
    loaded = load_tokenizer(TokenizerSpec(path=str(t5_like(tmp_path / "t5"))), base_dir=tmp_path)
    assert roles(loaded) == {"eos": ("</s>", CONFIG), "pad": ("<pad>", CONFIG), "unk": ("<unk>", CONFIG)}
    assert unknown_token_id(loaded.special_tokens) == 2
    ids = loaded.tokenizer.encode("a { b }", add_special_tokens=False).ids
    assert ids.count(2) == 2 and loaded.tokenizer.decode(ids) != "a { b }"
    bare = load_tokenizer(TokenizerSpec(path=str(t5_like(tmp_path / "bare", config=False))), base_dir=tmp_path, warn=False)
    assert roles(bare) == {"eos": ("</s>", POST), "pad": ("<pad>", NAME), "unk": ("<unk>", MODEL)}
