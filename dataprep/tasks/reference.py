"""Whose ids: ``tokenizer.json`` as shipped, or what the installed ``transformers`` builds from the folder.

The recipe's ``tokenizer.reference`` picks the tokenizer that encodes everything:

==============  ===========================================================================
reference       the encoding tokenizer
==============  ===========================================================================
tokenizers      ``tokenizer.json`` as the ``tokenizers`` library loads it (the default; also
                what transformers 4.x gives)
transformers    the backend ``tokenizers.Tokenizer`` of ``AutoTokenizer.from_pretrained(folder)``
                (local files only), so the ids are the installed transformers' ids
==============  ===========================================================================

The two differ for Llama-style SentencePiece folders under transformers 5.x, which rebuilds them
from their config: Phi-3's ``tokenizer.json`` prepends ``▁`` to every piece of text between special
tokens, transformers 5 uses ``Metaspace(prepend_scheme="first")`` and prepends it only at the very
start of the text::

    text              "<|user|>\\nHi<|end|>"
    tokenizers        <|user|>  ▁Hi (6324)  <|end|>
    transformers 5    <|user|>  Hi (18567)  <|end|>

Byte-level BPE (GPT-2, Llama 3, DeepSeek-V3, gpt-oss), Gemma 3 and WordPiece agree.
:func:`warn_if_transformers_differs` encodes a few texts both ways at the start of a run and warns
when they disagree. The transformers load is cached per folder (and its files' mtimes and sizes).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from dataprep.errors import ConfigError, TokenizerError

if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = [
    "REFERENCES",
    "Difference",
    "transformers_available",
    "transformers_version",
    "transformers_tokenizer",
    "transformers_backend",
    "first_difference",
    "warn_if_transformers_differs",
    "check_run",
    "PROBES",
]

log = logging.getLogger("dataprep.reference")

TOKENIZERS, TRANSFORMERS = "tokenizers", "transformers"
REFERENCES = (TOKENIZERS, TRANSFORMERS)
INSTALL = "pip install transformers"

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


def transformers_available() -> bool:
    """Whether ``transformers`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("transformers") is not None
    except (ValueError, ImportError):  # sys.modules holds None or a module without a spec: blocked
        return False


def transformers_version() -> str | None:
    """The installed transformers version, or None."""
    if not transformers_available():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return None


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"`tokenizer.reference: transformers` needs the transformers library, which is not installed "
            f"({exc}); `{INSTALL}`, or set `tokenizer.reference: tokenizers` to encode with tokenizer.json as shipped"
        ) from exc
    return transformers


def transformers_tokenizer(folder: Path, *, kind: str, lowercase: bool = False) -> Any:
    """The tokenizer the installed transformers builds for ``folder`` (local files only; cached).

    A ``tokenizer.json`` folder is loaded with ``AutoTokenizer.from_pretrained``. The two layouts
    AutoTokenizer cannot load without a config are loaded with the class that reads them:
    ``vocab.json`` + ``merges.txt`` with ``GPT2TokenizerFast``, ``vocab.txt`` with
    ``BertTokenizerFast(do_lower_case=lowercase)``.

    Args:
        folder: the tokenizer's folder.
        kind: the layout :func:`dataprep.text.tokenizer._read` found (``json``, ``byte_level``,
            ``wordpiece``, ...); ``vocab.json`` / ``vocab.txt`` layouts pick their class.
        lowercase: ``tokenizer.lowercase`` (WordPiece only).

    Raises:
        ConfigError: transformers is not installed.
        TokenizerError: transformers cannot load the folder.
    """
    folder = Path(folder).resolve()
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir()) if p.is_file())
    layout = "auto" if (folder / "tokenizer.json").is_file() else kind
    return _load(str(folder), stamp, layout, lowercase)


@functools.lru_cache(maxsize=8)
def _load(folder: str, stamp: tuple, layout: str, lowercase: bool) -> Any:
    transformers = _import_transformers()
    try:
        if layout == "byte_level":  # vocab.json + merges.txt
            return transformers.GPT2TokenizerFast.from_pretrained(folder, local_files_only=True)
        if layout == "wordpiece":  # vocab.txt
            return transformers.BertTokenizerFast.from_pretrained(folder, do_lower_case=lowercase, local_files_only=True)
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises ValueError, OSError, KeyError, ... on folders it cannot read
        raise TokenizerError(
            f"{folder}: transformers {transformers.__version__} cannot load this folder ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); set `tokenizer.reference: tokenizers`"
        ) from exc


def transformers_backend(folder: Path, *, kind: str, lowercase: bool = False) -> Tokenizer:
    """A private copy of the backend ``tokenizers.Tokenizer`` of :func:`transformers_tokenizer`.

    Raises:
        ConfigError: transformers is not installed.
        TokenizerError: transformers cannot load the folder, or its tokenizer is not a fast one.
    """
    hf = transformers_tokenizer(folder, kind=kind, lowercase=lowercase)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"{folder}: transformers loads it as {type(hf).__name__}, which has no `tokenizers` backend; "
            "set `tokenizer.reference: tokenizers`"
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


# --- the check at the start of a run -----------------------------------------------------------


def first_difference(tokenizer: LoadedTokenizer, hf: Any, texts: Iterable[str]) -> Difference | None:
    """The first place where ``tokenizer`` (special tokens matched, as templates are encoded) and
    ``hf(text, add_special_tokens=False)`` give different ids, or None when they agree on every text."""
    ours_tok = tokenizer.tokenizer
    texts = list(texts)
    if not texts:
        return None
    # Match special tokens in the text as templates are encoded (dataprep.tasks.sft.loss_mask): flip the flag
    # for this encode instead of copying the tokenizer (a copy of Gemma's costs a second).
    split = ours_tok.encode_special_tokens
    ours_tok.encode_special_tokens = False
    try:
        ours = [e.ids for e in ours_tok.encode_batch(texts, add_special_tokens=False)]
    finally:
        ours_tok.encode_special_tokens = split
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


def warn_if_transformers_differs(tokenizer: LoadedTokenizer, texts: Sequence[str] = ()) -> Difference | None:
    """Warn when the installed transformers encodes this tokenizer's folder differently.

    Runs only when transformers is installed and the tokenizer is a Hugging Face folder (its
    ``tokenizer.json`` was loaded); otherwise returns None at once. ``texts`` (a few of the
    run's own texts, cut to ``SAMPLE_CHARS``) and :data:`PROBES` are encoded as they are and
    right after a special token, by ``tokenizer`` and by ``AutoTokenizer.from_pretrained(folder)``.

    Args:
        tokenizer: the run's tokenizer (``tokenizer.reference: tokenizers``).
        texts: a few of the run's own texts.

    Returns:
        The first difference (also logged as a WARNING), or None.
    """
    if not _checkable(tokenizer):
        return None
    json_file = next(f for f in tokenizer.files if f.name == "tokenizer.json")
    try:
        hf = transformers_tokenizer(json_file.parent, kind="json")
    except (TokenizerError, ConfigError) as exc:
        log.info("tokenizer reference check skipped: %s", exc)
        return None
    sample = [t[:SAMPLE_CHARS] for t in texts if isinstance(t, str) and t]
    found = first_difference(tokenizer, hf, _variants(tokenizer, [*sample, *PROBES]))
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


def check_run(tokenizer: LoadedTokenizer, recipe: Any, files: list) -> Difference | None:
    """The check at the start of a run: :func:`warn_if_transformers_differs` on a few of the run's
    own texts, when the recipe keeps ``reference: tokenizers``, transformers is installed and the
    tokenizer is a ``tokenizer.json`` folder (nothing is read otherwise)."""
    if recipe.tokenizer.reference != TOKENIZERS or not _checkable(tokenizer):
        return None
    return warn_if_transformers_differs(tokenizer, sample_texts(recipe, files))


def _checkable(tokenizer: LoadedTokenizer) -> bool:
    return any(f.name == "tokenizer.json" for f in tokenizer.files) and transformers_available()


def sample_texts(recipe: Any, files: list, *, n: int = 8) -> list[str]:
    """Up to ``n`` texts from the first records of a recipe's inputs: pretraining documents as the
    run cleans them; fine-tuning text fields and message contents."""
    import itertools
    from collections import Counter

    from dataprep.tasks import pretrain
    from dataprep.tasks.sft import task as sft

    out: list[str] = []
    try:
        if recipe.task == "pretrain":
            return list(itertools.islice(pretrain.iter_clean_texts(files, recipe), n))
        for _, batch in sft.iter_chunks(files, recipe, Counter(), Counter()):
            for column in batch.columns:
                for value in column.to_pylist()[:n]:
                    out.extend(_strings(value))
            break
    except Exception as exc:  # a bad input fails the run itself, with its own message; the check just has less
        log.debug("tokenizer reference check: no sample texts (%s)", exc)
    return [t for t in out if t.strip()][:n]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        if value[:1] in "[{":  # a messages column holds JSON
            try:
                return _strings(json.loads(value))
            except ValueError:
                pass
        return [value]
    if isinstance(value, dict):  # a message: its content, not its role
        return [s for k, v in value.items() if k not in ("role", "from") for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
