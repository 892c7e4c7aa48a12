"""``tokenizer.reference``: tokenizer.json's ids or the installed transformers' ids, and the run's check.

Reference: ``transformers.AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=False)``
of the installed transformers (5.x in the test extra), on real texts: XQuAD contexts in ten
languages, HumanEval code in five languages, and each family's own chat template rendered by
transformers (``apply_chat_template(tokenize=False)``), encoded with special tokens matched as
dataprep encodes templates (:mod:`dataprep.tasks.sft.loss_mask`).

Under transformers 5.25 only Phi-3 (Llama-style SentencePiece) differs from tokenizer.json:
transformers 5 rebuilds it with ``Metaspace(prepend_scheme="first")`` and no normalizer, so text
right after a special token, and text starting with a space, lose the prepended ``▁``.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from dataprep import columns as C
from dataprep.text import hf_backend, reference, tokenizer_cache
from dataprep.errors import ConfigError
from dataprep.tasks.sft.loss_mask import encode_batch_with_mask
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.schema import iter_issues
from dataprep.tasks.sft.templates import Rendered
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer

from .conftest import DATA, read_split, shared_tokenizer

transformers = pytest.importorskip("transformers")

TOKENIZERS = DATA / "tokenizers"
HF_FOLDERS = ["phi-3-mini", "llama-3", "gemma-3", "deepseek-v3", "gpt-oss"]
CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Hi! Wie geht's? 日本語で答えて。"},
    {"role": "assistant", "content": " Gut, danke.\n\nकैसे हो?"},
    {"role": "user", "content": "def f(x):\n    return x  # code"},
    {"role": "assistant", "content": "That returns x."},
]


# <|user|> Hi! Wie geht's? 日本語で答えて。<|end|> <|assistant|> Gut, danke.\n\nकैसे हो?<|end|>
# <|user|> def f(x): ... <|end|> <|assistant|> That returns x.<|end|> <|endoftext|>
PHI3_CHAT_TOKENIZERS = [  # tokenizer.json (= transformers 4.57)
    32010, 6324, 29991, 18656, 25440, 29915, 29879, 29973, 29871, 30325, 30346, 30968, 30499, 234, 176, 151, 30914,
    30466, 30267, 32007, 32001, 24032, 29892, 6025, 446, 29889, 13, 13, 30444, 31678, 30489, 30569, 29871, 30714,
    30799, 29973, 32007, 32010, 822, 285, 29898, 29916, 1125, 13, 1678, 736, 921, 29871, 396, 775, 32007, 32001,
    2193, 3639, 921, 29889, 32007, 32000,
]
PHI3_CHAT_TRANSFORMERS = [  # transformers 5.25 apply_chat_template(tokenize=True)
    32010, 18567, 29991, 18656, 25440, 29915, 29879, 29973, 29871, 30325, 30346, 30968, 30499, 234, 176, 151, 30914,
    30466, 30267, 32007, 32001, 29954, 329, 29892, 6025, 446, 29889, 13, 13, 30444, 31678, 30489, 30569, 29871, 30714,
    30799, 29973, 32007, 32010, 1753, 285, 29898, 29916, 1125, 13, 1678, 736, 921, 29871, 396, 775, 32007, 32001,
    7058, 3639, 921, 29889, 32007, 32000,
]


def _jsonl(path, field):
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)[field] for line in f if line.strip()]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    xquad = _jsonl(DATA / "corpora/multilingual/xquad_contexts.jsonl", "text")[::30]  # 80: 8 of each language
    code = [t for lang in ("python", "cpp", "go", "java", "js")
            for t in _jsonl(DATA / f"corpora/code/humaneval{'_x' if lang != 'python' else ''}_{lang}.jsonl", "prompt")[:6]]
    return xquad + code + [" leading space", "  two", "a\r\nb\u00a0c\u200bd", "क़ (क + ़)"]


def _load(name: str, ref: str, **options) -> LoadedTokenizer:
    return load_tokenizer(TokenizerSpec(path=str(TOKENIZERS / name), reference=ref, **options), base_dir=DATA)


def _docs(tok: LoadedTokenizer, texts: list[str]) -> list[list[int]]:
    tokens, lengths = tok.encode_docs(texts)
    ends = np.cumsum(lengths)
    return [tokens[e - n : e].tolist() for e, n in zip(ends, lengths)]


def _chat_texts(hf) -> list[str]:
    out = []
    for k in (3, 5):
        try:
            out.append(hf.apply_chat_template(CONVERSATION[:k], tokenize=False))
        except Exception:  # a template that refuses a system turn (none here so far): skip the case
            out.append(hf.apply_chat_template(CONVERSATION[1:k], tokenize=False))
    return out


# --- parity with AutoTokenizer ----------------------------------------------------------------


@pytest.mark.parametrize("name", HF_FOLDERS)
def test_reference_transformers_ids_equal_autotokenizer(name, texts):
    hf = reference.transformers_tokenizer(TOKENIZERS / name, kind="json")  # AutoTokenizer.from_pretrained(folder)
    assert type(hf).__module__.startswith("transformers.")
    ours = _load(name, "transformers", add_eos=False, split_special_tokens=False)
    expected = hf(texts, add_special_tokens=False)["input_ids"]
    assert all(expected) and sum(map(len, expected)) > 20_000
    assert _docs(ours, texts) == expected
    # chat text with special tokens, through the masking path templates use
    chats = _chat_texts(hf)
    encoded = encode_batch_with_mask(ours, [Rendered(text=t, targets=(), prompt_end=len(t)) for t in chats])
    wanted = hf(chats, add_special_tokens=False)["input_ids"]
    assert [encoded[i].ids.tolist() for i in range(len(chats))] == wanted
    specials = set(hf.all_special_ids)
    assert all(any(i in specials for i in ids) for ids in wanted)  # the templates' special tokens are matched
    # the default reference is tokenizer.json: equal to transformers everywhere except Phi-3
    default = _load(name, "tokenizers", add_eos=False, split_special_tokens=False)
    same_docs = _docs(default, texts) == expected
    same_chat = [e.ids.tolist() for e in encode_batch_with_mask(default, [Rendered(text=t, targets=(), prompt_end=len(t)) for t in chats])] == wanted
    assert (same_docs and same_chat) == (name != "phi-3-mini")


def test_phi3_differs_exactly_by_the_prefix_space():
    ours = _load("phi-3-mini", "tokenizers", add_eos=False, split_special_tokens=False)
    hf5 = _load("phi-3-mini", "transformers", add_eos=False, split_special_tokens=False)
    text = "<|user|>\nHi<|end|>\n<|assistant|>\nHello there"
    # <|user|> ▁Hi <|end|> <|assistant|> ▁Hello ▁there  vs  <|user|> Hi <|end|> <|assistant|> Hello ▁there
    assert _docs(ours, [text]) == [[32010, 6324, 32007, 32001, 15043, 727]]
    assert _docs(hf5, [text]) == [[32010, 18567, 32007, 32001, 10994, 727]]
    assert _docs(ours, [" leading space", "  "]) == [[29871, 8236, 2913], [1678]]
    assert _docs(hf5, [" leading space", "  "]) == [[8236, 2913], [259]]
    assert _docs(ours, ["Hello world"]) == _docs(hf5, ["Hello world"]) == [[15043, 3186]]
    assert hf5.special_ids == ours.special_ids == {"bos": 1, "eos": 32000, "pad": 32000}


@pytest.mark.parametrize("name, cls, options", [
    ("gpt2", "GPT2TokenizerFast", {}),
    ("bert-base-cased", "BertTokenizerFast", {"do_lower_case": False}),  # a cased vocab
])
def test_files_without_a_config_use_the_class_that_reads_them(name, cls, options, texts):
    """AutoTokenizer cannot load a bare vocab.json + merges.txt or vocab.txt; the class that reads
    those files can, and gives tokenizer.json-equal ids."""
    with pytest.raises(ValueError):
        transformers.AutoTokenizer.from_pretrained(str(TOKENIZERS / name), local_files_only=True)
    hf = getattr(transformers, cls).from_pretrained(str(TOKENIZERS / name), local_files_only=True, **options)
    expected = hf(texts, add_special_tokens=False)["input_ids"]
    assert all(expected)  # GPT2TokenizerFast(vocab_file=, merges_file=) encodes to [] under 5.x
    assert _docs(_load(name, "transformers", add_eos=False), texts) == expected
    assert _docs(_load(name, "tokenizers", add_eos=False), texts) == expected


def test_without_transformers_it_is_a_config_error(monkeypatch):
    # the loaders without their caches, so that it imports transformers; the session's cached folders
    # and parses (seconds each for Gemma 3 and gpt-oss) are there again after the test
    monkeypatch.setattr(hf_backend, "_load", hf_backend._load.__wrapped__)
    monkeypatch.setattr(tokenizer_cache, "_PARSES", type(tokenizer_cache._PARSES)())
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    assert reference.transformers_available() is False
    with pytest.raises(ConfigError, match=r"pip install transformers"):
        _load("phi-3-mini", "transformers")
    # the default needs nothing, and the run's check is skipped
    tok = _load("phi-3-mini", "tokenizers")
    assert reference.warn_if_transformers_differs(tok, ["<|user|>\nHi"]) is None


def test_a_bad_reference_value_is_refused(tmp_path):
    from dataprep.errors import RecipeError, TokenizerError

    with pytest.raises(TokenizerError, match="valid values are 'tokenizers', 'transformers'"):
        _load("gpt2", "hf")
    with pytest.raises(RecipeError, match="tokenizer.reference"):
        recipe_from_dict({"task": "pretrain", "inputs": [{"path": "x.txt"}],
                          "tokenizer": {"path": str(TOKENIZERS / "gpt2"), "reference": "hf"}}, base_dir=tmp_path)


# --- the check at the start of a run ----------------------------------------------------------


def test_check_finds_the_first_difference_for_phi3_only():
    phi3 = shared_tokenizer("phi-3-mini")  # _load("phi-3-mini", "tokenizers"), loaded once per session
    # the run's own texts come first, encoded with special tokens matched
    found = reference.warn_if_transformers_differs(phi3, ["<|user|>\nHi there"])
    assert found == reference.Difference("<|user|>\nHi there", 1, (6324, "▁Hi"), (18567, "Hi"))
    # "Hi there" agrees; the probes' first difference is the leading space
    found = reference.warn_if_transformers_differs(phi3, ["Hi there"])
    assert found == reference.Difference(" Hello world, with a leading space.", 0, (29871, "▁"), (15043, "▁Hello"))
    hf = reference.transformers_tokenizer(TOKENIZERS / "phi-3-mini", kind="json")
    after_special = reference.first_difference(phi3, hf, ["Hi there", "<|endoftext|>Hi there"])
    assert after_special == reference.Difference("<|endoftext|>Hi there", 1, (6324, "▁Hi"), (18567, "Hi"))
    assert phi3.tokenizer.encode_special_tokens is True  # the check leaves the run's tokenizer as it was
    for name in ("llama-3", "deepseek-v3"):
        assert reference.warn_if_transformers_differs(shared_tokenizer(name), ["<|user|>\nHi there"]) is None


def _pretrain(tmp_path, name: str, **tokenizer) -> object:
    src = tmp_path / "docs.jsonl"
    docs = ["Plain text one.", " Leading space text.", "Ünïcödé and 中文 text.", "def f():\n    return 1\n"]
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    return recipe_from_dict({
        "task": "pretrain", "inputs": [{"path": str(src)}],
        "tokenizer": {"path": str(TOKENIZERS / name), **tokenizer},
        "packing": {"mode": "bfd", "seq_len": 64, "pad_rows": False}, "split": {"validation": 0.0}, "normalize": {"strip": False},
    }, base_dir=tmp_path)


def test_run_warns_for_phi3_with_the_fix(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dataprep.reference"):
        run(_pretrain(tmp_path, "phi-3-mini"), tmp_path / "out", workers=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "dataprep.reference"]
    assert len(warnings) == 1
    message = warnings[0]
    # the run's own texts (as the run cleans them) come before the probes: the second document
    assert "first difference: text ' Leading space text.', token 0: tokenizer.json gives '▁' (29871), transformers gives '▁Le' (951)" in message
    assert f"transformers {transformers.__version__} gives other token ids" in message
    assert "`tokenizer.reference: transformers`" in message and "`tokenizer.reference: tokenizers`" in message


@pytest.mark.parametrize("name", ["llama-3", "gpt2"])
def test_run_does_not_warn_when_the_ids_agree(tmp_path, caplog, name):
    with caplog.at_level(logging.WARNING):
        run(_pretrain(tmp_path, name), tmp_path / "out", workers=1)
    assert [r.getMessage() for r in caplog.records if r.name == "dataprep.reference"] == []


def test_no_check_with_reference_transformers(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        manifest = run(_pretrain(tmp_path, "phi-3-mini", reference="transformers"), tmp_path / "out", workers=1)
    assert [r for r in caplog.records if r.name == "dataprep.reference"] == []
    assert manifest["tokenizer"]["reference"] == "transformers"
    assert manifest["tokenizer"]["transformers_version"] == transformers.__version__


# --- runs: rows and manifest ------------------------------------------------------------------


def _chat_recipe(tmp_path, ref: str):
    src = tmp_path / "chats.jsonl"
    src.write_text(json.dumps({"messages": CONVERSATION[1:]}) + "\n", encoding="utf-8")
    return recipe_from_dict({
        "task": "sft", "inputs": [{"path": str(src)}], "template": "chat",
        "tokenizer": {"path": str(TOKENIZERS / "phi-3-mini"), "reference": ref},
        "split": {"validation": 0.0},
    }, base_dir=tmp_path)


def test_chat_rows_equal_transformers5_apply_chat_template(tmp_path):
    from dataprep.validate import validate_dataset

    hf = transformers.AutoTokenizer.from_pretrained(str(TOKENIZERS / "phi-3-mini"), local_files_only=True)
    expected = list(hf.apply_chat_template(CONVERSATION[1:], tokenize=True, return_dict=True)["input_ids"])
    rows = {}
    for ref in ("tokenizers", "transformers"):
        manifest = run(_chat_recipe(tmp_path, ref), tmp_path / ref, workers=1)
        assert list(iter_issues(manifest, "manifest")) == []
        assert manifest["tokenizer"]["reference"] == ref
        assert ("transformers_version" in manifest["tokenizer"]) == (ref == "transformers")
        assert validate_dataset(tmp_path / ref, recheck=1).ok  # re-made with the recorded reference: same rows
        rows[ref] = read_split(tmp_path / ref).to_pylist()[0]
    assert rows["transformers"][C.INPUT_IDS] == expected == PHI3_CHAT_TRANSFORMERS
    assert rows["tokenizers"][C.INPUT_IDS] == PHI3_CHAT_TOKENIZERS
    # the first word of every turn: ▁Hi / Hi, ▁Gut / G ut, ▁def / def, ▁That / That
    assert [hf.convert_ids_to_tokens(i) for i in (6324, 18567, 24032, 29954, 329, 822, 1753, 2193, 7058)] == [
        "▁Hi", "Hi", "▁Gut", "G", "ut", "▁def", "def", "▁That", "That"]
    # the replies are the targets either way (+ <|end|>, and the <|endoftext|> after the final one); "Gut" is
    # two tokens for transformers
    assert sum(rows["tokenizers"][C.LOSS_MASK]) == 22 and sum(rows["transformers"][C.LOSS_MASK]) == 23
    ids, mask = rows["transformers"][C.INPUT_IDS], rows["transformers"][C.LOSS_MASK]
    assert ids[mask.index(1) - 1] == 32001 and ids[mask.index(1)] == 29954  # <|assistant|> then G


def test_manifest_schema_requires_the_version_for_transformers():
    manifest_tok = {
        "source": "x", "trained": False, "saved_as": None, "files": [], "fingerprint": "0" * 64,
        "vocab_size": 10, "special_ids": {}, "add_bos": False, "add_eos": True,
    }
    from dataprep.schema import load_schema

    import jsonschema

    schema = load_schema("manifest")
    sub = {"$defs": schema["$defs"], **schema["$defs"]["tokenizer"]}
    check = jsonschema.Draft202012Validator(sub)
    assert check.is_valid(manifest_tok)  # datasets made before `reference` existed
    assert check.is_valid({**manifest_tok, "reference": "tokenizers"})
    assert not check.is_valid({**manifest_tok, "reference": "transformers"})
    assert check.is_valid({**manifest_tok, "reference": "transformers", "transformers_version": "5.25.0"})
    assert not check.is_valid({**manifest_tok, "reference": "hf"})


def test_the_reference_check_never_changes_how_another_run_encodes():
    """first_difference encodes with special tokens matched; loads of the same files share one
    tokenizers.Tokenizer, so flipping its flag even for one encode made another thread's run, encoding
    with it meanwhile, read special-token text in its documents as special ids (silently). It uses a
    private copy now: a thread encoding beside a hundred checks never sees the special id."""
    import threading

    tok = _load("phi-3-mini", "tokenizers")  # split_special_tokens: specials in documents are text
    text = "a document that quotes <|endoftext|> as text"
    eos = tok.tokenizer.token_to_id("<|endoftext|>")
    assert eos not in tok.tokenizer.encode(text, add_special_tokens=False).ids
    same = lambda texts, add_special_tokens: {"input_ids": [e.ids for e in tokenizer_cache.specials_matched(tok).encode_batch(texts, add_special_tokens=False)]}
    seen, done = [], threading.Event()

    def run_beside() -> None:
        while not done.is_set():
            seen.extend(eos in e.ids for e in tok.tokenizer.encode_batch([text] * 64, add_special_tokens=False))

    other = threading.Thread(target=run_beside)
    other.start()
    try:
        for _ in range(100):
            assert reference.first_difference(tok, same, [text * 20] * 64) is None
    finally:
        done.set()
        other.join()
    assert len(seen) > 0 and not any(seen)
    assert tok.tokenizer.encode_special_tokens  # the run's own setting, untouched


def test_a_copy_made_for_one_check_is_not_kept():
    """specials_matched(keep=False), the pretraining run's check: a copy (specials matched, the run's own
    untouched) that is not kept; a kept one is used where there is one."""
    tokenizer_cache.clear()
    tok = _load("phi-3-mini", "tokenizers")
    once = tokenizer_cache.specials_matched(tok, keep=False)
    assert once is not tok.tokenizer and not once.encode_special_tokens and tok.tokenizer.encode_special_tokens
    assert tokenizer_cache.specials_matched(tok, keep=False) is not once  # not kept: made again
    kept = tokenizer_cache.specials_matched(tok)
    assert tokenizer_cache.specials_matched(tok, keep=False) is kept is tokenizer_cache.specials_matched(tok)
    reading = _load("phi-3-mini", "tokenizers", split_special_tokens=False)
    assert tokenizer_cache.specials_matched(reading, keep=False) is reading.tokenizer  # matches them already
