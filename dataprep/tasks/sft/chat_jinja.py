"""Rendering a chat template with Jinja exactly as ``transformers`` renders it.

:func:`compile_template` builds the environment ``apply_chat_template`` uses: sandboxed
(``ImmutableSandboxedEnvironment``), ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``,
transformers' ``tojson`` filter (no HTML escaping, with ``indent``/``separators``/``sort_keys``)
and its ``raise_exception`` global, and ``{% generation %} ... {% endgeneration %}`` blocks
(rendered unchanged; their character spans recorded on request). ``strftime_now`` prints a date
fixed when the template is built (never today's date), so the output does not depend on the day
it ran. :func:`render_template` renders with the variables ``transformers`` passes: ``messages``,
``tools``, ``documents=None``, ``add_generation_prompt``, the special tokens where set, and any
extra template arguments such as ``enable_thinking``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date as Date
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dataprep.errors import RenderFailed, TemplateError, TemplateRaised

__all__ = ["TEMPLATE_DATE", "compile_template", "parse_date", "render_template"]

TEMPLATE_DATE = "2026-01-01"  # what strftime_now prints unless the recipe sets template_date


def _raise_exception(message: str) -> None:
    raise TemplateRaised(f"the chat template raised an error: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False):
    # transformers' version: Jinja's own tojson escapes HTML characters and takes no options.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTags(jinja2.ext.Extension):
    """``{% generation %} ... {% endgeneration %}``, as transformers reads it: renders its body
    unchanged and, while :func:`render_template` is asked for spans, records the body's character span."""

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


def compile_template(source: str, today: datetime) -> jinja2.Template:
    """``source`` compiled in transformers' environment, ``strftime_now`` printing ``today``.

    Raises:
        TemplateError: The template does not compile.
    """
    try:
        return _environment(today).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the chat template does not compile: {exc} (line {exc.lineno})") from exc


def render_template(
    template: jinja2.Template,
    messages: list[dict],
    tools: list | None,
    *,
    add_generation_prompt: bool,
    variables: Mapping[str, Any],
    spans: list | None = None,
) -> str:
    """Render ``template`` as ``apply_chat_template`` does: ``messages``, ``tools``,
    ``documents=None``, ``add_generation_prompt`` and ``variables``. When ``spans`` is a list,
    the character spans of the ``{% generation %}`` blocks are appended to it (transformers'
    ``return_assistant_tokens_mask``).

    Raises:
        TemplateRaised: The template called ``raise_exception``.
        RenderFailed: Any other error while rendering (a :class:`TemplateError`).
    """
    tracker = next(e for e in template.environment.extensions.values() if isinstance(e, _GenerationTags))
    out: list[str] = []
    tracker.out, tracker.spans = (out, spans) if spans is not None else (None, [])
    try:
        for piece in template.generate(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **variables
        ):
            out.append(piece)
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise RenderFailed(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
    finally:
        tracker.out = None
    return "".join(out)
