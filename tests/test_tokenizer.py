"""Tests of dataprep.text.tokenizer against the real tokenizers in shared/data/tokenizers.

References, and why:
- GPT-2 (vocab.json + merges.txt): transformers' ``GPT2TokenizerFast.from_pretrained(folder)``.
  Under transformers 5.x, building it from the two files directly encodes everything to
  ``[]`` (shared/data/README.md, "Notes for parity tests"), so the test first checks that the
  reference is non-empty.
- Phi-3: the ``tokenizers`` library's own ``Tokenizer.from_file(tokenizer.json)``, encoded
  one document at a time. transformers 5.x rebuilds Llama-style tokenizers from their config
  and changes the ids, so it is not the reference here.
- BERT: ``tokenizers.implementations.BertWordPieceTokenizer(vocab.txt)``.
"""

from __future__ import annotations

import json
import os
import unicodedata
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from dataprep.errors import TokenizerError
from dataprep.text import long_documents
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer
from dataprep.text.train_bpe import train_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOKENIZERS = DATA / "tokenizers"
GPT2 = TOKENIZERS / "gpt2"
PHI3 = TOKENIZERS / "phi-3-mini"
BERT = TOKENIZERS / "bert-base-cased"


def _jsonl_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _split(tokens: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(lengths)
    return [tokens[e - n : e].tolist() for e, n in zip(ends, lengths)]


@pytest.fixture(scope="module")
def c4() -> list[str]:
    return _jsonl_texts(DATA / "corpora" / "c4_demo.jsonl")


@pytest.fixture(scope="module")
def xquad() -> list[str]:
    texts = _jsonl_texts(DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl")
    return texts[::12]  # 200 docs, 20 from each of the 10 languages


@pytest.fixture(scope="module")
def gpt2() -> LoadedTokenizer:
    return load_tokenizer(TokenizerSpec(path="tokenizers/gpt2"), base_dir=DATA)


@pytest.fixture(scope="module")
def phi3() -> LoadedTokenizer:
    return load_tokenizer(TokenizerSpec(path=str(PHI3)), base_dir=Path("/nonexistent"))


@pytest.fixture(scope="module")
def trained(c4: list[str]) -> LoadedTokenizer:
    return train_tokenizer(c4[:100], TokenizerSpec(train={"vocab_size": 600}))


# --- GPT-2 ------------------------------------------------------------------------------


class TestGpt2:
    def test_hand_checked_ids(self, gpt2: LoadedTokenizer) -> None:
        enc = gpt2.tokenizer.encode
        assert enc("Hello world").ids == [15496, 995]
        assert enc(" Claude").ids == [40559]
        assert gpt2.eos_id == 50256 and gpt2.pad_id == 50256 and gpt2.bos_id is None and gpt2.unk_id is None
        assert gpt2.special_ids == {"eos": 50256, "pad": 50256}
        assert gpt2.vocab_size == 50257
        assert gpt2.source == str(GPT2)
        assert gpt2.files == (GPT2 / "vocab.json", GPT2 / "merges.txt")

    def test_explicit_vocab_json_path(self, gpt2: LoadedTokenizer) -> None:
        loaded = load_tokenizer(TokenizerSpec(path=str(GPT2 / "vocab.json")), base_dir=DATA)
        assert loaded.fingerprint == gpt2.fingerprint

    def test_matches_transformers(self, gpt2: LoadedTokenizer, c4: list[str], xquad: list[str]) -> None:
        import transformers  # test-only dependency (pyproject [test])
        ref = transformers.GPT2TokenizerFast.from_pretrained(str(GPT2))
        assert ref("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995], "reference is broken"
        texts = c4 + xquad
        expected = ref(texts, add_special_tokens=False)["input_ids"]
        assert all(expected), "the transformers reference encoded a document to []"
        tokens, lengths = gpt2.encode_docs(texts)
        assert _split(tokens, lengths) == [ids + [50256] for ids in expected]

    def test_decode_round_trip_is_byte_exact(self, gpt2: LoadedTokenizer, c4: list[str], xquad: list[str]) -> None:
        texts = c4 + xquad + ["emoji 🤗🧪 and\ttabs\n\n  spaces ", "ä\u0301 \u200b"]
        spec = TokenizerSpec(path=str(GPT2), add_eos=False)
        tokens, lengths = load_tokenizer(spec, base_dir=DATA).encode_docs(texts)
        decoded = gpt2.tokenizer.decode_batch(_split(tokens, lengths), skip_special_tokens=False)
        assert decoded == texts

    def test_fingerprint_stable_across_processes(self, gpt2: LoadedTokenizer) -> None:
        code = (
            "from pathlib import Path; from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer; "
            f"print(load_tokenizer(TokenizerSpec(path={str(GPT2)!r}), base_dir=Path('.')).fingerprint)"
        )
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
        assert out.stdout.strip() == gpt2.fingerprint


# --- Phi-3 ------------------------------------------------------------------------------


class TestPhi3:
    def test_ids_and_special_tokens_from_config(self, phi3: LoadedTokenizer) -> None:
        config = json.loads((PHI3 / "tokenizer_config.json").read_text(encoding="utf-8"))
        raw = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
        assert phi3.tokenizer.encode("Hello world", add_special_tokens=False).ids == [15043, 3186]
        assert [config[f"{r}_token"] for r in ("bos", "eos", "pad")] == ["<s>", "<|endoftext|>", "<|endoftext|>"]
        assert phi3.bos_id == raw.token_to_id("<s>") == 1
        assert phi3.eos_id == raw.token_to_id("<|endoftext|>") == 32000
        assert phi3.pad_id == 32000 and phi3.unk_id == 0
        assert phi3.special_ids == {"bos": 1, "eos": 32000, "pad": 32000}
        assert phi3.vocab_size == 32011
        assert phi3.files == (PHI3 / "tokenizer.json", PHI3 / "tokenizer_config.json")
        # Its specials are already special added tokens, so loading leaves the JSON as is.
        assert phi3.tokenizer.to_str() == raw.to_str()

    def test_encode_docs_matches_tokenizers(self, phi3: LoadedTokenizer, c4: list[str]) -> None:
        raw = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
        expected = [raw.encode(text, add_special_tokens=False).ids for text in c4]
        tokens, lengths = phi3.encode_docs(c4)
        assert tokens.dtype == np.int32 and lengths.dtype == np.int64
        assert _split(tokens, lengths) == [ids + [32000] for ids in expected]

    def test_add_bos_never_doubles(self) -> None:
        texts = ["<s>Hello world", "Hello world"]
        spec = TokenizerSpec(path=str(PHI3), add_bos=True, split_special_tokens=False)
        tokens, lengths = load_tokenizer(spec, base_dir=DATA).encode_docs(texts)
        assert _split(tokens, lengths) == [[1, 15043, 3186, 32000], [1, 15043, 3186, 32000]]
        # Split (the default): the literal "<s>" is text, so the BOS is added in front of it.
        spec = TokenizerSpec(path=str(PHI3), add_bos=True)
        first = _split(*load_tokenizer(spec, base_dir=DATA).encode_docs(texts[:1]))[0]
        assert first[0] == 1 and first.count(1) == 1 and len(first) > 4


# --- encode_docs --------------------------------------------------------------------------


class TestEncodeDocs:
    def test_flat_layout_with_bos_and_eos(self) -> None:
        spec = TokenizerSpec(path=str(PHI3), add_bos=True, add_eos=True)
        tokens, lengths = load_tokenizer(spec, base_dir=DATA).encode_docs(["Hello world", "", "world"])
        assert tokens.tolist() == [1, 15043, 3186, 32000, 1, 32000, 1, 3186, 32000]
        assert lengths.tolist() == [4, 2, 3]

    @pytest.mark.parametrize(
        ("add_bos", "add_eos", "expected", "lengths"),
        [
            (False, False, [15496, 995, 40559], [2, 1, 0]),
            (False, True, [15496, 995, 50256, 40559, 50256, 50256], [3, 2, 1]),
            (True, False, [50256, 15496, 995, 50256, 40559, 50256], [3, 2, 1]),
        ],
    )
    def test_flag_combinations(self, add_bos: bool, add_eos: bool, expected: list[int], lengths: list[int]) -> None:
        spec = TokenizerSpec(path=str(GPT2), bos_token="<|endoftext|>", add_bos=add_bos, add_eos=add_eos)
        tokens, lens = load_tokenizer(spec, base_dir=DATA).encode_docs(["Hello world", " Claude", ""])
        assert tokens.tolist() == expected and lens.tolist() == lengths

    def test_empty_list(self, gpt2: LoadedTokenizer) -> None:
        tokens, lengths = gpt2.encode_docs([])
        assert tokens.shape == (0,) and tokens.dtype == np.int32
        assert lengths.shape == (0,) and lengths.dtype == np.int64

    def test_split_special_tokens(self) -> None:
        text = "a<|endoftext|>b"
        split = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=DATA)
        tokens, lengths = split.encode_docs([text])
        assert 50256 not in tokens[:-1].tolist() and tokens[-1] == 50256
        assert split.tokenizer.decode(tokens[:-1].tolist()) == text
        matched = load_tokenizer(TokenizerSpec(path=str(GPT2), split_special_tokens=False), base_dir=DATA)
        tokens, lengths = matched.encode_docs([text])
        assert tokens.tolist() == [64, 50256, 65, 50256] and lengths.tolist() == [4]


# --- WordPiece ------------------------------------------------------------------------------


class TestWordPiece:
    def test_readme_example_and_special_ids(self) -> None:
        bert = load_tokenizer(TokenizerSpec(path=str(BERT / "vocab.txt")), base_dir=DATA)
        enc = bert.tokenizer.encode("Hello world, unaffable tokenization!")
        assert enc.tokens == "[CLS] Hello world , un ##af ##fa ##ble token ##ization ! [SEP]".split()
        vocab = bert.tokenizer.get_vocab()
        assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
        assert bert.special_ids == {"bos": 101, "eos": 102, "pad": 0} and bert.unk_id == 100
        assert bert.vocab_size == 28996
        assert bert.files == (BERT / "vocab.txt",)

    def test_matches_bert_wordpiece_tokenizer(self, c4: list[str]) -> None:
        from tokenizers.implementations import BertWordPieceTokenizer

        ref = BertWordPieceTokenizer(str(BERT / "vocab.txt"), lowercase=False)
        bert = load_tokenizer(TokenizerSpec(path=str(BERT), add_eos=False), base_dir=DATA)
        expected = [e.ids for e in ref.encode_batch(c4[:100], add_special_tokens=False)]
        assert _split(*bert.encode_docs(c4[:100])) == expected

    def test_lowercase(self) -> None:
        bert = load_tokenizer(TokenizerSpec(path=str(BERT), lowercase=True), base_dir=DATA)
        assert bert.tokenizer.encode("HELLO", add_special_tokens=False).tokens == ["hello"]


# --- training, save/load, pickling ------------------------------------------------------


class TestTrained:
    def test_deterministic_and_vocab_size(self, trained: LoadedTokenizer, c4: list[str]) -> None:
        again = train_tokenizer(c4[:100], TokenizerSpec(train={"vocab_size": 600}))
        assert again.fingerprint == trained.fingerprint
        assert trained.vocab_size == 600
        assert trained.source == "trained" and trained.files == ()
        assert trained.special_ids == {"eos": 0, "pad": 0}
        tokens, lengths = trained.encode_docs(c4[100:110])
        assert tokens.max() < trained.vocab_size and (tokens[np.cumsum(lengths) - 1] == 0).all()
        assert trained.tokenizer.decode(tokens[: lengths[0] - 1].tolist()) == c4[100]

    def test_override_tokens_become_specials(self, c4: list[str]) -> None:
        spec = TokenizerSpec(train={"vocab_size": 300, "min_frequency": 1}, bos_token="<s>", add_bos=True)
        loaded = train_tokenizer(c4[:20], spec)
        assert loaded.special_ids == {"bos": 1, "eos": 0, "pad": 0}
        assert loaded.vocab_size == 300

    @pytest.mark.parametrize("which", ["trained", "gpt2", "phi3"])
    def test_save_load_round_trip(
        self, which: str, request: pytest.FixtureRequest, tmp_path: Path, c4: list[str]
    ) -> None:
        original: LoadedTokenizer = request.getfixturevalue(which)
        original.save(tmp_path / "tok")
        assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
        loaded = load_tokenizer(TokenizerSpec(path="tok"), base_dir=tmp_path)
        assert loaded.fingerprint == original.fingerprint
        assert loaded.special_ids == original.special_ids and loaded.unk_id == original.unk_id
        for got, want in zip(loaded.encode_docs(c4[:20]), original.encode_docs(c4[:20])):
            np.testing.assert_array_equal(got, want)

    def test_pickle_round_trip(self, trained: LoadedTokenizer, c4: list[str]) -> None:
        spec = TokenizerSpec(path=str(GPT2), split_special_tokens=False, add_eos=False)
        for original in (trained, load_tokenizer(spec, base_dir=DATA)):
            blob = pickle.dumps(original)
            assert len(blob) < len(original.tokenizer.to_str()) * 1.1 + 1000
            copy = pickle.loads(blob)
            assert copy.fingerprint == original.fingerprint and copy.special_ids == original.special_ids
            assert (copy.add_bos, copy.add_eos) == (original.add_bos, original.add_eos)
            assert (copy.source, copy.files) == (original.source, original.files)
            assert copy.tokenizer.encode_special_tokens == original.split_special_tokens
            texts = c4[:5] + ["x<|endoftext|>y"]
            for got, want in zip(copy.encode_docs(texts), original.encode_docs(texts)):
                np.testing.assert_array_equal(got, want)


# --- errors -----------------------------------------------------------------------------


def _word_level(folder: Path, vocab: dict[str, int]) -> Path:
    from tokenizers import models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


class TestErrors:
    @pytest.mark.parametrize(
        ("spec", "word"),
        [(TokenizerSpec(), "neither"), (TokenizerSpec(path="x", train={"vocab_size": 500}), "both")],
    )
    def test_exactly_one_of_path_and_train(self, spec: TokenizerSpec, word: str) -> None:
        with pytest.raises(TokenizerError, match=f"sets {word} of `path` and `train`; set exactly one"):
            load_tokenizer(spec, base_dir=DATA)
        with pytest.raises(TokenizerError, match="set exactly one"):
            train_tokenizer([], spec)

    def test_missing_path(self, tmp_path: Path) -> None:
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path="nope/tokenizer.json"), base_dir=tmp_path)
        message = str(info.value)
        assert str(tmp_path / "nope" / "tokenizer.json") in message and "no such file or folder" in message
        assert "a tokenizer.json, a folder with tokenizer.json, vocab.json + merges.txt, or vocab.txt" in message

    def test_folder_without_tokenizer_files(self, tmp_path: Path) -> None:
        (tmp_path / "readme.md").write_text("hi")
        match = r"no tokenizer files found \(folder holds \['readme.md'\]\); expected a tokenizer.json"
        with pytest.raises(TokenizerError, match=match):
            load_tokenizer(TokenizerSpec(path=str(tmp_path)), base_dir=DATA)

    def test_unreadable_tokenizer_json(self, tmp_path: Path) -> None:
        (tmp_path / "tokenizer.json").write_text("{not json")
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path=str(tmp_path)), base_dir=DATA)
        message = str(info.value)
        assert str(tmp_path / "tokenizer.json") in message and "cannot read it as a tokenizer.json" in message

    def test_vocab_json_without_merges(self, tmp_path: Path) -> None:
        (tmp_path / "vocab.json").write_text('{"a": 0}')
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path=str(tmp_path)), base_dir=DATA)
        message = str(info.value)
        assert str(tmp_path / "merges.txt") in message and "needs both vocab.json and merges.txt" in message

    def test_bad_tokenizer_config(self, tmp_path: Path) -> None:
        folder = _word_level(tmp_path / "t", {"<unk>": 0, "</s>": 1})
        (folder / "tokenizer_config.json").write_text("[1,")
        with pytest.raises(TokenizerError, match="tokenizer_config.json: cannot read it as JSON"):
            load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=DATA)
        (folder / "tokenizer_config.json").write_text('{"eos_token": {"content": "<eos>"}}')
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=DATA)
        message = str(info.value)
        assert message.startswith(str(folder / "tokenizer_config.json"))
        assert "eos_token '<eos>' is not in the tokenizer's vocabulary" in message
        assert "'</s>'" in message  # a close match

    def test_config_dict_tokens_and_no_guess_from_ordinary_entries(self, tmp_path: Path) -> None:
        """`</s>` and `<s>` here are ordinary vocabulary entries: never taken for EOS or BOS."""
        folder = _word_level(tmp_path / "t", {"<unk>": 0, "</s>": 1, "<s>": 2, "<eos>": 3})
        with pytest.raises(TokenizerError, match=r"has no EOS token.*'</s>' is only an ordinary token"):
            load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=DATA)
        unframed = load_tokenizer(TokenizerSpec(path=str(folder), add_eos=False), base_dir=DATA)
        assert unframed.special_ids == {} and unframed.special_tokens == {"unk": {"token": "<unk>", "id": 0, "source": "model"}}
        (folder / "tokenizer_config.json").write_text('{"eos_token": {"content": "<eos>"}, "pad_token": null}')
        loaded = load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=DATA)
        assert loaded.special_ids == {"eos": 3} and loaded.unk_id == 0
        assert loaded.sources == {"eos": "tokenizer_config", "unk": "model"}

    def test_override_not_in_vocab_lists_close_matches(self) -> None:
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path=str(PHI3), eos_token="<|endoftxt|>"), base_dir=DATA)
        message = str(info.value)
        assert message.startswith(str(PHI3))
        assert "`tokenizer.eos_token` '<|endoftxt|>' is not in the tokenizer's vocabulary" in message
        assert "close matches: '<|endoftext|>'" in message

    def test_no_eos(self, tmp_path: Path) -> None:
        folder = _word_level(tmp_path / "t", {"<unk>": 0, "a": 1})
        with pytest.raises(TokenizerError) as info:
            load_tokenizer(TokenizerSpec(path=str(folder)), base_dir=DATA)
        assert str(info.value) == (
            f"{folder}: tokenizer has no EOS token; set `tokenizer.eos_token` in the recipe, or `tokenizer.add_eos: false` "
            "(no recipe key, tokenizer_config.json entry or post-processor names one)"
        )
        assert load_tokenizer(TokenizerSpec(path=str(folder), add_eos=False), base_dir=DATA).eos_id is None

    def test_no_bos(self) -> None:
        match = r"has no BOS token; set `tokenizer.bos_token` in the recipe, or `tokenizer.add_bos: false`"
        with pytest.raises(TokenizerError, match=match):
            load_tokenizer(TokenizerSpec(path=str(GPT2), add_bos=True), base_dir=DATA)
        with pytest.raises(TokenizerError, match=r"^trained: tokenizer has no BOS token"):
            train_tokenizer(["some text"], TokenizerSpec(train={"vocab_size": 300}, add_bos=True))

    def test_load_with_train_and_train_without_train(self) -> None:
        with pytest.raises(TokenizerError, match=r"call train_tokenizer\(texts, spec\)"):
            load_tokenizer(TokenizerSpec(train={"vocab_size": 500}), base_dir=DATA)
        with pytest.raises(TokenizerError, match="train_tokenizer needs `tokenizer.train`"):
            train_tokenizer(["text"], TokenizerSpec(path=str(GPT2)))
        with pytest.raises(TokenizerError, match="`tokenizer.lowercase` only applies to a WordPiece vocab.txt"):
            train_tokenizer(["text"], TokenizerSpec(train={"vocab_size": 500}, lowercase=True))

    def test_lowercase_only_for_wordpiece(self) -> None:
        with pytest.raises(TokenizerError, match="`tokenizer.lowercase` only applies to a WordPiece vocab.txt"):
            load_tokenizer(TokenizerSpec(path=str(GPT2), lowercase=True), base_dir=DATA)

    @pytest.mark.parametrize(
        ("train", "match"),
        [
            ({"vocab_size": 100}, r"`tokenizer.train.vocab_size` must be an integer >= 257 .* got 100"),
            ({}, r"vocab_size` must be an integer >= 257 .* got None"),
            ({"vocab_size": 500, "min_frequency": -1}, r"min_frequency` must be an integer >= 0, got -1"),
            (
                {"vocab_size": 500, "vocab": 1},
                r"unknown key\(s\) \['vocab'\]; valid keys are \['min_frequency', 'vocab_size'\]",
            ),
        ],
    )
    def test_bad_train_options(self, train: dict, match: str) -> None:
        with pytest.raises(TokenizerError, match=match):
            train_tokenizer(["text"], TokenizerSpec(train=train))


def test_encode_docs_groups_give_the_same_tokens(monkeypatch) -> None:
    """Encoding in bounded groups (memory) changes nothing in the output."""
    gpt2 = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=DATA)
    texts = [f"document {i} " * (i % 7 + 1) for i in range(50)]
    whole = gpt2.encode_docs(texts)
    monkeypatch.setattr(long_documents, "ENCODE_GROUP_CHARS", 40)
    assert long_documents._groups(texts, 40)[:3] == [(0, 2), (2, 3), (3, 4)]  # 11+22 chars, then 33, then 44
    grouped = gpt2.encode_docs(texts)
    assert np.array_equal(whole[0], grouped[0]) and np.array_equal(whole[1], grouped[1])


@pytest.mark.parametrize(("folder", "add_bos", "cut"), [(GPT2, False, True), (BERT, False, True), (PHI3, True, False)])
def test_long_documents_are_cut_only_where_no_token_changes(monkeypatch, folder, add_bos, cut) -> None:
    """Long documents are encoded in pieces (memory, cores) and give exactly the whole document's tokens.

    GPT-2 and BERT split a newline between two words into its own pre-token, so seams are used;
    Phi-3 prepends "▁" to every text it encodes, so every seam fails its check and documents stay whole.
    """
    monkeypatch.setattr(long_documents, "LONG_DOC_CHARS", 20_000)
    monkeypatch.setattr(long_documents, "SEAM_EVERY", 5_000)
    tok = load_tokenizer(TokenizerSpec(path=str(folder), add_bos=add_bos), base_dir=DATA)
    shakespeare = (DATA / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    multilingual = "\n".join(_jsonl_texts(DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl")[::8])
    # paragraphs as single lines between blank lines: no newline between two words, only spaces
    one_line_paragraphs = "\n\n".join(p.replace("\n", " ") for p in shakespeare.split("\n\n"))
    docs = ["short one", shakespeare, "", multilingual, "x" * 30_000, one_line_paragraphs, "another short one"]
    assert (len(long_documents.seams(tok.tokenizer, shakespeare)) > 10) is cut
    assert (len(long_documents.seams(tok.tokenizer, one_line_paragraphs)) > 10) is cut
    tokens, lengths = tok.encode_docs(docs)
    expected = []
    for doc in docs:
        ids = tok.tokenizer.encode(doc, add_special_tokens=False).ids
        expected.append(([tok.bos_id] if add_bos and ids[:1] != [tok.bos_id] else []) + ids + [tok.eos_id])
    assert lengths.tolist() == [len(e) for e in expected]
    assert tokens.tolist() == [t for e in expected for t in e]


# --- fine-tuning text is encoded as it is (issue 13 part 5) -------------------------------------


def _sft_rows(tmp_path: Path, record: dict, **extra) -> tuple[list[int], dict]:
    from dataprep.build.run import run
    from dataprep.recipe import recipe_from_dict

    src = tmp_path / "pairs.jsonl"
    src.write_text(json.dumps(record) + "\n", encoding="utf-8")
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": str(src)}], "tokenizer": {"path": str(GPT2)},
                               "template": "prompt_completion", "split": {"validation": 0.0}, **extra}, base_dir=tmp_path)
    out = tmp_path / ("out-" + str(len(list(tmp_path.glob("out-*")))))
    run(recipe, out, workers=1)
    from tests.conftest import read_split

    return read_split(out).to_pylist()[0]["input_ids"], dict(recipe.resolved["normalize"])


def test_fine_tuning_text_is_not_normalized_unless_asked(tmp_path):
    # "क़" written precomposed (U+0958) is not NFC: NFC decomposes it to क + ़ (U+0915 U+093C; U+0958 is a
    # composition exclusion, so क + ़ is already NFC). "é" as e + U+0301 is not NFC either (NFC: U+00E9).
    prompt, completion = "\u0958\u0932\u092e\r\nCafe\u0301: ", "\u00a0ok \u0007"  # "क़लम\r\nCafé: ", " ok \a"
    record = {"prompt": prompt, "completion": completion}
    gpt2 = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=DATA).tokenizer
    ids, resolved = _sft_rows(tmp_path, record)
    assert resolved == {"unicode": "none", "newlines": False, "strip_bom": False, "control_chars": False,
                        "strip": False, "collapse_spaces": False, "max_blank_lines": None}
    text = prompt + completion + "<|endoftext|>"
    expected = gpt2.encode(prompt + completion, add_special_tokens=False).ids + [50256]
    #                          क़ (U+0958)    ल            म            \r   \n   C   afe   ́ (2 bytes)  :   " "  \xa0 ok  " "  \x07
    assert ids == expected == [24231, 246, 11976, 110, 11976, 106, 201, 198, 34, 8635, 136, 223, 25, 220, 1849, 482, 220, 195, 50256]
    assert text.startswith("\u0958")
    # asked for: NFC changes the ids (क़ -> क + ़, e + ́ -> é); the rest of the defaults stay off
    nfc_ids, resolved = _sft_rows(tmp_path, record, normalize={"unicode": "NFC"})
    assert resolved["unicode"] == "NFC" and resolved["newlines"] is False and resolved["strip"] is False
    nfc = unicodedata.normalize("NFC", prompt + completion)
    assert nfc == "\u0915\u093c\u0932\u092e\r\nCaf\u00e9: \u00a0ok \u0007"
    assert nfc_ids == gpt2.encode(nfc, add_special_tokens=False).ids + [50256] != ids
    #                       क           ़            ल            म            \r   \n   C  af    é
    assert nfc_ids == [11976, 243, 11976, 120, 11976, 110, 11976, 106, 201, 198, 34, 1878, 2634, 25, 220, 1849, 482, 220, 195, 50256]


def test_normalize_defaults_per_task(tmp_path):
    from dataprep.recipe import recipe_from_dict

    base = {"inputs": [{"path": "x.jsonl"}], "tokenizer": {"path": str(GPT2)}}
    pretrain = recipe_from_dict({"task": "pretrain", **base}, base_dir=tmp_path).resolved["normalize"]
    assert pretrain == {"unicode": "NFC", "newlines": True, "strip_bom": True, "control_chars": True, "strip": True,
                        "collapse_spaces": False, "max_blank_lines": None}
    off = {"unicode": "none", "newlines": False, "strip_bom": False, "control_chars": False, "strip": False,
           "collapse_spaces": False, "max_blank_lines": None}
    for task in ("sft", "fewshot"):
        assert recipe_from_dict({"task": task, "template": "prompt_completion", **base}, base_dir=tmp_path).resolved["normalize"] == off
    asked = recipe_from_dict({"task": "sft", "template": "prompt_completion", "normalize": {"unicode": "NFKC", "strip": True}, **base},
                             base_dir=tmp_path).resolved["normalize"]
    assert asked == {**off, "unicode": "NFKC", "strip": True}


def test_framing_puts_bos_and_eos_exactly_where_a_loop_would():
    """``_frame`` (one boolean mask) against the list-by-list reference, over random layouts:
    documents of several pieces, empty pieces and documents, documents already starting with BOS."""
    from tokenizers import models

    rng = np.random.default_rng(0)
    tok = LoadedTokenizer(Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>")),
                          tokens={"bos": "<s>", "eos": "</s>"}, source="t", add_bos=False, add_eos=False,
                          split_special_tokens=True)
    for trial in range(400):
        tok.add_bos, tok.add_eos = bool(trial & 1), bool(trial & 2)
        counts = rng.integers(1, 4, rng.integers(1, 6))
        piece_lens = rng.integers(0, 4, int(counts.sum()))
        tokens = rng.integers(0, 5, int(piece_lens.sum())).astype(np.int32)
        pieces = np.split(tokens, np.cumsum(piece_lens)[:-1])
        docs = [np.concatenate(pieces[a:b]).tolist() for a, b in zip(np.cumsum(counts) - counts, np.cumsum(counts))]
        want = [([1] if tok.add_bos and (not d or d[0] != 1) else []) + d + ([2] if tok.add_eos else []) for d in docs]
        out, lengths = tok._frame(tokens, piece_lens, counts)
        assert lengths.tolist() == [len(w) for w in want]
        assert out.tolist() == [t for w in want for t in w]


# --- the parse kept per process (dataprep.text.tokenizer_cache) ---------------------------------

GPT2_GUESS = (
    f"{DATA / 'tokenizers' / 'gpt2' / 'vocab.json'}: nothing names its EOS and pad token (no recipe key, "
    "tokenizer_config.json entry or post-processor); using '<|endoftext|>' as EOS and pad: special token(s) of the "
    "tokenizer, chosen by their well-known names. fix: set `tokenizer.eos_token` and `tokenizer.pad_token` in the recipe"
)


def _load_logged(caplog, spec: TokenizerSpec, base_dir: Path = DATA) -> tuple[LoadedTokenizer, list[str]]:
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        loaded = load_tokenizer(spec, base_dir=base_dir)
    return loaded, [r.getMessage() for r in caplog.records if r.name == "dataprep.tokenizer"]


def test_a_second_load_shares_the_parse_and_warns_again(caplog):
    """The second load of gpt2 reuses the first's parse (the same Tokenizer, no new JSON) and logs the
    guessed-EOS warning again: a user's second run in one process must warn as the first did."""
    import logging

    from dataprep.text import tokenizer_cache

    tokenizer_cache.clear()
    spec = TokenizerSpec(path="tokenizers/gpt2")
    first, said_first = _load_logged(caplog, spec)
    second, said_second = _load_logged(caplog, spec)
    assert said_first == said_second == [GPT2_GUESS]
    assert second.tokenizer is first.tokenizer and second._json is first._json
    assert second.fingerprint == first.fingerprint == load_tokenizer(spec, base_dir=DATA, warn=False).fingerprint
    # a parse made while the warning was off recorded nothing: turned on again, it is parsed and warns
    tokenizer_cache.clear()
    quiet = logging.getLogger("dataprep.tokenizer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        caplog.clear()
        load_tokenizer(spec, base_dir=DATA)
        assert [r for r in caplog.records if r.name == "dataprep.tokenizer"] == []
    finally:
        quiet.setLevel(level)
    assert _load_logged(caplog, spec)[1] == [GPT2_GUESS]
    # validate's quiet loads (warn=False) share the parse and say nothing; a load that warns after one still warns
    tokenizer_cache.clear()
    quiet_load = load_tokenizer(spec, base_dir=DATA, warn=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        assert load_tokenizer(spec, base_dir=DATA, warn=False).tokenizer is quiet_load.tokenizer
    assert caplog.records == []
    assert _load_logged(caplog, spec)[1] == [GPT2_GUESS]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        assert load_tokenizer(spec, base_dir=DATA, warn=False).tokenizer is not quiet_load.tokenizer  # the warned parse
    assert caplog.records == []


def test_a_kept_parse_without_bos_still_refuses_add_bos():
    """gpt2 has no BOS: loaded with add_bos after a load without it, the load raises as it always did."""
    load_tokenizer(TokenizerSpec(path="tokenizers/gpt2"), base_dir=DATA, warn=False)
    with pytest.raises(TokenizerError, match="BOS"):
        load_tokenizer(TokenizerSpec(path="tokenizers/gpt2", add_bos=True), base_dir=DATA, warn=False)
    both = load_tokenizer(TokenizerSpec(path=str(PHI3), add_bos=True), base_dir=DATA)  # phi-3 has <s>: shared
    assert load_tokenizer(TokenizerSpec(path=str(PHI3), add_eos=False), base_dir=DATA).tokenizer is both.tokenizer


def test_a_changed_added_or_removed_file_is_read_again(tmp_path, monkeypatch, caplog):
    from dataprep.text import tokenizer_cache

    folder = _word_level(tmp_path / "tok", {"a": 0, "b": 1, "<unk>": 2})
    spec = TokenizerSpec(path=str(folder), add_eos=False)
    assert load_tokenizer(spec, base_dir=tmp_path).tokenizer.encode("a b").ids == [0, 1]
    stat = (folder / "tokenizer.json").stat()
    _word_level(folder, {"a": 1, "b": 0, "<unk>": 2})  # same size and (as a quick rewrite may have) mtime
    os.utime(folder / "tokenizer.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (folder / "tokenizer.json").stat().st_size == stat.st_size  # only the digest tells them apart
    assert load_tokenizer(spec, base_dir=tmp_path).tokenizer.encode("a b").ids == [1, 0]
    # a large file is stamped by size and mtime only
    monkeypatch.setattr(tokenizer_cache, "_DIGESTED_BYTES", 0)
    _word_level(folder, {"a": 0, "b": 1, "<unk>": 2})
    assert load_tokenizer(spec, base_dir=tmp_path).tokenizer.encode("a b").ids == [0, 1]
    _word_level(folder, {"a": 1, "b": 0, "<unk>": 2})
    stat = (folder / "tokenizer.json").stat()
    os.utime(folder / "tokenizer.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_tokenizer(spec, base_dir=tmp_path).tokenizer.encode("a b").ids == [1, 0]
    # a tokenizer_config.json put beside it names the unknown token, and taken away again it does not
    (folder / "tokenizer_config.json").write_text(json.dumps({"unk_token": "a"}))
    assert load_tokenizer(spec, base_dir=tmp_path).sources["unk"] == "tokenizer_config"
    (folder / "tokenizer_config.json").unlink()
    assert load_tokenizer(spec, base_dir=tmp_path).sources["unk"] == "model"


def test_loads_that_share_a_parse_do_not_share_engine_state(c4):
    spec = TokenizerSpec(path="tokenizers/gpt2")
    first = load_tokenizer(spec, base_dir=DATA)
    other = load_tokenizer(TokenizerSpec(path="tokenizers/gpt2", engine="tokenizers"), base_dir=DATA)
    first.choose_engine(c4[:20])
    assert first.run_engine is not None and first.engine_choice is not None
    second = load_tokenizer(spec, base_dir=DATA)
    assert second.tokenizer is first.tokenizer
    assert (second.run_engine, second.engine_choice, second.engine) == (None, None, "auto")
    assert (other.tokenizer is first.tokenizer, other.engine, other.run_engine) == (True, "tokenizers", None)
    # another split_special_tokens is another parse: a load never flips the flag under an earlier one
    literal = load_tokenizer(TokenizerSpec(path="tokenizers/gpt2", split_special_tokens=False), base_dir=DATA)
    assert literal.tokenizer is not first.tokenizer
    assert (first.tokenizer.encode_special_tokens, literal.tokenizer.encode_special_tokens) == (True, False)
    assert first.encode_docs(["<|endoftext|>"])[0].tolist() != literal.encode_docs(["<|endoftext|>"])[0].tolist()


def test_a_copy_of_the_files_shares_the_parse_and_names_its_own_files(tmp_path, monkeypatch, caplog):
    """A dataset's copy of its tokenizer (same bytes, another folder, other mtimes) is the parse already
    made, with its own files and source; one whose bytes differ, even at the same size, is parsed."""
    import logging
    import shutil

    from dataprep.text import tokenizer_cache

    monkeypatch.setattr(tokenizer_cache, "_DIGESTED_BYTES", 0)  # every file large: tokenizer files still by digest
    first = _word_level(tmp_path / "a", {"a": 0, "b": 1, "<unk>": 2, "</s>": 3})
    (first / "weights.bin").write_bytes(b"w" * 100)  # not a tokenizer file: by its size
    spec = {"add_eos": False}
    original = load_tokenizer(TokenizerSpec(path=str(first), **spec), base_dir=tmp_path, warn=False)
    copy = tmp_path / "b"
    shutil.copytree(first, copy)
    (copy / "weights.bin").write_bytes(b"v" * 100)
    copied = load_tokenizer(TokenizerSpec(path=str(copy), **spec), base_dir=tmp_path, warn=False)
    assert copied.tokenizer is original.tokenizer
    assert (copied.source, copied.files) == (str(copy), (copy / "tokenizer.json",))
    assert original.files == (first / "tokenizer.json",)
    edited = tmp_path / "c"
    shutil.copytree(first, edited)
    _word_level(edited, {"a": 1, "b": 0, "<unk>": 2, "</s>": 3})  # the same size
    assert (edited / "tokenizer.json").stat().st_size == (first / "tokenizer.json").stat().st_size
    other = load_tokenizer(TokenizerSpec(path=str(edited), **spec), base_dir=tmp_path, warn=False)
    assert other.tokenizer is not original.tokenizer and other.tokenizer.encode("a b").ids == [1, 0]
    # a parse that warned names its own folder: a copy that must warn is parsed, and names the copy
    special = tmp_path / "d"
    special.mkdir()
    tok = Tokenizer.from_file(str(first / "tokenizer.json"))
    tok.add_special_tokens(["</s>"])
    tok.save(str(special / "tokenizer.json"))
    said = _load_logged(caplog, TokenizerSpec(path=str(special), **spec), tmp_path)[1]
    assert len(said) == 1 and said[0].startswith(f"{special / 'tokenizer.json'}: nothing names its EOS")
    shutil.copytree(special, tmp_path / "e")
    warned, again = _load_logged(caplog, TokenizerSpec(path=str(tmp_path / "e"), **spec), tmp_path)
    assert again == [said[0].replace(str(special), str(tmp_path / "e"))]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):  # quiet loads of a third copy share it
        shutil.copytree(special, tmp_path / "f")
        quiet = load_tokenizer(TokenizerSpec(path=str(tmp_path / "f"), **spec), base_dir=tmp_path, warn=False)
    assert caplog.records == [] and quiet.tokenizer is warned.tokenizer and quiet.sources["eos"] == "well_known_name"
    # and loaded to warn after that, the third copy names itself too
    assert _load_logged(caplog, TokenizerSpec(path=str(tmp_path / "f"), **spec), tmp_path)[1] == [
        said[0].replace(str(special), str(tmp_path / "f"))]
