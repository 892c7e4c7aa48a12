"""The tokenizer's own chat template (Jinja), rendered exactly as ``transformers`` renders it,
and each conversation's targets located in that one rendering.

:meth:`ChatTemplate.render` matches ``tokenizer.apply_chat_template(messages, tools=tools,
tokenize=False, **kwargs)``: the same sandboxed Jinja environment (``trim_blocks``,
``lstrip_blocks``, ``loopcontrols``), the same ``tojson`` filter and ``raise_exception`` global,
and the same variables (``messages``, ``tools``, ``documents=None``, ``add_generation_prompt``,
the special tokens where set, and any extra template arguments such as ``enable_thinking``).
``strftime_now`` prints a date fixed when the template is built (never today's date), so
the output does not depend on the day it ran.

**Targets from one rendering.** :meth:`ChatTemplate.render_with_targets` renders the whole
conversation once. To find what the template made of assistant message ``i``, it renders the
conversation again with that message's own strings (content, reasoning, tool-call names and
arguments) replaced by a private-use placeholder: the rendering differs from the real one
exactly where the message's data went, whatever the template did to it (``| trim``, a system
prompt merged into the first turn, the role renamed ``model``, a last turn rendered with
``<|return|>`` instead of ``<|end|>``). The target then runs from the start of that region
through the end-of-turn token that closes the turn (Llama 3)::

    <|start_header_id|>assistant<|end_header_id|>\\n\\n  Hello!  <|eot_id|>      (content "  Hello!  ")
    real       ...<|end_header_id|>\\n\\nHello!<|eot_id|>
    perturbed  ...<|end_header_id|>\\n\\n\\ue000<|eot_id|>
                                   |<-target->|   = "Hello!<|eot_id|>"

A turn with tool calls, or whose reasoning the template renders, starts its target right after
the assistant header (the template's generation prompt), since the model writes the call or
reasoning syntax itself (gpt-oss: `` to=functions.f<|channel|>commentary json<|message|>{...}<|call|>``).
A plain content turn starts at its content: the header, an empty think block the template
inserts and a system block are never targets.

The end-of-turn tokens are learned from the template itself: the special token right after an
assistant's content in probe conversations (last turn, earlier turn, tool call); EOS when none is.
The closing token must come before the next message's own data, so the next turn's opening
token is never taken for this turn's end.

Tokenizing the text (special tokens recognised) and masking is :mod:`dataprep.tasks.sft.loss_mask`'s job.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dataprep.errors import RecordProblem, RenderFailed, TemplateError, TemplateRaised
from dataprep.tasks.sft.templates import CHAT_POLICY, Rendered, _check_policy

if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = ["ChatTemplate", "CHAT_ROLES", "TEMPLATE_DATE", "REASONING_KEYS"]

CHAT_ROLES = ("system", "user", "assistant")
CONFIG_FILE = "tokenizer_config.json"
JINJA_FILE = "chat_template.jinja"  # newer transformers save the template here
TOKENIZER_FILE = "tokenizer.json"
TEMPLATE_DATE = "2026-01-01"  # what strftime_now prints unless the recipe sets template_date
# The message keys templates read reasoning from (Qwen3/DeepSeek-R1: reasoning_content, gpt-oss: thinking).
REASONING_KEYS = ("reasoning_content", "thinking")
TRAIN_KEY = "train"  # per-message train flag (kept out of what the template sees)
_TOOL_LITERAL = re.compile(r"""['"]tool['"]""")
# Placeholders for a message's own strings: private-use characters no real text holds.
_ABSENT = object()  # a key left out
_PLACEHOLDERS = ("\ue000", "\ue001", "\uf8fe", "\U000f0000", "\U0010fffd")
# Reasons a conversation is a bad record (counted under on_error: skip).
TARGET_NOT_FOUND = "target_not_found"
NO_END_OF_TURN = "no_end_of_turn"
TEMPLATE_FAILED = "template_failed"
UNSUPPORTED = "unsupported_by_template"


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"the chat template raised an error: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False):
    # transformers' version: Jinja's own tojson escapes HTML characters and takes no options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTags(jinja2.ext.Extension):
    """``{% generation %} ... {% endgeneration %}``, as transformers reads it: renders its body
    unchanged and, while :func:`_render_marked` renders, records the body's character span."""

    tags = {"generation"}

    def __init__(self, environment: jinja2.Environment):
        super().__init__(environment)
        self.out: list[str] | None = None  # the output so far, while spans are recorded
        self.spans: list[tuple[int, int]] = []

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

    def _mark(self, caller) -> str:
        text = caller()
        if self.out is not None:
            start = sum(map(len, self.out))
            self.spans.append((start, start + len(text)))
        return text


def _environment(today: datetime) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, _GenerationTags]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda format: today.strftime(format)
    return env


def parse_date(value: str | Date | None) -> datetime:
    """The fixed date ``strftime_now`` prints: ``YYYY-MM-DD`` (default :data:`TEMPLATE_DATE`)."""
    if isinstance(value, Date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.strptime(value or TEMPLATE_DATE, "%Y-%m-%d")
    except ValueError as exc:
        raise TemplateError(f"template_date must be a date written YYYY-MM-DD, got {value!r}") from exc


def _token_text(value: Any) -> str | None:
    if isinstance(value, Mapping):  # {"content": "<s>", "lstrip": ...} in older configs
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _common_prefix(a: str, b: str) -> int:
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


class ChatTemplate:
    """A Jinja chat template plus the special tokens and arguments it is rendered with.

    Args:
        source: The Jinja template text.
        bos_token: Passed to the template as ``bos_token`` (omitted when None).
        eos_token: Passed as ``eos_token``; the end of a turn when no special token follows one.
        special_tokens: Every special token's text (``<|end|>``, ``<|im_end|>``, ``</s>``,
            ...): normally every added token of the tokenizer.
        variables: Extra template variables, e.g. ``{"pad_token": ..., "unk_token": ...}``
            (transformers passes the whole special-tokens map) and the recipe's
            ``chat_template_kwargs`` (``enable_thinking``, ``reasoning_effort``, ...).
        date: What ``strftime_now`` prints (``YYYY-MM-DD``); default :data:`TEMPLATE_DATE`.

    Raises:
        TemplateError: The template does not compile, or ``date`` is not a date.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str | None,
        eos_token: str | None,
        special_tokens: Iterable[str],
        variables: Mapping[str, Any] | None = None,
        date: str | Date | None = None,
    ):
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"a chat template must be non-empty Jinja text, got {source!r:.80}")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_tokens = tuple(dict.fromkeys(t for t in special_tokens if t))
        merged = {**(variables or {}), "bos_token": bos_token, "eos_token": eos_token}
        self.variables = {k: v for k, v in merged.items() if v is not None}  # None would render as "None"
        self.date = parse_date(date)
        self.roles = CHAT_ROLES + (("tool",) if _TOOL_LITERAL.search(source) else ())
        # What the template reads at all: data it never mentions would be dropped without a word.
        self.reads_tools = re.search(r"\btools\b", source) is not None
        self.reads_tool_calls = "tool_calls" in source
        self.reasoning_keys = tuple(k for k in REASONING_KEYS if k in source)
        self.has_generation_tags = re.search(r"{%-?\s*generation\s*-?%}", source) is not None
        try:
            self._template = _environment(self.date).from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"the chat template does not compile: {exc} (line {exc.lineno})") from exc
        # Longest first, so "<|endoftext|>" is not cut short by a shorter token it contains.
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
        self._probed: tuple[tuple[str, ...], str | None, str] | None = None
        self._no_content: Any = _ABSENT  # what a tool call's missing content becomes (set by _probe)
        self._regions: dict[tuple, tuple[int, int] | None] = {}  # _region's answers for the conversation at hand

    def __repr__(self) -> str:
        return f"ChatTemplate({len(self.source)} chars, eos_token={self.eos_token!r}, roles={self.roles})"

    # --- loading -----------------------------------------------------------------------

    @classmethod
    def from_tokenizer_config(
        cls,
        config: Mapping[str, Any],
        *,
        special_tokens: Iterable[str] | None = None,
        variables: Mapping[str, Any] | None = None,
        date: str | Date | None = None,
    ) -> ChatTemplate:
        """Build from a parsed ``tokenizer_config.json``.

        ``chat_template`` is a string, or a list of ``{name, template}`` of which ``default``
        is used. Special tokens default to ``added_tokens_decoder``'s contents plus the
        bos/eos/unk/pad tokens.

        Raises:
            TemplateError: No chat template, or no ``default`` among several.
        """
        source = _pick_source(config.get("chat_template"))
        tokens = {role: _token_text(config.get(f"{role}_token")) for role in ("bos", "eos", "unk", "pad")}
        if special_tokens is None:
            decoder = config.get("added_tokens_decoder") or {}
            special_tokens = [*(_token_text(t) for t in decoder.values()), *tokens.values()]
        return cls(
            source,
            bos_token=tokens["bos"],
            eos_token=tokens["eos"],
            special_tokens=[t for t in special_tokens if t],
            variables={"unk_token": tokens["unk"], "pad_token": tokens["pad"], **(variables or {})},
            date=date,
        )

    @classmethod
    def from_tokenizer_folder(cls, path: str | Path, **options: Any) -> ChatTemplate:
        """Build from a Hugging Face tokenizer folder (``tokenizer_config.json``, optionally
        ``chat_template.jinja`` and ``tokenizer.json``, whose added tokens are included).
        ``options`` are :meth:`from_tokenizer_config`'s ``variables`` and ``date``.

        Raises:
            TemplateError: No readable config, or no chat template in it.
        """
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        config = _config(folder)
        specials = [_token_text(t) for t in (config.get("added_tokens_decoder") or {}).values()]
        if (folder / TOKENIZER_FILE).is_file():
            specials += [t.get("content") for t in _read_json(folder / TOKENIZER_FILE).get("added_tokens", [])]
        specials += [_token_text(config.get(f"{r}_token")) for r in ("bos", "eos", "unk", "pad")]
        try:
            return cls.from_tokenizer_config(config, special_tokens=[t for t in specials if t], **options)
        except TemplateError as exc:
            raise TemplateError(f"{folder / CONFIG_FILE}: {exc}") from exc

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: LoadedTokenizer,
        *,
        source: str | None = None,
        variables: Mapping[str, Any] | None = None,
        date: str | Date | None = None,
    ) -> ChatTemplate:
        """Build for a loaded tokenizer: the template from the config file it was loaded with
        (or ``source``, e.g. a recipe's ``chat_template`` file), the special tokens from its
        added tokens, bos/eos from its resolved tokens (so a recipe override of ``eos_token``
        applies here too), plus ``variables`` (``chat_template_kwargs``) and ``date``.

        Raises:
            TemplateError: No ``source`` and the tokenizer was not loaded with a
                ``tokenizer_config.json`` holding a chat template.
        """
        configs = [f for f in tokenizer.files if f.name == CONFIG_FILE]
        specials = [t.content for t in tokenizer.tokenizer.get_added_tokens_decoder().values()]
        if source is None:
            if not configs:
                raise TemplateError(
                    f"{tokenizer.source}: no {CONFIG_FILE} with a chat_template beside the tokenizer; "
                    "use a pair template, set `chat.template:` to a Jinja file, or point tokenizer.path at a "
                    "folder whose config has one"
                )
            # the loaded tokenizer has the added tokens: only the (small) config is read here
            config = _config(configs[0].parent)
            try:
                source = _pick_source(config.get("chat_template"))
            except TemplateError as exc:
                raise TemplateError(f"{configs[0]}: {exc}") from exc
            specials += [t for t in (_token_text(v) for v in (config.get("added_tokens_decoder") or {}).values()) if t]
        return cls(
            source,
            bos_token=tokenizer.tokens.get("bos"),
            eos_token=tokenizer.tokens.get("eos"),
            special_tokens=specials,
            variables={"unk_token": tokenizer.tokens.get("unk"), "pad_token": tokenizer.tokens.get("pad"), **(variables or {})},
            date=date,
        )

    # --- rendering ---------------------------------------------------------------------

    def render(
        self, messages: list[dict], *, tools: list | None = None, add_generation_prompt: bool = False, **kwargs: Any
    ) -> str:
        """Render like ``apply_chat_template(messages, tools=tools, tokenize=False, ...)``.

        Args:
            messages: ``[{"role": ..., "content": ...}, ...]``, passed to the template as is.
            tools: The tool list (JSON schemas), or None.
            add_generation_prompt: Append the prompt that starts an assistant turn.
            **kwargs: Extra template variables (override the special tokens and the
                template's arguments).

        Raises:
            TemplateRaised: The template called ``raise_exception``.
            TemplateError: Any other error while rendering.
        """
        return self._generate(messages, tools, add_generation_prompt, kwargs, None)

    def render_marked(self, messages: list[dict], *, tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
        """Render like :meth:`render` and return the character spans of the template's
        ``{% generation %}`` blocks (transformers' ``return_assistant_tokens_mask``)."""
        spans: list[tuple[int, int]] = []
        return self._generate(messages, tools, False, {}, spans), spans

    def _generate(self, messages, tools, add_generation_prompt: bool, kwargs, spans: list | None) -> str:
        tracker = next(e for e in self._template.environment.extensions.values() if isinstance(e, _GenerationTags))
        out: list[str] = []
        tracker.out, tracker.spans = (out, spans) if spans is not None else (None, [])
        try:
            for piece in self._template.generate(
                messages=messages,
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **{**self.variables, **kwargs},
            ):
                out.append(piece)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise RenderFailed(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
        finally:
            tracker.out = None
        return "".join(out)

    def prepare(self, messages: list[dict], tools: list | None = None) -> tuple[list[dict], list | None]:
        """The messages and tools exactly as the template is given them.

        Per-message ``train`` flags are taken out; reasoning (``reasoning_content``) goes under
        the key(s) the template reads (``thinking`` for gpt-oss); tool-call arguments take the
        form the template needs (an object, or a JSON string for templates that concatenate
        them); tools given without the OpenAI wrapper get ``{"type": "function", "function": ...}``.

        Raises:
            RecordProblem: ``unsupported_by_template`` when the record holds tools, tool calls
                or reasoning that this template never renders (they would be lost without a word);
                ``bad_type`` for a tool call whose arguments are not JSON.
        """
        self._check_messages(messages)
        if tools and not self.reads_tools:
            raise RecordProblem(
                UNSUPPORTED,
                f"the record has {len(tools)} tool(s) but this chat template never renders `tools`, so the model "
                "would train without seeing them; use a template that does (`chat.template:`), or unmap the tools field",
            )
        arguments_form = self._probe()[2] if self.reads_tool_calls else "object"
        out = []
        for i, message in enumerate(messages):
            # As transformers 5 does: a key whose value is null is left out (`content: null` of a tool call).
            m = {k: v for k, v in message.items() if k != TRAIN_KEY and v is not None}
            reasoning = m.pop("reasoning_content", None)
            for key in REASONING_KEYS:
                if key != "reasoning_content" and key in m and reasoning is None:
                    reasoning = m.pop(key)
            if reasoning:
                if not self.reasoning_keys:
                    raise RecordProblem(
                        UNSUPPORTED,
                        f"message {i} ({m['role']}) has reasoning, but this chat template renders no reasoning "
                        f"(it reads none of {list(REASONING_KEYS)}); use a template that does, or unmap the reasoning",
                    )
                for key in self.reasoning_keys:
                    m[key] = reasoning
            calls = m.get("tool_calls")
            if calls:
                if not self.reads_tool_calls:
                    raise RecordProblem(
                        UNSUPPORTED,
                        f"message {i} has tool calls, but this chat template never renders `tool_calls`; "
                        "use a template that does (`chat.template:`), or drop such records",
                    )
                m["tool_calls"] = [_call_form(call, arguments_form, i) for call in calls]
                if "content" not in m and self._no_content is not _ABSENT:  # the form the template takes
                    m["content"] = self._no_content
            out.append(m)
        return out, _wrap_tools(tools) if tools else None

    def render_with_targets(
        self,
        messages: list[dict],
        *,
        tools: list | None = None,
        policy: str = CHAT_POLICY,
        reasoning: bool = True,
    ) -> Rendered:
        """Render the conversation once for training and locate its target spans in that text.

        Args:
            messages: The conversation: roles ``system``/``user``/``assistant`` (and ``tool``
                when the template mentions it); string contents (``None`` for an assistant
                turn that only calls tools); optional ``tool_calls``, ``reasoning_content``
                and a per-message ``train`` flag, which overrides the policy for its message.
            tools: The record's tool list, given to the template as ``tools``.
            policy: ``all_assistant`` (every assistant turn), ``last_assistant`` or its alias
                ``completion`` (the last one), or ``all`` (the whole text).
            reasoning: Train on the reasoning the template renders (default); when false,
                a turn's target starts at its content.

        Returns:
            The text (rendered with ``add_generation_prompt=False``), the target spans (see the
            module docstring) and ``prompt_end``, where the last target starts (0 when none).

        Raises:
            RecordProblem: a bad record: ``missing_field``/``bad_type`` for malformed messages,
                ``unknown_role``, ``empty_field`` for an empty assistant turn, ``no_target``,
                ``unsupported_by_template``, ``template_failed`` (the template cannot render this
                conversation), ``target_not_found`` (the template does not render a chosen turn's
                content) or ``no_end_of_turn``. The caller adds the file and record.
            TemplateRaised: The template called ``raise_exception`` on this conversation.
        """
        _check_policy(policy)
        self._regions = {}  # a message's region is asked for by its own turn and by its neighbours'
        msgs, tools = self.prepare(messages, tools)
        if policy == "generation":
            return self._generation_targets(msgs, tools)
        text = self._render_record(msgs, tools)
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        lost = self._unrendered(msgs, text, tools)
        if policy == "all":
            if not text:
                raise RecordProblem("no_target", "the conversation renders to empty text")
            prompt_end = self._turn_target(msgs, assistant[-1], text, tools, reasoning)[0] if assistant else 0
            return Rendered(text=text, targets=((0, len(text)),), prompt_end=prompt_end, unrendered=lost)
        chosen = set(assistant if policy == "all_assistant" else assistant[-1:])
        for i, m in enumerate(messages):
            flag = m.get(TRAIN_KEY)
            if flag is True:
                chosen.add(i)
            elif flag is False:
                chosen.discard(i)
        if not chosen:
            why = "no assistant turn" if not assistant else "every assistant turn has train: false"
            raise RecordProblem("no_target", f"conversation has nothing to train on ({why}; policy {policy!r})")
        spans = [self._turn_target(msgs, i, text, tools, reasoning) for i in sorted(chosen)]
        spans = [s for s in spans if s[1] > s[0]]
        if not spans:
            raise RecordProblem("no_target", "the chosen turns render no text to train on")
        return Rendered(text=text, targets=tuple(spans), prompt_end=spans[-1][0], unrendered=lost)

    def _unrendered(self, msgs: list[dict], text: str, tools) -> tuple[str, ...]:
        """The parts of messages the template printed nowhere: ``content``, ``reasoning`` (earlier
        turns' reasoning, which gpt-oss and Qwen3 drop by design), ``tool_calls`` (a call beyond
        the first, which gpt-oss drops), ``system`` (a second system message). A part counts as
        printed when its text is in ``text``, else when replacing it changes the rendering."""
        lost: list[str] = []
        for i, m in enumerate(msgs):
            for key in ("content", *self.reasoning_keys):
                value = m.get(key)
                if isinstance(value, str) and value.strip() and value.strip() not in text:
                    if not self._changes(msgs, i, text, tools, key=key):
                        lost.append("system" if m["role"] == "system" and key == "content" else
                                    "reasoning" if key != "content" else "content")
            for k, call in enumerate(m.get("tool_calls") or ()):
                arguments = call["function"].get("arguments")
                shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
                if shown not in text and not self._changes(msgs, i, text, tools, call=k):
                    lost.append("tool_calls")
        return tuple(lost)

    def _changes(self, msgs: list[dict], i: int, text: str, tools, *, key: str | None = None, call: int | None = None) -> bool:
        """Whether replacing one part of message ``i`` changes the rendering (the template prints it)."""
        mark = next((p for p in _PLACEHOLDERS if p not in text), None)
        if mark is None:
            return True  # cannot tell: never report a loss we did not see
        m = dict(msgs[i])
        if key is not None:
            m[key] = mark
        else:
            calls = list(m["tool_calls"])
            calls[call] = _mark_call(calls[call], mark)
            m["tool_calls"] = calls
        try:
            return self.render([*msgs[:i], m, *msgs[i + 1 :]], tools=tools) != text
        except TemplateError:
            return True

    def _generation_targets(self, msgs: list[dict], tools: list | None) -> Rendered:
        if not self.has_generation_tags:
            raise TemplateError(
                "masking: generation needs a chat template with {% generation %} ... {% endgeneration %} blocks; "
                "set chat.template to a generation-tagged training template, or use masking: all_assistant"
            )
        try:
            text, spans = self.render_marked(msgs, tools=tools)
        except RenderFailed as exc:
            raise RecordProblem(TEMPLATE_FAILED, f"{exc} (this conversation; others may render)") from exc
        spans = [(a, b) for a, b in spans if b > a]
        if not spans:
            raise RecordProblem("no_target", "the template's {% generation %} blocks mark nothing in this conversation")
        return Rendered(text=text, targets=tuple(spans), prompt_end=spans[-1][0])

    def _render_record(self, msgs: list[dict], tools: list | None, **kwargs: Any) -> str:
        try:
            return self.render(msgs, tools=tools, **kwargs)
        except RenderFailed as exc:
            raise RecordProblem(TEMPLATE_FAILED, f"{exc} (this conversation; others may render)") from exc

    def _check_messages(self, messages: list[dict]) -> None:
        if not isinstance(messages, list) or not messages:
            raise RecordProblem("missing_field", f"messages must be a non-empty list, got {str(messages)[:60]!r}")
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise RecordProblem(
                    "bad_type", f"message {i} must be a mapping with role and content, got {message!r:.60}"
                )
            if message.get("role") is None:
                raise RecordProblem("missing_field", f"message {i} has no 'role': {dict(message)!r:.80}")
            role, content = message["role"], message.get("content")
            calls = message.get("tool_calls")
            if content is None and not (role == "assistant" and calls):
                raise RecordProblem("missing_field", f"message {i} has no 'content': {dict(message)!r:.80}")
            if role not in self.roles:
                raise RecordProblem(
                    "unknown_role",
                    f"message {i} has role {role!r}; this chat template takes {list(self.roles)}. "
                    "Map the dataset's roles to these under the input's `roles:` (e.g. human: user, gpt: assistant)",
                )
            if content is not None and not isinstance(content, str):
                raise RecordProblem(
                    "bad_type", f"message {i} ({role}) content must be a string, got {type(content).__name__}"
                )
            if calls is not None and not isinstance(calls, list):
                raise RecordProblem("bad_type", f"message {i} tool_calls must be a list, got {type(calls).__name__}")
            thought = any(isinstance(message.get(k), str) and message.get(k).strip() for k in REASONING_KEYS)
            if role == "assistant" and not (content or "").strip() and not calls and not thought:
                raise RecordProblem("empty_field", f"message {i} (assistant) has empty content; nothing to train on")
            flag = message.get(TRAIN_KEY)
            if flag is not None and not isinstance(flag, bool):
                raise RecordProblem("bad_type", f"message {i} train flag must be true or false, got {flag!r}")

    # --- locating targets --------------------------------------------------------------

    def _turn_target(self, msgs: list[dict], i: int, text: str, tools, reasoning: bool) -> tuple[int, int]:
        """[start, end) of message ``i``'s target in ``text``: its rendered data through its end-of-turn token."""
        role = msgs[i]["role"]
        region = self._region(msgs, i, text, tools, reasoning=True)
        if region is None:
            raise RecordProblem(
                TARGET_NOT_FOUND,
                f"message {i} ({role}): the chat template does not render this message's content where it can be "
                "found (it drops or rewrites it), so its target is unknown",
            )
        start, end = region
        calls = bool(msgs[i].get("tool_calls"))
        has_reasoning = any(isinstance(msgs[i].get(k), str) and msgs[i][k] for k in self.reasoning_keys)
        syntax = calls  # the model writes the call syntax itself: the target starts after the header
        if has_reasoning:
            content = self._region(msgs, i, text, tools, reasoning=False)
            rendered = content is None or content[0] > start  # the template printed the reasoning
            if not reasoning and rendered:
                if content is None:  # only the reasoning is rendered for this turn, and it is no target
                    return end, end
                if calls:  # the call syntax after the reasoning is still the model's to write
                    thought = self._region(msgs, i, text, tools, reasoning=True, calls=False, content=False)
                    low = thought[1] if thought else None
                    return self._header_end(msgs, i, text, tools, content[0], low=low), self._closer(msgs, i, text, tools, end)
                start, syntax = content[0], False
            elif rendered:
                syntax = True  # and the reasoning syntax (<think>, <|channel|>analysis)
        if syntax:
            start = self._header_end(msgs, i, text, tools, start)
        return start, self._closer(msgs, i, text, tools, end)

    def _closer(self, msgs: list[dict], i: int, text: str, tools, end: int) -> int:
        """End of the end-of-turn token after message ``i``'s data (which ends at ``end``), before the
        next message's own data (a message the template prints earlier, e.g. a hoisted system
        prompt, does not bound it)."""
        role = msgs[i]["role"]
        bound = len(text)
        for j in range(i + 1, len(msgs)):
            following = self._region(msgs, j, text, tools, reasoning=True)
            if following is not None and following[0] >= end:
                bound = following[0]
                break
        stops, _, _ = self._probe()
        closer = _first_of(text, stops, end, bound)
        if closer is None:
            raise RecordProblem(
                NO_END_OF_TURN,
                f"no end-of-turn token follows message {i} ({role}) (looked for {list(stops)} in "
                f"{text[end:bound][:60]!r}); a model trained without it never stops",
            )
        return closer

    def _region(
        self, msgs: list[dict], i: int, text: str, tools, *, reasoning: bool, calls: bool = True, content: bool = True
    ) -> tuple[int, int] | None:
        """[first, last) character of ``text`` that depends on message ``i``'s own strings, or None
        when the template renders none of them (found by rendering once more with them replaced)."""
        key = (text, i, reasoning, calls, content)
        if key not in self._regions:
            self._regions[key] = self._find_region(msgs, i, text, tools, reasoning=reasoning, calls=calls, content=content)
        return self._regions[key]

    def _find_region(
        self, msgs: list[dict], i: int, text: str, tools, *, reasoning: bool, calls: bool, content: bool
    ) -> tuple[int, int] | None:
        mark = next((p for p in _PLACEHOLDERS if p not in text), None)
        if mark is None:
            return None
        m = dict(msgs[i])
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
            perturbed = self.render([*msgs[:i], m, *msgs[i + 1 :]], tools=tools)
        except TemplateError:
            return None
        p = _common_prefix(perturbed, text)
        s = _common_suffix(perturbed, text, min(len(perturbed), len(text)) - p)
        if mark not in perturbed[p : len(perturbed) - s]:
            return None
        return p, len(text) - s

    def _header_end(self, msgs: list[dict], i: int, text: str, tools, start: int, *, low: int | None = None) -> int:
        """Where turn ``i``'s own text begins, for a turn whose target starts before its data: after
        the assistant header (the generation prompt, or its longest prefix that ends at a special
        token or a newline, so the role name is never cut) between the previous message (or ``low``)
        and ``start``; where no header is printed (DeepSeek's second tool call in a row), right after
        the previous message, its end-of-turn token and the special tokens that close it."""
        stops, header, _ = self._probe()
        anchored = True  # the fallback may start right after `low`
        if low is None:
            previous = self._region(msgs, i - 1, text, tools, reasoning=True) if i > 0 else None
            anchored = previous is not None
            low = previous[1] if previous else 0
        if header:
            ends = {m.end() for m in self._special_re.finditer(header)} | {k + 1 for k, c in enumerate(header) if c == "\n"}
            for cut in [header[:k] for k in sorted(ends | {len(header)}, reverse=True)]:
                at = text.rfind(cut, low, start)
                if at >= 0 and _first_of(text, stops, at + len(cut), start) is None:
                    return at + len(cut)
        if not anchored:
            return start
        position = low
        while (after := _first_of(text, stops, position, start)) is not None:
            position = after
        while (special := self._special_re.match(text, position)) is not None and special.end() <= start:
            position = special.end()  # the previous message's own closing tokens (<｜tool▁output▁end｜>)
        return position

    def _probe(self) -> tuple[tuple[str, ...], str | None, str]:
        """What this template does, learned once from probe conversations: the end-of-turn
        tokens, the assistant header (generation prompt) and the tool-call argument form."""
        if self._probed is not None:
            return self._probed
        stops: list[str] = []
        user, answer = {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}
        header = None
        try:
            bare, prompted = self.render([user]), self.render([user], add_generation_prompt=True)
            cut = _common_prefix(bare, prompted)  # not always a prefix: Phi-3 ends `bare` with EOS instead
            inside = next((m for m in self._special_re.finditer(prompted) if m.start() < cut < m.end()), None)
            header = prompted[inside.start() if inside else cut :] or None
        except TemplateError:
            pass
        form = "object"
        probes: list[tuple[list[dict], list | None, str]] = [
            ([user, answer], None, "anywhere"),  # the last turn: the first special token after the content
            ([user, answer, {"role": "user", "content": "Bye"}], None, "adjacent"),  # an earlier turn: right after it
        ]
        empty: Any = _ABSENT
        if self.reads_tool_calls:
            call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
            # Arguments as an object (transformers' documented form) or a JSON string (templates that
            # concatenate them); a call's missing content as no key (transformers drops null values) or "".
            for form, empty in itertools.product(("object", "string"), (_ABSENT, "")):
                caller = {"role": "assistant", "content": empty, "tool_calls": [_call_form(call, form, 1)]}
                if empty is _ABSENT:
                    del caller["content"]
                convo = [user, caller, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]
                try:
                    text = self.render(convo, tools=[tool])
                except TemplateError:
                    continue
                if self._region(convo, 1, text, [tool], reasoning=True) is None:
                    continue  # renders, but without the call (e.g. a content branch that ignores tool_calls)
                probes.append((convo, [tool], "unless_known"))  # a call: the first special token, unless a known one closes it
                break
            else:
                form, empty = "object", _ABSENT
        self._no_content = empty
        self._probed = ((), header, form)  # provisional, so _region can run below
        for convo, tools, rule in probes:
            try:
                text = self.render(convo, tools=tools)
            except TemplateError:
                continue
            region = self._region(convo, 1, text, tools, reasoning=True)
            if region is None:
                continue
            bound = self._region(convo, 2, text, tools, reasoning=True) if len(convo) > 2 else None
            bound = bound[0] if bound else len(text)
            found = self._special_re.search(text, region[1], bound)
            if found is None or found.group() in stops:
                continue
            if rule == "adjacent" and found.start() != region[1]:
                continue
            if rule == "unless_known" and _first_of(text, stops, region[1], bound) is not None:
                continue
            stops.append(found.group())
        if not stops and self.eos_token:  # no special token closes a turn: EOS, where the template prints it
            stops.append(self.eos_token)
        self._probed = (tuple(stops), header, form)
        return self._probed

    def stop_tokens(self) -> tuple[str, ...]:
        """The texts that close a target: the end-of-turn tokens the template uses (EOS when none)."""
        return self._probe()[0]


def _first_of(text: str, tokens: Sequence[str], start: int, end: int) -> int | None:
    """End of the earliest occurrence of any of ``tokens`` within ``text[start:end]``, or None."""
    best = None
    for token in tokens:
        at = text.find(token, start, end)
        if at >= 0 and (best is None or at < best[0] or (at == best[0] and len(token) > best[1])):
            best = (at, len(token))
    return None if best is None else best[0] + best[1]


def _call_form(call: Any, form: str, index: int) -> dict:
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


def _mark_call(call: Mapping, mark: str) -> dict:
    call = dict(call)
    function = dict(call["function"])
    arguments = function.get("arguments")
    function["arguments"] = mark if isinstance(arguments, str) else {mark: mark}
    call["function"] = function
    return call


def _wrap_tools(tools: list) -> list:
    """OpenAI's tool shape ``{"type": "function", "function": {...}}`` for bare function schemas."""
    out = []
    for tool in tools:
        if isinstance(tool, Mapping) and "function" not in tool and "name" in tool:
            tool = {"type": "function", "function": dict(tool)}
        out.append(tool)
    return out


def _pick_source(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
        if isinstance(named.get("default"), str):
            return named["default"]
        raise TemplateError(f"chat_template lists templates {sorted(map(str, named))} but none named 'default'")
    raise TemplateError(
        "the tokenizer has no chat_template; add one to tokenizer_config.json, set `chat.template:` to a Jinja "
        "file, or use a pair template"
    )


def _config(folder: Path) -> dict:
    """``tokenizer_config.json``, its chat template taken from ``chat_template.jinja`` when there is one
    (transformers prefers the separate file)."""
    config = _read_json(folder / CONFIG_FILE)
    if (folder / JINJA_FILE).is_file():
        config = {**config, "chat_template": (folder / JINJA_FILE).read_text(encoding="utf-8")}
    return config


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{file}: cannot read it as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data
