"""Mapping a rendered conversation back to its messages: where each message's data went, and
each assistant turn's target span.

**Regions by placeholder.** To find what the template made of message ``i``,
:meth:`Conversation.region` renders the conversation again with that message's own strings
(content, reasoning, tool-call arguments) replaced by a private-use placeholder: the rendering
differs from the real one exactly where the message's data went, whatever the template did to
it (``| trim``, a system prompt merged into the first turn, the role renamed ``model``, a last
turn rendered with ``<|return|>`` instead of ``<|end|>``). A turn's target then runs from the
start of that region through the end-of-turn token that closes the turn (Llama 3)::

    <|start_header_id|>assistant<|end_header_id|>\\n\\n  Hello!  <|eot_id|>      (content "  Hello!  ")
    real       ...<|end_header_id|>\\n\\nHello!<|eot_id|>
    perturbed  ...<|end_header_id|>\\n\\n\\ue000<|eot_id|>
                                   |<-target->|   = "Hello!<|eot_id|>"

**A target starts where the generation prompt ends.** What ``add_generation_prompt`` prints (the
assistant header) is given at inference, so it is never a target; whatever the model writes after
it is. A turn with tool calls, or whose reasoning the template renders, starts its target right
after that header, since the model writes the call or reasoning syntax itself (gpt-oss:
`` to=functions.f<|channel|>commentary json<|message|>{...}<|call|>``). So does a plain content
turn: gpt-oss's generation prompt ends at ``<|start|>assistant`` and the model writes its channel
header itself::

    <|start|>assistant<|channel|>final<|message|>Hello!<|end|>
                      |<---------- target ---------->|

Llama 3, Phi-3, Gemma 3 and DeepSeek-V3 print nothing between their generation prompt and the
content, so there the target starts at the content. It starts at the content too where the text
between is where the template prints the turn's reasoning (an empty think block, Qwen3's
``<think>\\n\\n</think>\\n\\n`` after ``<|im_start|>assistant\\n``: training it teaches the model not to
think; found by giving the turn a reasoning and seeing that text change), and where no generation
prompt is printed before the content (a template whose ``add_generation_prompt`` prints nothing:
the text before the content is the previous turn's). With ``reasoning`` off, a turn whose reasoning
is printed starts at the header after it (gpt-oss: ``<|channel|>final<|message|>4<|return|>`` after
``...<|end|><|start|>assistant``). This is what TRL's gpt-oss training template marks
(``../shared/data/chat_templates/gptoss_training.jinja``: each assistant turn from ``<|start|>assistant``,
which the trainer's targets proof does not compare, see :mod:`dataprep.train.reference_chat`), for
content, reasoning and call turns alike; TRL has no reasoning-off option. System blocks are never
targets. The closing token must come before the next message's own data, so the next turn's
opening token is never taken for this turn's end.

**The EOS after a final assistant turn is a target too.** When the conversation ends with an
assistant turn and the template appends the EOS token after that turn's end-of-turn token (only
whitespace between), the target runs through that EOS (Phi-3)::

    ...<|assistant|>\nYou too!<|end|>\n<|endoftext|>
                      |<------ target ------->|

The EOS is what ends the *document*: a model never trained on it never learns to emit it, yet
the template puts it in every training text. TRL's generation-tagged training templates
(``../shared/data/chat_templates/phi3_training.jinja``) mark it, and the trainer's targets proof
re-renders chats through them. A turn followed by another message keeps its end-of-turn token
as its last target (the template prints no EOS there), and templates that append nothing after
the last turn, or whose end-of-turn token *is* the EOS (Llama 3 ``<|eot_id|>``, Gemma 3
``<end_of_turn>``, DeepSeek-V3 ``<｜end▁of▁sentence｜>``, gpt-oss ``<|return|>``), are unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dataprep.errors import RecordProblem, TemplateError

__all__ = ["Conversation", "TurnTargets", "common_prefix", "first_of"]

# Placeholders for a message's own strings: private-use characters no real text holds.
PLACEHOLDERS = ("\ue000", "\ue001", "\uf8fe", "\U000f0000", "\U0010fffd")
# Reasons a conversation is a bad record (counted under on_error: skip).
TARGET_NOT_FOUND = "target_not_found"
NO_END_OF_TURN = "no_end_of_turn"

Render = Callable[[list[dict], "list | None"], str]  # (messages, tools) -> text, as the template renders them
Span = tuple[int, int]


class Conversation:
    """A conversation as its template is given it (``msgs``, ``tools``), the template's rendering
    of it (``text``), and where in that rendering each message's own strings went.

    Args:
        render: Renders messages and tools as the template does (raising :class:`TemplateError`).
        reasoning_keys: The keys the template reads reasoning from.
    """

    def __init__(self, render: Render, msgs: list[dict], tools: list | None, text: str, reasoning_keys: Sequence[str]):
        self.render, self.msgs, self.tools, self.text = render, msgs, tools, text
        self.reasoning_keys = tuple(reasoning_keys)
        self._regions: dict[tuple, Span | None] = {}  # asked for by a message's own turn and by its neighbours'

    def region(self, i: int, *, reasoning: bool, calls: bool = True, content: bool = True) -> Span | None:
        """[first, last) character of the text that depends on message ``i``'s own strings (its
        content, reasoning and tool-call arguments, as chosen), or None when the template renders none of them."""
        key = (i, reasoning, calls, content)
        if key not in self._regions:
            self._regions[key] = self._find_region(i, reasoning=reasoning, calls=calls, content=content)
        return self._regions[key]

    def _find_region(self, i: int, *, reasoning: bool, calls: bool, content: bool) -> Span | None:
        mark = next((p for p in PLACEHOLDERS if p not in self.text), None)
        if mark is None:
            return None
        m = dict(self.msgs[i])
        changed = False
        keys = [*(("content",) if content else ()), *(self.reasoning_keys if reasoning else ())]
        for key in keys:
            if isinstance(m.get(key), str) and m[key]:
                m[key], changed = mark, True
        if calls and m.get("tool_calls"):
            # Arguments only: a call's name may be printed again by the tool turn that answers it.
            m["tool_calls"] = [_mark_call(call, mark) for call in m["tool_calls"]]
            changed = True
        if not changed:
            return None
        try:
            perturbed = self.render([*self.msgs[:i], m, *self.msgs[i + 1 :]], self.tools)
        except TemplateError:
            return None
        text = self.text
        p = common_prefix(perturbed, text)
        s = _common_suffix(perturbed, text, min(len(perturbed), len(text)) - p)
        if mark not in perturbed[p : len(perturbed) - s]:
            return None
        return p, len(text) - s

    def unrendered(self) -> tuple[str, ...]:
        """The parts of messages the template printed nowhere: ``content``, ``reasoning`` (earlier
        turns' reasoning, which gpt-oss and Qwen3 drop by design), ``tool_calls`` (a call beyond
        the first, which gpt-oss drops), ``system`` (a second system message). A part counts as
        printed when its text is in the rendering, else when replacing it changes the rendering."""
        lost: list[str] = []
        for i, m in enumerate(self.msgs):
            for key in ("content", *self.reasoning_keys):
                value = m.get(key)
                if isinstance(value, str) and value.strip() and value.strip() not in self.text:
                    if not self._changes(i, key=key):
                        lost.append("system" if m["role"] == "system" and key == "content" else
                                    "reasoning" if key != "content" else "content")
            for k, call in enumerate(m.get("tool_calls") or ()):
                arguments = call["function"].get("arguments")
                shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
                if shown not in self.text and not self._changes(i, call=k):
                    lost.append("tool_calls")
        return tuple(lost)

    def _changes(self, i: int, *, key: str | None = None, call: int | None = None) -> bool:
        """Whether replacing one part of message ``i`` changes the rendering (the template prints it)."""
        mark = next((p for p in PLACEHOLDERS if p not in self.text), None)
        if mark is None:
            return True  # cannot tell: never report a loss we did not see
        m = dict(self.msgs[i])
        if key is not None:
            m[key] = mark
        else:
            calls = list(m["tool_calls"])
            calls[call] = _mark_call(calls[call], mark)
            m["tool_calls"] = calls
        try:
            return self.render([*self.msgs[:i], m, *self.msgs[i + 1 :]], self.tools) != self.text
        except TemplateError:
            return True


@dataclass(frozen=True)
class TurnTargets:
    """Each assistant turn's target span in one :class:`Conversation`.

    Attributes:
        stops: The texts that close a turn (the template's end-of-turn tokens; EOS when none).
        header: The assistant header (the template's generation prompt), or None.
        special: Matches any special token's text, longest first.
        eos: The EOS text: a final assistant turn's target runs through it when the template
            appends it after that turn (see the module docstring); None: never.
    """

    conversation: Conversation
    stops: tuple[str, ...]
    header: str | None
    special: re.Pattern[str]
    eos: str | None = None

    def turn(self, i: int, *, reasoning: bool) -> Span:
        """[start, end) of message ``i``'s target: from where its generation prompt ends (see the module
        docstring) through its end-of-turn token. With ``reasoning`` false, the reasoning the template
        prints is no target: the turn's target starts after it."""
        conv, message = self.conversation, self.conversation.msgs[i]
        region = conv.region(i, reasoning=True)
        if region is None:
            raise RecordProblem(
                TARGET_NOT_FOUND,
                f"message {i} ({message['role']}): the chat template does not render this message's content where it "
                "can be found (it drops or rewrites it), so its target is unknown",
            )
        start, end = region
        calls = bool(message.get("tool_calls"))
        has_reasoning = any(isinstance(message.get(k), str) and message[k] for k in conv.reasoning_keys)
        syntax, low = calls, None  # the model writes the call syntax itself: the target starts after the header
        if has_reasoning:
            content = conv.region(i, reasoning=False)
            rendered = content is None or content[0] > start  # the template printed the reasoning
            if not reasoning and rendered:
                if content is None:  # only the reasoning is rendered for this turn, and it is no target
                    return end, end
                low = self._thought_end(i)  # the turn's own text starts after its reasoning
                if calls:  # the call syntax after the reasoning is still the model's to write
                    return self._header_end(i, content[0], low=low), self._through_eos(i, self._closer(i, end))
                start = content[0]
            elif rendered:
                syntax = True  # and the reasoning syntax (<think>, <|channel|>analysis)
        start = self._header_end(i, start) if syntax else self._content_start(i, start, low=low)
        return start, self._through_eos(i, self._closer(i, end))

    def _thought_end(self, i: int) -> int | None:
        """End of where message ``i``'s reasoning went, or None when the template prints none of it."""
        thought = self.conversation.region(i, reasoning=True, calls=False, content=False)
        return thought[1] if thought else None

    def _content_start(self, i: int, start: int, *, low: int | None = None) -> int:
        """Where a plain content turn's target starts, its content being at ``start``: where the
        generation prompt ends (the model writes what the template prints between, gpt-oss's
        ``<|channel|>final<|message|>``), unless that text is where the template prints the turn's
        reasoning (an empty think block), or no header is printed before the content: then ``start``."""
        after = self._header_end(i, start, low=low, fallback=False)
        if after >= start or self._reasoning_slot(i, after):
            return start
        return after

    def _reasoning_slot(self, i: int, at: int) -> bool:
        """Whether the template prints message ``i``'s reasoning between ``at`` (its header's end) and
        its content (Qwen3's ``<think>\\n\\n</think>\\n\\n``): giving the turn another reasoning changes
        the text from ``at`` on. True when it cannot tell (no placeholder free, the template fails)."""
        conv = self.conversation
        if not conv.reasoning_keys:
            return False
        mark = next((p for p in PLACEHOLDERS if p not in conv.text), None)
        if mark is None:
            return True
        m = {**conv.msgs[i], **dict.fromkeys(conv.reasoning_keys, mark)}
        try:
            perturbed = conv.render([*conv.msgs[:i], m, *conv.msgs[i + 1 :]], conv.tools)
        except TemplateError:
            return True
        tail = conv.text[at:]  # what is between, the content and everything after it
        return not perturbed.endswith(tail) or mark in perturbed[len(perturbed) - len(tail) :]

    def _through_eos(self, i: int, closer: int) -> int:
        """``closer``, or the end of the EOS the template appends after it when message ``i`` is
        the conversation's last (only whitespace between, nothing after)."""
        text, eos = self.conversation.text, self.eos
        if not eos or i != len(self.conversation.msgs) - 1:
            return closer
        rest = text[closer:]
        if rest.strip() != eos:
            return closer
        return closer + rest.index(eos) + len(eos)

    def _closer(self, i: int, end: int) -> int:
        """End of the end-of-turn token after message ``i``'s data (which ends at ``end``), before the
        next message's own data (a message the template prints earlier, e.g. a hoisted system
        prompt, does not bound it)."""
        conv = self.conversation
        text, bound = conv.text, len(conv.text)
        for j in range(i + 1, len(conv.msgs)):
            following = conv.region(j, reasoning=True)
            if following is not None and following[0] >= end:
                bound = following[0]
                break
        closer = first_of(text, self.stops, end, bound)
        if closer is None:
            raise RecordProblem(
                NO_END_OF_TURN,
                f"no end-of-turn token follows message {i} ({conv.msgs[i]['role']}) (looked for {list(self.stops)} in "
                f"{text[end:bound][:60]!r}); a model trained without it never stops",
            )
        return closer

    def _header_end(self, i: int, start: int, *, low: int | None = None, fallback: bool = True) -> int:
        """Where turn ``i``'s own text begins, for a turn whose target starts before its data: after
        the assistant header (the generation prompt, or its longest prefix that ends at a special
        token or a newline, so the role name is never cut) between the previous message (or ``low``)
        and ``start``; where no header is printed (DeepSeek's second tool call in a row), right after
        the previous message, its end-of-turn token and the special tokens that close it (with
        ``fallback`` false: ``start``, as for a content turn, whose data is all the model writes there)."""
        text, header, stops = self.conversation.text, self.header, self.stops
        anchored = True  # the fallback may start right after `low`
        if low is None:
            previous = self.conversation.region(i - 1, reasoning=True) if i > 0 else None
            anchored = previous is not None
            low = previous[1] if previous else 0
        if header:
            ends = {m.end() for m in self.special.finditer(header)} | {k + 1 for k, c in enumerate(header) if c == "\n"}
            for cut in [header[:k] for k in sorted(ends | {len(header)}, reverse=True)]:
                at = text.rfind(cut, low, start)
                if at >= 0 and first_of(text, stops, at + len(cut), start) is None:
                    return at + len(cut)
        if not anchored or not fallback:
            return start
        position = low
        while (after := first_of(text, stops, position, start)) is not None:
            position = after
        while (special := self.special.match(text, position)) is not None and special.end() <= start:
            position = special.end()  # the previous message's own closing tokens (<｜tool▁output▁end｜>)
        return position


def first_of(text: str, tokens: Sequence[str], start: int, end: int) -> int | None:
    """End of the earliest occurrence of any of ``tokens`` within ``text[start:end]``, or None."""
    best = None
    for token in tokens:
        at = text.find(token, start, end)
        if at >= 0 and (best is None or at < best[0] or (at == best[0] and len(token) > best[1])):
            best = (at, len(token))
    return None if best is None else best[0] + best[1]


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the longest common suffix of ``a`` and ``b``, at most ``limit``."""
    n = min(len(a), len(b), limit)
    if n == 0 or a[len(a) - n :] == b[len(b) - n :]:
        return n
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid
    return lo


def _mark_call(call: Mapping, mark: str) -> dict:
    call = dict(call)
    function = dict(call["function"])
    arguments = function.get("arguments")
    function["arguments"] = mark if isinstance(arguments, str) else {mark: mark}
    call["function"] = function
    return call
