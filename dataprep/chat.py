"""The tokenizer's own chat template (Jinja), rendered exactly as ``transformers`` renders it.

:meth:`ChatTemplate.render` matches ``tokenizer.apply_chat_template(messages, tokenize=False)``:
the same sandboxed Jinja environment (``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``),
the same ``tojson`` filter, ``raise_exception`` and ``strftime_now`` globals, and the same
variables (``messages``, ``tools=None``, ``documents=None``, ``add_generation_prompt`` and the
special tokens ``bos_token``/``eos_token``/``unk_token``/``pad_token`` where set).

:meth:`ChatTemplate.render_with_targets` also finds each assistant turn's target span by
*prefix rendering*: the text rendered up to the turn with the generation prompt must be a
prefix of the full text, so the turn's content starts after it. The target runs from the
content through the end-of-turn token that closes it (Phi-3)::

    <|user|>\\nHi<|end|>\\n<|assistant|>\\nHello!<|end|>\\n<|endoftext|>
    |<------------ prefix ------------>||<-target-->|
    prefix = render(messages[:1], add_generation_prompt=True); the final <|endoftext|> is no target

Tokenizing the text (special tokens recognised) and masking is :mod:`dataprep.masking`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .templates import CHAT_POLICY, RecordProblem, Rendered, TemplateError, _check_policy

if TYPE_CHECKING:
    from .tokenizer import LoadedTokenizer

__all__ = ["ChatTemplate", "TemplateRaised", "CHAT_ROLES"]

CHAT_ROLES = ("system", "user", "assistant")
CONFIG_FILE = "tokenizer_config.json"
JINJA_FILE = "chat_template.jinja"  # newer transformers save the template here
TOKENIZER_FILE = "tokenizer.json"
_TOOL_LITERAL = re.compile(r"""['"]tool['"]""")


class TemplateRaised(TemplateError):
    """The chat template itself called ``raise_exception(message)`` for this conversation.

    A subclass of :class:`TemplateError` (the template rejects the input); the caller may
    treat it as a per-record drop, since another conversation may render fine.
    """


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"the chat template raised an error: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False):
    # transformers' version: Jinja's own tojson escapes HTML characters and takes no options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


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


class ChatTemplate:
    """A Jinja chat template plus the special tokens it is rendered with.

    Args:
        source: The Jinja template text.
        bos_token: Passed to the template as ``bos_token`` (omitted when None).
        eos_token: Passed as ``eos_token``; also the fallback end of a target when no
            special token follows an assistant turn.
        special_tokens: Strings that can close an assistant turn (``<|end|>``,
            ``<|im_end|>``, ``</s>``, ...): normally every added token of the tokenizer.
        variables: Extra template variables, e.g. ``{"pad_token": ..., "unk_token": ...}``
            (transformers passes the whole special-tokens map).

    Raises:
        TemplateError: The template does not compile.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str | None,
        eos_token: str | None,
        special_tokens: Iterable[str],
        variables: Mapping[str, Any] | None = None,
    ):
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"a chat template must be non-empty Jinja text, got {source!r:.80}")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_tokens = tuple(dict.fromkeys(t for t in special_tokens if t))
        merged = {**(variables or {}), "bos_token": bos_token, "eos_token": eos_token}
        self.variables = {k: v for k, v in merged.items() if v is not None}  # None would render as "None"
        self.roles = CHAT_ROLES + (("tool",) if _TOOL_LITERAL.search(source) else ())
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"the chat template does not compile: {exc} (line {exc.lineno})") from exc
        # Longest first, so "<|endoftext|>" is not cut short by a shorter token it contains.
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._end_re = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")

    def __repr__(self) -> str:
        return f"ChatTemplate({len(self.source)} chars, eos_token={self.eos_token!r}, roles={self.roles})"

    # --- loading -----------------------------------------------------------------------

    @classmethod
    def from_tokenizer_config(
        cls, config: Mapping[str, Any], *, special_tokens: Iterable[str] | None = None
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
            variables={"unk_token": tokens["unk"], "pad_token": tokens["pad"]},
        )

    @classmethod
    def from_tokenizer_folder(cls, path: str | Path) -> ChatTemplate:
        """Build from a Hugging Face tokenizer folder (``tokenizer_config.json``, optionally
        ``chat_template.jinja`` and ``tokenizer.json``, whose added tokens are included).

        Raises:
            TemplateError: No readable config, or no chat template in it.
        """
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        config = _read_json(folder / CONFIG_FILE)
        if (folder / JINJA_FILE).is_file():  # transformers prefers the separate file
            config = {**config, "chat_template": (folder / JINJA_FILE).read_text(encoding="utf-8")}
        specials = [_token_text(t) for t in (config.get("added_tokens_decoder") or {}).values()]
        if (folder / TOKENIZER_FILE).is_file():
            specials += [t.get("content") for t in _read_json(folder / TOKENIZER_FILE).get("added_tokens", [])]
        specials += [_token_text(config.get(f"{r}_token")) for r in ("bos", "eos", "unk", "pad")]
        try:
            return cls.from_tokenizer_config(config, special_tokens=[t for t in specials if t])
        except TemplateError as exc:
            raise TemplateError(f"{folder / CONFIG_FILE}: {exc}") from exc

    @classmethod
    def from_tokenizer(cls, tokenizer: LoadedTokenizer) -> ChatTemplate:
        """Build for a loaded tokenizer: the template from the config file it was loaded with,
        the special tokens from its added tokens, bos/eos from its resolved tokens (so a
        recipe override of ``eos_token`` applies here too).

        Raises:
            TemplateError: The tokenizer was not loaded with a ``tokenizer_config.json``
                holding a chat template.
        """
        configs = [f for f in tokenizer.files if f.name == CONFIG_FILE]
        if not configs:
            raise TemplateError(
                f"{tokenizer.source}: no {CONFIG_FILE} with a chat_template beside the tokenizer; "
                "use a pair template, or point tokenizer.path at a folder whose config has one"
            )
        base = cls.from_tokenizer_folder(configs[0].parent)
        specials = [t.content for t in tokenizer.tokenizer.get_added_tokens_decoder().values()]
        return cls(
            base.source,
            bos_token=tokenizer.tokens.get("bos"),
            eos_token=tokenizer.tokens.get("eos"),
            special_tokens=[*specials, *base.special_tokens],
            variables={"unk_token": tokenizer.tokens.get("unk"), "pad_token": tokenizer.tokens.get("pad")},
        )

    # --- rendering ---------------------------------------------------------------------

    def render(self, messages: list[dict], *, add_generation_prompt: bool = False, **kwargs: Any) -> str:
        """Render like ``apply_chat_template(messages, tokenize=False, ...)``.

        Args:
            messages: ``[{"role": ..., "content": ...}, ...]``, passed to the template as is.
            add_generation_prompt: Append the prompt that starts an assistant turn.
            **kwargs: Extra template variables (override the special tokens).

        Raises:
            TemplateRaised: The template called ``raise_exception``.
            TemplateError: Any other error while rendering.
        """
        try:
            return self._template.render(
                messages=messages,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **{**self.variables, **kwargs},
            )
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError) as exc:
            raise TemplateError(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc

    def render_with_targets(self, messages: list[dict], *, policy: str = CHAT_POLICY) -> Rendered:
        """Render the conversation for training and find its target spans.

        Args:
            messages: The conversation; roles ``system``/``user``/``assistant`` (and ``tool``
                when the template mentions it), string contents.
            policy: ``all_assistant`` (every assistant turn), ``last_assistant`` or its alias
                ``completion`` (the last one), or ``all`` (the whole text).

        Returns:
            The text (rendered with ``add_generation_prompt=False``), the target spans
            (content + end-of-turn token of each chosen assistant turn) and ``prompt_end``,
            where the last assistant content starts (0 when there is none).

        Raises:
            RecordProblem: ``missing_field``/``bad_type`` for malformed messages,
                ``unknown_role``, ``empty_field`` for an empty assistant turn, ``no_target``
                for no assistant turn under an assistant policy.
            TemplateError: The template is not prefix-stable, drops or rewrites an
                assistant's content, or no end-of-turn token follows it; ``TemplateRaised``
                when the template raised on this conversation.
        """
        _check_policy(policy)
        self._check_messages(messages)
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        text = self.render(messages)
        if not assistant:
            if policy != "all":
                raise RecordProblem("no_target", f"conversation has no assistant turn to train on (policy {policy!r})")
            return Rendered(text=text, targets=((0, len(text)),) if text else (), prompt_end=0)
        if policy == "all":
            prompt_end = self._turn_span(messages, assistant[-1], text)[0]
            return Rendered(text=text, targets=((0, len(text)),), prompt_end=prompt_end)
        chosen = assistant if policy == "all_assistant" else assistant[-1:]
        spans = tuple(self._turn_span(messages, i, text) for i in chosen)
        return Rendered(text=text, targets=spans, prompt_end=spans[-1][0])

    def _check_messages(self, messages: list[dict]) -> None:
        if not isinstance(messages, list) or not messages:
            raise RecordProblem("missing_field", f"messages must be a non-empty list, got {str(messages)[:60]!r}")
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise RecordProblem(
                    "bad_type", f"message {i} must be a mapping with role and content, got {message!r:.60}"
                )
            for key in ("role", "content"):
                if message.get(key) is None:
                    raise RecordProblem("missing_field", f"message {i} has no {key!r}: {dict(message)!r:.80}")
            role, content = message["role"], message["content"]
            if role not in self.roles:
                raise RecordProblem(
                    "unknown_role",
                    f"message {i} has role {role!r}; this chat template takes {list(self.roles)}. "
                    "Map the dataset's roles to these (e.g. human -> user, gpt -> assistant)",
                )
            if not isinstance(content, str):
                raise RecordProblem(
                    "bad_type", f"message {i} ({role}) content must be a string, got {type(content).__name__}"
                )
            if role == "assistant" and not content.strip():
                raise RecordProblem("empty_field", f"message {i} (assistant) has empty content; nothing to train on")

    def _turn_span(self, messages: list[dict], i: int, text: str) -> tuple[int, int]:
        """[content start, end of the end-of-turn token) of assistant message ``i`` in ``text``."""
        prefix = self.render(messages[:i], add_generation_prompt=True)
        if not text.startswith(prefix):
            at = _common_prefix(prefix, text)
            raise TemplateError(
                f"chat template is not prefix-stable at message {i}: the conversation rendered up to it "
                f"(with the generation prompt) is not a prefix of the whole conversation; they differ at "
                f"character {at}: {prefix[at:at + 30]!r} vs {text[at:at + 30]!r}. Loss masks need a template "
                "that renders earlier turns the same whatever follows"
            )
        # The part of `text` that messages[:i+1] account for (the rest belongs to later turns).
        last = i == len(messages) - 1
        region_end = len(text) if last else _common_prefix(self.render(messages[: i + 1]), text)
        content = messages[i]["content"]
        start, found = -1, content
        for candidate in (content, content.strip()):
            start = text.find(candidate, len(prefix), region_end)
            if start >= 0:
                found = candidate
                break
        if start < 0:
            raise TemplateError(
                f"cannot find assistant message {i}'s content in the rendered text after its prompt; the chat "
                f"template changes it ({content[:40]!r}...), so its target span is unknown"
            )
        end = start + len(found)
        match = self._end_re.search(text, end, region_end)
        if match is not None:
            return start, match.end()
        eos = self.eos_token
        if eos and eos in text[end:region_end]:
            return start, text.index(eos, end, region_end) + len(eos)
        raise TemplateError(
            f"no end-of-turn token follows assistant message {i} (looked for {list(self.special_tokens)[:8]} and "
            f"eos {eos!r} in {text[end:region_end][:40]!r}); a model trained without it never stops"
        )


def _pick_source(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, Mapping)}
        if isinstance(named.get("default"), str):
            return named["default"]
        raise TemplateError(f"chat_template lists templates {sorted(map(str, named))} but none named 'default'")
    raise TemplateError(
        "the tokenizer has no chat_template; add one to tokenizer_config.json or use a pair template"
    )


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{file}: cannot read it as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data
