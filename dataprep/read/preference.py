"""Preference records in the four shapes real datasets use -> one canonical pair (or KTO example).

::

    shape         record fields (names mapped under an input's ``fields:``)
    triples       prompt (text | messages), chosen, rejected (text | an assistant message | [message])
    conversation  prompt = a conversation (ShareGPT/OpenAI), chosen / rejected = the final assistant turn
                  (dpo_en_demo: ``conversations`` + ``chosen`` + ``rejected``)
    transcripts   chosen, rejected: two whole dialogues as HH-RLHF stores them,
                  ``"\\n\\nHuman: ... \\n\\nAssistant: ..."``; the prompt is their longest common
                  prefix that ends at a turn boundary (after ``\\n\\nAssistant:``), the responses
                  are what follows
    kto           messages (the last one the assistant's response) + label (bool)

``triples`` and ``conversation`` are one reader (a prompt is text or messages either way).
Every reader returns the canonical :class:`Pair` / :class:`Unpaired`, or ``(reason, message)``:
a bad record the caller counts under ``reason`` (never silent)::

    transcripts: chosen  "\\n\\nHuman: Hi\\n\\nAssistant: Hello!"
                 rejected "\\n\\nHuman: Hi\\n\\nAssistant: Go away."
      -> prompt   [user "Hi"]            chosen "Hello!"     rejected "Go away."
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._messages import normalize_messages

SHAPES = ("triples", "conversation", "transcripts", "kto")
# Drop reasons of the preference readers.
IDENTICAL = "identical_transcripts"
NO_COMMON_PROMPT = "no_common_prompt"
SAME_RESPONSE = "chosen_equals_rejected"
BAD_PAIR = "bad_pair"
BAD_LABEL = "bad_label"

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")

Problem = tuple[str, str]


@dataclass(frozen=True)
class Pair:
    """One preference pair: a prompt (canonical messages, or raw text) and two responses (text).

    ``prompt_text`` is set for raw-text prompts (transcripts, text triples): the rendered prompt
    is that text as is and each response follows it directly."""

    prompt: list[dict] | None
    chosen: str
    rejected: str
    prompt_text: str | None = None


@dataclass(frozen=True)
class Unpaired:
    """One KTO example: a prompt, one response, and whether it is desirable."""

    prompt: list[dict] | None
    completion: str
    label: bool
    prompt_text: str | None = None


def read_pair(record: Mapping[str, object], roles: Mapping[str, str] | None = None) -> Pair | Problem:
    """``triples`` / ``conversation``: ``prompt`` (text or messages), ``chosen``, ``rejected``."""
    chosen, rejected = _response(record.get("chosen"), "chosen", roles), _response(record.get("rejected"), "rejected", roles)
    for value in (chosen, rejected):
        if isinstance(value, tuple):
            return value
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        return _checked(Pair(None, chosen, rejected, prompt_text=prompt))
    messages = normalize_messages(prompt, "prompt", roles)
    if isinstance(messages, tuple):
        return messages
    if not messages or messages[-1]["role"] == "assistant":
        return BAD_PAIR, "prompt: a conversation ending in a user (or tool) turn is needed before the two responses"
    return _checked(Pair(messages, chosen, rejected))


def read_transcripts(record: Mapping[str, object]) -> Pair | Problem:
    """``transcripts``: the prompt is the longest common prefix of the two dialogues that ends at a
    turn boundary (just after ``\\n\\nAssistant:``); the responses are what follows in each."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        return BAD_PAIR, "transcripts: chosen and rejected must both be text"
    if chosen == rejected:
        return IDENTICAL, "chosen and rejected are the same transcript: there is nothing to prefer"
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    cut = chosen.rfind(ASSISTANT, 0, common)
    if cut < 0:
        return NO_COMMON_PROMPT, "the two transcripts share no prefix ending at an '\\n\\nAssistant:' turn boundary"
    end = cut + len(ASSISTANT)
    if ASSISTANT in chosen[end:] or HUMAN in chosen[end:] or ASSISTANT in rejected[end:] or HUMAN in rejected[end:]:
        return NO_COMMON_PROMPT, "the transcripts part before their last turn: the responses would hold whole dialogues"
    return _checked(Pair(None, chosen[end:], rejected[end:], prompt_text=chosen[:end]))


def transcript_messages(text: str) -> list[dict] | Problem:
    """An HH-style transcript as canonical messages (``Human`` -> user, ``Assistant`` -> assistant)."""
    parts = _TURN.split(text)
    if parts[0].strip():
        return BAD_PAIR, "a transcript must start with '\\n\\nHuman:'"
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts) - 1, 2)]


def transcript_prompt(text: str) -> list[dict] | Problem:
    """The prompt of a transcript pair as messages: its turns before the response. It ends with the
    ``\n\nAssistant:`` the response follows, which is where the chat template's generation prompt goes,
    not an (empty) assistant turn of its own."""
    messages = transcript_messages(text)
    if isinstance(messages, tuple):
        return messages
    if messages and messages[-1] == {"role": "assistant", "content": ""}:
        messages = messages[:-1]
    return messages


def read_unpaired(record: Mapping[str, object], roles: Mapping[str, str] | None = None) -> Unpaired | Problem:
    """``kto``: ``messages`` whose last turn is the assistant's response, and a boolean ``label``."""
    label = record.get("label")
    if not isinstance(label, bool):
        return BAD_LABEL, f"label must be true or false, got {label!r:.40}"
    messages = normalize_messages(record.get("messages"), "messages", roles)
    if isinstance(messages, tuple):
        return messages
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or not isinstance(messages[-1].get("content"), str):
        return BAD_PAIR, "messages must end in an assistant turn (the response the label judges) after a prompt"
    if not messages[-1]["content"]:
        return "empty_field", "the response is empty"
    return Unpaired(messages[:-1], messages[-1]["content"], label)


def _response(value: object, name: str, roles: Mapping[str, str] | None) -> str | Problem:
    """A response: text, an assistant message, or a one-message list."""
    if isinstance(value, str):
        return value if value else ("empty_field", f"{name} is empty")
    if isinstance(value, dict):
        value = [value]
    messages = normalize_messages(value, name, roles)
    if isinstance(messages, tuple):
        return messages
    if len(messages) != 1 or messages[0]["role"] != "assistant" or not isinstance(messages[0].get("content"), str):
        return BAD_PAIR, f"{name} must be text or one assistant message"
    return messages[0]["content"] or ("empty_field", f"{name} is empty")


def _checked(pair: Pair) -> Pair | Problem:
    if pair.chosen == pair.rejected:
        return SAME_RESPONSE, "chosen and rejected are the same response: there is nothing to prefer"
    return pair
