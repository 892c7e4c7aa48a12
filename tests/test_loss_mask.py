"""Exact tokens and loss masks for the pair templates on the real GPT-2 and Phi-3 tokenizers.

References for the ids, and why:
- GPT-2: ``tokenizers.ByteLevelBPETokenizer(vocab.json, merges.txt)`` plus ``<|endoftext|>``
  as a special token, built independently of dataprep's loader.
- Phi-3: ``tokenizers.Tokenizer.from_file(tokenizer.json)``. These are the ids transformers
  4.57 gives; transformers 5.x re-builds the tokenizer and changes them (see test_chat.py).
Both are asked for ``encode(text, add_special_tokens=False)`` of the full rendered text: the
masked ids must be exactly that, never a prompt/response glued from two encodes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import ByteLevelBPETokenizer, Tokenizer

from dataprep.tasks.sft.chat import ChatTemplate
from dataprep.tasks.sft.loss_mask import Encoded, encode_batch_with_mask, encode_with_mask
from dataprep.tasks.sft.templates import TEMPLATES, Rendered, get_template
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer
from tests.conftest import DATA

GPT2 = DATA / "tokenizers/gpt2"
PHI3 = DATA / "tokenizers/phi-3-mini"
EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2() -> LoadedTokenizer:
    return load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=DATA)


@pytest.fixture(scope="module")
def phi3() -> LoadedTokenizer:
    return load_tokenizer(TokenizerSpec(path=str(PHI3)), base_dir=DATA)


@pytest.fixture(scope="module")
def references() -> dict[str, Tokenizer]:
    gpt2 = ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    gpt2.add_special_tokens([EOS])
    return {"gpt2": gpt2, "phi3": Tokenizer.from_file(str(PHI3 / "tokenizer.json"))}


@pytest.fixture(scope="module")
def alpaca() -> list[dict]:
    return json.loads((DATA / "pairs/instruction/alpaca_en_demo.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dialogsum() -> list[dict]:
    lines = (DATA / "pairs/summarization/dialogsum_dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _targets(tok: LoadedTokenizer, enc: Encoded) -> str:
    return tok.tokenizer.decode(enc.ids[enc.mask == 1].tolist(), skip_special_tokens=False)


def _encode(tok, name, record) -> tuple[Rendered, Encoded]:
    rendered = get_template(name).render(record, stop_text=tok.tokens["eos"])
    return rendered, encode_with_mask(tok, rendered)


def _check_pair(tok, ref, rendered, enc, *, target: str, straddles: int) -> None:
    """ids are the full-text encoding; the mask is 0...0 1...1; decode(targets) is `target`."""
    assert enc.ids.dtype == np.int32 and enc.mask.dtype == np.uint8
    assert enc.ids.tolist() == ref.encode(rendered.text, add_special_tokens=False).ids
    n = enc.num_targets
    assert enc.mask.tolist() == [0] * (len(enc.ids) - n) + [1] * n
    assert enc.ids[-1] == tok.eos_id and enc.mask[-1] == 1
    assert _targets(tok, enc) == target
    assert enc.straddles == straddles
    assert enc.prompt_tokens == len(enc.ids) - n


# --- fully written out ------------------------------------------------------------------


def test_classification_literal_gpt2(gpt2, references):
    rendered, enc = _encode(gpt2, "classification", {"text": "Ok lar... Joking wif u oni...", "label": "ham"})
    # Ok Ġlar ... ĠJ oking Ġw if Ġu Ġon i ... Ċ Label : Ġham <|endoftext|>
    assert enc.ids.tolist() == [18690, 26371, 986, 449, 5730, 266, 361, 334, 319, 72, 986, 198, 33986, 25, 8891, 50256]
    assert enc.mask.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    # "Label: " ends in a space that GPT-2 merges into "Ġham": one straddle, still a target.
    _check_pair(gpt2, references["gpt2"], rendered, enc, target=" ham<|endoftext|>", straddles=1)


def test_classification_literal_phi3(phi3, references):
    rendered, enc = _encode(phi3, "classification", {"text": "Ok lar... Joking wif u oni...", "label": "ham"})
    # ▁Ok ▁lar ... ▁J oking ▁w if ▁u ▁on i ... <0x0A> Label : ▁ham <|endoftext|>
    assert enc.ids.tolist() == [
        3674, 2203, 856, 435, 17223, 281, 361, 318, 373, 29875, 856, 13, 4775, 29901, 16366, 32000,
    ]
    assert enc.mask.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    # "▁ham" holds the prompt's trailing space; the Llama decoder drops a leading ▁.
    _check_pair(phi3, references["phi3"], rendered, enc, target="ham<|endoftext|>", straddles=1)


def test_alpaca_without_input_literal(gpt2, phi3, references, alpaca):
    record = alpaca[362]  # "Calculate 15% of 500." -> "15% of 500 is 75."
    rendered, enc = _encode(gpt2, "alpaca", record)
    assert len(enc.ids) == 46
    # 15 % Ġof Ġ500 Ġis Ġ75 . EOS
    assert enc.ids[enc.mask == 1].tolist() == [1314, 4, 286, 5323, 318, 5441, 13, 50256]
    assert enc.ids[34:38].tolist() == [21017, 18261, 25, 198]  # ### ĠResponse : \n
    _check_pair(gpt2, references["gpt2"], rendered, enc, target="15% of 500 is 75.<|endoftext|>", straddles=0)

    rendered, enc = _encode(phi3, "alpaca", record)
    assert len(enc.ids) == 61
    # 1 5 % ▁of ▁ 5 0 0 ▁is ▁ 7 5 . EOS (Llama splits digits)
    assert enc.ids[enc.mask == 1].tolist() == [
        29896, 29945, 29995, 310, 29871, 29945, 29900, 29900, 338, 29871, 29955, 29945, 29889, 32000,
    ]
    _check_pair(phi3, references["phi3"], rendered, enc, target="15% of 500 is 75.<|endoftext|>", straddles=0)


def test_alpaca_with_input_literal(gpt2, phi3, references, alpaca):
    record = alpaca[554]  # "Sum up the numbers." + "3, 2, 5" -> "The sum of the numbers is 10."
    rendered, enc = _encode(gpt2, "alpaca", record)
    assert enc.ids[enc.mask == 1].tolist() == [464, 2160, 286, 262, 3146, 318, 838, 13, 50256]
    assert enc.ids[41:46].tolist() == [23412, 25, 198, 18, 11]  # Input : \n 3 ,
    target = "The sum of the numbers is 10.<|endoftext|>"
    _check_pair(gpt2, references["gpt2"], rendered, enc, target=target, straddles=0)

    rendered, enc = _encode(phi3, "alpaca", record)
    assert enc.ids[enc.mask == 1].tolist() == [1576, 2533, 310, 278, 3694, 338, 29871, 29896, 29900, 29889, 32000]
    _check_pair(phi3, references["phi3"], rendered, enc, target=target, straddles=0)


# --- more real examples per template ----------------------------------------------------


@pytest.mark.parametrize("index", [0, 5, 8, 91, 343])
@pytest.mark.parametrize("name", ["gpt2", "phi3"])
def test_alpaca_examples(name, index, request, references, alpaca):
    tok = request.getfixturevalue(name)
    rendered, enc = _encode(tok, "alpaca", alpaca[index])
    _check_pair(tok, references[name], rendered, enc, target=alpaca[index]["output"] + EOS, straddles=0)


@pytest.mark.parametrize("index", [0, 66, 133])
def test_dialogsum_examples(index, gpt2, phi3, references, dialogsum):
    record = dialogsum[index]
    # "Summary: " ends in a space: GPT-2's first target token is " " + the summary's first word.
    rendered, enc = _encode(gpt2, "dialogsum", record)
    _check_pair(gpt2, references["gpt2"], rendered, enc, target=" " + record["summary"] + EOS, straddles=1)
    first = enc.ids[enc.mask == 1][0]
    assert gpt2.tokenizer.id_to_token(int(first)) == "Ġ#"  # summaries start "#Person1#..."
    rendered, enc = _encode(phi3, "dialogsum", record)
    _check_pair(phi3, references["phi3"], rendered, enc, target=record["summary"] + EOS, straddles=1)


def test_dialogsum_first_record_tail(gpt2, dialogsum):
    _, enc = _encode(gpt2, "dialogsum", dialogsum[0])
    n = enc.num_targets
    # ... \n \n Summary : | Ġ# Person 2 # Ġhas Ġtrouble Ġbreathing .
    assert enc.ids[-n - 4 : -n].tolist() == [198, 198, 22093, 25]
    assert enc.ids[-n : -n + 8].tolist() == [1303, 15439, 17, 2, 468, 5876, 12704, 13]


@pytest.mark.parametrize("task", [0, 1, 2, 163])
def test_prompt_completion_on_humaneval(task, gpt2, phi3, references):
    line = (DATA / "corpora/code/humaneval_python.jsonl").read_text(encoding="utf-8").splitlines()[task]
    problem = json.loads(line)
    record = {"prompt": problem["prompt"], "completion": problem["canonical_solution"]}
    # prompts end in "\n" and solutions start with indentation
    rendered, enc = _encode(gpt2, "prompt_completion", record)
    _check_pair(gpt2, references["gpt2"], rendered, enc, target=record["completion"] + EOS, straddles=0)
    rendered, enc = _encode(phi3, "prompt_completion", record)
    assert enc.ids.tolist() == references["phi3"].encode(rendered.text, add_special_tokens=False).ids
    assert enc.ids[-1] == phi3.eos_id and enc.mask[-1] == 1 and enc.straddles == 0
    assert _targets(phi3, enc) == record["completion"].removeprefix(" ") + EOS  # the decoder drops one leading ▁


# Target ids of each label + EOS: GPT-2 "Ġham" / "Ġspam"; Phi-3 "▁ham" / "▁sp" "am".
LABEL_IDS = {
    "gpt2": {"ham": [8891, 50256], "spam": [18084, 50256]},
    "phi3": {"ham": [16366, 32000], "spam": [805, 314, 32000]},
}


def test_classification_on_sms_spam(gpt2, phi3, references):
    rows = (DATA / "pairs/classification/sms_spam_collection.tsv").read_text(encoding="utf-8").splitlines()[1:40]
    for row in rows:
        label, text = row.split("\t")
        record = {"text": text, "label": label}
        for name, tok in (("gpt2", gpt2), ("phi3", phi3)):
            rendered, enc = _encode(tok, "classification", record)
            expected = (" " if name == "gpt2" else "") + label + EOS
            _check_pair(tok, references[name], rendered, enc, target=expected, straddles=1)
            assert enc.ids[enc.mask == 1].tolist() == LABEL_IDS[name][label]


# --- mechanics --------------------------------------------------------------------------


def test_special_tokens_are_recognised_despite_split_special_tokens(gpt2):
    assert gpt2.split_special_tokens and gpt2.tokenizer.encode_special_tokens
    rendered, enc = _encode(gpt2, "prompt_completion", {"prompt": "Hello", "completion": " world"})
    assert enc.ids.tolist() == [15496, 995, 50256] and enc.mask.tolist() == [0, 1, 1]
    # The loaded tokenizer itself still treats "<|endoftext|>" in documents as text, untouched.
    assert gpt2.tokenizer.encode_special_tokens
    as_text = gpt2.tokenizer.encode(rendered.text, add_special_tokens=False).ids
    assert as_text[:2] == [15496, 995] and 50256 not in as_text and len(as_text) > 3


def test_no_special_tokens_are_added(phi3):
    # Phi-3's add_bos_token is false and load_tokenizer's add_bos is off; nothing is prepended.
    rendered, enc = _encode(phi3, "prompt_completion", {"prompt": "x", "completion": "y"})
    assert phi3.bos_id not in enc.ids.tolist()


def test_the_masking_copy_is_made_once_per_tokenizer_files_and_never_the_runs(phi3, gpt2, references):
    """Two loads of the same files share one private copy that reads specials (the fingerprint is
    the sha256 of the JSON, so the copies would be equal); other files, or a tokenizer that reads
    specials already, do not share it. The ids are the reference's either way."""
    from dataprep.tasks.sft import loss_mask

    again = load_tokenizer(TokenizerSpec(path=str(PHI3)), base_dir=DATA)
    first, second = loss_mask._templated(phi3), loss_mask._templated(again)
    assert again is not phi3 and again.fingerprint == phi3.fingerprint and second.tokenizer is first.tokenizer
    assert first.tokenizer not in (phi3.tokenizer, again.tokenizer) and not first.tokenizer.encode_special_tokens
    assert phi3.tokenizer.encode_special_tokens and again.tokenizer.encode_special_tokens  # the runs' are untouched
    assert loss_mask._templated(gpt2).tokenizer is not first.tokenizer  # other files, another copy
    reading = load_tokenizer(TokenizerSpec(path=str(PHI3), split_special_tokens=False), base_dir=DATA)
    assert loss_mask._templated(reading).tokenizer is reading.tokenizer and not reading.tokenizer.encode_special_tokens
    text = "<|user|>\nHi<|end|>\n<|assistant|>\nHello there<|end|>\n<|endoftext|>"
    rendered = Rendered(text=text, targets=((len(text) - 31, len(text)),), prompt_end=len(text) - 31)
    wanted = references["phi3"].encode(text, add_special_tokens=False).ids
    assert 32007 in wanted and 32000 in wanted  # <|end|> and <|endoftext|> as their special ids
    for tok in (phi3, again, reading):
        assert encode_with_mask(tok, rendered).ids.tolist() == wanted


def test_batch_equals_single(gpt2, phi3, alpaca):
    for tok in (gpt2, phi3):
        rendered = [TEMPLATES["alpaca"].render(r, stop_text=EOS) for r in alpaca[:60]]
        batch = encode_batch_with_mask(tok, rendered)
        for r, b in zip(rendered, batch):
            one = encode_with_mask(tok, r)
            assert np.array_equal(one.ids, b.ids) and np.array_equal(one.mask, b.mask)
            assert (one.straddles, one.prompt_tokens) == (b.straddles, b.prompt_tokens)
    assert encode_batch_with_mask(gpt2, []) == []


def test_several_and_empty_target_spans(gpt2):
    text = "ab cd ef<|endoftext|>"
    enc = encode_with_mask(gpt2, Rendered(text=text, targets=((6, 21), (0, 2), (2, 2)), prompt_end=6))
    # ab Ġcd Ġe f <|endoftext|>: "ab" and "ef<|endoftext|>" are targets; "Ġe" straddles (its space is not)
    assert enc.ids.tolist() == [397, 22927, 304, 69, 50256]
    assert enc.mask.tolist() == [1, 0, 1, 1, 1]
    assert enc.straddles == 1 and enc.prompt_tokens == 2
    none = encode_with_mask(gpt2, Rendered(text=text, targets=(), prompt_end=0))
    assert none.mask.tolist() == [0, 0, 0, 0, 0] and none.straddles == 0
    with pytest.raises(ValueError, match="outside the text"):
        encode_with_mask(gpt2, Rendered(text="ab", targets=((0, 5),), prompt_end=0))


def test_stripping_added_tokens_keep_to_their_own_text(phi3):
    """<|assistant|> (rstrip) absorbs the reply's leading spaces; it must not become a target."""
    chat = ChatTemplate.from_tokenizer(phi3)
    rendered = chat.render_with_targets(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  Hello."}], policy="all_assistant"
    )
    enc = encode_with_mask(phi3, rendered)
    tokens = [phi3.tokenizer.id_to_token(int(i)) for i in enc.ids]
    assert tokens == ["<|user|>", "▁Hi", "<|end|>", "<|assistant|>", "▁Hello", ".", "<|end|>", "<|endoftext|>"]
    assert enc.mask.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # the final turn's target ends with the template's EOS
    assert enc.straddles == 0 and enc.prompt_tokens == 4


# --- properties -------------------------------------------------------------------------

# Arbitrary text, but no field that is blank (that is a RecordProblem) or holds a special token.
_field = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "<|" not in s)
_records = {
    "alpaca": st.fixed_dictionaries(
        {"instruction": _field, "output": _field}, optional={"input": st.one_of(st.just(""), _field)}
    ),
    "dialogsum": st.fixed_dictionaries({"dialogue": _field, "summary": _field}),
    "prompt_completion": st.fixed_dictionaries({"prompt": _field, "completion": _field}),
    "classification": st.fixed_dictionaries({"text": _field, "label": st.one_of(_field, st.integers(0, 9))}),
    "custom": st.fixed_dictionaries({"a": _field, "b": _field}),
}
_CUSTOM = {"prompt": "<{a}>", "response": "{b}"}  # no space or newline between prompt and response


def _check_invariants(tok: LoadedTokenizer, rendered: Rendered, enc: Encoded, ref: Tokenizer) -> None:
    assert enc.ids.tolist() == ref.encode(rendered.text, add_special_tokens=False).ids
    (start, end), = rendered.targets
    offsets = ref.encode(rendered.text, add_special_tokens=False).offsets
    on = enc.mask == 1
    # the stop token is always kept, and is the last target
    assert on[-1] and enc.ids[-1] == tok.eos_id
    # targets are one contiguous run at the end
    first = int(np.argmax(on))
    assert on[first:].all() and not on[:first].any()
    # a token covering prompt characters is a target only as a counted straddle
    covers_prompt = [a < start for a, _ in offsets[first:]]
    assert sum(covers_prompt) == enc.straddles <= 1
    assert all(b <= start or a == b for a, b in offsets[:first])  # non-targets hold prompt text only
    assert enc.prompt_tokens == first


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(_records)))
def test_property_gpt2_pairs(gpt2, references, data, name):
    record = data.draw(_records[name])
    template = get_template(_CUSTOM if name == "custom" else name)
    rendered = template.render(record, stop_text=EOS)
    enc = encode_with_mask(gpt2, rendered)
    _check_invariants(gpt2, rendered, enc, references["gpt2"])
    # byte-level BPE is lossless: the target tokens decode to the target text, plus any
    # straddled prompt characters in front
    (start, _), = rendered.targets
    offsets = references["gpt2"].encode(rendered.text, add_special_tokens=False).offsets
    first_start = offsets[int(np.argmax(enc.mask == 1))][0]
    response = rendered.text[start:]
    if enc.straddles == 0:
        assert _targets(gpt2, enc) == response
    else:
        assert first_start < start
        # (the straddled part may be the tail bytes of a prompt character, decoded as U+FFFD)
        assert _targets(gpt2, enc).endswith(response)
    assert response == template.render(record, stop_text=EOS).target_text()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(_records)))
def test_property_phi3_pairs(phi3, references, data, name):
    record = data.draw(_records[name])
    rendered = get_template(_CUSTOM if name == "custom" else name).render(record, stop_text=EOS)
    _check_invariants(phi3, rendered, encode_with_mask(phi3, rendered), references["phi3"])


def test_target_spans_of_a_batch_equal_each_example_merged_alone():
    """All examples' target spans merged in one vectorised pass (unsorted, overlapping, touching and
    empty spans; spans at a text's very end, next to the next example's at its start) equal each
    example merged on its own and shifted to its place; a gap of 0 between examples (which would
    merge them) differs."""
    from dataprep.tasks.sft.loss_mask import _spans, _target_spans

    rng = np.random.default_rng(7)
    rendered = []
    for _ in range(300):
        length = int(rng.integers(0, 40))
        spans = []
        for _ in range(int(rng.integers(0, 5))):
            a = int(rng.integers(0, length + 1))
            spans.append((a, int(rng.integers(a, length + 1))))
        rendered.append(Rendered("x" * length, tuple(spans), 0))
    lens = np.array([len(r.text) for r in rendered], dtype=np.int64)
    for gap, same in ((2, True), (0, False)):
        base = np.concatenate(([0], np.cumsum(lens[:-1] + gap))).astype(np.int64)
        got = _target_spans(rendered, lens, base)
        alone = [_spans(r) for r in rendered]
        want = (np.concatenate([a + base[i] for i, (a, _) in enumerate(alone)]),
                np.concatenate([b + base[i] for i, (_, b) in enumerate(alone)]))
        assert (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])) == same
    with pytest.raises(ValueError, match=r"target span \(3, 9\) is outside the text \(length 5\)"):
        _target_spans([Rendered("abcde", ((0, 1), (3, 9)), 0)], np.array([5]), np.array([0]))
