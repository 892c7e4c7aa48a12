"""Where a chat template and its special tokens come from: a tokenizer's files, or a loaded tokenizer.

Each function returns the arguments :class:`~dataprep.tasks.sft.chat.ChatTemplate` is built with:
the Jinja ``source``, ``bos_token`` and ``eos_token``, every ``special_tokens`` text (the
tokenizer's added tokens: ``<|end|>``, ``<|im_end|>``, ...) and the ``variables`` transformers
passes besides them (``unk_token``, ``pad_token``)::

    tokenizer_config.json   chat_template: a string, or [{name, template}, ...] of which "default" is used
                            bos/eos/unk/pad_token: a string, or {"content": ...} in older configs
                            added_tokens_decoder: {id: {"content": ...}}
    chat_template.jinja     the template, preferred to the config's (newer transformers save it here)
    tokenizer.json          added_tokens: [{"content": ...}]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataprep.errors import TemplateError

if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = ["CONFIG_FILE", "config_arguments", "read_folder", "tokenizer_arguments"]

CONFIG_FILE = "tokenizer_config.json"
JINJA_FILE = "chat_template.jinja"  # newer transformers save the template here
TOKENIZER_FILE = "tokenizer.json"
ROLES = ("bos", "eos", "unk", "pad")


def config_arguments(
    config: Mapping[str, Any], *, special_tokens: Iterable[str] | None = None, variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The template and its tokens from a parsed ``tokenizer_config.json``; special tokens default
    to ``added_tokens_decoder``'s contents plus the bos/eos/unk/pad tokens.

    Raises:
        TemplateError: No chat template, or no ``default`` among several.
    """
    source = _pick_source(config.get("chat_template"))
    tokens = {role: _token_text(config.get(f"{role}_token")) for role in ROLES}
    if special_tokens is None:
        decoder = config.get("added_tokens_decoder") or {}
        special_tokens = [*(_token_text(t) for t in decoder.values()), *tokens.values()]
    return {
        "source": source,
        "bos_token": tokens["bos"],
        "eos_token": tokens["eos"],
        "special_tokens": [t for t in special_tokens if t],
        "variables": {"unk_token": tokens["unk"], "pad_token": tokens["pad"], **(variables or {})},
    }


def read_folder(path: str | Path) -> tuple[Path, dict, list[str]]:
    """A Hugging Face tokenizer folder (or a file in it): the folder, its ``tokenizer_config.json``
    (the template from ``chat_template.jinja`` when there is one) and every special token's text
    (the config's added tokens, ``tokenizer.json``'s when it is there, bos/eos/unk/pad).

    Raises:
        TemplateError: No readable config.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config = _config(folder)
    specials = [_token_text(t) for t in (config.get("added_tokens_decoder") or {}).values()]
    if (folder / TOKENIZER_FILE).is_file():
        specials += [t.get("content") for t in _read_json(folder / TOKENIZER_FILE).get("added_tokens", [])]
    specials += [_token_text(config.get(f"{r}_token")) for r in ROLES]
    return folder, config, [t for t in specials if t]


def tokenizer_arguments(
    tokenizer: LoadedTokenizer, *, source: str | None = None, variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The template for a loaded tokenizer: from the config file it was loaded with (or ``source``),
    the special tokens from its added tokens, bos/eos from its resolved tokens (so a recipe
    override of ``eos_token`` applies here too), plus ``variables``.

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
    return {
        "source": source,
        "bos_token": tokenizer.tokens.get("bos"),
        "eos_token": tokenizer.tokens.get("eos"),
        "special_tokens": specials,
        "variables": {"unk_token": tokenizer.tokens.get("unk"), "pad_token": tokenizer.tokens.get("pad"), **(variables or {})},
    }


def _token_text(value: Any) -> str | None:
    if isinstance(value, Mapping):  # {"content": "<s>", "lstrip": ...} in older configs
        value = value.get("content")
    return value if isinstance(value, str) and value else None


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
