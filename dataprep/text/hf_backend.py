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
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from dataprep.errors import ConfigError, TokenizerError

TOKENIZERS, TRANSFORMERS = "tokenizers", "transformers"
REFERENCES = (TOKENIZERS, TRANSFORMERS)
INSTALL = "pip install transformers"


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
        kind: the layout :func:`dataprep.text.tokenizer_files.read_tokenizer_files` found (``json``,
            ``byte_level``, ``wordpiece``, ...); ``vocab.json`` / ``vocab.txt`` layouts pick their class.
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
