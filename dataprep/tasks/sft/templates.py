"""Pair templates: render a record's fields into one training text plus its target spans.

A template is two ``str.format``-style strings, ``prompt`` and ``response``, with ``{field}``
placeholders. :meth:`PairTemplate.render` fills them from a record and appends the stop text
(the tokenizer's EOS string), and records *character* spans of the targets; tokenizing once
and turning the spans into a per-token loss mask is :mod:`dataprep.tasks.sft.loss_mask`'s job::

    record   = {"dialogue": "#Person1#: Hi", "summary": "A greeting."}       (template "dialogsum")
    text     = "Summarize the following conversation.\\n\\n#Person1#: Hi\\n\\nSummary: A greeting.<|endoftext|>"
    targets  = ((63, 87),)    # "A greeting.<|endoftext|>": a model that never learns the stop token never stops
    prompt_end = 63           # len("Summarize ... Summary: ")

Field values are inserted verbatim: a value holding ``"{x}"`` or ``"{{"`` stays literal, it is
never formatted again. Literal braces in a template are written ``{{`` and ``}}``.

Which text is a target is the *target policy* (the recipe's ``masking:``, :data:`TARGET_POLICIES`):
the response and stop text, or with ``all`` the whole text.

A record that cannot be rendered (a missing or empty field, a value that is not text)
raises :class:`~dataprep.errors.RecordProblem` with a short ``reason`` code, so the caller can
count the drop or turn it into an error with the file and line. A template that cannot work for
any record raises :class:`~dataprep.errors.TemplateError`.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataprep.errors import RecordProblem, TemplateError

__all__ = [
    "TARGET_POLICIES",
    "PAIR_TARGET_POLICY",
    "CHAT_TARGET_POLICY",
    "check_target_policy",
    "Rendered",
    "PairTemplate",
    "TEMPLATES",
    "get_template",
    "template_fields",
]

# Target policies: which text is a training target, as the recipe's `masking:` key chooses it (turning
# target spans into a per-token loss mask is loss_mask's job). For a pair every policy but "all" means
# "the response + stop text".
TARGET_POLICIES = ("completion", "all_assistant", "last_assistant", "all", "generation")  # generation: chat only
PAIR_TARGET_POLICY = "completion"  # default for pairs
CHAT_TARGET_POLICY = "all_assistant"  # default for chat
SPEC_KEYS = ("name", "prompt", "response", "prompt_no_input")


@dataclass(frozen=True)
class Rendered:
    """One rendered example.

    Attributes:
        text: The full text, special-token strings included, to be tokenized once.
        targets: Sorted, disjoint ``[start, end)`` character spans that are training
            targets: each response's content plus the end-of-turn/EOS text that closes it.
        prompt_end: Character offset where the (last) response starts.
    """

    text: str
    targets: tuple[tuple[int, int], ...]
    prompt_end: int
    # What of the record the template did not print (chat: "content", "reasoning", "tool_calls"),
    # one entry per message part; counted and warned about by the run.
    unrendered: tuple[str, ...] = ()

    def target_text(self) -> str:
        """The target characters, concatenated (for reports and tests)."""
        return "".join(self.text[a:b] for a, b in self.targets)


def check_target_policy(policy: str) -> None:
    """Raise a :class:`TemplateError` naming the valid policies (and a close match) for an unknown one."""
    if policy not in TARGET_POLICIES:
        close = difflib.get_close_matches(str(policy), TARGET_POLICIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TemplateError(f"unknown target policy (`masking:`) {policy!r}{hint}; valid policies are {list(TARGET_POLICIES)}")


# --- parsing ---------------------------------------------------------------------------

# A parsed template: literal text and field names, alternating as ("lit", "a") / ("field", "x").
_Piece = tuple[str, str]


def _parse(template: str, where: str) -> tuple[_Piece, ...]:
    if not isinstance(template, str):
        raise TemplateError(f"{where} must be a string, got {type(template).__name__}: {template!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"{where} {template!r} is not a valid template ({exc}); write literal braces as '{{{{' and '}}}}'"
        ) from exc
    pieces: list[_Piece] = []
    for literal, field, spec, conversion in parsed:
        if literal:
            pieces.append(("lit", literal))
        if field is None:
            continue
        if not field.isidentifier():
            raise TemplateError(
                f"{where} {template!r}: placeholder {{{field}}} must be a plain field name like {{instruction}} "
                "(no positional {}, no attribute or index access); write literal braces as '{{{{' and '}}}}'"
            )
        if spec or conversion:
            raise TemplateError(
                f"{where} {template!r}: placeholder {{{field}...}} has a conversion or format spec; "
                f"write just {{{field}}}"
            )
        pieces.append(("field", field))
    return tuple(pieces)


def _fields(pieces: tuple[_Piece, ...]) -> list[str]:
    return list(dict.fromkeys(value for kind, value in pieces if kind == "field"))


def _value(record: Mapping[str, Any], field: str) -> str | None:
    """The field as text; None when absent, None or blank. Raises on non-scalar values."""
    value = record.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (bool, int, float)):
        return str(value)
    raise RecordProblem(
        "bad_type",
        f"field {field!r} must be text or a number, got {type(value).__name__}: {str(value)[:60]!r}",
    )


def _fill(pieces: tuple[_Piece, ...], values: Mapping[str, str]) -> str:
    return "".join(values[v] if kind == "field" else v for kind, v in pieces)


def _fill_all(pieces: tuple[_Piece, ...], columns: Mapping[str, Sequence[Any]], rows: list[int]) -> list[str]:
    """:func:`_fill` for the records ``rows`` of ``columns`` (each value there text); no rows for None pieces."""
    parts = [[columns[v][i] for i in rows] if kind == "field" else itertools.repeat(v, len(rows)) for kind, v in pieces or ()]
    return ["".join(p) for p in zip(*parts)] if parts else [""] * len(rows)


# --- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class PairTemplate:
    """A prompt/response template over a record's fields.

    Args:
        name: Name for reports (``"custom"`` for inline templates).
        prompt: The prompt, with ``{field}`` placeholders.
        response: The response (the target), with ``{field}`` placeholders.
        prompt_no_input: Prompt used instead when a field that only ``prompt`` uses (like
            Alpaca's ``input``) is absent or blank; those fields are optional.
        example: A sample rendering, for the docs.

    Raises:
        TemplateError: Invalid syntax, ``prompt_no_input`` uses a field ``prompt`` lacks, or leaves out one the response uses.
    """

    name: str
    prompt: str
    response: str
    prompt_no_input: str | None = None
    example: str = ""

    def __post_init__(self) -> None:
        prompt = _parse(self.prompt, f"template {self.name!r}: prompt")
        response = _parse(self.response, f"template {self.name!r}: response")
        no_input = None
        if self.prompt_no_input is not None:
            no_input = _parse(self.prompt_no_input, f"template {self.name!r}: prompt_no_input")
            extra = set(_fields(no_input)) - set(_fields(prompt))
            both = (set(_fields(prompt)) - set(_fields(no_input))) & set(_fields(response))  # optional, yet needed
            if extra or both:
                raise TemplateError(f"template {self.name!r}: " + (
                    f"prompt_no_input uses {sorted(extra)} which prompt does not; prompt_no_input must be prompt without "
                    "its optional fields" if extra else f"the response uses {sorted(both)}, which prompt_no_input leaves "
                    "out (optional): a field the response needs is required; add it to prompt_no_input or drop it from the response"))
        if not _fields(response) and not self.response:
            raise TemplateError(
                f"template {self.name!r}: response is empty; it must name the target, e.g. '{{output}}'"
            )
        object.__setattr__(self, "_prompt", prompt)
        object.__setattr__(self, "_response", response)
        object.__setattr__(self, "_no_input", no_input)
        # the field sets, once: render() runs per example (they were parsed again on every call)
        optional = frozenset() if no_input is None else frozenset(_fields(prompt)) - frozenset(_fields(no_input))
        object.__setattr__(self, "_optional", optional)
        object.__setattr__(self, "_required", frozenset(_fields(prompt) + _fields(response)) - optional)
        object.__setattr__(self, "_required_order", tuple(sorted(self._required)))  # type: ignore[attr-defined]

    @property
    def optional_fields(self) -> frozenset[str]:
        """Fields that may be absent or blank (then ``prompt_no_input`` is used)."""
        return self._optional  # type: ignore[attr-defined]

    @property
    def required_fields(self) -> frozenset[str]:
        """Fields every record must have, non-blank."""
        return self._required  # type: ignore[attr-defined]

    @property
    def turn_fields(self) -> tuple[str, str] | None:
        """``(prompt field, response field)`` when the template has exactly one of each (Alpaca's
        ``instruction``/``output``): then earlier turns (``history``) render through it too."""
        response = set(_fields(self._response))  # type: ignore[attr-defined]
        prompt = self.required_fields - response
        if len(response) == 1 and len(prompt) == 1:
            return next(iter(prompt)), next(iter(response))
        return None

    @property
    def fingerprint(self) -> str:
        """sha256 of the template text (prompt, response, prompt_no_input), for the manifest."""
        spec = {"prompt": self.prompt, "response": self.response, "prompt_no_input": self.prompt_no_input}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()

    def _check_call(self, stop_text: str, policy: str) -> None:
        check_target_policy(policy)
        if not isinstance(stop_text, str) or not stop_text:
            raise TemplateError(f"template {self.name!r}: stop_text must be the tokenizer's EOS token string, got {stop_text!r}")

    def render(self, record: Mapping[str, Any], *, stop_text: str, policy: str = PAIR_TARGET_POLICY) -> Rendered:
        """Render one record: ``prompt + response + stop_text``.

        Args:
            record: Field name -> value (str, or a number/bool, rendered with ``str``).
            stop_text: The EOS token string, appended right after the response and part
                of the target.
            policy: The target policy (the recipe's ``masking:``): ``"all"`` makes the whole text a
                target; any other policy the response.

        Returns:
            The text, the target span ``[len(prompt), len(text))`` (the whole text for
            ``"all"``) and ``prompt_end = len(prompt)``.

        Raises:
            RecordProblem: ``missing_field`` / ``empty_field`` for an absent or blank
                required field, ``bad_type`` for a value that is not text or a number.
            TemplateError: ``stop_text`` empty, or an unknown target policy.
        """
        self._check_call(stop_text, policy)
        if not isinstance(record, Mapping):
            raise RecordProblem("bad_type", f"record must be a mapping of fields, got {type(record).__name__}")
        values: dict[str, str] = {}
        prompt = self._prompt  # type: ignore[attr-defined]
        for field in self._optional:  # type: ignore[attr-defined]
            value = _value(record, field)
            if value is None:
                prompt = self._no_input  # type: ignore[attr-defined]
            else:
                values[field] = value
        for field in self._required_order:  # type: ignore[attr-defined]
            value = _value(record, field)
            if value is None:
                reason = "missing_field" if record.get(field) is None else "empty_field"
                what = "is missing" if reason == "missing_field" else "is empty"
                raise RecordProblem(
                    reason,
                    f"field {field!r} {what}; template {self.name!r} needs {sorted(self.required_fields)}"
                    + (f" (optional: {sorted(self.optional_fields)})" if self.optional_fields else ""),
                )
            values[field] = value
        head = _fill(prompt, values)
        text = head + _fill(self._response, values) + stop_text  # type: ignore[attr-defined]
        start = 0 if policy == "all" else len(head)
        return Rendered(text=text, targets=((start, len(text)),), prompt_end=len(head))

    def render_all(self, columns: Mapping[str, Sequence[Any]], n: int, *, stop_text: str,
                   policy: str = PAIR_TARGET_POLICY) -> list[Rendered | None]:
        """:meth:`render` for ``n`` records as columns (field name -> ``n`` values; a field not there
        is absent), a column at a time, rendering exactly what :meth:`render` renders; None for each
        record left to :meth:`render`: a required field not non-blank text, an optional one neither
        text nor absent. Raises as :meth:`render` does for ``stop_text`` and ``policy``."""
        self._check_call(stop_text, policy)
        left: set[int] = set()  # records render() takes
        for field in self._required_order:  # type: ignore[attr-defined]
            values = columns.get(field)
            if values is None:
                return [None] * n
            left.update([i for i, v in enumerate(values) if type(v) is not str or not v or v.isspace()])
        no_input: set[int] = set()  # records whose optional fields are absent or blank: prompt_no_input
        for field in self._optional:  # type: ignore[attr-defined]
            values = columns.get(field)
            if values is None:
                no_input.update(range(n))
                continue
            left.update([i for i, v in enumerate(values) if v is not None and type(v) is not str])
            no_input.update([i for i, v in enumerate(values) if v is None or (type(v) is str and (not v or v.isspace()))])
        out: list[Rendered | None] = [None] * n
        for prompt, chosen in ((self._prompt, [i for i in range(n) if i not in left and i not in no_input]),  # type: ignore[attr-defined]
                               (self._no_input, sorted(no_input - left))):  # type: ignore[attr-defined]
            for i, head, tail in zip(chosen, _fill_all(prompt, columns, chosen), _fill_all(self._response, columns, chosen)):  # type: ignore[attr-defined]
                text = head + tail + stop_text
                out[i] = Rendered(text=text, targets=((0 if policy == "all" else len(head), len(text)),), prompt_end=len(head))
        return out


_ALPACA_HEAD = "Below is an instruction that describes a task"

TEMPLATES: dict[str, PairTemplate] = {
    t.name: t
    for t in (
        PairTemplate(
            name="alpaca",
            prompt=(
                f"{_ALPACA_HEAD}, paired with an input that provides further context. Write a response that "
                "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}"
                "\n\n### Response:\n"
            ),
            prompt_no_input=(
                f"{_ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Response:\n"
            ),
            response="{output}",
            example=(
                "Below is an instruction that describes a task. Write a response that appropriately completes "
                "the request.\n\n### Instruction:\nName a primary color.\n\n### Response:\n"
                "[Red.<|endoftext|>]"
            ),
        ),
        PairTemplate(
            name="dialogsum",
            prompt="Summarize the following conversation.\n\n{dialogue}\n\nSummary: ",
            response="{summary}",
            example=(
                "Summarize the following conversation.\n\n#Person1#: Hi, Tom.\n#Person2#: Hello!\n\n"
                "Summary: [#Person1# greets Tom.<|endoftext|>]"
            ),
        ),
        PairTemplate(
            name="prompt_completion",
            prompt="{prompt}",
            response="{completion}",
            example="def add(a, b):\n[    return a + b\n<|endoftext|>]",
        ),
        PairTemplate(
            name="classification",
            prompt="{text}\nLabel: ",
            response="{label}",
            example="Free entry in 2 a wkly comp to win FA Cup final tkts\nLabel: [spam<|endoftext|>]",
        ),
    )
}
"""Built-in templates. In each ``example`` the target is shown in ``[...]``."""


def get_template(name_or_spec: str | Mapping[str, Any] | PairTemplate) -> PairTemplate:
    """A built-in template by name, or a custom one from ``{prompt, response, prompt_no_input?}``.

    Raises:
        TemplateError: Unknown name (the message lists the built-ins and a close match),
            unknown keys, or an invalid template string.
    """
    if isinstance(name_or_spec, PairTemplate):
        return name_or_spec
    if isinstance(name_or_spec, str):
        if name_or_spec in TEMPLATES:
            return TEMPLATES[name_or_spec]
        close = difflib.get_close_matches(name_or_spec, TEMPLATES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TemplateError(
            f"unknown template {name_or_spec!r}{hint}; built-in templates are {sorted(TEMPLATES)}, "
            "'chat' uses the tokenizer's own chat template, or give a custom one as {prompt: ..., response: ...}"
        )
    if isinstance(name_or_spec, Mapping):
        unknown = sorted(set(name_or_spec) - set(SPEC_KEYS))
        if unknown:
            raise TemplateError(f"custom template has unknown key(s) {unknown}; valid keys are {list(SPEC_KEYS)}")
        missing = [k for k in ("prompt", "response") if k not in name_or_spec]
        if missing:
            raise TemplateError(f"custom template lacks {missing}; it needs `prompt` and `response`")
        return PairTemplate(
            name=name_or_spec.get("name", "custom"),
            prompt=name_or_spec["prompt"],
            response=name_or_spec["response"],
            prompt_no_input=name_or_spec.get("prompt_no_input"),
        )
    raise TemplateError(f"a template is a name or a {{prompt, response}} mapping, got {type(name_or_spec).__name__}")


def template_fields(template: PairTemplate) -> set[str]:
    """The fields every record needs (non-blank) for ``template``.

    Optional fields (Alpaca's ``input``) are not included; see ``template.optional_fields``.
    """
    return set(template.required_fields)
