"""The encode engine (``tokenizer.engine``): gigatoken gives exactly tokenizers' ids, or is not used.

Every tokenizer in ``../shared/data/tokenizers`` and ``../shared/bench/bpe32k.json`` encodes the
same documents with both engines, with ``split_special_tokens`` on and off: web text (C4), ten
languages of Wikipedia (XQuAD), code (HumanEval, five languages), a 300k-character document (cut
at seams by tokenizers, whole by gigatoken), edge cases and documents holding every special token's
text. The ids and lengths must be equal, and ``dataprep run`` must write byte-identical shards.
The proofs are shown to fail: the special-token documents encode differently with
``split_special_tokens`` off (so they test it), gigatoken built without dataprep's handling of
special tokens differs (and the probe catches it), and a gigatoken that changes one id is refused.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from dataprep.build.run import run
from dataprep.errors import TokenizerError
from dataprep.recipe import recipe_from_dict
from dataprep.text import encode_engine
from dataprep.text.encode_engine import GIGATOKEN, TOKENIZERS, GigatokenEncoder
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer

from .conftest import DATA, SHARED

pytest.importorskip("gigatoken", reason="gigatoken is not installed: pip install gigatoken-cachefix==0.10.1")

TOKENIZERS_DIR = DATA / "tokenizers"
BPE32K = SHARED / "bench" / "bpe32k.json"
# every tokenizer shipped beside the checkout: name -> path, and whether it has a BOS to frame with
ALL = {p.name: p for p in sorted(TOKENIZERS_DIR.iterdir())} | {"bpe32k": BPE32K}
WITH_BOS = {"phi-3-mini", "llama-3", "gemma-3", "deepseek-v3"}
SUPPORTED = set(ALL) - {"bert-base-cased"}  # WordPiece: gigatoken does not cover it


def _jsonl(path: Path, field: str, every: int = 1, limit: int | None = None) -> list[str]:
    rows = [json.loads(line)[field] for line in path.read_text(encoding="utf-8").splitlines()]
    return rows[::every][:limit]


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """Real text of every kind a run meets, small enough to encode 32 times in a few seconds."""
    corpora = DATA / "corpora"
    c4 = _jsonl(corpora / "c4_demo.jsonl", "text", limit=40)
    xquad = [json.loads(line) for line in (corpora / "multilingual" / "xquad_contexts.jsonl").read_text("utf-8").splitlines()]
    languages = sorted({d["lang"] for d in xquad})
    assert len(languages) == 10
    ten = [d["text"] for lang in languages for d in [x for x in xquad if x["lang"] == lang][:3]]
    code = [t for f in sorted((corpora / "code").glob("*.jsonl")) for t in _jsonl(f, "prompt", every=40, limit=2)]
    wiki = (corpora / "wiki_demo.txt").read_text(encoding="utf-8").splitlines()
    long_doc = "\n".join(wiki)[:300_000]  # over LONG_DOC_CHARS: tokenizers encodes it in pieces
    edge = ["", " ", "\n\n\n", "a   b\t\t\tc    \n\n   d  ", "\u00a0\u200b\ufeff 😀🤖 café\r\n", "x" * 5000]
    return [*c4, *ten, *code, long_doc, *edge]


def _special_documents(tokenizer: LoadedTokenizer) -> list[str]:
    """Documents holding the text of every special token (roles first), between words and spaces."""
    added = tokenizer.tokenizer.get_added_tokens_decoder()
    special = [t.content for _, t in sorted(added.items()) if t.special]
    roles = [t for t in tokenizer.tokens.values() if t is not None]
    tokens = list(dict.fromkeys([*roles, *special]))[:40]
    eos = tokenizer.tokens["eos"]
    return [eos, f"Hello {eos} world{eos}\n{eos}  x", *(f"a{t}b {t}\n{t}" for t in tokens)]


@pytest.fixture(scope="session")
def loaded():
    """One LoadedTokenizer per (tokenizer, split_special_tokens), engine auto, loaded once."""
    cache: dict[tuple[str, bool], LoadedTokenizer] = {}

    def get(name: str, split: bool) -> LoadedTokenizer:
        if (name, split) not in cache:
            spec = TokenizerSpec(path=str(ALL[name]), split_special_tokens=split, add_bos=name in WITH_BOS)
            cache[name, split] = load_tokenizer(spec, base_dir=DATA, warn=False)
        return cache[name, split]

    return get


@pytest.mark.parametrize("split", [True, False], ids=["split_special", "match_special"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_gigatoken_gives_tokenizers_ids_on_every_tokenizer(name, split, loaded, documents):
    tokenizer = loaded(name, split)
    texts = documents + _special_documents(tokenizer)
    choice = tokenizer.choose_engine(texts)
    want = tokenizer.encode_docs_tokenizers(texts)
    got = tokenizer.encode_docs(texts)
    if name not in SUPPORTED:
        assert choice.engine == TOKENIZERS and "WordPiece" in choice.reason and choice.probed == 0
        assert got[0].dtype == np.int32 and np.array_equal(got[0], want[0])
        return
    assert choice.engine == GIGATOKEN, choice.reason
    assert choice.differing is None and choice.probed >= encode_engine.PROBE_DOCS
    assert got[0].dtype == want[0].dtype == np.int32 and got[1].dtype == want[1].dtype == np.int64
    assert np.array_equal(got[1], want[1])
    assert np.array_equal(got[0], want[0])
    # framing: every document ends with EOS; BOS first where the recipe asks for it
    ends = np.cumsum(got[1])
    assert (got[0][ends - 1] == tokenizer.eos_id).all()
    if name in WITH_BOS:
        assert (got[0][ends - got[1]] == tokenizer.bos_id).all()


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_the_special_token_documents_test_split_special_tokens(name, loaded):
    """The documents above hold special-token text that matches only with split_special_tokens off:
    they would catch an engine that ignores the setting."""
    on, off = loaded(name, True), loaded(name, False)
    texts = _special_documents(on)
    tokens_on, tokens_off = on.encode_docs(texts)[0], off.encode_docs(texts)[0]
    specials = [i for i in on.tokenizer.get_added_tokens_decoder() if i not in (on.bos_id, on.eos_id)]
    eos_text = on.tokens["eos"]
    # off: the EOS text in a document is the EOS id (twice in text 1 besides the framing EOS)
    first_off = off.encode_docs([f"Hello {eos_text} world"])[0]
    first_on = on.encode_docs([f"Hello {eos_text} world"])[0]
    assert (first_off == off.eos_id).sum() == 2 and (first_on == on.eos_id).sum() == 1
    # the others (bpe32k has none): more of their ids with the setting off (Gemma 3's BPE merges
    # spell a few special tokens from their text, so "none with it on" does not hold)
    assert np.isin(tokens_off, specials).sum() > np.isin(tokens_on, specials).sum() or not specials


def test_gigatoken_without_dataprep_special_token_handling_differs_and_is_refused(monkeypatch, documents, caplog):
    """gigatoken always matches added tokens; dataprep builds it without the special ones when
    split_special_tokens is on. Without that step, the probe finds the difference."""
    monkeypatch.setattr(encode_engine, "_without_special_added_tokens", lambda text: text)
    monkeypatch.setattr(encode_engine, "_ENCODERS", type(encode_engine._ENCODERS)())  # built here, not kept
    spec = TokenizerSpec(path=str(ALL["llama-3"]))
    tokenizer = load_tokenizer(spec, base_dir=DATA, warn=False)
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        choice = tokenizer.choose_engine(documents[:5])
    assert choice.engine == TOKENIZERS
    assert choice.differing["kind"] == "added token" and "differ" in choice.reason
    assert "<|eot_id|>" in choice.differing["excerpt"] or "<|begin_of_text|>" in choice.differing["excerpt"]
    assert 128009 in choice.differing["gigatoken"] or 128000 in choice.differing["gigatoken"]
    assert "encoding with tokenizers" in caplog.text
    forced = LoadedTokenizer(tokenizer.copy(), tokens=tokenizer.tokens, source="t", add_bos=False, add_eos=True,
                             split_special_tokens=True, engine=GIGATOKEN)
    with pytest.raises(TokenizerError, match="cannot be used: gigatoken's ids differ"):
        forced.encode_docs(documents[:5])


def test_a_probe_that_differs_in_one_id_falls_back(monkeypatch, documents):
    real = GigatokenEncoder.encode

    def one_id_off(self, texts):
        tokens, lengths = real(self, texts)
        tokens = tokens.copy()
        tokens[int(lengths[:3].sum()) + 5] += 1  # the 6th token of the 4th text
        return tokens, lengths

    monkeypatch.setattr(GigatokenEncoder, "encode", one_id_off)
    tokenizer = load_tokenizer(TokenizerSpec(path=str(BPE32K)), base_dir=DATA, warn=False)
    want = tokenizer.encode_docs_tokenizers(documents)
    tokens, lengths = tokenizer.encode_docs(documents)
    choice = tokenizer.engine_choice
    assert choice.engine == TOKENIZERS and choice.probed > 0
    assert choice.differing["text"] == 3 and choice.differing["at"] == 5 and choice.differing["kind"] == "document"
    assert choice.differing["gigatoken"][0] == choice.differing["tokenizers"][0] + 1
    assert np.array_equal(tokens, want[0]) and np.array_equal(lengths, want[1])


def test_unsupported_and_missing_gigatoken_fall_back_with_the_reason(monkeypatch, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0), ("ab", -0.5)], 0, False))
    unigram.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tokenizer.json").write_text(unigram.to_str())
    spec = TokenizerSpec(path=str(tmp_path / "tokenizer.json"), add_eos=False)
    tokenizer = load_tokenizer(spec, base_dir=tmp_path, warn=False)
    tokens, _ = tokenizer.encode_docs(["ab a b"])
    assert tokenizer.engine_choice.engine == TOKENIZERS and "Unigram" in tokenizer.engine_choice.reason
    assert tokens.tolist() == [3, 1, 2]
    with pytest.raises(TokenizerError, match="Unigram"):
        load_tokenizer(TokenizerSpec(path=spec.path, add_eos=False, engine=GIGATOKEN), base_dir=tmp_path).encode_docs(["a"])

    monkeypatch.setitem(__import__("sys").modules, "gigatoken", None)  # import gigatoken fails
    # and no encoder an earlier test in this process built for GPT-2 is kept (the test alone in a process
    # passed; after another test's GPT-2 run, as pytest-xdist may order them, the kept encoder was used)
    monkeypatch.setattr(encode_engine, "_ENCODERS", type(encode_engine._ENCODERS)())
    gpt2 = load_tokenizer(TokenizerSpec(path=str(ALL["gpt2"])), base_dir=DATA, warn=False)
    assert gpt2.choose_engine(["Hello"]).engine == TOKENIZERS
    assert "not installed" in gpt2.engine_choice.reason and encode_engine.INSTALL in gpt2.engine_choice.reason


def test_the_choice_travels_with_the_pickled_tokenizer(monkeypatch, documents):
    tokenizer = load_tokenizer(TokenizerSpec(path=str(BPE32K)), base_dir=DATA, warn=False)
    choice = tokenizer.choose_engine(documents)
    assert tokenizer.choose_engine(["other"]) is choice  # chosen once
    worker = pickle.loads(pickle.dumps(tokenizer))

    def no_probe(*args):
        raise AssertionError("a worker must not probe again")

    monkeypatch.setattr(encode_engine, "probe", no_probe)
    assert worker.engine_choice == choice and worker.engine_choice.engine == GIGATOKEN
    got = worker.encode_docs(documents[:20])
    assert worker._engine._encoder is not None  # gigatoken encoded
    want = tokenizer.encode_docs_tokenizers(documents[:20])
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_engine_tokenizers_never_loads_gigatoken(monkeypatch, documents):
    monkeypatch.setattr(encode_engine, "GigatokenEncoder", None)  # any use would fail
    tokenizer = load_tokenizer(TokenizerSpec(path=str(BPE32K), engine=TOKENIZERS), base_dir=DATA, warn=False)
    tokenizer.encode_docs(documents[:3])
    assert tokenizer.engine_choice.engine == TOKENIZERS and tokenizer.engine_choice.probed == 0
    with pytest.raises(TokenizerError, match="valid values are auto, tokenizers, gigatoken"):
        load_tokenizer(TokenizerSpec(path=str(BPE32K), engine="fast"), base_dir=DATA)


def _recipe(tmp_path: Path, data: Path, name: str, engine: str | None, mode: str) -> object:
    tokenizer = {"path": str(ALL[name]), "add_bos": name in WITH_BOS} | ({"engine": engine} if engine else {})
    return recipe_from_dict({
        "task": "pretrain", "inputs": [{"path": str(data)}], "tokenizer": tokenizer,
        "packing": {"mode": mode, "seq_len": 256}, "split": {"validation": 0.1},
        "output": {"chunk_records": 25, "shard_bytes": 30000},
    }, base_dir=tmp_path)


@pytest.mark.parametrize("name,mode", [("gpt2", "wrap"), ("phi-3-mini", "bfd"), ("bpe32k", "wrap"), ("bert-base-cased", "bfd")])
def test_shards_are_byte_identical_whichever_engine_runs(name, mode, tmp_path, documents, loaded, monkeypatch):
    data = tmp_path / "docs.jsonl"
    # special-token text first: wrap drops the last row's remainder
    texts = _special_documents(loaded(name, True)) + [t for t in documents if t.strip()]
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    real, by_gigatoken = GigatokenEncoder.encode, []

    def counted(self, texts):
        by_gigatoken.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(GigatokenEncoder, "encode", counted)
    shards, encoded = {}, {}
    for engine in (TOKENIZERS, None):  # None: the key absent, so auto
        recipe = _recipe(tmp_path, data, name, engine, mode)
        assert ("engine" in recipe.resolved["tokenizer"]) == (engine is not None)  # absent: the hash is unchanged
        by_gigatoken.clear()
        manifest = run(recipe, tmp_path / f"out-{engine}", workers=2)
        shards[engine] = {s: [(f["sha256"], f["rows"]) for f in manifest["splits"][s]["shards"]] for s in ("train", "validation")}
        encoded[engine] = sum(by_gigatoken)
    assert len(shards[None]["train"]) > 1
    assert shards[None] == shards[TOKENIZERS]
    assert encoded[TOKENIZERS] == 0
    if name in SUPPORTED:  # every document the run kept (and the probe's texts) went through gigatoken
        assert encoded[None] > len(texts)
    else:
        assert encoded[None] == 0


def test_the_manifest_records_the_run_choice(tmp_path, documents):
    """``choose_engine`` (the run's choice, before its work) is what the manifest's
    ``tokenizer.engine`` records; a choice each process made on its own first documents is not."""
    from dataprep.dataset.manifest import Manifest, manifest_issues
    from dataprep.text.tokenizer_manifest import tokenizer_manifest

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in documents[:60] if t.strip()), encoding="utf-8")
    recipe = _recipe(tmp_path, data, "bpe32k", None, "wrap")
    out = tmp_path / "out"
    run(recipe, out, workers=1)
    written = json.loads((out / "manifest.json").read_text())
    lazy = load_tokenizer(recipe.tokenizer, base_dir=tmp_path, warn=False)
    lazy.encode_docs(documents[:10])
    assert lazy.engine_choice.engine == GIGATOKEN and lazy.run_engine is None
    assert "engine" not in tokenizer_manifest(recipe, lazy)
    chosen = load_tokenizer(recipe.tokenizer, base_dir=tmp_path, warn=False)
    choice = chosen.choose_engine(documents)
    assert chosen.run_engine is choice and pickle.loads(pickle.dumps(chosen)).engine_choice == choice
    section = tokenizer_manifest(recipe, chosen)["engine"]
    assert section == {"requested": "auto", "engine": GIGATOKEN, "reason": choice.reason, "probed": choice.probed,
                       "differing": None, "version": encode_engine.gigatoken_version()}
    recorded = written | {"tokenizer": written["tokenizer"] | {"engine": section}}
    assert list(manifest_issues(recorded)) == []
    assert Manifest.from_dict(recorded).tokenizer.engine.engine == GIGATOKEN
    wrong = written | {"tokenizer": written["tokenizer"] | {"engine": section | {"engine": "fast"}}}
    assert [i.where for i in manifest_issues(wrong)] == ["tokenizer.engine.engine"]


def test_workers_that_turn_tokenizers_parallelism_off_encode_on_their_own_thread(monkeypatch):
    """dataprep's worker processes and Ray actors set TOKENIZERS_PARALLELISM=false: gigatoken must
    not start a thread pool on every core in each of them either."""
    encoder = GigatokenEncoder(BPE32K.read_text(encoding="utf-8"), split_special_tokens=True)
    calls = []
    real = encoder._tokenizer.encode_batch
    monkeypatch.setattr(encoder._tokenizer, "encode_batch", lambda texts, **kw: calls.append(kw) or real(texts, **kw))
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    first = encoder.encode(["Hello world", "again"])
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    second = encoder.encode(["Hello world", "again"])
    assert calls == [{"parallel": None}, {"parallel": False}]
    assert first[0].tolist() == second[0].tolist() and first[1].tolist() == [2, 1]


def _special_free_by_a_whole_parse(json_text: str) -> dict:
    data = json.loads(json_text)
    data["added_tokens"] = [t for t in data.get("added_tokens") or [] if not t.get("special")]
    return data


@pytest.mark.parametrize("name", [n for n, p in ALL.items() if (p / "tokenizer.json" if p.is_dir() else p).is_file()])
def test_the_special_free_json_is_the_whole_parse_s_on_every_tokenizer(name):
    """gigatoken is built from the tokenizer JSON without its special added tokens; only that value is
    parsed and written again (the rest kept as text): the result reads as a whole parse-and-dump's."""
    path = ALL[name] / "tokenizer.json" if ALL[name].is_dir() else ALL[name]
    text = path.read_text(encoding="utf-8")
    assert json.loads(encode_engine._without_special_added_tokens(text)) == _special_free_by_a_whole_parse(text)


@pytest.mark.parametrize("text", [
    '{"version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": true}, {"id": 1, "content": "x", '
    '"special": false}], "model": {"vocab": {"added_tokens": 1}}}',
    '{"model": {"vocab": {}}, "added_tokens": [{"id": 0, "content": "<s>", "special": true}]}',  # after the model
    '\n {\n  "k\\"ey": "a\\"b,\\"added_tokens\\": []" ,\n  "added_tokens" :\n [ {"id": 2, "content": "</s>", "special": true} ] ,'
    '\n  "model": {}\n}\n',  # spaces everywhere, escaped quotes in a key and a value before it
    '{"model": {"vocab": {"a": 0}}}',  # none at all
    '{"added_tokens": null, "model": {}}',
    '{"added_tokens": [], "version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": true}]}',  # repeated
])
def test_the_special_free_json_reads_only_the_top_level_added_tokens(text):
    assert json.loads(encode_engine._without_special_added_tokens(text)) == _special_free_by_a_whole_parse(text)
