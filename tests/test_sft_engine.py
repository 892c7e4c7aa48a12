"""Fine-tuning's encode engine: gigatoken's ids, with spans from their byte lengths, give exactly
tokenizers' ids, offsets and loss masks, or gigatoken is not used.

Every byte-level BPE beside the checkout (GPT-2, Llama 3, DeepSeek-V3, gpt-oss, the bench bpe32k),
Gemma 3 and Phi-3 (SentencePiece BPEs with byte fallback: spaces become ``▁``; Phi-3 also prepends
one to every piece between added tokens, and its ``<|end|>`` takes the whitespace after it into its
span) encode real text both ways: ten languages of Wikipedia (XQuAD, Cyrillic, Greek, Arabic, Chinese),
web text, code, chats, SMS with ``£``, emoji (a ZWJ family: tokens that end inside a character) and
every special token's text; then real pair and chat files rendered as a run renders them (Alpaca,
the bench pairs, KTO and Glaive tool-call conversations through each
family's chat template). Ids, spans, masks, straddles and prompt lengths must be equal, and a run
must write byte-identical shards with either engine. BERT's WordPiece falls back to tokenizers with
the reason; a batch holding a literal ``▁`` falls back on Gemma 3. The proofs are shown to fail: a byte
table with one token a byte too long and the next a byte too short (same total) gives other
offsets and the probe refuses it; a table that does not spell the text is caught per batch.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dataprep.build import reference_check
from dataprep.build import run as run_module
from dataprep.build.run import run
from dataprep.errors import TokenizerError
from dataprep.read import resolve_inputs
from dataprep.recipe import recipe_from_dict
from dataprep.tasks.sft import engine_choice, loss_mask
from dataprep.tasks.sft.loss_mask import FINE_TUNING, encode_batch_flat, fast_encoder
from dataprep.tasks.sft.records import iter_chunks
from dataprep.tasks.sft.templates import Rendered
from dataprep.tasks.sft.worker import SftWorker
from dataprep.text.byte_offsets import ByteOffsets, Unsupported, byte_offsets
from dataprep.text.encode_engine import GIGATOKEN, TOKENIZERS, GigatokenEncoder
from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

from .conftest import DATA, SHARED

pytest.importorskip("gigatoken", reason="gigatoken is not installed: pip install gigatoken-cachefix==0.10.1")

TOKENIZERS_DIR = DATA / "tokenizers"
TEMPLATES = DATA / "chat_templates"
PAIRS = DATA / "pairs"
BENCH_PAIRS = SHARED / "bench" / "pairs50k.jsonl.zst"
ALL = {p.name: p for p in sorted(TOKENIZERS_DIR.iterdir())} | {"bpe32k": SHARED / "bench" / "bpe32k.json"}
# byte-level BPEs, and the SentencePiece BPEs whose ▁ are spaces (Gemma 3; Phi-3 also prepends one)
FAST = ("bpe32k", "deepseek-v3", "gemma-3", "gpt-oss", "gpt2", "llama-3", "phi-3-mini")
# the others, and the words of the reason they fall back with
FALLS_BACK = {"bert-base-cased": "WordPiece"}
EDGE = ["", " ", " x", "a  \n\n\t b  ", "x<|end|>\u3000\x1c y<|end|>  \n z", "👨\u200d👩\u200d👧\u200d👦 family 😀🤖 café\r\n", "中文字符測試 ひらがな カタカナ 한국어",
        "\u00a0\u200b\ufeff x e\u0301 \U0001d400", "Привет, мир! Ελληνικά العربية"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Real text of many scripts, code and chats, plus edge cases."""
    corpora = DATA / "corpora"
    xquad = _jsonl(corpora / "multilingual" / "xquad_contexts.jsonl")
    out = [d["text"] for lang in sorted({d["lang"] for d in xquad}) for d in [x for x in xquad if x["lang"] == lang][:4]]
    out += [d["text"] for d in _jsonl(corpora / "c4_demo.jsonl")[:20]]
    out += [d["prompt"] + d["canonical_solution"] for d in _jsonl(corpora / "code" / "humaneval_python.jsonl")[:5]]
    glaive = json.loads((PAIRS / "chat" / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))[:20]
    out += ["\n".join(t["value"] for t in r["conversations"]) for r in glaive]
    sms = (PAIRS / "classification" / "sms_spam_collection.tsv").read_text(encoding="utf-8").splitlines()[1:400]
    out += ["\n".join(line for line in sms if not line.isascii())]
    return out + EDGE


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(name: str, engine: str = "auto"):
        if (name, engine) not in cache:
            spec = TokenizerSpec(path=str(ALL[name]), engine=engine)
            cache[name, engine] = load_tokenizer(spec, base_dir=DATA, warn=False)
        return cache[name, engine]

    return get


def _with_specials(tokenizer, texts: list[str]) -> list[str]:
    added = tokenizer.tokenizer.get_added_tokens_decoder()
    special = [t.content for _, t in sorted(added.items()) if t.special][:40]
    return texts + [f"Hi{t} there {t}\n{t}é{t}" for t in special]


def _reference(tokenizer, texts: list[str]):
    """tokenizers' ids and offsets, encoded as fine-tuning encodes (special tokens matched, none added)."""
    copy = tokenizer.copy()
    copy.encode_special_tokens = False
    encodings = copy.encode_batch(texts, add_special_tokens=False)
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])
    spans = np.asarray([o for e in encodings for o in e.offsets], dtype=np.int64).reshape(-1, 2)
    return ids, spans


@pytest.mark.parametrize("name", FAST)
def test_spans_from_byte_lengths_are_tokenizers_offsets(name, loaded, texts):
    tokenizer = loaded(name)
    texts = _with_specials(tokenizer, texts)
    want_ids, want = _reference(tokenizer, texts)
    ids, counts = GigatokenEncoder(tokenizer._json.decode(), split_special_tokens=False).encode(texts)
    assert np.array_equal(ids, want_ids)
    starts, ends = byte_offsets(tokenizer.tokenizer).char_spans(texts, ids, counts)
    assert np.array_equal(starts, want[:, 0]) and np.array_equal(ends, want[:, 1])
    # the hard cases were met: tokens ending inside a character (the next one starts in it too) and
    # special tokens matched as tokens
    same_text = np.repeat(np.arange(len(texts)), counts)
    inside = (ends[:-1] > starts[1:]) & (same_text[:-1] == same_text[1:])
    assert inside.sum() > 0
    assert np.isin(ids, list(tokenizer.tokenizer.get_added_tokens_decoder())).sum() >= 4


@pytest.mark.parametrize("name", sorted(FALLS_BACK))
def test_other_tokenizers_fall_back_with_the_reason(name, loaded, caplog):
    with pytest.raises(Unsupported, match=FALLS_BACK[name]):
        byte_offsets(loaded(name).tokenizer)
    tokenizer = loaded(name)
    example = Rendered("Hello there. General Kenobi!", ((13, 28),), 13)
    with caplog.at_level(logging.INFO, logger="dataprep.tokenizer"):
        choice = engine_choice.choose(tokenizer, [example])
    assert choice.engine == TOKENIZERS and FALLS_BACK[name] in choice.reason and choice.reason.startswith(FINE_TUNING)
    assert FALLS_BACK[name] in caplog.text
    assert fast_encoder(tokenizer) is None and tokenizer.run_engine == choice
    with pytest.raises(TokenizerError, match="cannot be used.*" + FALLS_BACK[name]):
        engine_choice.choose(loaded(name, "gigatoken"), [example])


def _examples(recipe: dict, limit: int = 400) -> tuple[object, list[Rendered]]:
    """The recipe's tokenizer and its first ``limit`` examples, rendered as its workers render them."""
    parsed = recipe_from_dict({"task": "sft", "split": {"validation": 0.0}, **recipe}, base_dir=DATA)
    tokenizer = load_tokenizer(parsed.tokenizer, base_dir=DATA, warn=False)
    files = resolve_inputs(parsed.inputs, base_dir=DATA)
    worker = SftWorker(parsed, tokenizer, files, None)
    examples: list[Rendered] = []
    for index, batch in iter_chunks(files, parsed, Counter(), Counter()):
        examples += worker.examples(batch, files[index].entry)
        if len(examples) >= limit:
            break
    return tokenizer, examples[:limit]


def _chat(path: str, fields: dict, tokenizer: str, template: str | None = None, **extra) -> dict:
    recipe = {"inputs": [{"path": str(PAIRS / path), "fields": fields}], "tokenizer": {"path": str(ALL[tokenizer])},
              "template": "chat", "masking": "all_assistant", "max_length": 8192, **extra}
    if template:
        recipe["chat"] = {"template": str(TEMPLATES / template)}
    return recipe


SHAREGPT = {"messages": {"path": "conversations", "kind": "messages"}}
TOOLS = {**SHAREGPT, "tools": {"path": "tools", "kind": "json", "required": False}}
ROLES = {"roles": {"human": "user", "gpt": "assistant", "function_call": "tool_call", "observation": "tool"}}
KTO = {"messages": {"path": "messages", "kind": "messages"}}
CASES = {
    "llama-3 kto": _chat("chat/kto_en_demo.json", KTO, "llama-3"),
    "llama-3 tools": _chat("chat/glaive_toolcall_en_demo.json", TOOLS, "llama-3", "llama3_1.jinja", **{"inputs": [
        {"path": str(PAIRS / "chat/glaive_toolcall_en_demo.json"), "fields": TOOLS, **ROLES}]}),
    "deepseek-v3 kto": _chat("chat/kto_en_demo.json", KTO, "deepseek-v3", "deepseekv3.jinja"),
    "gemma-3 kto": _chat("chat/kto_en_demo.json", KTO, "gemma-3"),
    "gpt-oss kto": _chat("chat/kto_en_demo.json", KTO, "gpt-oss", chat={"date": "2025-01-01"}),
    "phi-3 kto": _chat("chat/kto_en_demo.json", KTO, "phi-3-mini"),
    "phi-3 alpaca": {"inputs": [{"path": str(PAIRS / "instruction/alpaca_en_demo.json")}], "template": "alpaca",
                     "tokenizer": {"path": str(ALL["phi-3-mini"])}, "max_length": 8192},
    "gpt2 alpaca": {"inputs": [{"path": str(PAIRS / "instruction/alpaca_en_demo.json")}], "template": "alpaca",
                    "tokenizer": {"path": str(ALL["gpt2"])}, "max_length": 8192},
    "gpt2 alpaca cleaned": {"inputs": [{"path": str(PAIRS / "instruction/alpaca_data_cleaned_1000.json")}],
                            "template": "alpaca", "tokenizer": {"path": str(ALL["gpt2"])}, "max_length": 8192},
    "bpe32k bench pairs": {"inputs": [{"path": str(BENCH_PAIRS), "fields": {"prompt": "prompt", "response": "response"}}],
                           "template": {"name": "bench", "prompt": "### Prompt:\n{prompt}\n\n### Response:\n",
                                        "response": "{response}"},
                           "tokenizer": {"path": str(ALL["bpe32k"])}, "max_length": 8192},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_masks_identical_on_real_examples(case):
    tokenizer, examples = _examples(CASES[case])
    assert len(examples) >= 100 and not all(r.text.isascii() for r in examples)
    want = encode_batch_flat(tokenizer, examples, engine=TOKENIZERS)
    got = encode_batch_flat(tokenizer, examples, engine=GIGATOKEN)
    for field in ("ids", "mask", "lengths", "offsets", "straddles", "prompt_tokens"):
        a, b = getattr(want, field), getattr(got, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert want.mask.sum() > 0 and (want.mask == 0).sum() > 0
    choice = engine_choice.choose(tokenizer, examples[:64])
    assert choice.engine == GIGATOKEN and choice.differing is None, choice.reason
    assert fast_encoder(tokenizer) is not None


def test_the_choice_travels_with_the_tokenizer_and_is_recorded(loaded):
    tokenizer = load_tokenizer(TokenizerSpec(path=str(ALL["gpt2"])), base_dir=DATA, warn=False)
    assert fast_encoder(tokenizer) is None  # no choice yet: tokenizers encodes
    tokenizer.choose_engine(["pretraining's choice proves ids only"])
    assert tokenizer.engine_choice.engine == GIGATOKEN and fast_encoder(tokenizer) is None
    example = Rendered("Q: 2+2?\nA: 4<|endoftext|>", ((11, 25),), 11)
    choice = engine_choice.choose(tokenizer, [example])
    assert choice.engine == GIGATOKEN and choice.probed > 1 and choice.reason.startswith(FINE_TUNING)
    worker_copy = pickle.loads(pickle.dumps(tokenizer))
    assert worker_copy.engine_choice == choice and fast_encoder(worker_copy) is not None
    assert tokenizer.run_engine == choice  # what the manifest's tokenizer.engine records
    enc = encode_batch_flat(worker_copy, [example])
    # Q : ␣2 + 2 ? \n A : ␣4 <|endoftext|>: " 4" straddles the target's start
    assert enc.ids[-1] == tokenizer.eos_id and enc.mask.tolist() == [0] * 9 + [1] * 2 and enc.straddles.tolist() == [1]


def _shifted(table: ByteOffsets, ids: np.ndarray) -> ByteOffsets:
    """One token a byte too long and the next (another id, over a byte long) a byte too short:
    every text's total is unchanged, so only a span check can see it."""
    for a, b in zip(ids[:-1].tolist(), ids[1:].tolist()):
        if a != b and table.lengths[b] > 1 and (ids == a).sum() == 1 and (ids == b).sum() == 1:
            wrong = table.lengths.copy()
            wrong[a] += 1
            wrong[b] -= 1
            return ByteOffsets(wrong)
    raise AssertionError("no pair of tokens to shift")


def test_an_off_by_one_byte_table_gives_other_offsets_and_is_refused(loaded, monkeypatch, caplog):
    tokenizer = load_tokenizer(TokenizerSpec(path=str(ALL["llama-3"])), base_dir=DATA, warn=False)
    example = Rendered("Écris un poème sur la mer.\n\nLa mer scintille, vaste et bleue.<|eot_id|>", ((28, 71),), 28)
    fast = loss_mask._fast_for(tokenizer)
    ids, counts = fast.encoder.encode([example.text])
    wrong = _shifted(fast.offsets, ids)
    good, bad = fast.offsets.char_spans([example.text], ids, counts), wrong.char_spans([example.text], ids, counts)
    assert bad is not None and not (np.array_equal(good[0], bad[0]) and np.array_equal(good[1], bad[1]))
    monkeypatch.setattr(fast.offsets, "lengths", wrong.lengths)
    with caplog.at_level(logging.WARNING, logger="dataprep.tokenizer"):
        choice = engine_choice.choose(tokenizer, [example])
    assert choice.engine == TOKENIZERS and choice.differing["what"] == "offsets" and choice.differing["text"] == 0
    assert "differs" in caplog.text and fast_encoder(tokenizer) is None


def test_a_table_that_does_not_spell_the_text_is_caught_per_batch(monkeypatch, caplog):
    tokenizer = load_tokenizer(TokenizerSpec(path=str(ALL["gpt2"])), base_dir=DATA, warn=False)
    examples = [Rendered("Say hi.\nHi there!<|endoftext|>", ((8, 30),), 8), Rendered("Ünïcödé?\nJa.<|endoftext|>", ((9, 25),), 9)]
    assert engine_choice.choose(tokenizer, examples).engine == GIGATOKEN
    fast = fast_encoder(tokenizer)
    wrong = fast.offsets.lengths.copy()
    wrong[fast.encoder.encode(["Hi"])[0][0]] += 1
    monkeypatch.setattr(fast.offsets, "lengths", wrong)
    with caplog.at_level(logging.WARNING, logger="dataprep.sft"):
        got = encode_batch_flat(tokenizer, examples)
    want = encode_batch_flat(tokenizer, examples, engine=TOKENIZERS)
    assert "do not spell" in caplog.text
    assert np.array_equal(got.ids, want.ids) and np.array_equal(got.mask, want.mask)


def _wired(monkeypatch) -> None:
    """The run chooses fine-tuning's engine before its plan (dataprep.build.run calls
    engine_choice.choose_engine where pretraining calls tokenizer.choose_engine)."""
    if "engine_choice" in Path(run_module.__file__).read_text():
        return
    real = run_module.task_for

    def task_for(recipe):
        task = real(recipe)
        plan = task.plan

        class Wired:
            name = task.name

            def __getattr__(self, item):
                return getattr(task, item)

            def plan(self, recipe, tokenizer, files):
                if recipe.task == "sft":
                    engine_choice.choose_engine(recipe, tokenizer, files)
                return plan(recipe, tokenizer, files)

        return Wired()

    monkeypatch.setattr(run_module, "task_for", task_for)


PADS = {"gpt2 alpaca": "<|endoftext|>", "llama-3 tools": "<|end_of_text|>", "phi-3 kto": "<|endoftext|>"}


@pytest.mark.parametrize("case", sorted(PADS))
def test_runs_write_byte_identical_shards_with_either_engine(case, tmp_path, monkeypatch):
    _wired(monkeypatch)
    monkeypatch.setattr(reference_check, "check_run", lambda *args: None)
    manifests, shards = {}, {}
    for engine in (TOKENIZERS, "auto"):
        recipe = CASES[case] | {"tokenizer": {**CASES[case]["tokenizer"], "engine": engine, "pad_token": PADS[case]},
                                "packing": {"mode": "bfd", "seq_len": 8192}, "split": {"validation": 0.1},
                                "on_error": "skip"}  # a KTO record holds "<|user|>": a bad record for Phi-3
        out = tmp_path / engine
        manifests[engine] = run(recipe_from_dict({"task": "sft", **recipe}, base_dir=DATA), out, workers=1)
        shards[engine] = {p.relative_to(out): p.read_bytes() for p in sorted(out.glob("*/*.arrow"))}
    assert manifests["auto"]["tokenizer"]["engine"]["engine"] == GIGATOKEN
    assert manifests[TOKENIZERS]["tokenizer"]["engine"]["engine"] == TOKENIZERS
    assert len(shards["auto"]) >= 2 and shards["auto"] == shards[TOKENIZERS]


def test_a_literal_sentencepiece_space_is_not_spelled(caplog):
    """Gemma 3's ``▁`` tokens stand for spaces; a batch holding the character itself is encoded by
    tokenizers (same ids, spans and masks)."""
    tokenizer = load_tokenizer(TokenizerSpec(path=str(ALL["gemma-3"])), base_dir=DATA, warn=False)
    plain = Rendered("Write a space twice:  <end_of_turn>", ((20, 35),), 20)
    assert engine_choice.choose(tokenizer, [plain]).engine == GIGATOKEN
    examples = [plain, Rendered("Write ▁ twice: ▁▁<end_of_turn>", ((15, 30),), 15)]
    fast = fast_encoder(tokenizer)
    ids, counts = fast.encoder.encode([examples[1].text])
    assert fast.offsets.char_spans([examples[1].text], ids, counts) is None
    with caplog.at_level(logging.INFO, logger="dataprep.sft"):
        got = encode_batch_flat(tokenizer, examples)
    assert "do not spell a batch's texts (one holds ▁" in caplog.text
    want = encode_batch_flat(tokenizer, examples, engine=TOKENIZERS)
    assert np.array_equal(got.ids, want.ids) and np.array_equal(got.mask, want.mask)
    assert fast.offsets.char_spans(["Write  twice"], *fast.encoder.encode(["Write  twice"])) is not None
