"""What a chat template does, learned once from probe conversations rendered through it.

- **End-of-turn tokens**: the special token right after an assistant's content when it is the
  last turn (the first special token after it), an earlier turn (the token right after it) and
  a tool call (the first special token, unless a token already learned closes it); EOS when the
  template closes turns with no special token.
- **The assistant header**: what ``add_generation_prompt`` adds (``<|assistant|>\\n``), widened to
  the whole special token it cuts into (Phi-3 ends a bare rendering with EOS instead).
- **The tool-call form**: arguments as an object (transformers' documented form) or a JSON string
  (templates that concatenate them), and a call's missing content as no key (transformers drops
  null values) or ``""``: the first form the template renders the call's arguments in.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dataprep.errors import TemplateError
from dataprep.tasks.sft.chat_messages import ABSENT, call_form
from dataprep.tasks.sft.chat_spans import Conversation, common_prefix, first_of

__all__ = ["Probe", "probe_template"]

Render = Callable[..., str]  # ChatTemplate.render: (messages, *, tools=None, add_generation_prompt=False) -> text
_USER, _ANSWER = {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}
_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@dataclass(frozen=True)
class Probe:
    """What the probes learned.

    Attributes:
        stops: The texts that close a target: the end-of-turn tokens the template uses (EOS when none).
        header: The assistant header (generation prompt), or None.
        arguments_form: ``object`` or ``string``: the tool-call argument form the template takes.
        no_content: What a tool call's missing content becomes (``ABSENT``: no key, or ``""``).
    """

    stops: tuple[str, ...]
    header: str | None
    arguments_form: str = "object"
    no_content: Any = ABSENT


def probe_template(
    render: Render, *, special: re.Pattern[str], eos_token: str | None, reads_tool_calls: bool, reasoning_keys: Sequence[str]
) -> Probe:
    """Render the probe conversations through ``render`` and learn from them (see the module docstring).

    Args:
        render: The template's ``render``.
        special: Matches any special token's text, longest first.
        eos_token: The stop text when no special token closes a turn.
        reads_tool_calls: Whether the template mentions ``tool_calls`` (else no tool-call probe).
        reasoning_keys: The keys the template reads reasoning from.
    """
    probes: list[tuple[list[dict], list | None, str]] = [
        ([_USER, _ANSWER], None, "anywhere"),  # the last turn: the first special token after the content
        ([_USER, _ANSWER, {"role": "user", "content": "Bye"}], None, "adjacent"),  # an earlier turn: right after it
    ]
    form, no_content = "object", ABSENT
    if reads_tool_calls:
        found = _tool_call_form(render, reasoning_keys)
        if found is not None:
            form, no_content, convo = found
            probes.append((convo, [_TOOL], "unless_known"))  # a call: the first special token, unless a known one closes it
    stops = _stops(render, probes, special, reasoning_keys)
    if not stops and eos_token:  # no special token closes a turn: EOS, where the template prints it
        stops.append(eos_token)
    return Probe(tuple(stops), _header(render, special), form, no_content)


def _header(render: Render, special: re.Pattern[str]) -> str | None:
    """What ``add_generation_prompt`` adds after a user turn (widened to a special token it cuts into)."""
    try:
        bare, prompted = render([_USER]), render([_USER], add_generation_prompt=True)
    except TemplateError:
        return None
    cut = common_prefix(bare, prompted)  # not always a prefix: Phi-3 ends `bare` with EOS instead
    inside = next((m for m in special.finditer(prompted) if m.start() < cut < m.end()), None)
    return prompted[inside.start() if inside else cut :] or None


def _tool_call_form(render: Render, reasoning_keys: Sequence[str]) -> tuple[str, Any, list[dict]] | None:
    """The first (arguments form, missing content) in which the template renders a tool call's
    arguments, with the probe conversation; None when it renders none of them."""
    for form, empty in itertools.product(("object", "string"), (ABSENT, "")):
        caller = {"role": "assistant", "content": empty, "tool_calls": [call_form(_CALL, form, 1)]}
        if empty is ABSENT:
            del caller["content"]
        convo = [_USER, caller, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]
        try:
            text = render(convo, tools=[_TOOL])
        except TemplateError:
            continue
        if _conversation(render, convo, [_TOOL], text, reasoning_keys).region(1, reasoning=True) is None:
            continue  # renders, but without the call (e.g. a content branch that ignores tool_calls)
        return form, empty, convo
    return None


def _stops(render: Render, probes, special: re.Pattern[str], reasoning_keys: Sequence[str]) -> list[str]:
    """The end-of-turn tokens after message 1 of each probe conversation, under the probe's rule."""
    stops: list[str] = []
    for convo, tools, rule in probes:
        try:
            text = render(convo, tools=tools)
        except TemplateError:
            continue
        conversation = _conversation(render, convo, tools, text, reasoning_keys)
        region = conversation.region(1, reasoning=True)
        if region is None:
            continue
        bound = conversation.region(2, reasoning=True) if len(convo) > 2 else None
        bound = bound[0] if bound else len(text)
        found = special.search(text, region[1], bound)
        if found is None or found.group() in stops:
            continue
        if rule == "adjacent" and found.start() != region[1]:
            continue
        if rule == "unless_known" and first_of(text, stops, region[1], bound) is not None:
            continue
        stops.append(found.group())
    return stops


def _conversation(render: Render, convo: list[dict], tools: list | None, text: str, reasoning_keys) -> Conversation:
    return Conversation(lambda msgs, tools: render(msgs, tools=tools), convo, tools, text, reasoning_keys)
