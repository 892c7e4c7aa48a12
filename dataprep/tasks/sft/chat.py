"""The tokenizer's own chat template (Jinja), rendered exactly as ``transformers`` renders it,
and each conversation's targets located in that one rendering.

:class:`ChatTemplate` ties together what the modules beside it own::

    chat_loading    the template and its special tokens, from tokenizer files or a loaded tokenizer
    chat_jinja      rendering: transformers' sandboxed Jinja environment, a fixed strftime_now date
    chat_messages   the messages checked, and reshaped to what the template reads
    chat_probe      what the template does: end-of-turn tokens, assistant header, tool-call form
    chat_spans      the rendered text mapped back to each assistant turn's target span

:meth:`ChatTemplate.render` matches ``tokenizer.apply_chat_template(messages, tools=tools,
tokenize=False, **kwargs)``. :meth:`ChatTemplate.render_with_targets` renders a conversation
once for training and finds each chosen assistant turn's target in that text: from where the
template's generation prompt ends (the model writes the rest: gpt-oss's channel header, tool-call
and reasoning syntax; an empty think block stays context) through the end-of-turn token that
closes it (:mod:`dataprep.tasks.sft.chat_spans`).
Which turns are targets is the recipe's ``masking:`` target policy (``all_assistant``,
``last_assistant``, ``all``, ``generation``; :data:`~dataprep.tasks.sft.templates.TARGET_POLICIES`).

Tokenizing the text (special tokens recognised) and turning the target spans into a loss mask is
:mod:`dataprep.tasks.sft.loss_mask`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date as Date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataprep.errors import RecordProblem, RenderFailed, TemplateError
from dataprep.tasks.sft import chat_loading
from dataprep.tasks.sft.chat_messages import CHAT_ROLES, REASONING_KEYS, TRAIN_KEY, check_messages, prepare_messages
from dataprep.tasks.sft.chat_probe import Probe, probe_template
from dataprep.tasks.sft.chat_spans import Conversation, TurnTargets
from dataprep.tasks.sft.templates import CHAT_TARGET_POLICY, Rendered, check_target_policy

if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = ["ChatTemplate", "CHAT_ROLES", "REASONING_KEYS"]

_TOOL_LITERAL = re.compile(r"""['"]tool['"]""")
TEMPLATE_FAILED = "template_failed"  # the reason a conversation the template fails on is a bad record


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
        date: What ``strftime_now`` prints (``YYYY-MM-DD``); default :data:`~dataprep.tasks.sft.chat_jinja.TEMPLATE_DATE`.

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
        # jinja2 (50 ms) is imported by a run that renders a chat template, not by every run that imports this
        from dataprep.tasks.sft.chat_jinja import compile_template, parse_date

        self.date = parse_date(date)
        self.roles = CHAT_ROLES + (("tool",) if _TOOL_LITERAL.search(source) else ())
        # What the template reads at all: data it never mentions would be dropped without a word.
        self.reads_tools = re.search(r"\btools\b", source) is not None
        self.reads_tool_calls = "tool_calls" in source
        self.reasoning_keys = tuple(k for k in REASONING_KEYS if k in source)
        self.has_generation_tags = re.search(r"{%-?\s*generation\s*-?%}", source) is not None
        self._template = compile_template(source, self.date)
        # Longest first, so "<|endoftext|>" is not cut short by a shorter token it contains.
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
        self._probed: Probe | None = None
        self._final_eos: bool | None = None  # the template appends EOS after a final assistant turn

    def __repr__(self) -> str:
        return f"ChatTemplate({len(self.source)} chars, eos_token={self.eos_token!r}, roles={self.roles})"

    # --- loading (chat_loading) ----------------------------------------------------------

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
        return cls(**chat_loading.config_arguments(config, special_tokens=special_tokens, variables=variables), date=date)

    @classmethod
    def from_tokenizer_folder(cls, path: str | Path, **options: Any) -> ChatTemplate:
        """Build from a Hugging Face tokenizer folder (``tokenizer_config.json``, optionally
        ``chat_template.jinja`` and ``tokenizer.json``, whose added tokens are included).
        ``options`` are :meth:`from_tokenizer_config`'s ``variables`` and ``date``.

        Raises:
            TemplateError: No readable config, or no chat template in it.
        """
        folder, config, specials = chat_loading.read_folder(path)
        try:
            return cls.from_tokenizer_config(config, special_tokens=specials, **options)
        except TemplateError as exc:
            raise TemplateError(f"{folder / chat_loading.CONFIG_FILE}: {exc}") from exc

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
        return cls(**chat_loading.tokenizer_arguments(tokenizer, source=source, variables=variables), date=date)

    # --- rendering (chat_jinja) ----------------------------------------------------------

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
        from dataprep.tasks.sft.chat_jinja import render_template

        variables = {**self.variables, **kwargs}
        return render_template(self._template, messages, tools, add_generation_prompt=add_generation_prompt, variables=variables)

    def render_marked(self, messages: list[dict], *, tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
        """Render like :meth:`render` and return the character spans of the template's
        ``{% generation %}`` blocks (transformers' ``return_assistant_tokens_mask``)."""
        from dataprep.tasks.sft.chat_jinja import render_template

        spans: list[tuple[int, int]] = []
        text = render_template(self._template, messages, tools, add_generation_prompt=False, variables=self.variables, spans=spans)
        return text, spans

    # --- the messages as the template is given them (chat_messages) -------------------------

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
        check_messages(messages, self.roles)
        learned = self._probe() if self.reads_tool_calls else Probe((), None)
        return prepare_messages(
            messages, tools, reads_tools=self.reads_tools, reads_tool_calls=self.reads_tool_calls,
            reasoning_keys=self.reasoning_keys, arguments_form=learned.arguments_form, no_content=learned.no_content,
        )

    # --- targets (chat_spans) ------------------------------------------------------------

    def render_with_targets(
        self,
        messages: list[dict],
        *,
        tools: list | None = None,
        policy: str = CHAT_TARGET_POLICY,
        reasoning: bool = True,
    ) -> Rendered:
        """Render the conversation once for training and locate its target spans in that text.

        Args:
            messages: The conversation: roles ``system``/``user``/``assistant`` (and ``tool``
                when the template mentions it); string contents (``None`` for an assistant
                turn that only calls tools); optional ``tool_calls``, ``reasoning_content``
                and a per-message ``train`` flag, which overrides the policy for its message.
            tools: The record's tool list, given to the template as ``tools``.
            policy: The target policy (the recipe's ``masking:``): ``all_assistant`` (every
                assistant turn), ``last_assistant`` or its alias ``completion`` (the last one),
                ``all`` (the whole text) or ``generation`` (the template's generation blocks).
            reasoning: Train on the reasoning the template renders (default); when false,
                a turn's target starts after its reasoning (at the header before its content).

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
        check_target_policy(policy)
        msgs, tools = self.prepare(messages, tools)
        if policy == "generation":
            return self._generation_targets(msgs, tools)
        text = self._render_record(msgs, tools)
        conversation = Conversation(lambda m, t: self.render(m, tools=t), msgs, tools, text, self.reasoning_keys)
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        lost = conversation.unrendered()
        if policy == "all":
            if not text:
                raise RecordProblem("no_target", "the conversation renders to empty text")
            prompt_end = self._turns(conversation).turn(assistant[-1], reasoning=reasoning)[0] if assistant else 0
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
        turns = self._turns(conversation)
        spans = [turns.turn(i, reasoning=reasoning) for i in sorted(chosen)]
        spans = [s for s in spans if s[1] > s[0]]
        if not spans:
            raise RecordProblem("no_target", "the chosen turns render no text to train on")
        return Rendered(text=text, targets=tuple(spans), prompt_end=spans[-1][0], unrendered=lost)

    def _turns(self, conversation: Conversation) -> TurnTargets:
        learned = self._probe()
        return TurnTargets(conversation, learned.stops, learned.header, self._special_re, eos=self.eos_token)

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

    def _render_record(self, msgs: list[dict], tools: list | None) -> str:
        try:
            return self.render(msgs, tools=tools)
        except RenderFailed as exc:
            raise RecordProblem(TEMPLATE_FAILED, f"{exc} (this conversation; others may render)") from exc

    # --- what the template does (chat_probe) -----------------------------------------------

    def _probe(self) -> Probe:
        """What this template does, learned once from probe conversations."""
        if self._probed is None:
            self._probed = probe_template(
                self.render, special=self._special_re, eos_token=self.eos_token,
                reads_tool_calls=self.reads_tool_calls, reasoning_keys=self.reasoning_keys,
            )
        return self._probed

    def stop_tokens(self) -> tuple[str, ...]:
        """The texts that close a target: the end-of-turn tokens the template uses (EOS when none),
        then EOS when the template appends it after a final assistant turn (Phi-3; that turn's
        target ends with it, see :mod:`dataprep.tasks.sft.chat_spans`)."""
        stops = self._probe().stops
        if self._final_eos is None:
            self._final_eos = bool(self.eos_token) and self.eos_token not in stops and self._appends_eos()
        return (*stops, self.eos_token) if self._final_eos else stops

    def _appends_eos(self) -> bool:
        """Whether a final assistant turn's target ends with EOS (a probe conversation's does)."""
        probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        try:
            rendered = self.render_with_targets(probe, policy="last_assistant")
        except (RecordProblem, TemplateError):
            return False
        return rendered.text[: rendered.targets[-1][1]].endswith(self.eos_token)
