"""Parity of chat rendering and loss masks with independent references, on every chat family
in ``../shared/data/tokenizers`` and real conversations from ``../shared/data/pairs/chat``.

References (transformers **5.25.0**, pinned by :data:`TRANSFORMERS`):
- **Text and ids**: ``AutoTokenizer.from_pretrained(folder).apply_chat_template(messages, tools=...,
  tokenize=True)`` with the same messages, tools and template. Phi-3 is the one family whose ids
  differ under transformers 5 (it rebuilds Llama-style SentencePiece tokenizers; see
  ``tests/test_chat.py``), so its ids are checked against ``tokenizer.json`` as the
  ``tokenizers`` library encodes it, and its text against transformers.
- **Masks**: TRL's generation-tagged training templates in ``../shared/data/chat_templates/``
  through ``apply_chat_template(..., return_assistant_tokens_mask=True)``. Their conventions
  differ from dataprep's at documented edges only (:data:`EDGES`): the role header some of them
  mark (DeepSeek ``<｜Assistant｜>``, gpt-oss ``<|start|>assistant``: the generation prompt),
  and the newline after Gemma's ``<end_of_turn>`` (Phi-3's final EOS is a target in both). Inside each assistant run
  the tokens must agree exactly; :func:`oracle_problems` is shown to fail on wrong masks.

The conversations: ShareGPT (multi-turn), KTO messages (multi-turn, long), the same with a
system prompt, and Glaive tool calls with their tools (for templates that render tools) or
without them (DeepSeek-V3, whose template renders tool calls but no tool list).
"""

from __future__ import annotations

import datetime
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from dataprep.errors import RecordProblem
from dataprep.tasks.sft.chat import ChatTemplate
from dataprep.tasks.sft.loss_mask import encode_batch_flat
from tests.conftest import DATA, shared_tokenizer, tokenizer_json, transformers_tokenizer

transformers = pytest.importorskip("transformers")
TRANSFORMERS = "5.25.0"
TEMPLATES = DATA / "chat_templates"
POLICIES = ("all_assistant", "last_assistant")

# id -> (tokenizer folder, chat template file or None for the tokenizer's own, oracle template or None,
#        renders tools, ids equal transformers 5)
FAMILIES = {
    "phi3": ("phi-3-mini", None, "phi3_training.jinja", False, False),
    "llama3": ("llama-3", None, "llama3_training.jinja", False, True),
    "llama3_1-tools": ("llama-3", "llama3_1.jinja", None, True, True),
    "gemma3": ("gemma-3", None, "gemma3_training.jinja", False, True),
    "deepseek-v3": ("deepseek-v3", "deepseekv3.jinja", "deepseekv3_training.jinja", False, True),
    # the older template in the config renders a call only when content is null, a key transformers 5 drops
    "deepseek-v3-config": ("deepseek-v3", None, None, False, True),
    "gpt-oss": ("gpt-oss", None, "gptoss_training.jinja", True, True),
}
CALLS_LOST = {"deepseek-v3-config"}  # conversations with tool calls are bad records
# Token texts an oracle run may have before dataprep's target starts (head) or after it ends (tail).
EDGES = {
    "phi3": ((), ()),
    "llama3": ((), ()),
    "gemma3": ((), ("\n",)),
    "deepseek-v3": (("<｜Assistant｜>", "<｜tool▁outputs▁end｜>"), ()),
    "gpt-oss": (("<|start|>", "assistant"), ()),
}
# What a plain content turn's target holds before its content: what the template prints between the
# generation prompt and the content, which the model writes (chat_spans); none for the other families.
CONTENT_HEAD = {"gpt-oss": "<|channel|>final<|message|>"}
ROLES = {"human": "user", "gpt": "assistant", "observation": "tool", "system": "system"}


def _sharegpt(turns: list[dict]) -> list[dict]:
    """ShareGPT turns as messages, written out here independently of dataprep's reader."""
    out = []
    for turn in turns:
        if turn["from"] == "function_call":
            call = json.loads(turn["value"])
            function = {"name": call["name"], "arguments": call["arguments"]}
            out.append({"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": function}]})
        else:
            out.append({"role": ROLES[turn["from"]], "content": turn["value"]})
    return out


@lru_cache(maxsize=None)
def conversations(with_tools: bool) -> tuple[tuple[str, list[dict], list | None], ...]:
    chat = DATA / "pairs/chat"
    sharegpt = json.loads((chat / "sharegpt_dummy_conversation.json").read_text())
    kto = json.loads((chat / "kto_en_demo.json").read_text())
    glaive = json.loads((chat / "glaive_toolcall_en_demo.json").read_text())
    system = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
    out = [("sharegpt", _sharegpt(r["conversations"]), None) for r in sharegpt[:12]]
    out += [("kto", r["messages"], None) for r in kto if len(r["messages"]) > 2][:12]
    out += [("system", [system, *_sharegpt(r["conversations"])], None) for r in sharegpt[12:18]]
    calls = [r for r in glaive if any(t["from"] == "function_call" for t in r["conversations"])][:16]
    for r in calls:
        tools = [{"type": "function", "function": t} for t in json.loads(r["tools"])] if with_tools else None
        out.append(("tool_calls", _sharegpt(r["conversations"]), tools))
    return tuple(out)


@lru_cache(maxsize=None)
def family(name: str):
    folder, template, oracle, _, _ = FAMILIES[name]
    tokenizer = shared_tokenizer(folder)
    hf = transformers_tokenizer(folder)  # AutoTokenizer.from_pretrained(folder)
    source = (TEMPLATES / template).read_text(encoding="utf-8") if template else None
    # transformers prints today's date where a template calls strftime_now (gpt-oss); so does this one
    chat = ChatTemplate.from_tokenizer(tokenizer, source=source, date=datetime.date.today().isoformat())
    oracle_source = (TEMPLATES / oracle).read_text(encoding="utf-8") if oracle else None
    return tokenizer, hf, chat, source, oracle_source


def oracle_problems(ours: np.ndarray, oracle: np.ndarray, pieces: list[str], head: tuple, tail: tuple) -> list[str]:
    """How dataprep's mask differs from the oracle's beyond the documented edges (empty: agree).

    Every oracle run must hold exactly one run of ours, the oracle-only tokens before it must be
    ``head`` edge tokens and those after it ``tail`` edge tokens; ours may have nothing outside."""
    ours, oracle = np.asarray(ours, bool), np.asarray(oracle, bool)
    if len(ours) != len(oracle):
        return [f"lengths differ: {len(ours)} vs {len(oracle)}"]
    problems = [f"target outside the oracle's runs at token {i} {pieces[i]!r}" for i in np.flatnonzero(ours & ~oracle)]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], oracle.astype(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2]):
        inside = np.flatnonzero(ours[a:b]) + a
        if len(inside) == 0:
            problems.append(f"oracle run {a}:{b} {''.join(pieces[a:b])[:60]!r} has no target of ours")
            continue
        c, d = int(inside[0]), int(inside[-1]) + 1
        if not ours[c:d].all():
            problems.append(f"our targets in oracle run {a}:{b} are not contiguous")
        problems += [f"oracle-only token {i} {pieces[i]!r} before the target is not a head edge" for i in range(a, c) if pieces[i] not in head]
        problems += [f"oracle-only token {i} {pieces[i]!r} after the target is not a tail edge" for i in range(d, b) if pieces[i] not in tail]
    return problems


def test_transformers_version_is_the_pinned_reference():
    assert transformers.__version__ == TRANSFORMERS


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_ids_text_and_targets_match_transformers(name, policy):
    tokenizer, hf, chat, source, _ = family(name)
    _, _, _, renders_tools, same_ids = FAMILIES[name]
    stops = chat.stop_tokens()
    checked = 0
    for kind, messages, tools in conversations(renders_tools):
        if kind == "tool_calls" and not chat.reads_tool_calls:
            with pytest.raises(RecordProblem) as info:
                chat.render_with_targets(messages, tools=tools, policy=policy)
            assert info.value.reason in ("unknown_role", "unsupported_by_template")  # never silently dropped
            continue
        if kind == "tool_calls" and name in CALLS_LOST:
            given, _ = chat.prepare(messages, tools)
            try:  # transformers fails on the call, or renders the turn without it...
                assert "<｜tool▁call▁begin｜>" not in hf.apply_chat_template(given, tokenize=False)
            except transformers.utils.chat_template_utils.jinja2.TemplateError:
                pass
            with pytest.raises(RecordProblem) as info:  # ...which dataprep reports as a bad record
                chat.render_with_targets(messages, tools=tools, policy=policy)
            assert info.value.reason in ("template_failed", "target_not_found")
            continue
        rendered = chat.render_with_targets(messages, tools=tools, policy=policy)
        given, given_tools = chat.prepare(messages, tools)
        options = {"chat_template": source} if source else {}
        assert rendered.text == hf.apply_chat_template(given, tools=given_tools, tokenize=False, **options), (name, kind)
        encoded = encode_batch_flat(tokenizer, [rendered])
        ids = encoded.ids.tolist()
        if same_ids:
            reference = hf.apply_chat_template(given, tools=given_tools, tokenize=True, **options)["input_ids"]
        else:  # tokenizer.json as shipped (transformers 4.x); transformers 5 differs for this family
            reference = tokenizer_json(FAMILIES[name][0])  # Tokenizer.from_file(tokenizer.json)
            reference = reference.encode(rendered.text, add_special_tokens=False).ids
        assert ids == reference, (name, kind)
        # Each target span is one chosen turn as rendered: it ends with an end-of-turn token, and its
        # tokens decode to exactly that text.
        chosen = [m for m in given if m["role"] == "assistant"]
        chosen = chosen if policy == "all_assistant" else chosen[-1:]
        assert len(rendered.targets) == len(chosen), (name, kind)
        mask = encoded.mask.astype(bool)
        runs = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
        assert len(runs) == 2 * len(chosen)
        for (a, b), (s, e), message in zip(rendered.targets, zip(runs[::2], runs[1::2]), chosen):
            target = rendered.text[a:b]
            assert target.endswith(stops), (name, kind, target[-40:])
            if message.get("content") and not message.get("tool_calls"):
                head = CONTENT_HEAD.get(name, "")
                assert target.startswith(head + message["content"].strip()[:20]), (name, kind, target[:40])
            decoded = hf.decode(ids[s:e])
            eos = tokenizer.tokens.get("eos")
            if eos and target.endswith(eos):  # a final turn through the template's EOS: the whitespace before
                target = target[: -len(eos)].rstrip() + eos  # it is inside a stripping end-of-turn token (Phi-3 <|end|>)
            # equal, or a first token holding the previous message's last character too (a counted straddle)
            assert decoded == target or (decoded.endswith(target) and encoded.straddles[0] > 0), (name, kind)
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if f[2]])
def test_all_assistant_masks_match_the_generation_tag_oracle(name):
    tokenizer, hf, chat, source, oracle = family(name)
    head, tail = EDGES[name]
    if not FAMILIES[name][4]:  # transformers 5 rebuilds this tokenizer: the oracle runs on tokenizer.json as shipped
        hf = transformers.PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_file(str(DATA / "tokenizers" / FAMILIES[name][0] / "tokenizer.json")),
            bos_token=tokenizer.tokens.get("bos"), eos_token=tokenizer.tokens.get("eos"),
        )
    checked = 0
    for kind, messages, tools in conversations(FAMILIES[name][3]):
        if kind == "tool_calls" and not chat.reads_tool_calls:
            continue
        rendered = chat.render_with_targets(messages, tools=tools, policy="all_assistant")
        given, given_tools = chat.prepare(messages, tools)
        if name == "deepseek-v3":  # TRL's copy applies | tojson to arguments: it takes them as objects
            given = [_arguments_as_objects(m) for m in given]
        out = hf.apply_chat_template(
            given, tools=given_tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=oracle
        )
        ours = encode_batch_flat(tokenizer, [rendered])
        assert out["input_ids"] == ours.ids.tolist(), (name, kind)  # same text, same ids
        pieces = [hf.decode([i]) for i in out["input_ids"]]
        assert oracle_problems(ours.mask, out["assistant_masks"], pieces, head, tail) == [], (name, kind)
        checked += 1
    assert checked >= 30


def _arguments_as_objects(message: dict) -> dict:
    if "tool_calls" not in message:
        return message
    calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}} for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def test_oracle_comparison_fails_on_wrong_masks():
    # llama3: a right mask agrees; a mask that also marks the header, drops the end-of-turn token or
    # misses a turn is caught.
    tokenizer, hf, chat, _, oracle = family("llama3")
    _, messages, _ = conversations(False)[0]
    rendered = chat.render_with_targets(messages, policy="all_assistant")
    out = hf.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=oracle)
    good = encode_batch_flat(tokenizer, [rendered]).mask.astype(bool)
    pieces = [hf.decode([i]) for i in out["input_ids"]]
    assert oracle_problems(good, out["assistant_masks"], pieces, (), ()) == []
    first = int(np.flatnonzero(good)[0])
    header = good.copy()
    header[first - 1] = True  # the "\n\n" of the assistant header
    assert any("outside the oracle" in p for p in oracle_problems(header, out["assistant_masks"], pieces, (), ()))
    no_stop = good.copy()
    no_stop[int(np.flatnonzero(good)[-1])] = False  # the last <|eot_id|>
    assert any("not a tail edge" in p for p in oracle_problems(no_stop, out["assistant_masks"], pieces, (), ()))
    lost = good.copy()
    runs = np.flatnonzero(np.diff(np.concatenate(([0], good.astype(np.int8), [0]))))
    lost[runs[0] : runs[1]] = False
    assert any("has no target" in p for p in oracle_problems(lost, out["assistant_masks"], pieces, (), ()))


def test_gpt_oss_last_turn_return_earlier_end_and_tool_calls():
    tokenizer, hf, chat, _, _ = family("gpt-oss")
    kind, messages, tools = next(c for c in conversations(True) if c[0] == "tool_calls" and c[1][-1]["role"] == "assistant")
    rendered = chat.render_with_targets(messages, tools=tools, policy="all_assistant")
    targets = [rendered.text[a:b] for a, b in rendered.targets]
    assert targets[-1].endswith("<|return|>") and all(t.endswith(("<|end|>", "<|call|>")) for t in targets[:-1])
    call = next(t for t in targets if t.endswith("<|call|>"))
    assert call.startswith(" to=functions.") and "<|channel|>commentary json<|message|>" in call
    assert not any("<|start|>assistant" == t[:18] for t in targets)  # the header is never a target


GPT_OSS_TOOL = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
GPT_OSS_TURNS = {  # gpt-oss turns with reasoning and calls, as the glaive/sharegpt conversations have none
    "final turn with reasoning": [{"role": "assistant", "content": "Sunny.", "reasoning_content": "Look it up."}],
    "earlier turn's reasoning dropped": [{"role": "assistant", "content": "A", "reasoning_content": "x"},
                                         {"role": "user", "content": "And Rome?"},
                                         {"role": "assistant", "content": "B", "reasoning_content": "y"}],
    "call with reasoning, no final after": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}], "reasoning_content": "Need the weather."},
        {"role": "tool", "content": "sunny"}],
    "call with content, no final after": [{"role": "assistant", "content": "Checking.", "tool_calls": [{"type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "sunny"}],
    "call with content, final after": [{"role": "assistant", "content": "Checking.", "tool_calls": [{"type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."}],
}


@pytest.mark.parametrize("kind", list(GPT_OSS_TURNS))
def test_gpt_oss_reasoning_and_call_turns_follow_the_training_template(kind):
    # TRL's gpt-oss training template marks each assistant turn from <|start|>assistant (the generation prompt,
    # never a target: inference prints it) through <|return|>/<|end|>/<|call|>: with reasoning on, dataprep's
    # targets are exactly the rest; with reasoning off, a turn with reasoning starts at its last <|start|>assistant
    # (content beside a call, which gpt-oss prints as analysis, is content: a target either way)
    from transformers.utils.chat_template_utils import render_jinja_template

    _, _, chat, _, oracle = family("gpt-oss")
    messages = [{"role": "user", "content": "Weather in Paris?"}, *GPT_OSS_TURNS[kind]]
    given, tools = chat.prepare(messages, GPT_OSS_TOOL)
    texts, spans = render_jinja_template([given], tools=tools, chat_template=oracle, return_assistant_tokens_mask=True)
    reference = [texts[0][a:b] for a, b in spans[0]]
    assert all(r.startswith("<|start|>assistant") for r in reference)
    on = chat.render_with_targets(messages, tools=GPT_OSS_TOOL)
    assert on.text == texts[0]
    assert [on.text[a:b] for a, b in on.targets] == [r.removeprefix("<|start|>assistant") for r in reference]
    off = chat.render_with_targets(messages, tools=GPT_OSS_TOOL, reasoning=False)
    thought = [bool(m.get("reasoning_content")) for m in messages if m["role"] == "assistant"]
    assert [off.text[a:b] for a, b in off.targets] == [
        r.rsplit("<|start|>assistant", 1)[1] if t else r.removeprefix("<|start|>assistant") for r, t in zip(reference, thought)]


def test_oracle_comparison_fails_on_gpt_oss_data_without_the_channel_header():
    # dataprep before issue #17 started a gpt-oss content turn's target at its content: the oracle catches it
    tokenizer, hf, chat, _, oracle = family("gpt-oss")
    _, messages, _ = conversations(False)[0]
    rendered = chat.render_with_targets(messages, policy="all_assistant")
    out = hf.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=oracle)
    ours = encode_batch_flat(tokenizer, [rendered]).mask.astype(bool)
    pieces = [hf.decode([i]) for i in out["input_ids"]]
    assert oracle_problems(ours, out["assistant_masks"], pieces, *EDGES["gpt-oss"]) == []
    headless = ours.copy()
    runs = np.flatnonzero(np.diff(np.concatenate(([0], ours.astype(np.int8), [0]))))
    for a in runs[::2]:
        assert "".join(pieces[a : a + 3]) == "<|channel|>final<|message|>"
        headless[a : a + 3] = False
    problems = oracle_problems(headless, out["assistant_masks"], pieces, *EDGES["gpt-oss"])
    assert problems and all("before the target is not a head edge" in p for p in problems)
    assert {p.split("'")[1] for p in problems} == {"<|channel|>", "final", "<|message|>"}


# --- edges found in review: headers, reasoning off, consecutive calls, hoisted system prompts -------

WEATHER = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
CALL = {"role": "assistant", "content": None, "tool_calls": [WEATHER]}


def test_a_longer_generation_prompt_never_cuts_the_role_name():
    # a Qwen3-like ChatML template (tests/assets) with enable_thinking: false puts an empty think block
    # in the generation prompt; a tool-call turn has none, so the header is its role line alone
    source = (Path(__file__).parent / "assets" / "qwen3_like.jinja").read_text()
    chat = ChatTemplate(source, bos_token=None, eos_token="<|im_end|>", special_tokens=["<|im_start|>", "<|im_end|>"],
                        variables={"enable_thinking": False})
    messages = [{"role": "user", "content": "Weather in Paris?"}, CALL]
    rendered = chat.render_with_targets(messages)
    assert rendered.target_text().startswith("<tool_call>\n{")
    assert rendered.target_text().endswith("</tool_call><|im_end|>")


def test_reasoning_off_keeps_the_call_syntax_as_a_target():
    _, _, chat, _, _ = family("gpt-oss")
    messages = [{"role": "user", "content": "Weather in Paris?"}, {**CALL, "reasoning_content": "I need the weather."}]
    rendered = chat.render_with_targets(messages, reasoning=False)
    assert rendered.target_text() == ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
    assert "I need the weather." in rendered.text  # context, not a target


def test_consecutive_tool_calls_train_no_tool_output_token():
    tokenizer, hf, chat, _, oracle = family("deepseek-v3")
    rome = {"role": "assistant", "content": None, "tool_calls": [{**WEATHER, "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]}
    messages = [{"role": "user", "content": "Paris and Rome?"}, CALL, {"role": "tool", "content": "sunny"}, rome,
                {"role": "tool", "content": "rain"}, {"role": "assistant", "content": "Sunny, then rain."}]
    rendered = chat.render_with_targets(messages)
    assert [rendered.text[a:b] for a, b in rendered.targets][1].startswith("\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather")
    given = [_arguments_as_objects(m) for m in chat.prepare(messages)[0]]
    out = hf.apply_chat_template(given, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=oracle)
    ours = encode_batch_flat(tokenizer, [rendered])
    pieces = [hf.decode([i]) for i in out["input_ids"]]
    assert oracle_problems(ours.mask, out["assistant_masks"], pieces, *EDGES["deepseek-v3"]) == []


def test_a_system_prompt_the_template_hoists_does_not_hide_the_end_of_turn():
    _, _, chat, _, _ = family("deepseek-v3-config")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "system", "content": "mid"},
                {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok"}]
    rendered = chat.render_with_targets(messages)
    assert [rendered.text[a:b] for a, b in rendered.targets] == ["yo<｜end▁of▁sentence｜>", "ok<｜end▁of▁sentence｜>"]


def test_parts_a_template_drops_by_design_are_reported():
    _, _, chat, _, _ = family("gpt-oss")
    rome = {**WEATHER, "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    messages = [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
        {"role": "system", "content": "A second system prompt."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [WEATHER, rome]},
        {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."},
    ]
    rendered = chat.render_with_targets(messages)
    assert sorted(rendered.unrendered) == ["content", "reasoning", "system", "tool_calls"]
    # nothing is reported when everything is printed
    plain = [messages[0], {"role": "assistant", "content": "4"}, messages[3], CALL, *messages[5:]]
    assert chat.render_with_targets(plain).unrendered == ()


def test_content_beside_a_call_that_llama_3_1_drops_is_counted_and_warned(tmp_path, caplog):
    from dataprep.build.run import run
    from dataprep.recipe import recipe_from_dict

    record = {"messages": [{"role": "user", "content": "Weather in Paris?"}, {**CALL, "content": "Let me check the weather service."},
                           {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}],
              "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(record) + "\n")
    recipe = recipe_from_dict({"task": "sft", "inputs": [{"path": "c.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers/llama-3")},
                               "template": "chat", "chat": {"template": str(TEMPLATES / "llama3_1.jinja")}, "split": {"validation": 0.0}},
                              base_dir=tmp_path)
    with caplog.at_level("WARNING"):
        manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["sft"]["examples"]["unrendered"] == {"content": 1}
    assert "does not print every part of the records (examples affected: content 1)" in caplog.text
