"""Reading a tokenizer's files: the four layouts a recipe's ``tokenizer.path`` may name.

All are read with the Hugging Face ``tokenizers`` library (no network):

=========================================  =================================================
``path`` points at                         what is built
=========================================  =================================================
``tokenizer.json`` (file, or its folder)   ``Tokenizer.from_file``; special tokens from a
                                           ``tokenizer_config.json`` beside it, if any
``vocab.json`` + ``merges.txt``            GPT-2 byte-level BPE (ids match GPT-2 exactly)
``vocab.txt``                              BERT WordPiece, ``[CLS] ... [SEP]`` post-processor
=========================================  =================================================

With ``reference: transformers`` (:mod:`dataprep.text.hf_backend`) the files are read as above,
and the encoding tokenizer is the backend of the installed transformers'
``AutoTokenizer.from_pretrained`` for the folder instead (:func:`load_transformers_backend`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from dataprep.errors import TokenizerError
from dataprep.text.special_tokens import ENDOFTEXT

__all__ = ["CONFIG_FILE", "TOKENIZER_FILE", "EXPECTED", "read_tokenizer_files", "load_transformers_backend"]

CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
EXPECTED = "a tokenizer.json, a folder with tokenizer.json, vocab.json + merges.txt, or vocab.txt"
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def read_tokenizer_files(path: Path, *, lowercase: bool) -> tuple[Tokenizer, str, list[Path], dict, Path | None]:
    """Return (tokenizer, kind, files read, config dict, config file) for a file or folder."""
    if path.is_dir():
        folder = path
        if (folder / TOKENIZER_FILE).is_file():
            file = folder / TOKENIZER_FILE
        elif (folder / "vocab.json").is_file() or (folder / "merges.txt").is_file():
            file = folder / "vocab.json"
        elif (folder / "vocab.txt").is_file():
            file = folder / "vocab.txt"
        else:
            found = sorted(p.name for p in folder.iterdir())[:10]
            raise TokenizerError(f"{folder}: no tokenizer files found (folder holds {found}); expected {EXPECTED}")
    elif path.is_file():
        folder, file = path.parent, path
    else:
        raise TokenizerError(f"{path}: no such file or folder; `tokenizer.path` must name {EXPECTED}")

    config, config_file = _read_config(folder)
    if file.name in ("vocab.json", "merges.txt"):
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        return _gpt2_bpe(vocab, merges), "byte_level", [vocab, merges], config, config_file
    if file.suffix == ".txt":
        return _wordpiece(file, lowercase=lowercase), "wordpiece", [file], config, config_file
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exception on bad JSON
        raise TokenizerError(f"{file}: cannot read it as a tokenizer.json ({exc}); expected {EXPECTED}") from exc
    # the pre-tokenizer's own JSON: the whole tokenizer's would be parsed twice (seconds for Gemma 3)
    pre = json.loads(tokenizer.pre_tokenizer.__getstate__()) if tokenizer.pre_tokenizer is not None else {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kind = "byte_level" if any(s.get("type") == "ByteLevel" for s in steps) else "json"
    if isinstance(tokenizer.model, models.WordPiece):
        kind = "wordpiece_json"
    return tokenizer, kind, [file], config, config_file


def load_transformers_backend(path: Path, file: Path, *, kind: str, lowercase: bool) -> Tokenizer:
    """``reference: transformers``: the backend of the installed transformers' tokenizer for the folder."""
    from dataprep.text.hf_backend import transformers_backend

    if kind in ("json", "byte_level", "wordpiece_json") and file.name != TOKENIZER_FILE and file.suffix == ".json" and file.name != "vocab.json":
        raise TokenizerError(
            f"{path}: `tokenizer.reference: transformers` loads a folder as AutoTokenizer.from_pretrained does; "
            f"put this file in a folder as {TOKENIZER_FILE} (with its tokenizer_config.json) and point "
            "`tokenizer.path` at the folder"
        )
    return transformers_backend(file.parent, kind=kind, lowercase=lowercase)


def _read_config(folder: Path) -> tuple[dict, Path | None]:
    for name in (CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
        file = folder / name
        if file.is_file():
            try:
                config = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TokenizerError(f"{file}: cannot read it as JSON ({exc}); fix or remove the file") from exc
            if not isinstance(config, dict):
                raise TokenizerError(
                    f"{file}: expected a JSON object, got {type(config).__name__}; fix or remove the file"
                )
            return config, file
    return {}, None


def _gpt2_bpe(vocab: Path, merges: Path) -> Tokenizer:
    """GPT-2 byte-level BPE, as transformers' GPT2TokenizerFast builds it."""
    for file, other in ((vocab, merges), (merges, vocab)):
        if not file.is_file():
            raise TokenizerError(
                f"{file}: missing; a GPT-2 style tokenizer needs both vocab.json and merges.txt "
                f"(found {other.name}). Expected {EXPECTED}"
            )
    try:
        model = models.BPE.from_file(str(vocab), str(merges))
    except Exception as exc:
        raise TokenizerError(f"{vocab.parent}: cannot read vocab.json + merges.txt as a BPE ({exc})") from exc
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    if tokenizer.token_to_id(ENDOFTEXT) is not None:  # GPT2TokenizerFast's one special token
        tokenizer.add_special_tokens([AddedToken(ENDOFTEXT, special=True, normalized=False)])
    return tokenizer


def _wordpiece(vocab: Path, *, lowercase: bool) -> Tokenizer:
    """BERT WordPiece, as ``tokenizers.implementations.BertWordPieceTokenizer`` builds it."""
    try:
        model = models.WordPiece.from_file(str(vocab), unk_token="[UNK]")
    except Exception as exc:
        raise TokenizerError(f"{vocab}: cannot read it as a WordPiece vocab.txt ({exc}); expected {EXPECTED}") from exc
    tokenizer = Tokenizer(model)
    if tokenizer.token_to_id("[UNK]") is None:
        raise TokenizerError(f"{vocab}: a WordPiece vocab.txt needs an [UNK] token; add a line `[UNK]` to it")
    tokenizer.add_special_tokens([t for t in WORDPIECE_SPECIALS if tokenizer.token_to_id(t) is not None])
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls is not None and sep is not None:
        tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer
