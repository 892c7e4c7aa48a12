"""Tests of dataprep.tasks.sft.chat: the tokenizer's own chat template, and its assistant-turn targets.

Parity references, and why (shared/data/README.md, "Notes for parity tests"):
- **Text**: transformers (the installed 5.x) ``AutoTokenizer.from_pretrained(folder)
  .apply_chat_template(messages, tokenize=False)``, live, when transformers is importable.
- **Token ids**: transformers **4.57.6** ``apply_chat_template(messages, tokenize=True)``.
  transformers 5.x rebuilds Llama-style tokenizers from their config (Metaspace with
  ``prepend_scheme="first"``, no normalizer), so for Phi-3 the first word after a special
  token loses its ``▁`` and the ids change; 4.57 uses ``tokenizer.json`` as shipped, which is
  what dataprep loads. 4.57 cannot live in the project's venv (it needs tokenizers < 0.23), so
  its ids were produced once in a throwaway venv from the local package mirror
  (``pip install transformers==4.57.6`` into /tmp/tf457) and are pinned below as sha256
  digests of ``json.dumps(list_of_id_lists)`` over every conversation of a file, plus one
  conversation written out in full. The same ids come live from ``tokenizers``'
  ``Tokenizer.from_file(tokenizer.json).encode(text, add_special_tokens=False)``, checked too.
  ``test_transformers5_ids_differ_only_by_the_prefix_space`` pins down the 5.x difference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, pre_tokenizers

from dataprep.errors import RecordProblem, TemplateError, TemplateRaised
from dataprep.tasks.sft.chat import ChatTemplate
from dataprep.tasks.sft.loss_mask import encode_batch_with_mask, encode_with_mask
from dataprep.tasks.sft.templates import Rendered
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer
from tests.conftest import DATA, shared_tokenizer, transformers_tokenizer

PHI3 = DATA / "tokenizers/phi-3-mini"
CHAT = DATA / "pairs/chat"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}

# transformers 4.57.6 apply_chat_template over every conversation of the file:
# (conversations, total tokens, sha256 of json.dumps(texts), sha256 of json.dumps(id lists))
TF457 = {
    ("sharegpt", False): (500, 26515, "43210673e7728df69f9646e24af93f10d3ba6f4f528c698b2863dcbddbbf9fa0",
                          "36bd1580c6784e44b08499171a6f6f6778b9ed90c7f5070f047d36852dddb3f7"),
    ("sharegpt", True): (500, 26515, "04734c11b5290bab3184f010e2859d562daf17c6255b8acf41417f2f33b3bee2",
                         "7578685cecadb198d10af9df08bb38ef1dcb17095b2edfd97425237266b8292a"),
    ("kto", False): (300, 216767, "46cde26be16d7f0c48694116c3501f78945dfb78f099c8e0471b561078e01844",
                     "c1a821e8637d0981c541a3cb859c58ec13019aec4c8965608b06e9ee98c54fce"),
    ("kto", True): (300, 216767, "0ab00687755e3c8d239450272b9ffc0a305dda095832c5f215f31cf5cfc79b29",
                    "dfe55473a8e5ce80546528e47fe8f312842ba91c235b25b16e95bececdbbded1"),
}
# transformers 4.57.6 apply_chat_template(sharegpt conversation 0, tokenize=True)
SHAREGPT0_IDS = [
    32010, 11644, 526, 366, 29973, 32007,  # <|user|> ▁Who ▁are ▁you ? <|end|>
    32001, 306, 626, 13423, 4347, 29892, 263, 4086, 1904, 16370, 491, 5925, 414, 515, 8218, 479, 8125,
    23985, 9205, 2133, 313, 29931, 4345, 21554, 467, 32007,  # <|assistant|> ▁I ▁am ▁Vic una , ... ). <|end|>
    32010, 6975, 263, 7575, 2462, 29991, 32007,  # <|user|> ▁Have ▁a ▁nice ▁day ! <|end|>
    32001, 887, 2086, 29991, 32007,  # <|assistant|> ▁You ▁too ! <|end|>
    32000,  # <|endoftext|> (the template's eos after the last turn)
]


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode("utf-8")).hexdigest()


def _sharegpt() -> list[list[dict]]:
    records = json.loads((CHAT / "sharegpt_dummy_conversation.json").read_text(encoding="utf-8"))
    return [[{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]] for r in records]


def _kto() -> list[list[dict]]:
    return [r["messages"] for r in json.loads((CHAT / "kto_en_demo.json").read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def conversations() -> dict[str, list[list[dict]]]:
    return {"sharegpt": _sharegpt(), "kto": _kto()}


@pytest.fixture(scope="module")
def phi3() -> LoadedTokenizer:
    return shared_tokenizer("phi-3-mini")


@pytest.fixture(scope="module")
def chat(phi3) -> ChatTemplate:
    return ChatTemplate.from_tokenizer(phi3)


@pytest.fixture(scope="module")
def raw() -> Tokenizer:
    return Tokenizer.from_file(str(PHI3 / "tokenizer.json"))


@pytest.fixture(scope="module")
def hf5():
    pytest.importorskip("transformers")
    return transformers_tokenizer("phi-3-mini")  # AutoTokenizer.from_pretrained(PHI3)


def _hf_ids(out) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


# --- loading ----------------------------------------------------------------------------


def test_loading_paths_agree(phi3, chat):
    config = json.loads((PHI3 / "tokenizer_config.json").read_text(encoding="utf-8"))
    by_folder = ChatTemplate.from_tokenizer_folder(PHI3)
    by_config = ChatTemplate.from_tokenizer_config(config)
    for t in (by_folder, by_config):
        assert t.source == chat.source == config["chat_template"]
        assert (t.bos_token, t.eos_token) == ("<s>", "<|endoftext|>")
        assert {"<|end|>", "<|endoftext|>", "<|assistant|>", "</s>"} <= set(t.special_tokens)
    assert chat.roles == ("system", "user", "assistant")
    assert ChatTemplate.from_tokenizer_folder(PHI3 / "tokenizer.json").source == chat.source


def test_named_template_list_uses_default():
    config = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
    assert ChatTemplate.from_tokenizer_config(config).source == "D"
    with pytest.raises(TemplateError, match="none named 'default'"):
        ChatTemplate.from_tokenizer_config({"chat_template": [{"name": "rag", "template": "R"}]})
    with pytest.raises(TemplateError, match="no chat_template"):
        ChatTemplate.from_tokenizer_config({"eos_token": "</s>"})


def test_tokenizer_without_chat_template(tmp_path):
    gpt2 = load_tokenizer(TokenizerSpec(path=str(DATA / "tokenizers/gpt2")), base_dir=DATA)
    with pytest.raises(TemplateError, match="no tokenizer_config.json"):
        ChatTemplate.from_tokenizer(gpt2)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}', encoding="utf-8")
    with pytest.raises(TemplateError, match="tokenizer_config.json: the tokenizer has no chat_template"):
        ChatTemplate.from_tokenizer_folder(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}", encoding="utf-8")
    assert ChatTemplate.from_tokenizer_folder(tmp_path).render([{"role": "user", "content": "x"}]) == "x"


# --- parity -----------------------------------------------------------------------------


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_text_parity_with_transformers(hf5, chat, conversations, add_generation_prompt):
    for name, convs in conversations.items():
        for messages in convs:
            expected = hf5.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
            assert chat.render(messages, add_generation_prompt=add_generation_prompt) == expected, name


@pytest.mark.parametrize("name", ["sharegpt", "kto"])
def test_ids_parity_with_transformers_457(phi3, chat, raw, conversations, name):
    convs = conversations[name]
    n, tokens, text_sha, ids_sha = TF457[(name, False)]
    rendered = [chat.render_with_targets(m) for m in convs]
    encoded = encode_batch_with_mask(phi3, rendered)
    ids = [e.ids.tolist() for e in encoded]
    assert len(convs) == n and sum(map(len, ids)) == tokens
    assert _sha([r.text for r in rendered]) == text_sha
    assert _sha(ids) == ids_sha
    assert ids == [e.ids for e in raw.encode_batch([r.text for r in rendered], add_special_tokens=False)]
    # with the generation prompt (inference-time text): same references
    n, tokens, text_sha, ids_sha = TF457[(name, True)]
    texts = [chat.render(m, add_generation_prompt=True) for m in convs]
    gen = encode_batch_with_mask(phi3, [Rendered(text=t, targets=(), prompt_end=len(t)) for t in texts])
    assert _sha(texts) == text_sha and _sha([e.ids.tolist() for e in gen]) == ids_sha


def test_sharegpt0_written_out(phi3, chat, conversations):
    messages = conversations["sharegpt"][0]
    enc = encode_with_mask(phi3, chat.render_with_targets(messages, policy="all_assistant"))
    assert enc.ids.tolist() == SHAREGPT0_IDS
    #              <|user|> Who are you ? <|end|> <|assistant|> I am ... ). <|end|>, ... You too ! <|end|> <|endoftext|>
    # (the template's EOS after the final assistant turn is that turn's last target)
    assert enc.mask.tolist() == [0] * 6 + [0] + [1] * 25 + [0] * 7 + [0] + [1] * 4 + [1]
    last = encode_with_mask(phi3, chat.render_with_targets(messages, policy="last_assistant"))
    assert last.mask.tolist() == [0] * 40 + [1] * 4 + [1]
    everything = encode_with_mask(phi3, chat.render_with_targets(messages, policy="all"))
    assert everything.mask.tolist() == [1] * 45
    assert enc.straddles == last.straddles == everything.straddles == 0
    assert enc.prompt_tokens == last.prompt_tokens == everything.prompt_tokens == 40


def test_transformers5_ids_differ_only_by_the_prefix_space(hf5, raw, chat, conversations):
    """transformers 5.x == this tokenizer.json re-built with Metaspace(prepend_scheme="first")."""
    legacy_free = Tokenizer.from_str(raw.to_str())
    legacy_free.normalizer = None
    legacy_free.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    for messages in conversations["sharegpt"][:50] + conversations["kto"][:50]:
        text = chat.render(messages)
        theirs = _hf_ids(hf5.apply_chat_template(messages, tokenize=True))
        ours = raw.encode(text, add_special_tokens=False).ids
        assert theirs in (ours, legacy_free.encode(text, add_special_tokens=False).ids)
        specials = set(range(32000, 32011))
        assert [i for i in theirs if i in specials] == [i for i in ours if i in specials]


# --- masks under each policy ------------------------------------------------------------


def _turn_texts(phi3: LoadedTokenizer, enc) -> list[str]:
    """Decode each run of consecutive target tokens on its own."""
    runs, start = [], None
    for k, m in enumerate([*enc.mask.tolist(), 0]):
        if m and start is None:
            start = k
        elif not m and start is not None:
            runs.append(phi3.tokenizer.decode(enc.ids[start:k].tolist(), skip_special_tokens=False))
            start = None
    return runs


@pytest.mark.parametrize("source, index", [("kto", 7), ("kto", 267), ("sharegpt", 2), ("sharegpt", 5)])
def test_multi_turn_policies(phi3, chat, conversations, source, index):
    messages = conversations[source][index]
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(replies) >= 2
    # every assistant turn, each closed by its <|end|>; the last also by the template's final <|endoftext|>
    enc = encode_with_mask(phi3, chat.render_with_targets(messages, policy="all_assistant"))
    assert _turn_texts(phi3, enc) == [r + "<|end|>" for r in replies[:-1]] + [replies[-1] + "<|end|><|endoftext|>"]
    assert enc.straddles == 0 and enc.ids[-1] == phi3.eos_id and enc.mask[-1] == 1
    ends = np.flatnonzero(np.diff(np.r_[enc.mask, 0].astype(int)) == -1)  # last token of each run
    assert enc.ids[ends].tolist() == [32007] * (len(replies) - 1) + [phi3.eos_id]
    # only the last
    for policy in ("last_assistant", "completion"):
        last = encode_with_mask(phi3, chat.render_with_targets(messages, policy=policy))
        assert _turn_texts(phi3, last) == [replies[-1] + "<|end|><|endoftext|>"]
        assert last.prompt_tokens == int(np.argmax(last.mask))
    # everything, the template's own tokens too
    everything = encode_with_mask(phi3, chat.render_with_targets(messages, policy="all"))
    assert everything.mask.all() and np.array_equal(everything.ids, enc.ids)


def test_system_message_and_trailing_user_turn(phi3, chat):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Thanks"},
    ]
    rendered = chat.render_with_targets(messages, policy="all_assistant")
    assert rendered.text == (
        "<|system|>\nYou are terse.<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n4<|end|>\n"
        "<|user|>\nThanks<|end|>\n<|endoftext|>"
    )
    assert rendered.target_text() == "4<|end|>"
    assert rendered.prompt_end == rendered.text.index("4<|end|>")
    enc = encode_with_mask(phi3, rendered)
    assert _turn_texts(phi3, enc) == ["4<|end|>"]


def test_policy_all_without_assistant(chat):
    rendered = chat.render_with_targets([{"role": "user", "content": "hi"}], policy="all")
    assert rendered.targets == ((0, len(rendered.text)),) and rendered.prompt_end == 0


# --- other templates --------------------------------------------------------------------

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
USER_ASSISTANT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
USER = {"role": "user", "content": "q"}
TOOL = {"role": "tool", "content": "42"}
ASSISTANT = {"role": "assistant", "content": "a"}


def _template(source: str, **kw) -> ChatTemplate:
    options = {"bos_token": "<s>", "eos_token": "</s>", "special_tokens": ["<|im_start|>", "<|im_end|>", "</s>", "<s>"]}
    return ChatTemplate(source, **{**options, **kw})


def test_chatml_end_of_turn():
    t = _template(CHATML)
    messages = [*USER_ASSISTANT, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye."}]
    rendered = t.render_with_targets(messages, policy="all_assistant")
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["Hello!<|im_end|>", "Bye.<|im_end|>"]


def test_eos_closes_the_turn_when_no_special_token_does():
    source = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    t = _template(source, special_tokens=[])
    rendered = t.render_with_targets(USER_ASSISTANT)
    assert rendered.text == "user: Hi\nassistant: Hello!</s>\n"
    assert rendered.target_text() == "Hello!</s>"


def test_no_end_of_turn_token_is_an_error():
    source = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(RecordProblem, match=r"no end-of-turn token follows message 1 \(assistant\)") as info:
        _template(source).render_with_targets(USER_ASSISTANT)
    assert info.value.reason == "no_end_of_turn"


def test_next_turns_token_is_not_taken_as_end_of_turn():
    # no <|im_end|> after the assistant: the next turn's <|im_start|> must not close it
    source = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    messages = [*USER_ASSISTANT, {"role": "user", "content": "More"}]
    with pytest.raises(RecordProblem, match="no end-of-turn token") as info:
        _template(source).render_with_targets(messages, policy="all_assistant")
    assert info.value.reason == "no_end_of_turn"


def test_template_that_trims_content():
    source = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    messages = [USER_ASSISTANT[0], {"role": "assistant", "content": "  Hello!\n"}]
    rendered = _template(source).render_with_targets(messages)
    assert rendered.target_text() == "Hello!<|im_end|>"


def test_template_that_rewrites_content():
    # the target is the content as the template rendered it, wherever and however it put it
    source = (
        "{% for m in messages %}<|im_start|>{{ m['content'] | upper }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>{% endif %}"
    )
    rendered = _template(source).render_with_targets(USER_ASSISTANT)
    assert rendered.text == "<|im_start|>HI<|im_end|><|im_start|>HELLO!<|im_end|>"
    assert rendered.target_text() == "HELLO!<|im_end|>"


def test_template_that_drops_content_is_a_bad_record():
    source = "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_end|>{% endfor %}"
    with pytest.raises(RecordProblem, match="does not render this message's content") as info:
        _template(source).render_with_targets(USER_ASSISTANT)
    assert info.value.reason == "target_not_found"


def test_last_turn_rendered_differently():
    # marks the last message, so a prefix of the conversation renders differently from the whole:
    # targets come from the one rendering of the whole conversation
    source = "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m['content'] }}</s>{% endfor %}"
    messages = [*USER_ASSISTANT, {"role": "user", "content": "More"}, {"role": "assistant", "content": "Sure."}]
    rendered = _template(source).render_with_targets(messages)
    assert rendered.text == "Hi</s>Hello!</s>More</s>[last]Sure.</s>"
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["Hello!</s>", "Sure.</s>"]


def test_raise_exception_from_the_template():
    source = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + CHATML
    )
    t = _template(source)
    with pytest.raises(TemplateRaised, match="the chat template raised an error: System role not supported") as info:
        t.render_with_targets([{"role": "system", "content": "s"}, *USER_ASSISTANT])
    assert isinstance(info.value, TemplateError)
    assert t.render_with_targets(USER_ASSISTANT).target_text() == "Hello!<|im_end|>"


def test_environment_matches_transformers():
    t = _template(
        "{{ messages | tojson }}|{{ strftime_now('%Y') | length }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m['role'] }}{% endfor %}|"
        "{{ bos_token }}|{{ pad_token is defined }}\n  {% if true %}\n  x\n  {% endif %}\n"
    )
    # tojson keeps <>&' unescaped and non-ASCII as is; loopcontrols; trim_blocks + lstrip_blocks
    out = t.render([{"role": "user", "content": "<a & 'é'>"}, {"role": "assistant", "content": "y"}])
    as_json = '[{"role": "user", "content": "<a & \'é\'>"}, {"role": "assistant", "content": "y"}]'
    assert out == as_json + "|4|user|<s>|False\n  x\n"
    # None special tokens are left undefined (transformers omits them), never rendered "None"
    assert _template("[{{ bos_token }}]", bos_token=None).render([]) == "[]"
    assert _template("{{ x }}").render([], x=3) == "3"


def test_sandbox_and_syntax_errors():
    with pytest.raises(TemplateError, match="does not compile"):
        _template("{% for m in messages %}")
    with pytest.raises(TemplateError, match="failed to render"):
        _template("{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}").render([])
    with pytest.raises(TemplateError, match="failed to render"):
        _template("{% set _ = messages.append(1) %}").render([])  # immutable sandbox


def test_tool_role_only_where_the_template_mentions_it():
    with_tool = (
        "{% for m in messages %}{% if m['role'] == 'tool' %}<tool>{{ m['content'] }}</tool>"
        "{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
    )
    assert _template(with_tool).roles == ("system", "user", "assistant", "tool")
    msgs = [USER, TOOL, {"role": "assistant", "content": "a"}]
    assert _template(with_tool).render_with_targets(msgs).target_text() == "a</s>"


# --- record problems --------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages, reason, match",
    [
        ([{"role": "human", "content": "hi"}, ASSISTANT], "unknown_role", "role 'human'.*human: user"),
        ([USER, TOOL, ASSISTANT], "unknown_role", "role 'tool'"),
        ([USER, {"role": "assistant", "content": " \n"}], "empty_field", "message 1 .assistant. has empty content"),
        ([{"role": "user"}, ASSISTANT], "missing_field", "message 0 has no 'content'"),
        ([{"content": "x"}], "missing_field", "message 0 has no 'role'"),
        ([{"role": "user", "content": ["x"]}], "bad_type", "must be a string"),
        (["hello"], "bad_type", "must be a mapping"),
        ([], "missing_field", "non-empty list"),
        ([USER], "no_target", "no assistant turn"),
    ],
)
def test_record_problems(chat, messages, reason, match):
    with pytest.raises(RecordProblem, match=match) as info:
        chat.render_with_targets(messages, policy="all_assistant")
    assert info.value.reason == reason


def test_unknown_policy(chat):
    with pytest.raises(TemplateError, match="did you mean 'last_assistant'"):
        chat.render_with_targets(USER_ASSISTANT, policy="last_asistant")


# --- reasoning, train flags, generation blocks, template arguments (issue 13) ------------------

GPT_OSS = DATA / "tokenizers/gpt-oss"
LLAMA3 = DATA / "tokenizers/llama-3"


@pytest.fixture(scope="module")
def gpt_oss():
    tokenizer = shared_tokenizer("gpt-oss")
    return tokenizer, ChatTemplate.from_tokenizer(tokenizer)


THINKING = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4.", "reasoning_content": "Two plus two is four."},
]


def test_reasoning_reaches_the_template_under_its_own_key_and_is_a_target(gpt_oss):
    _, chat = gpt_oss
    given, _ = chat.prepare(THINKING)
    assert given[1] == {"role": "assistant", "content": "4.", "thinking": "Two plus two is four."}
    rendered = chat.render_with_targets(THINKING)
    assert rendered.target_text() == (
        "<|channel|>analysis<|message|>Two plus two is four.<|end|><|start|>assistant<|channel|>final<|message|>4.<|return|>"
    )
    # reasoning: false trains the answer only, from where its generation prompt (the second <|start|>assistant)
    # ends: the model writes the channel header; the reasoning stays in the text as context
    only = chat.render_with_targets(THINKING, reasoning=False)
    assert only.text == rendered.text and only.target_text() == "<|channel|>final<|message|>4.<|return|>"


def test_reasoning_the_template_drops_in_earlier_turns_is_no_target(gpt_oss):
    _, chat = gpt_oss
    messages = [*THINKING, {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6.", "thinking": "Six."}]
    rendered = chat.render_with_targets(messages)
    assert "Two plus two" not in rendered.text  # gpt-oss renders reasoning on the final turn only
    assert [rendered.text[a:b] for a, b in rendered.targets] == [
        "<|channel|>final<|message|>4.<|end|>",  # a plain content turn: from where the generation prompt ends
        "<|channel|>analysis<|message|>Six.<|end|><|start|>assistant<|channel|>final<|message|>6.<|return|>",
    ]


def test_a_plain_turn_is_a_target_from_where_the_generation_prompt_ends():
    # what the template prints between the generation prompt and the content is the model's to write (gpt-oss's
    # <|channel|>final<|message|>); with no generation prompt, the target starts at the content
    channel = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}{% if m['role'] == 'assistant' %}<|im_sep|>final<|im_sep|>{% endif %}"
        "{{ m['content'] }}<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
    )
    t = _template(channel, special_tokens=["<|im_start|>", "<|im_end|>", "<|im_sep|>"])
    assert t.render_with_targets(USER_ASSISTANT).target_text() == "<|im_sep|>final<|im_sep|>Hello!<|im_end|>"
    bare = "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %} {{ m['content'] }}</s>{% endif %}{% endfor %}"
    assert _template(bare).render_with_targets(USER_ASSISTANT).target_text() == "Hello!</s>"


def test_an_empty_think_block_after_the_generation_prompt_is_no_target():
    # a Qwen3-like template (tests/assets) prints <think>\n\n</think>\n\n in a last turn without reasoning: that is
    # where it prints the turn's reasoning, so it is context (reasoning is a target only where the record has it)
    source = (Path(__file__).parent / "assets" / "qwen3_like.jinja").read_text()
    t = ChatTemplate(source, bos_token=None, eos_token="<|im_end|>", special_tokens=["<|im_start|>", "<|im_end|>"])
    rendered = t.render_with_targets(USER_ASSISTANT)
    assert rendered.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n")
    assert rendered.target_text() == "Hello!<|im_end|>"
    thinking = [USER_ASSISTANT[0], {**USER_ASSISTANT[1], "reasoning_content": "Greet back."}]
    assert t.render_with_targets(thinking).target_text() == "<think>\nGreet back.\n</think>\n\nHello!<|im_end|>"
    assert t.render_with_targets(thinking, reasoning=False).target_text() == "Hello!<|im_end|>"


def test_reasoning_a_template_cannot_render_is_a_bad_record(chat):
    with pytest.raises(RecordProblem, match="renders no reasoning") as info:
        chat.render_with_targets(THINKING)
    assert info.value.reason == "unsupported_by_template"


def test_tools_or_tool_calls_a_template_cannot_render_are_bad_records(chat):
    tools = [{"name": "f", "parameters": {}}]
    with pytest.raises(RecordProblem, match="never renders `tools`") as info:
        chat.render_with_targets(USER_ASSISTANT, tools=tools)
    assert info.value.reason == "unsupported_by_template"
    call = {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    with pytest.raises(RecordProblem, match="never renders `tool_calls`"):
        chat.render_with_targets([USER_ASSISTANT[0], call, *USER_ASSISTANT[1:]])


def test_per_message_train_flags_override_the_policy(chat):
    messages = [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "train": True},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d", "train": False},
        {"role": "user", "content": "e"}, {"role": "assistant", "content": "f"},
    ]
    # the final turn also trains the <|endoftext|> the template appends after it
    rendered = chat.render_with_targets(messages, policy="all_assistant")
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["b<|end|>", "f<|end|>\n<|endoftext|>"]
    rendered = chat.render_with_targets(messages, policy="last_assistant")
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["b<|end|>", "f<|end|>\n<|endoftext|>"]
    assert "train" not in json.dumps(chat.prepare(messages)[0])  # the template never sees the flag
    with pytest.raises(RecordProblem, match="train: false") as info:
        chat.render_with_targets([messages[0], {"role": "assistant", "content": "b", "train": False}])
    assert info.value.reason == "no_target"


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def test_generation_masking_equals_transformers_assistant_masks(transformers):
    tokenizer = shared_tokenizer("llama-3")
    source = (DATA / "chat_templates/llama3_training.jinja").read_text()
    chat = ChatTemplate.from_tokenizer(tokenizer, source=source)
    messages = [{"role": "system", "content": "Be brief."}, *USER_ASSISTANT, {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": " Bye! "}]
    rendered = chat.render_with_targets(messages, policy="generation")
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["Hello!<|eot_id|>", "Bye!<|eot_id|>"]
    hf = transformers_tokenizer("llama-3")  # AutoTokenizer.from_pretrained(LLAMA3)
    out = hf.apply_chat_template(messages, chat_template=source, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    encoded = encode_with_mask(tokenizer, rendered)
    assert encoded.ids.tolist() == out["input_ids"]
    assert encoded.mask.tolist() == out["assistant_masks"]
    # a template without generation blocks cannot give such masks
    with pytest.raises(TemplateError, match="generation"):
        ChatTemplate.from_tokenizer(tokenizer).render_with_targets(messages, policy="generation")


def test_template_arguments_and_a_fixed_date(gpt_oss, transformers):
    tokenizer, _ = gpt_oss
    low = ChatTemplate.from_tokenizer(tokenizer, variables={"reasoning_effort": "low"}, date="2025-03-04")
    text = low.render(USER_ASSISTANT)
    assert "Reasoning: low" in text and "Current date: 2025-03-04" in text
    assert "Reasoning: medium" in ChatTemplate.from_tokenizer(tokenizer).render(USER_ASSISTANT)
    assert "Current date: 2026-01-01" in ChatTemplate.from_tokenizer(tokenizer).render(USER_ASSISTANT)
    hf = transformers_tokenizer("gpt-oss")  # AutoTokenizer.from_pretrained(GPT_OSS)
    today = __import__("datetime").date.today().isoformat()
    same_day = ChatTemplate.from_tokenizer(tokenizer, variables={"reasoning_effort": "low"}, date=today)
    assert same_day.render(USER_ASSISTANT) == hf.apply_chat_template(USER_ASSISTANT, tokenize=False, reasoning_effort="low")
    with pytest.raises(TemplateError, match="YYYY-MM-DD"):
        ChatTemplate.from_tokenizer(tokenizer, date="03/04/2025")
