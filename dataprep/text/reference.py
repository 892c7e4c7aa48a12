"""Does the installed transformers give the run's tokenizer other ids? :func:`warn_if_transformers_differs`
encodes a few texts with ``tokenizer.json`` and with ``AutoTokenizer.from_pretrained(folder)``
(:mod:`dataprep.text.hf_backend`) and warns at the first difference; :func:`first_difference` says where."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dataprep.errors import ConfigError, TokenizerError
from dataprep.text.hf_backend import TOKENIZERS, _load, transformers_available, transformers_tokenizer, transformers_version
from dataprep.text.tokenizer import LoadedTokenizer
from dataprep.text.tokenizer_cache import specials_matched

__all__ = ["Difference", "first_difference", "warn_if_transformers_differs", "checkable", "PROBES",
           "TOKENIZERS", "transformers_available", "transformers_tokenizer", "_load"]

log = logging.getLogger("dataprep.reference")

# Ordinary and multilingual text; each is also checked right after a special token (see _variants).
PROBES = (
    "Hello world",
    " Hello world, with a leading space.",
    "The quick brown fox jumps over the lazy dog.\n\nA second  paragraph with two spaces.",
    "def add(a, b):\n    return a + b  # sum\n",
    "Les élèves ont été à l'école hier.",
    "Der Bär läuft über die Straße.",
    "日本語のテキストと中文。",
    "नमस्ते दुनिया, क़लम",
    "Привет, мир!",
    "مرحبا بالعالم",
    "  two leading spaces\tand a tab",
)
SAMPLE_CHARS = 2000  # characters of each of the run's own texts that are checked


@dataclass(frozen=True)
class Difference:
    """Where the two references first give different ids for a text."""

    text: str
    position: int  # token index
    ours: tuple[int | None, str | None]  # (id, token) from tokenizer.json; None past the end
    theirs: tuple[int | None, str | None]  # (id, token) from transformers

    def describe(self) -> str:
        def tok(pair: tuple[int | None, str | None]) -> str:
            return "(no token: the text ended)" if pair[0] is None else f"{pair[1]!r} ({pair[0]})"

        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return (
            f"text {shown!r}, token {self.position}: tokenizer.json gives {tok(self.ours)}, "
            f"transformers gives {tok(self.theirs)}"
        )


def first_difference(tokenizer: LoadedTokenizer, hf: Any, texts: Iterable[str], *, keep: bool = True) -> Difference | None:
    """The first place where ``tokenizer`` (special tokens matched, as templates are encoded) and
    ``hf(text, add_special_tokens=False)`` give different ids, or None when they agree on every text.
    ``keep``: keep the copy that matches specials for later encodes (:func:`specials_matched`)."""
    texts = list(texts)
    if not texts:
        return None
    ours_tok = specials_matched(tokenizer, keep=keep)  # special tokens matched in the text, as templates are encoded
    ours = [e.ids for e in ours_tok.encode_batch(texts, add_special_tokens=False)]
    theirs = hf(texts, add_special_tokens=False)["input_ids"]
    for text, a, b in zip(texts, ours, theirs):
        if a == b:
            continue
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        mine = (a[k], ours_tok.id_to_token(a[k])) if k < len(a) else (None, None)
        other = (b[k], hf.convert_ids_to_tokens(b[k])) if k < len(b) else (None, None)
        return Difference(text, k, mine, other)
    return None


def _variants(tokenizer: LoadedTokenizer, texts: Sequence[str]) -> list[str]:
    """Each text as it is, and right after a special token (where templates put text)."""
    special = next((tokenizer.tokens.get(r) for r in ("eos", "bos", "pad") if tokenizer.tokens.get(r)), None)
    out = list(texts)
    if special is not None:
        out += [special + text for text in texts]
    return out


def warn_if_transformers_differs(tokenizer: LoadedTokenizer, texts: Sequence[str] = (), *, keep: bool = True) -> Difference | None:
    """Warn when the installed transformers encodes this tokenizer's folder differently.

    Runs only when transformers is installed and the tokenizer is a Hugging Face folder (its
    ``tokenizer.json`` was loaded); otherwise returns None at once. ``texts`` (a few of the
    run's own texts, cut to ``SAMPLE_CHARS``) and :data:`PROBES` are encoded as they are and
    right after a special token, by ``tokenizer`` and by ``AutoTokenizer.from_pretrained(folder)``.

    Args:
        tokenizer: the run's tokenizer (``tokenizer.reference: tokenizers``).
        texts: a few of the run's own texts.
        keep: keep the tokenizer copy the check encodes with (a fine-tuning run's masks use it again).

    Returns:
        The first difference (also logged as a WARNING), or None.
    """
    if not checkable(tokenizer):
        return None
    json_file = next(f for f in tokenizer.files if f.name == "tokenizer.json")
    try:
        hf = transformers_tokenizer(json_file.parent, kind="json")
    except (TokenizerError, ConfigError) as exc:
        log.info("tokenizer reference check skipped: %s", exc)
        return None
    sample = [t[:SAMPLE_CHARS] for t in texts if isinstance(t, str) and t]
    found = first_difference(tokenizer, hf, _variants(tokenizer, [*sample, *PROBES]), keep=keep)
    if found is not None:
        version = transformers_version()
        log.warning(
            "%s: transformers %s gives other token ids than tokenizer.json for this tokenizer; first difference: %s. "
            "To train with transformers %s's ids (what AutoTokenizer.from_pretrained gives), set "
            "`tokenizer.reference: transformers`; keep `tokenizer.reference: tokenizers` (the default) for "
            "tokenizer.json's ids (also transformers 4.x's)",
            json_file.parent, version, found.describe(), version,
        )
    return found


def checkable(tokenizer: LoadedTokenizer) -> bool:
    """The tokenizer is a ``tokenizer.json`` folder and transformers is installed: the two can be compared."""
    return any(f.name == "tokenizer.json" for f in tokenizer.files) and transformers_available()
