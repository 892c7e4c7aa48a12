"""Load or train the recipe's tokenizer, and turn documents into flat token arrays.

The recipe's ``tokenizer:`` section becomes a :class:`TokenizerSpec`. :func:`load_tokenizer`
reads one of four layouts, all with the Hugging Face ``tokenizers`` library (no network):

=========================================  =================================================
``path`` points at                         what is built
=========================================  =================================================
``tokenizer.json`` (file, or its folder)   ``Tokenizer.from_file``; special tokens from a
                                           ``tokenizer_config.json`` beside it, if any
``vocab.json`` + ``merges.txt``            GPT-2 byte-level BPE (ids match GPT-2 exactly)
``vocab.txt``                              BERT WordPiece, ``[CLS] ... [SEP]`` post-processor
=========================================  =================================================

With ``reference: transformers`` (:mod:`dataprep.text.hf_backend`) the files are read as above, and the
encoding tokenizer is the backend of the installed transformers' ``AutoTokenizer.from_pretrained``
for the folder instead (transformers 5.x gives other ids for Llama-style SentencePiece folders).

:func:`train_tokenizer` trains a byte-level BPE instead. Either way the result is a
:class:`LoadedTokenizer`, whose :meth:`~LoadedTokenizer.encode_docs` returns the flat
``[bos]? + tokens + [eos]?`` layout the packer consumes::

    texts   = ["Hi there", "Bye"]                 (add_bos=False, add_eos=True, eos=50256)
    tokens  = [17250, 612, 50256, 3856, 68, 50256]
    lengths = [3, 3]

By default special-token strings inside documents (``"<|endoftext|>"``) are encoded as plain
text (``split_special_tokens: true``), so a document can never inject an EOS.

Special tokens are never guessed silently. Each role (BOS, EOS, pad, unk) comes from the first
of these that names it, and :attr:`LoadedTokenizer.sources` records which one did:

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
``trained``            a tokenizer :func:`train_tokenizer` made: ``<|endoftext|>`` is EOS and pad
``well_known_name``    ``<s>``, ``<|endoftext|>``, ``</s>``, ``<pad>``, ``<unk>`` (``[CLS]`` ...
                       for WordPiece), only where the tokenizer marks that token special; logged
                       as a warning that names the file, the token and the recipe key to set
=====================  =====================================================================

So an ordinary vocabulary entry that happens to be spelled ``<s>`` (Qwen3) or
``<|endoftext|>`` (RoBERTa) never becomes a BOS or EOS.

Multiprocessing: a :class:`LoadedTokenizer` pickles as its JSON (``to_str()``), a few MB for
a 50k vocab. ``encode_batch_fast`` runs on the Rust thread pool; in worker processes that
already give parallelism, set ``TOKENIZERS_PARALLELISM=false`` in the worker (before its first
encode) to avoid oversubscription and the "process just got forked" warning. This module
never touches the environment itself.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from dataprep.errors import TokenizerError

__all__ = ["TokenizerSpec", "LoadedTokenizer", "load_tokenizer", "train_tokenizer", "tokenizer_manifest", "unknown_token_id"]

log = logging.getLogger("dataprep.tokenizer")

CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
EXPECTED = "a tokenizer.json, a folder with tokenizer.json, vocab.json + merges.txt, or vocab.txt"
ENDOFTEXT = "<|endoftext|>"
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BYTE_LEVEL_ALPHABET = 256
TRAIN_KEYS = {"vocab_size", "min_frequency"}
ROLES = ("bos", "eos", "pad")
ALL_ROLES = (*ROLES, "unk")
# Where a special token's role came from (LoadedTokenizer.sources; the manifest's special_tokens).
RECIPE, CONFIG, POST_PROCESSOR, MODEL, TRAINED, WELL_KNOWN_NAME = (
    "recipe", "tokenizer_config", "post_processor", "model", "trained", "well_known_name"
)
SOURCES = (RECIPE, CONFIG, POST_PROCESSOR, MODEL, TRAINED, WELL_KNOWN_NAME)
TRANSFORMERS = "transformers"  # tokenizer.reference: the installed transformers' ids


# Characters per encode call in encode_docs: bounds the memory the Rust encodings hold
# (~110 bytes per character while encoding: every token's string, offsets and the
# pre-tokenizer's per-byte alignments), ~120 MB a call; chunks on threads encode side by side.
ENCODE_GROUP_CHARS = 1 << 20
# A document longer than LONG_DOC_CHARS is encoded in pieces of about SEAM_EVERY characters,
# cut at seams proven not to change its tokens (see LoadedTokenizer._seams): without them one
# 3.5 MB book held ~400 MB while it encoded, and ran on one core.
LONG_DOC_CHARS = 1 << 18
SEAM_EVERY = 1 << 17
SEAM_WINDOW = 256  # characters each side of a candidate seam that are encoded to check it
SEAM_TRIES = 8  # candidates checked before the rest of a document is encoded whole
# Candidate seams: after a newline between two non-space characters, or before a space between
# two word characters (books whose paragraphs are single lines have no newline candidates).
_SEAM = re.compile(r"(?<=\S\n)(?=\S)|(?<=\w)(?= \w)")

@dataclass(frozen=True)
class TokenizerSpec:
    """The recipe's ``tokenizer:`` section. Exactly one of ``path`` and ``train`` is set.

    Args:
        path: A ``tokenizer.json`` file or a folder holding one (with an optional
            ``tokenizer_config.json``); a folder (or its ``vocab.json``) with GPT-2 style
            ``vocab.json`` + ``merges.txt``; or a WordPiece ``vocab.txt`` (or its folder).
            Relative paths are resolved against the recipe's folder.
        train: ``{"vocab_size": int, "min_frequency": int = 2}``: train a byte-level BPE
            with the special token ``<|endoftext|>``.
        lowercase: Lowercase the text (WordPiece ``vocab.txt`` only).
        bos_token: Override of the BOS token; must exist in the vocabulary.
        eos_token: Override of the EOS token; must exist in the vocabulary.
        pad_token: Override of the pad token; must exist in the vocabulary.
        add_bos: Put BOS before every document.
        add_eos: Put EOS after every document.
        split_special_tokens: Encode special-token strings found in documents as ordinary
            text. Set False to let them match the special ids.
        reference: Whose ids: ``tokenizers`` encodes with the files as shipped;
            ``transformers`` with the backend tokenizer of the installed transformers'
            ``AutoTokenizer.from_pretrained(folder)`` (see :mod:`dataprep.text.hf_backend`).
    """

    path: str | None = None
    train: dict | None = None
    lowercase: bool = False
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    add_bos: bool = False
    add_eos: bool = True
    split_special_tokens: bool = True
    reference: str = "tokenizers"


class LoadedTokenizer:
    """A ready tokenizer plus the special ids and options the pipeline needs.

    Attributes:
        tokenizer: The underlying ``tokenizers.Tokenizer``.
        bos_id, eos_id, pad_id, unk_id: Special ids, ``None`` where the tokenizer has none.
        vocab_size: ``get_vocab_size(with_added_tokens=True)``.
        tokens: role (``bos``, ``eos``, ``pad``, ``unk``) -> token text, ``None`` where none.
        sources: role -> where it came from (:data:`SOURCES`), for the roles that exist.
        special_ids: ``{"bos": .., "eos": .., "pad": ..}`` for the roles that exist.
        special_tokens: ``{role: {"token", "id", "source"}}`` for every role that exists, unk included.
        source: The resolved path that was loaded, or ``"trained"``.
        files: The files read to build it (for the manifest's checksums); empty when trained.
        fingerprint: sha256 of ``tokenizer.to_str()``; equal across processes and after
            :meth:`save` + :func:`load_tokenizer`.
        add_bos, add_eos, split_special_tokens: The spec's options.
        added_tokens: special tokens this run added to the tokenizer (span corruption's sentinels,
            a trained tokenizer's mask token), in the order they were added; the manifest lists them.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        tokens: dict[str, str | None],
        source: str,
        files: Iterable[Path] = (),
        add_bos: bool,
        add_eos: bool,
        split_special_tokens: bool,
        sources: dict[str, str] | None = None,
        added_tokens: Iterable[str] = (),
    ):
        self.tokenizer = tokenizer
        self.files: tuple[Path, ...] = tuple(Path(f) for f in files)
        self.tokenizer.encode_special_tokens = split_special_tokens
        self.tokens = dict(tokens)  # role ("bos", "eos", "pad", "unk") -> token string or None
        self.sources = {role: src for role, src in (sources or {}).items() if self.tokens.get(role) is not None}
        self.source = source
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.split_special_tokens = split_special_tokens
        self.added_tokens: tuple[str, ...] = tuple(added_tokens)
        self._derive()

    def _derive(self) -> None:
        ids = {role: (None if tok is None else self.tokenizer.token_to_id(tok)) for role, tok in self.tokens.items()}
        self.bos_id: int | None = ids.get("bos")
        self.eos_id: int | None = ids.get("eos")
        self.pad_id: int | None = ids.get("pad")
        self.unk_id: int | None = ids.get("unk")
        self.special_ids: dict[str, int] = {role: ids[role] for role in ROLES if ids.get(role) is not None}
        self.special_tokens: dict[str, dict[str, Any]] = {
            role: {"token": self.tokens[role], "id": ids[role], "source": self.sources.get(role)}
            for role in ALL_ROLES
            if ids.get(role) is not None
        }
        self.vocab_size: int = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.fingerprint: str = hashlib.sha256(self.tokenizer.to_str().encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return (
            f"LoadedTokenizer(source={self.source!r}, vocab_size={self.vocab_size}, "
            f"special_ids={self.special_ids}, add_bos={self.add_bos}, add_eos={self.add_eos})"
        )

    # Pickle as JSON text: compact, and independent of the Rust object's own pickling.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "json": self.tokenizer.to_str(),
            "tokens": self.tokens,
            "sources": self.sources,
            "source": self.source,
            "files": [str(f) for f in self.files],
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "split_special_tokens": self.split_special_tokens,
            "added_tokens": list(self.added_tokens),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            Tokenizer.from_str(state["json"]),
            tokens=state["tokens"],
            sources=state.get("sources"),
            source=state["source"],
            files=state["files"],
            add_bos=state["add_bos"],
            add_eos=state["add_eos"],
            split_special_tokens=state["split_special_tokens"],
            added_tokens=state.get("added_tokens", ()),
        )

    def encode_docs(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode documents into one flat token array.

        Each document becomes ``[bos]? + tokens(text) + [eos]?``. Texts are encoded with
        ``add_special_tokens=False``, so the post-processor never adds its own BOS/CLS; a
        document whose tokens already start with BOS (only possible with
        ``split_special_tokens=False``) gets no second one.

        Args:
            texts: The documents.

        Returns:
            ``(tokens, lengths)``: int32 tokens of all documents back to back, and the
            int64 length of each document's piece (BOS/EOS included).
        """
        if not isinstance(texts, list):
            texts = list(texts)
        if not texts:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        # Long documents become several pieces (seams that change no token); every piece of a
        # document is encoded, and the pieces are joined again below.
        pieces: list[str] = []
        counts = np.ones(len(texts), dtype=np.int64)  # pieces per document
        for i, text in enumerate(texts):
            if len(text) > LONG_DOC_CHARS:
                cuts = self._seams(text)
                counts[i] = len(cuts) + 1
                pieces.extend(text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]))
            else:
                pieces.append(text)
        # Encode in groups of about ENCODE_GROUP_CHARS characters: an Encoding holds every token's
        # string and offsets besides its id; groups keep that bounded (the output is the same).
        parts = [self._encode_group(pieces[a:b]) for a, b in _groups(pieces, ENCODE_GROUP_CHARS)]
        tokens = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        piece_lens = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        _release_freed_memory()
        return self._frame(tokens, piece_lens, counts)

    def _encode_group(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of ``texts`` back to back (int32) and the count of each (int64)."""
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        # Each `.ids` builds a fresh Python list, so read it exactly once. np.fromiter over a
        # chain with a known count builds no per-document arrays and was at or near the best
        # way to flatten them (vs preallocate + fill, concatenate, list.extend + np.array).
        ids = [enc.ids for enc in encodings]
        del encodings
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        return tokens, lengths

    def _frame(self, tokens: np.ndarray, piece_lens: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Join each document's pieces and put ``[bos]?`` before and ``[eos]?`` after it."""
        bos = self.bos_id if self.add_bos else None
        eos = self.eos_id if self.add_eos else None
        ends = np.cumsum(piece_lens)
        last = np.cumsum(counts) - 1  # each document's last piece
        doc_ends = ends[last]
        raw = np.diff(doc_ends, prepend=0)  # tokens per document, without BOS/EOS
        if bos is None and eos is None:
            return tokens, raw
        starts = doc_ends - raw
        if bos is None:
            heads = np.zeros(len(raw), dtype=np.int64)
        else:  # a document already starting with BOS (split_special_tokens off) gets no second one
            first = tokens[np.minimum(starts, max(len(tokens) - 1, 0))] if len(tokens) else np.zeros(len(raw), np.int32)
            heads = ~((raw > 0) & (first == bos))
            heads = heads.astype(np.int64)
        tails = 0 if eos is None else 1
        lengths = raw + heads + tails
        out_starts = np.cumsum(lengths) - lengths
        out = np.empty(int(lengths.sum()), dtype=np.int32)
        # Each content token moves right by the BOS/EOS tokens inserted before it.
        shift = np.repeat(out_starts + heads - starts, raw)
        out[np.arange(len(tokens), dtype=np.int64) + shift] = tokens
        if bos is not None:
            out[out_starts[heads == 1]] = bos
        if eos is not None:
            out[out_starts + lengths - 1] = eos
        return out, lengths

    def _seams(self, text: str) -> list[int]:
        """Where to cut a long document so that its pieces' tokens, joined, are its own tokens.

        A candidate (``_SEAM``) follows a newline between two non-space characters, or precedes
        a space between two word characters, about every ``SEAM_EVERY`` characters. It is used
        only if encoding ``SEAM_WINDOW`` characters each side of it as one text and as two texts
        gives the same tokens. That holds for regex pre-tokenizers (GPT-2, Llama 3, BERT: a
        newline or a space between two words is a pre-token boundary wherever matching started) and fails wherever a piece would be encoded differently as a
        text start (a prepended ``▁``, a stripped edge), whose documents stay whole. A document
        with no usable candidate after ``SEAM_TRIES`` checks is encoded whole from there on.
        """
        cuts: list[int] = []
        start = 0
        while len(text) - start > LONG_DOC_CHARS:
            cut = None
            for tries, match in enumerate(_SEAM.finditer(text, start + SEAM_EVERY)):
                if tries == SEAM_TRIES or len(text) - match.end() < SEAM_EVERY // 2:
                    break
                if self._seam_holds(text, match.end()):
                    cut = match.end()
                    break
            if cut is None:
                break
            cuts.append(cut)
            start = cut
        return cuts

    def _seam_holds(self, text: str, at: int) -> bool:
        a, b = max(0, at - SEAM_WINDOW), min(len(text), at + SEAM_WINDOW)
        whole, left, right = self.tokenizer.encode_batch_fast([text[a:b], text[a:at], text[at:b]], add_special_tokens=False)
        return whole.ids == left.ids + right.ids

    def save(self, folder: Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` so :func:`load_tokenizer` round-trips.

        Args:
            folder: Created if missing.

        Raises:
            TokenizerError: The folder cannot be written.
        """
        folder = Path(folder)
        config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
        for role in ALL_ROLES:  # null where none: a saved copy resolves to the same roles
            config[f"{role}_token"] = self.tokens.get(role)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.tokenizer.save(str(folder / TOKENIZER_FILE))
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except Exception as exc:  # OSError, or the Rust side's own exception
            raise TokenizerError(f"{folder}: cannot save the tokenizer ({exc}); check the folder is writable") from exc


def _release_freed_memory() -> None:
    """Hand the pages the encodings freed back to the OS (glibc keeps them in its arenas, so the
    RSS of a run would ratchet up to its largest encode; ~80 MB less at the peak on 2 threads)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return None


_LIBC = _load_libc()


def _groups(texts: list[str], budget: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of consecutive texts of about ``budget`` characters (>= 1 text each)."""
    ranges, start, size = [], 0, 0
    for i, text in enumerate(texts):
        if size and size + len(text) > budget:
            ranges.append((start, i))
            start, size = i, 0
        size += len(text)
    ranges.append((start, len(texts)))
    return ranges


def tokenizer_manifest(recipe: Any, tokenizer: LoadedTokenizer) -> dict[str, Any]:
    """The manifest's ``tokenizer`` section: where the tokenizer came from, its files' digests, its
    special tokens and how documents are framed (``recipe`` is a :class:`~dataprep.recipe.Recipe`)."""
    from dataprep.text import hf_backend
    from dataprep.columns import TOKENIZER_DIR
    from dataprep.storage import sha256_file

    trained = recipe.tokenizer.train is not None
    saved = trained or bool(tokenizer.added_tokens)  # sentinels added for span corruption
    return {
        "source": tokenizer.source,
        "trained": trained,
        "saved_as": TOKENIZER_DIR if saved else None,
        "files": [] if trained else [{"path": str(p), "sha256": sha256_file(p)} for p in tokenizer.files],
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "special_ids": tokenizer.special_ids,
        "special_tokens": tokenizer.special_tokens,  # with where each role came from
        "add_bos": recipe.tokenizer.add_bos,
        "add_eos": recipe.tokenizer.add_eos,
        "reference": recipe.tokenizer.reference,
        **({"transformers_version": hf_backend.transformers_version()} if recipe.tokenizer.reference == "transformers" else {}),
    }


def unknown_token_id(special_tokens: dict[str, dict[str, Any]]) -> int | None:
    """The id that stands for text the tokenizer cannot represent, from ``special_tokens`` (a
    :class:`LoadedTokenizer`'s or a manifest's); None when there is none, or when that id also
    serves as BOS, EOS or pad (its occurrences then say nothing about lost text)."""
    unk = special_tokens.get("unk")
    if unk is None:
        return None
    return None if unk["id"] in {special_tokens[r]["id"] for r in ROLES if r in special_tokens} else unk["id"]


def load_tokenizer(spec: TokenizerSpec, *, base_dir: Path, warn: bool = True) -> LoadedTokenizer:
    """Load the tokenizer the spec names.

    Args:
        spec: The recipe's ``tokenizer:`` section, with ``path`` set.
        base_dir: The recipe's folder; a relative ``path`` is resolved against it.
        warn: Log a warning when a role falls back to a well-known token name (``validate``,
            which re-derives the roles of a finished run, passes False).

    Returns:
        The loaded tokenizer with its special ids resolved.

    Raises:
        TokenizerError: Both or neither of ``path``/``train`` set, ``train`` set (use
            :func:`train_tokenizer`), missing or unreadable files, a special token that
            is not in the vocabulary, or no BOS/EOS while ``add_bos``/``add_eos`` is set.
    """
    _check_spec(spec)
    if spec.train is not None:
        raise TokenizerError(
            "tokenizer.train is set, so the tokenizer must be trained on the data: call "
            "train_tokenizer(texts, spec) instead of load_tokenizer"
        )
    path = Path(spec.path).expanduser()  # type: ignore[arg-type]
    if not path.is_absolute():
        path = Path(base_dir) / path
    tokenizer, kind, files, config, config_file = _read(path, lowercase=spec.lowercase)
    if spec.lowercase and kind != "wordpiece":
        raise TokenizerError(
            f"{path}: `tokenizer.lowercase` only applies to a WordPiece vocab.txt; this tokenizer "
            "has its own normalizer. Remove `tokenizer.lowercase` from the recipe"
        )
    if spec.reference == TRANSFORMERS:
        tokenizer = _transformers_backend(path, files[0], kind=kind, lowercase=spec.lowercase)
    elif spec.reference != "tokenizers":
        raise TokenizerError(f"`tokenizer.reference` is {spec.reference!r}; valid values are 'tokenizers', 'transformers'")
    tokens, sources = _resolve_tokens(
        tokenizer, spec, kind=kind, config=config, config_file=config_file, source=str(path), file=files[0], warn=warn
    )
    return LoadedTokenizer(
        tokenizer,
        tokens=tokens,
        sources=sources,
        source=str(path),
        files=[*files, *([config_file] if config_file else [])],
        add_bos=spec.add_bos,
        add_eos=spec.add_eos,
        split_special_tokens=spec.split_special_tokens,
    )


def train_tokenizer(texts: Iterable[str], spec: TokenizerSpec) -> LoadedTokenizer:
    """Train a byte-level BPE on ``texts`` as ``spec.train`` says; deterministic for the same texts.

    The special token is ``<|endoftext|>`` (EOS and pad), plus any ``bos_token``/
    ``eos_token``/``pad_token`` the spec names.

    Args:
        texts: The training documents.
        spec: The recipe's ``tokenizer:`` section, with ``train`` set.

    Returns:
        The trained tokenizer; ``source`` is ``"trained"``.

    Raises:
        TokenizerError: ``train`` missing or invalid, or ``path``/``lowercase`` also set.
    """
    _check_spec(spec)
    if spec.train is None:
        raise TokenizerError("train_tokenizer needs `tokenizer.train` in the recipe; to load a file use load_tokenizer")
    if spec.lowercase:
        raise TokenizerError("`tokenizer.lowercase` only applies to a WordPiece vocab.txt; remove it from the recipe")
    specials = list(dict.fromkeys([ENDOFTEXT, *(t for t in (spec.bos_token, spec.eos_token, spec.pad_token) if t)]))
    vocab_size, min_frequency = _train_options(spec.train, minimum=BYTE_LEVEL_ALPHABET + len(specials))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokens, sources = _resolve_tokens(tokenizer, spec, kind="trained", config={}, config_file=None, source="trained")
    return LoadedTokenizer(
        tokenizer,
        tokens=tokens,
        sources=sources,
        source="trained",
        add_bos=spec.add_bos,
        add_eos=spec.add_eos,
        split_special_tokens=spec.split_special_tokens,
    )


# --- reading files ----------------------------------------------------------------------


def _check_spec(spec: TokenizerSpec) -> None:
    if (spec.path is None) == (spec.train is None):
        which = "both" if spec.path is not None else "neither"
        raise TokenizerError(
            f"the recipe's `tokenizer` section sets {which} of `path` and `train`; set exactly one: "
            "`tokenizer.path` to load a tokenizer, or `tokenizer.train` to train one"
        )


def _train_options(train: dict, *, minimum: int) -> tuple[int, int]:
    if not isinstance(train, dict):
        raise TokenizerError(f"`tokenizer.train` must be a mapping like {{vocab_size: 32000}}, got {train!r}")
    unknown = sorted(set(train) - TRAIN_KEYS)
    if unknown:
        raise TokenizerError(f"`tokenizer.train` has unknown key(s) {unknown}; valid keys are {sorted(TRAIN_KEYS)}")
    vocab_size = train.get("vocab_size")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
        raise TokenizerError(
            f"`tokenizer.train.vocab_size` must be an integer >= {minimum} (256 byte symbols + "
            f"special tokens), got {vocab_size!r}"
        )
    min_frequency = train.get("min_frequency", 2)
    if not isinstance(min_frequency, int) or isinstance(min_frequency, bool) or min_frequency < 0:
        raise TokenizerError(f"`tokenizer.train.min_frequency` must be an integer >= 0, got {min_frequency!r}")
    return vocab_size, min_frequency


def _read(path: Path, *, lowercase: bool) -> tuple[Tokenizer, str, list[Path], dict, Path | None]:
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
    pre = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kind = "byte_level" if any(s.get("type") == "ByteLevel" for s in steps) else "json"
    if isinstance(tokenizer.model, models.WordPiece):
        kind = "wordpiece_json"
    return tokenizer, kind, [file], config, config_file


def _transformers_backend(path: Path, file: Path, *, kind: str, lowercase: bool) -> Tokenizer:
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


# --- special tokens ---------------------------------------------------------------------

# Names tried last, in order, for a role nothing else named; used only where the tokenizer marks
# the token special. GPT-2 pads with <|endoftext|> (byte-level BPEs only).
WELL_KNOWN = {
    "wordpiece": {"bos": ("[CLS]",), "eos": ("[SEP]",), "pad": ("[PAD]",), "unk": ("[UNK]",)},
    "byte_level": {"bos": ("<s>",), "eos": (ENDOFTEXT, "</s>"), "pad": ("<pad>", ENDOFTEXT), "unk": ("<unk>",)},
    "other": {"bos": ("<s>",), "eos": (ENDOFTEXT, "</s>"), "pad": ("<pad>",), "unk": ("<unk>",)},
}
_ROLE_NAMES = {"bos": "BOS", "eos": "EOS", "pad": "pad", "unk": "unknown"}


def _resolve_tokens(
    tokenizer: Tokenizer,
    spec: TokenizerSpec,
    *,
    kind: str,
    config: dict,
    config_file: Path | None,
    source: str,
    file: Path | None = None,
    warn: bool = True,
) -> tuple[dict[str, str | None], dict[str, str]]:
    """role -> token and role -> where it came from, in the order the module docstring gives."""
    overrides = {"bos": spec.bos_token, "eos": spec.eos_token, "pad": spec.pad_token}
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    post = _post_processor_tokens(tokenizer)
    names = WELL_KNOWN["wordpiece" if kind.startswith("wordpiece") else "byte_level" if kind == "byte_level" else "other"]
    tokens: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for role in ALL_ROLES:
        found: str | None
        if overrides.get(role) is not None:
            found, where = overrides[role], RECIPE
            _require_in_vocab(tokenizer, found, source, f"`tokenizer.{role}_token`", f"set `tokenizer.{role}_token`")
        elif f"{role}_token" in config:
            found, where = _config_token(config[f"{role}_token"], role, config_file), CONFIG
            if found is not None:
                fix = f"fix the file, or set `tokenizer.{role}_token` in the recipe" if role != "unk" else "fix the file"
                _require_in_vocab(tokenizer, found, str(config_file), f"{role}_token", fix)
        elif kind == "trained":
            found, where = (ENDOFTEXT, TRAINED) if role in ("eos", "pad") else (None, None)
        elif role in post:
            found, where = post[role], POST_PROCESSOR
            _require_in_vocab(tokenizer, found, source, f"the post-processor's {role} token", f"fix the file, or set `tokenizer.{role}_token`")
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
        by_token: dict[str, list[str]] = {}
        for role, token in guessed.items():
            by_token.setdefault(token, []).append(_ROLE_NAMES[role])
        keys = [f"`tokenizer.{role}_token`" for role in guessed if role != "unk"]
        fixes = [f"set {' and '.join(keys)} in the recipe"] if keys else []
        fixes += ["add `unk_token` to tokenizer_config.json"] if "unk" in guessed else []
        log.warning(
            "%s: nothing names its %s token (no recipe key, tokenizer_config.json entry or post-processor); using %s: "
            "special token(s) of the tokenizer, chosen by their well-known names. fix: %s",
            file or source,
            " and ".join(_ROLE_NAMES[role] for role in guessed),
            ", ".join(f"{token!r} as {' and '.join(roles)}" for token, roles in by_token.items()),
            "; or ".join(fixes),
        )
    for role, flag in (("bos", spec.add_bos), ("eos", spec.add_eos)):
        if flag and tokens[role] is None:
            raise TokenizerError(f"{source}: {_no_role(tokenizer, role, names[role], config, config_file)}")
    _mark_special(tokenizer, [t for t in tokens.values() if t is not None])
    return tokens, sources


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


def _require_in_vocab(tokenizer: Tokenizer, token: str, where: str, what: str, fix: str) -> None:
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
