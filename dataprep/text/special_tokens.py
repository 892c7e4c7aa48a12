"""Which token plays each special role (BOS, EOS, pad, unk), and where that was read.

Special tokens are never guessed silently. Each role comes from the first of these that names
it, and :attr:`~dataprep.text.tokenizer.LoadedTokenizer.sources` records which one did:

=====================  =====================================================================
source                 where
=====================  =====================================================================
``recipe``             ``tokenizer.bos_token`` / ``eos_token`` / ``pad_token``
``tokenizer_config``   ``tokenizer_config.json`` (a string or an AddedToken object); ``null``
                       there means the tokenizer has none, and ends the search
``post_processor``     ``tokenizer.json``'s post-processor: a ``TemplateProcessing``'s special
                       tokens before (BOS) and after (EOS) the sequence, ``RobertaProcessing``
                       and ``BertProcessing`` cls (BOS) and sep (EOS), inside a ``Sequence`` too
``model``              the model's own unknown token (unk only)
``trained``            a tokenizer :func:`~dataprep.text.train_bpe.train_tokenizer` made:
                       ``<|endoftext|>`` is EOS and pad
``well_known_name``    ``<s>``, ``<|endoftext|>``, ``</s>``, ``<pad>``, ``<unk>`` (``[CLS]`` ...
                       for WordPiece), only where the tokenizer marks that token special; logged
                       as a warning that names the file, the token and the recipe key to set
=====================  =====================================================================

So an ordinary vocabulary entry that happens to be spelled ``<s>`` (Qwen3) or
``<|endoftext|>`` (RoBERTa) never becomes a BOS or EOS.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, models

from dataprep.errors import TokenizerError

__all__ = ["ROLES", "ALL_ROLES", "SOURCES", "ENDOFTEXT", "resolve_roles", "require_in_vocab", "unknown_token_id"]

log = logging.getLogger("dataprep.tokenizer")

ENDOFTEXT = "<|endoftext|>"
ROLES = ("bos", "eos", "pad")
ALL_ROLES = (*ROLES, "unk")
# Where a special token's role came from (LoadedTokenizer.sources; the manifest's special_tokens).
RECIPE, CONFIG, POST_PROCESSOR, MODEL, TRAINED, WELL_KNOWN_NAME = (
    "recipe", "tokenizer_config", "post_processor", "model", "trained", "well_known_name"
)
SOURCES = (RECIPE, CONFIG, POST_PROCESSOR, MODEL, TRAINED, WELL_KNOWN_NAME)

# Names tried last, in order, for a role nothing else named; used only where the tokenizer marks
# the token special. GPT-2 pads with <|endoftext|> (byte-level BPEs only).
WELL_KNOWN = {
    "wordpiece": {"bos": ("[CLS]",), "eos": ("[SEP]",), "pad": ("[PAD]",), "unk": ("[UNK]",)},
    "byte_level": {"bos": ("<s>",), "eos": (ENDOFTEXT, "</s>"), "pad": ("<pad>", ENDOFTEXT), "unk": ("<unk>",)},
    "other": {"bos": ("<s>",), "eos": (ENDOFTEXT, "</s>"), "pad": ("<pad>",), "unk": ("<unk>",)},
}
_ROLE_NAMES = {"bos": "BOS", "eos": "EOS", "pad": "pad", "unk": "unknown"}


def resolve_roles(
    tokenizer: Tokenizer,
    *,
    overrides: dict[str, str | None],
    add_bos: bool,
    add_eos: bool,
    kind: str,
    config: dict,
    config_file: Path | None,
    source: str,
    file: Path | None = None,
    warn: bool = True,
) -> tuple[dict[str, str | None], dict[str, str]]:
    """role -> token and role -> where it came from, in the order the module docstring gives.

    Args:
        tokenizer: The tokenizer; the resolved tokens are registered as special in it.
        overrides: The recipe's ``{"bos": bos_token, "eos": eos_token, "pad": pad_token}``.
        add_bos: The recipe's; a BOS is then required.
        add_eos: The recipe's; an EOS is then required.
        kind: The layout read (``wordpiece``, ``wordpiece_json``, ``byte_level``, ``json``) or ``trained``.
        config: ``tokenizer_config.json`` (or ``special_tokens_map.json``), ``{}`` when none.
        config_file: The file ``config`` came from.
        source: The tokenizer's path, for messages.
        file: The tokenizer file, for the well-known-name warning.
        warn: Log a warning when a role falls back to a well-known name.

    Raises:
        TokenizerError: A named token is not in the vocabulary, or BOS/EOS is needed and missing.
    """
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    post = _post_processor_tokens(tokenizer)
    names = WELL_KNOWN["wordpiece" if kind.startswith("wordpiece") else "byte_level" if kind == "byte_level" else "other"]
    tokens: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for role in ALL_ROLES:
        found: str | None
        if overrides.get(role) is not None:
            found, where = overrides[role], RECIPE
            require_in_vocab(tokenizer, found, source, f"`tokenizer.{role}_token`", f"set `tokenizer.{role}_token`")
        elif f"{role}_token" in config:
            found, where = _config_token(config[f"{role}_token"], role, config_file), CONFIG
            if found is not None:
                fix = f"fix the file, or set `tokenizer.{role}_token` in the recipe" if role != "unk" else "fix the file"
                require_in_vocab(tokenizer, found, str(config_file), f"{role}_token", fix)
        elif kind == "trained":
            found, where = (ENDOFTEXT, TRAINED) if role in ("eos", "pad") else (None, None)
        elif role in post:
            found, where = post[role], POST_PROCESSOR
            require_in_vocab(tokenizer, found, source, f"the post-processor's {role} token", f"fix the file, or set `tokenizer.{role}_token`")
        elif role == "unk" and (unk := _model_unk(tokenizer)) is not None:
            found, where = unk, MODEL
        else:
            found = next((n for n in names[role] if n in special), None)
            where = WELL_KNOWN_NAME if found is not None else None
        tokens[role] = found
        if found is not None:
            sources[role] = where
    guessed = {role: tokens[role] for role in ALL_ROLES if sources.get(role) == WELL_KNOWN_NAME}
    if guessed and warn:
        _warn_guessed(guessed, file or source)
    for role, flag in (("bos", add_bos), ("eos", add_eos)):
        if flag and tokens[role] is None:
            raise TokenizerError(f"{source}: {_no_role(tokenizer, role, names[role], config, config_file)}")
    _mark_special(tokenizer, [t for t in tokens.values() if t is not None])
    return tokens, sources


def _warn_guessed(guessed: dict[str, str | None], where: Path | str) -> None:
    """Warn that ``guessed`` (role -> token) were chosen by their well-known names, and say how to name them."""
    by_token: dict[str, list[str]] = {}
    for role, token in guessed.items():
        by_token.setdefault(token, []).append(_ROLE_NAMES[role])
    keys = [f"`tokenizer.{role}_token`" for role in guessed if role != "unk"]
    fixes = [f"set {' and '.join(keys)} in the recipe"] if keys else []
    fixes += ["add `unk_token` to tokenizer_config.json"] if "unk" in guessed else []
    log.warning(
        "%s: nothing names its %s token (no recipe key, tokenizer_config.json entry or post-processor); using %s: "
        "special token(s) of the tokenizer, chosen by their well-known names. fix: %s",
        where,
        " and ".join(_ROLE_NAMES[role] for role in guessed),
        ", ".join(f"{token!r} as {' and '.join(roles)}" for token, roles in by_token.items()),
        "; or ".join(fixes),
    )


def unknown_token_id(special_tokens: dict[str, dict[str, Any]]) -> int | None:
    """The id that stands for text the tokenizer cannot represent, from ``special_tokens`` (a
    :class:`~dataprep.text.tokenizer.LoadedTokenizer`'s or a manifest's); None when there is none,
    or when that id also serves as BOS, EOS or pad (its occurrences then say nothing about lost text)."""
    unk = special_tokens.get("unk")
    if unk is None:
        return None
    return None if unk["id"] in {special_tokens[r]["id"] for r in ROLES if r in special_tokens} else unk["id"]


def _config_token(value: Any, role: str, config_file: Path | None) -> str | None:
    """A config entry's token: a string, an AddedToken object (``{"content": ...}``), or None for null."""
    if value is None:
        return None
    token = value.get("content") if isinstance(value, dict) else value
    if not isinstance(token, str) or not token:
        raise TokenizerError(
            f"{config_file}: {role}_token is {value!r}; expected a token string, an AddedToken object with its "
            f"`content`, or null for none. Fix the file, or set `tokenizer.{role}_token` in the recipe"
        )
    return token


def _post_processor_tokens(tokenizer: Tokenizer) -> dict[str, str]:
    """BOS and EOS as the post-processor frames a sequence (see the module docstring)."""
    processor = tokenizer.post_processor
    if processor is None:
        return {}
    found: dict[str, str] = {}
    for step in _steps(json.loads(processor.__getstate__())):
        for role, token in _frame_tokens(step).items():
            found.setdefault(role, token)
    return found


def _steps(processor: dict) -> list[dict]:
    if processor.get("type") == "Sequence":
        return [s for p in processor.get("processors", []) for s in _steps(p)]
    return [processor]


def _frame_tokens(step: dict) -> dict[str, str]:
    kind = step.get("type")
    if kind in ("RobertaProcessing", "BertProcessing"):
        pairs = {"bos": step.get("cls"), "eos": step.get("sep")}
        return {role: pair[0] for role, pair in pairs.items() if isinstance(pair, list) and pair and isinstance(pair[0], str)}
    if kind != "TemplateProcessing":
        return {}
    specials = step.get("special_tokens") or {}

    def text(item: dict) -> str | None:  # a template item's token, when it is one special token
        tokens = (specials.get(item["SpecialToken"]["id"]) or {}).get("tokens") or []
        return tokens[0] if len(tokens) == 1 else None

    found: dict[str, str] = {}
    for template in (step.get("single") or [], step.get("pair") or []):
        sequences = [i for i, item in enumerate(template) if "Sequence" in item]
        if not sequences:
            continue
        before = [text(item) for item in template[: sequences[0]] if "SpecialToken" in item]
        after = [text(item) for item in template[sequences[-1] + 1 :] if "SpecialToken" in item]
        if before and before[0]:
            found.setdefault("bos", before[0])
        if after and after[0]:
            found.setdefault("eos", after[0])
    return found


def _model_unk(tokenizer: Tokenizer) -> str | None:
    """The model's own unknown token: BPE, WordPiece and WordLevel name it, Unigram gives its id."""
    model = tokenizer.model
    if isinstance(model, models.Unigram):
        unk_id = json.loads(model.__getstate__()).get("unk_id")
        return None if unk_id is None else model.id_to_token(unk_id)
    unk = getattr(model, "unk_token", None)
    return unk if isinstance(unk, str) and tokenizer.token_to_id(unk) is not None else None


def _no_role(tokenizer: Tokenizer, role: str, names: tuple[str, ...], config: dict, config_file: Path | None) -> str:
    """The tokenizer has no ``role`` token: the fix, then why."""
    if config.get(f"{role}_token", "") is None:
        why = f"{config_file} says {role}_token: null"
    else:
        why = "no recipe key, tokenizer_config.json entry or post-processor names one"
        ordinary = [n for n in names if tokenizer.token_to_id(n) is not None]
        if ordinary:
            why += f"; {' and '.join(map(repr, ordinary))} is only an ordinary token of the vocabulary, not a special one"
    return f"tokenizer has no {role.upper()} token; set `tokenizer.{role}_token` in the recipe, or `tokenizer.add_{role}: false` ({why})"


def require_in_vocab(tokenizer: Tokenizer, token: str, where: str, what: str, fix: str) -> None:
    """Unless ``token`` is in the vocabulary, raise :class:`TokenizerError` naming ``where``,
    ``what``, close matches and ``fix``."""
    if tokenizer.token_to_id(token) is not None:
        return
    candidates = set(tokenizer.get_vocab(with_added_tokens=True))
    close = difflib.get_close_matches(token, candidates, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(repr(c) for c in close)}" if close else "no close matches"
    raise TokenizerError(f"{where}: {what} {token!r} is not in the tokenizer's vocabulary ({hint}); {fix}")


def _mark_special(tokenizer: Tokenizer, tokens: list[str]) -> None:
    """Register the resolved special tokens as *special* added tokens.

    Only special added tokens obey ``encode_special_tokens`` (split) and can be matched in raw
    text when it is off. Tokens already registered as special are left untouched, so loading
    a tokenizer.json whose specials are in order does not change its JSON (or fingerprint).
    """
    added = {t.content: t for t in tokenizer.get_added_tokens_decoder().values()}
    new = []
    for token in dict.fromkeys(tokens):
        old = added.get(token)
        if old is not None and old.special:
            continue
        if old is not None:
            new.append(
                AddedToken(
                    token,
                    single_word=old.single_word,
                    lstrip=old.lstrip,
                    rstrip=old.rstrip,
                    normalized=old.normalized,
                    special=True,
                )
            )
        else:
            new.append(AddedToken(token, special=True, normalized=False))
    if new:
        tokenizer.add_special_tokens(new)
