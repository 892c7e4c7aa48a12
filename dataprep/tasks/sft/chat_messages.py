"""A conversation as its chat template is given it: the messages checked, then reshaped to what
the template reads.

:func:`check_messages` rejects a record whose messages the template cannot take (no role, a role
it does not know, content that is not text, an assistant turn with nothing to train on), each
as a :class:`~dataprep.errors.RecordProblem` with a reason to count the drop under.
:func:`prepare_messages` then gives the template the messages as ``transformers`` would: per-message
``train`` flags taken out, null values left out, reasoning under the key(s) the template reads
(``reasoning_content``, or ``thinking`` for gpt-oss), tool-call arguments in the form it takes
(an object, or a JSON string for templates that concatenate them), bare tool schemas wrapped as
``{"type": "function", "function": ...}``. Data the template never reads (tools, tool calls,
reasoning) is a bad record, never dropped without a word.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from dataprep.errors import RecordProblem

__all__ = ["ABSENT", "CHAT_ROLES", "REASONING_KEYS", "TRAIN_KEY", "call_form", "check_messages", "prepare_messages"]

CHAT_ROLES = ("system", "user", "assistant")
# The message keys templates read reasoning from (Qwen3/DeepSeek-R1: reasoning_content, gpt-oss: thinking).
REASONING_KEYS = ("reasoning_content", "thinking")
TRAIN_KEY = "train"  # per-message train flag (kept out of what the template sees)
UNSUPPORTED = "unsupported_by_template"  # the reason a record holds data its template never renders
ABSENT = object()  # a key left out (what a tool call's missing content becomes, for most templates)


def check_messages(messages: list[dict], roles: Sequence[str]) -> None:
    """Raise a :class:`RecordProblem` for messages the template cannot take: ``missing_field``,
    ``bad_type``, ``unknown_role`` (not one of ``roles``) or ``empty_field`` (an assistant turn
    with no content, tool call or reasoning)."""
    if not isinstance(messages, list) or not messages:
        raise RecordProblem("missing_field", f"messages must be a non-empty list, got {str(messages)[:60]!r}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RecordProblem("bad_type", f"message {i} must be a mapping with role and content, got {message!r:.60}")
        if message.get("role") is None:
            raise RecordProblem("missing_field", f"message {i} has no 'role': {dict(message)!r:.80}")
        role, content = message["role"], message.get("content")
        calls = message.get("tool_calls")
        if content is None and not (role == "assistant" and calls):
            raise RecordProblem("missing_field", f"message {i} has no 'content': {dict(message)!r:.80}")
        if role not in roles:
            raise RecordProblem(
                "unknown_role",
                f"message {i} has role {role!r}; this chat template takes {list(roles)}. "
                "Map the dataset's roles to these under the input's `roles:` (e.g. human: user, gpt: assistant)",
            )
        if content is not None and not isinstance(content, str):
            raise RecordProblem("bad_type", f"message {i} ({role}) content must be a string, got {type(content).__name__}")
        if calls is not None and not isinstance(calls, list):
            raise RecordProblem("bad_type", f"message {i} tool_calls must be a list, got {type(calls).__name__}")
        thought = any(isinstance(message.get(k), str) and message.get(k).strip() for k in REASONING_KEYS)
        if role == "assistant" and not (content or "").strip() and not calls and not thought:
            raise RecordProblem("empty_field", f"message {i} (assistant) has empty content; nothing to train on")
        flag = message.get(TRAIN_KEY)
        if flag is not None and not isinstance(flag, bool):
            raise RecordProblem("bad_type", f"message {i} train flag must be true or false, got {flag!r}")


def prepare_messages(
    messages: list[dict],
    tools: list | None,
    *,
    reads_tools: bool,
    reads_tool_calls: bool,
    reasoning_keys: Sequence[str],
    arguments_form: str = "object",
    no_content: Any = ABSENT,
) -> tuple[list[dict], list | None]:
    """The (checked) messages and tools exactly as the template is given them.

    Args:
        reads_tools, reads_tool_calls, reasoning_keys: What the template reads at all.
        arguments_form: ``object`` or ``string``: how the template takes tool-call arguments.
        no_content: What a tool call's missing content becomes (:data:`ABSENT`: no key).

    Raises:
        RecordProblem: ``unsupported_by_template`` when the record holds tools, tool calls or
            reasoning that the template never renders; ``bad_type`` for a malformed tool call.
    """
    if tools and not reads_tools:
        raise RecordProblem(
            UNSUPPORTED,
            f"the record has {len(tools)} tool(s) but this chat template never renders `tools`, so the model "
            "would train without seeing them; use a template that does (`chat.template:`), or unmap the tools field",
        )
    out = []
    for i, message in enumerate(messages):
        # As transformers 5 does: a key whose value is null is left out (`content: null` of a tool call).
        m = {k: v for k, v in message.items() if k != TRAIN_KEY and v is not None}
        reasoning = m.pop("reasoning_content", None)
        for key in REASONING_KEYS:
            if key != "reasoning_content" and key in m and reasoning is None:
                reasoning = m.pop(key)
        if reasoning:
            if not reasoning_keys:
                raise RecordProblem(
                    UNSUPPORTED,
                    f"message {i} ({m['role']}) has reasoning, but this chat template renders no reasoning "
                    f"(it reads none of {list(REASONING_KEYS)}); use a template that does, or unmap the reasoning",
                )
            for key in reasoning_keys:
                m[key] = reasoning
        calls = m.get("tool_calls")
        if calls:
            if not reads_tool_calls:
                raise RecordProblem(
                    UNSUPPORTED,
                    f"message {i} has tool calls, but this chat template never renders `tool_calls`; "
                    "use a template that does (`chat.template:`), or drop such records",
                )
            m["tool_calls"] = [call_form(call, arguments_form, i) for call in calls]
            if "content" not in m and no_content is not ABSENT:  # the form the template takes
                m["content"] = no_content
        out.append(m)
    return out, _wrap_tools(tools) if tools else None


def call_form(call: Any, form: str, index: int) -> dict:
    """A tool call in OpenAI shape with its arguments as an object or a JSON string."""
    if not isinstance(call, Mapping):
        raise RecordProblem("bad_type", f"message {index}: a tool call must be an object, got {call!r:.60}")
    call = copy.deepcopy(dict(call))
    if "function" not in call and "name" in call:
        call = {"type": "function", "function": call}
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise RecordProblem("bad_type", f"message {index}: a tool call needs function.name, got {call!r:.80}")
    arguments = function.get("arguments", {})
    if form == "object" and isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise RecordProblem(
                "bad_type", f"message {index}: tool call {function['name']!r} has arguments that are not JSON ({exc})"
            ) from exc
    elif form == "string" and not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    call["function"] = {**function, "arguments": arguments}
    call.setdefault("type", "function")
    return call


def _wrap_tools(tools: list) -> list:
    """OpenAI's tool shape ``{"type": "function", "function": {...}}`` for bare function schemas."""
    out = []
    for tool in tools:
        if isinstance(tool, Mapping) and "function" not in tool and "name" in tool:
            tool = {"type": "function", "function": dict(tool)}
        out.append(tool)
    return out
