"""The recipe's tokenizer, loaded and ready to turn documents into flat token arrays.

The recipe's ``tokenizer:`` section becomes a :class:`TokenizerSpec`. :func:`load_tokenizer`
reads the files it names (one of four layouts, :mod:`dataprep.text.tokenizer_files`) and resolves
which token plays each special role (:mod:`dataprep.text.special_tokens`);
:func:`~dataprep.text.train_bpe.train_tokenizer` trains a byte-level BPE instead. Either way the
result is a :class:`LoadedTokenizer`, whose :meth:`~LoadedTokenizer.encode_docs` returns the flat
``[bos]? + tokens + [eos]?`` layout the packer consumes (long documents are encoded in pieces,
:mod:`dataprep.text.long_documents`)::

    texts   = ["Hi there", "Bye"]                 (add_bos=False, add_eos=True, eos=50256)
    tokens  = [17250, 612, 50256, 3856, 68, 50256]
    lengths = [3, 3]

By default special-token strings inside documents (``"<|endoftext|>"``) are encoded as plain
text (``split_special_tokens: true``), so a document can never inject an EOS.

With ``reference: transformers`` (:mod:`dataprep.text.hf_backend`) the files are read as usual,
and the encoding tokenizer is the backend of the installed transformers'
``AutoTokenizer.from_pretrained`` for the folder instead (transformers 5.x gives other ids for
Llama-style SentencePiece folders).

Multiprocessing: a :class:`LoadedTokenizer` pickles as its JSON (``to_str()``), a few MB for
a 50k vocab, 12 MB for Gemma 3's 262k. That JSON is taken once, when the :class:`LoadedTokenizer`
is made (its fingerprint is the JSON's sha256), and kept: pickling, unpickling and
:meth:`LoadedTokenizer.copy` reuse it instead of serializing the vocabulary again (0.6 s for
Gemma 3 each time); a second :func:`load_tokenizer` of the same files in a process reuses the
parse and its JSON (:mod:`dataprep.text.tokenizer_cache`). ``encode_batch_fast`` runs on the Rust thread pool; in worker processes that
already give parallelism, set ``TOKENIZERS_PARALLELISM=false`` in the worker (before its first
encode) to avoid oversubscription and the "process just got forked" warning. This module
never touches the environment itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from dataprep.errors import TokenizerError
from dataprep.text.encode_engine import TOKENIZERS, Engine, EngineChoice, frame_documents
from dataprep.text.long_documents import encode_pieces
from dataprep.text.special_tokens import ALL_ROLES, ROLES, resolve_roles
from dataprep.text.special_tokens import log as special_tokens_log
from dataprep.text.tokenizer_cache import Parsed, cached_parse
from dataprep.text.tokenizer_files import CONFIG_FILE, TOKENIZER_FILE, load_transformers_backend, read_tokenizer_files

__all__ = ["TokenizerSpec", "LoadedTokenizer", "load_tokenizer", "check_spec"]

TRANSFORMERS = "transformers"  # tokenizer.reference: the installed transformers' ids


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
        engine: What encodes pretraining documents: ``auto`` (gigatoken when its parity probe
            on the run's documents holds, else tokenizers), ``tokenizers`` or ``gigatoken``
            (:mod:`dataprep.text.encode_engine`). The ids are the same whichever runs.
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
    engine: str = "auto"

    @property
    def named_tokens(self) -> dict[str, str | None]:
        """The roles the recipe names: ``{"bos": bos_token, "eos": eos_token, "pad": pad_token}``."""
        return {"bos": self.bos_token, "eos": self.eos_token, "pad": self.pad_token}


class LoadedTokenizer:
    """A ready tokenizer plus the special ids and options the pipeline needs.

    Attributes:
        tokenizer: The underlying ``tokenizers.Tokenizer``.
        bos_id, eos_id, pad_id, unk_id: Special ids, ``None`` where the tokenizer has none.
        vocab_size: ``get_vocab_size(with_added_tokens=True)``.
        tokens: role (``bos``, ``eos``, ``pad``, ``unk``) -> token text, ``None`` where none.
        sources: role -> where it came from (:data:`~dataprep.text.special_tokens.SOURCES`), for
            the roles that exist.
        special_ids: ``{"bos": .., "eos": .., "pad": ..}`` for the roles that exist.
        special_tokens: ``{role: {"token", "id", "source"}}`` for every role that exists, unk included.
        source: The resolved path that was loaded, or ``"trained"``.
        files: The files read to build it (for the manifest's checksums); empty when trained.
        fingerprint: sha256 of ``tokenizer.to_str()``; equal across processes and after
            :meth:`save` + :func:`load_tokenizer`.
        add_bos, add_eos, split_special_tokens: The spec's options.
        added_tokens: special tokens this run added to the tokenizer (span corruption's sentinels,
            a trained tokenizer's mask token), in the order they were added; the manifest lists them.
        engine: What :meth:`encode_docs` should encode with (:data:`~dataprep.text.encode_engine.ENGINES`).
        engine_choice: What it encodes with and why (:class:`~dataprep.text.encode_engine.EngineChoice`),
            decided by :meth:`choose_engine` or on the first :meth:`encode_docs`; None until then.
        run_engine: The choice :meth:`choose_engine` made, which the manifest records (the run's,
            on its first documents); None when only :meth:`encode_docs` chose (in each process,
            on the documents it met first: a resumed run or a Ray worker would record another).

    ``tokenizer`` is not changed after construction (its ``encode_special_tokens`` aside, which its
    JSON does not hold): a tokenizer with other tokens is a new :class:`LoadedTokenizer`, as
    :func:`~dataprep.tasks.base.with_special_tokens` makes, so the fingerprint, the pickled JSON
    and :meth:`copy` always describe it. Loads of the same files share it
    (:mod:`dataprep.text.tokenizer_cache`): change a :meth:`copy` instead.
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
        json_text: str | bytes | None = None,
        engine: str = TOKENIZERS,
        engine_choice: EngineChoice | None = None,
    ):
        """``json_text``: ``tokenizer.to_str()`` (or its UTF-8) when the caller has it already
        (unpickling, a kept parse), so a large vocabulary is not serialized again. ``engine_choice``: one made already (unpickling
        in a worker: the probe is not run again)."""
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
        self._engine = Engine(engine, engine_choice)  # TokenizerError for an unknown engine
        self._derive(json_text)

    @property
    def engine(self) -> str:
        return self._engine.requested

    @property
    def engine_choice(self) -> EngineChoice | None:
        return self._engine.choice

    @property
    def run_engine(self) -> EngineChoice | None:
        return self._engine.run_choice

    def _derive(self, json_text: str | bytes | None) -> None:
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
        # UTF-8 bytes: a third to a quarter of the memory of the str of a vocabulary with non-ASCII tokens
        if isinstance(json_text, bytes):  # a kept parse's (dataprep.text.tokenizer_cache)
            self._json: bytes = json_text
        else:
            self._json = (self.tokenizer.to_str() if json_text is None else json_text).encode("utf-8")
        self.fingerprint: str = hashlib.sha256(self._json).hexdigest()

    def copy(self) -> Tokenizer:
        """A new ``tokenizers.Tokenizer`` equal to :attr:`tokenizer`, for a caller that needs other
        settings or more tokens without changing the run's (one parse of the kept JSON)."""
        return Tokenizer.from_str(self._json.decode("utf-8"))

    def __repr__(self) -> str:
        return (
            f"LoadedTokenizer(source={self.source!r}, vocab_size={self.vocab_size}, "
            f"special_ids={self.special_ids}, add_bos={self.add_bos}, add_eos={self.add_eos})"
        )

    # Pickle as JSON text: compact, and independent of the Rust object's own pickling.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "json": self._json.decode("utf-8"),
            "tokens": self.tokens,
            "sources": self.sources,
            "source": self.source,
            "files": [str(f) for f in self.files],
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "split_special_tokens": self.split_special_tokens,
            "added_tokens": list(self.added_tokens),
            "engine": self.engine,
            "engine_choice": None if self.engine_choice is None else self.engine_choice.manifest(),
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
            json_text=state["json"],
            engine=state.get("engine", TOKENIZERS),
            engine_choice=EngineChoice(**state["engine_choice"]) if state.get("engine_choice") else None,
        )

    def encode_docs(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode documents into one flat token array.

        Each document becomes ``[bos]? + tokens(text) + [eos]?``. Texts are encoded with
        ``add_special_tokens=False``, so the post-processor never adds its own BOS/CLS; a
        document whose tokens already start with BOS (only possible with
        ``split_special_tokens=False``) gets no second one. The engine (:attr:`engine`) is
        chosen on the first call, by a probe on its documents, unless :meth:`choose_engine`
        chose it before; either engine gives the same ids.

        Args:
            texts: The documents.

        Returns:
            ``(tokens, lengths)``: int32 tokens of all documents back to back, and the
            int64 length of each document's piece (BOS/EOS included).

        Raises:
            TokenizerError: ``engine`` is ``gigatoken`` and gigatoken cannot be used.
        """
        if not isinstance(texts, list):
            texts = list(texts)
        if not texts:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        encoder = self._engine.encoder(self, texts)
        if encoder is not None:
            return self.frame(*encoder.encode(texts))
        return self.encode_docs_tokenizers(texts)

    def encode_docs_tokenizers(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_docs` with ``tokenizers`` whatever the engine (the probe's reference)."""
        if not texts:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        tokens, piece_lens, counts = encode_pieces(self.tokenizer, texts)
        return self._frame(tokens, piece_lens, counts)

    def choose_engine(self, documents: list[str]) -> EngineChoice:
        """Choose the engine with a probe on ``documents`` (the run's first), once: later calls
        (and :meth:`encode_docs`) keep the first choice, which becomes :attr:`run_engine`. A run
        chooses here before its work starts, so that every process inherits the choice with the
        pickled tokenizer and the manifest records the same one however the run was split.

        Raises:
            TokenizerError: ``engine`` is ``gigatoken`` and gigatoken cannot be used.
        """
        self._engine.encoder(self, list(documents))
        self._engine.run_choice = self.engine_choice
        assert self.engine_choice is not None
        return self.engine_choice

    def frame(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Put ``[bos]?`` before and ``[eos]?`` after each document of a flat encoding (one piece each)."""
        return self._frame(tokens, lengths, np.ones(len(lengths), dtype=np.int64))

    def _frame(self, tokens: np.ndarray, piece_lens: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Join each document's pieces and put ``[bos]?`` before and ``[eos]?`` after it."""
        bos, eos = self.bos_id if self.add_bos else None, self.eos_id if self.add_eos else None
        return frame_documents(tokens, piece_lens, counts, bos=bos, eos=eos)

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
            :func:`~dataprep.text.train_bpe.train_tokenizer`), missing or unreadable files, a special token that
            is not in the vocabulary, or no BOS/EOS while ``add_bos``/``add_eos`` is set.
    """
    check_spec(spec)
    if spec.train is not None:
        raise TokenizerError(
            "tokenizer.train is set, so the tokenizer must be trained on the data: call "
            "train_tokenizer(texts, spec) instead of load_tokenizer"
        )
    path = Path(spec.path).expanduser()  # type: ignore[arg-type]
    if not path.is_absolute():
        path = Path(base_dir) / path
    options = (spec.lowercase, spec.reference, tuple(spec.named_tokens.items()), spec.split_special_tokens)

    def fits(kept: Parsed) -> bool:  # it has the BOS and EOS this spec requires (else parse: it raises)
        return not (spec.add_bos and kept.tokens.get("bos") is None or spec.add_eos and kept.tokens.get("eos") is None)

    parsed = cached_parse(path, options, lambda: _parse(spec, path, warn=warn), special_tokens_log, warn=warn, fits=fits)
    return LoadedTokenizer(
        parsed.tokenizer,
        tokens=parsed.tokens,
        sources=parsed.sources,
        source=str(path),
        files=parsed.files,
        add_bos=spec.add_bos,
        add_eos=spec.add_eos,
        split_special_tokens=spec.split_special_tokens,
        json_text=parsed.json,
        engine=spec.engine,
    )


def _parse(spec: TokenizerSpec, path: Path, *, warn: bool) -> Parsed:
    """Read the files at ``path`` and resolve the special roles (:func:`load_tokenizer`, uncached)."""
    tokenizer, kind, files, config, config_file = read_tokenizer_files(path, lowercase=spec.lowercase)
    if spec.lowercase and kind != "wordpiece":
        raise TokenizerError(
            f"{path}: `tokenizer.lowercase` only applies to a WordPiece vocab.txt; this tokenizer "
            "has its own normalizer. Remove `tokenizer.lowercase` from the recipe"
        )
    if spec.reference == TRANSFORMERS:
        tokenizer = load_transformers_backend(path, files[0], kind=kind, lowercase=spec.lowercase)
    elif spec.reference != "tokenizers":
        raise TokenizerError(f"`tokenizer.reference` is {spec.reference!r}; valid values are 'tokenizers', 'transformers'")
    tokens, sources = resolve_roles(
        tokenizer, overrides=spec.named_tokens, add_bos=spec.add_bos, add_eos=spec.add_eos, kind=kind,
        config=config, config_file=config_file, source=str(path), file=files[0], warn=warn,
    )
    return Parsed(tokenizer, tokens, sources, (*files, *([config_file] if config_file else [])))


def check_spec(spec: TokenizerSpec) -> None:
    """Exactly one of ``spec.path`` and ``spec.train`` is set, or :class:`TokenizerError` says how to fix it."""
    if (spec.path is None) == (spec.train is None):
        which = "both" if spec.path is not None else "neither"
        raise TokenizerError(
            f"the recipe's `tokenizer` section sets {which} of `path` and `train`; set exactly one: "
            "`tokenizer.path` to load a tokenizer, or `tokenizer.train` to train one"
        )
