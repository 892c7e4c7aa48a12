"""Which library encodes pretraining documents: chosen for speed, never at the cost of ids.

The recipe's ``tokenizer.engine`` names it:

==========  ======================================================================================
engine      what encodes :meth:`~dataprep.text.tokenizer.LoadedTokenizer.encode_docs`
==========  ======================================================================================
auto        ``gigatoken`` when it is installed, loads the tokenizer and its parity probe on the
            run's own documents gives exactly the ids ``tokenizers`` gives; else ``tokenizers``,
            with the reason logged (the default: the key is absent from recipes that predate it)
tokenizers  ``tokenizers``' ``encode_batch_fast`` (:mod:`dataprep.text.long_documents`)
gigatoken   ``gigatoken`` (a byte-level BPE, or a SentencePiece BPE with byte fallback); the run
            fails when the tokenizer is another kind or the probe differs
==========  ======================================================================================

``gigatoken`` (MIT; the fork ``gigatoken-cachefix`` bounds its per-worker encode caches) encodes
the same ids several times faster than ``encode_batch_fast``, which also builds every token's
string and offsets. It gives the ids of ``tokenizer.json`` as written, with one difference this
module removes: it always matches the added tokens in the text, as ``tokenizers`` does only with
``split_special_tokens: false``. With ``split_special_tokens: true`` (the default) the tokenizer
it is built from is the run's ``tokenizer.json`` without its *special* added tokens, so a
document's ``<|endoftext|>`` is encoded as text, and the non-special ones still match, both as
``tokenizers`` does. BOS/EOS framing is dataprep's own (:func:`frame_documents`), the same
for both engines; a long document is encoded whole (``tokenizers`` cuts it at seams proven not to
change its tokens, so its ids are the same).

The probe (:func:`probe`) encodes, both ways and framed as the run frames documents: the first
``PROBE_DOCS`` documents the run encodes (each cut to ``PROBE_CHARS``), one text holding each
special token (and a spread of the other added tokens) between words, newlines and spaces, and a
few edge cases (empty, whitespace runs, invisible characters). Any differing id keeps
``tokenizers``, and :class:`EngineChoice` says which text differed and where; the manifest's
``tokenizer.engine`` records the choice. The probe is a sample: it proves the engine on the
run's kind of text and on every special token, and a test (``tests/test_encode_engine.py``)
proves byte-identical shards on every shipped tokenizer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from dataprep.errors import TokenizerError
from dataprep.text.encode_parallel import parallel_here

__all__ = ["ENGINES", "AUTO", "TOKENIZERS", "GIGATOKEN", "Engine", "EngineChoice", "GigatokenEncoder", "choose",
           "probe", "frame_documents", "gigatoken_version", "INSTALL", "fall_back", "settle"]

log = logging.getLogger("dataprep.tokenizer")

AUTO, TOKENIZERS, GIGATOKEN = "auto", "tokenizers", "gigatoken"
ENGINES = (AUTO, TOKENIZERS, GIGATOKEN)
# The distribution to install: gigatoken 0.10.0's encode caches grow with the corpus's distinct
# pre-tokens; the fork bounds them per encode worker (same ids).
INSTALL = "pip install gigatoken-cachefix==0.10.1"
_DISTRIBUTIONS = ("gigatoken-cachefix", "gigatoken")

# Encode-cache budget per gigatoken encode worker (gigatoken-cachefix; 0.10.0's caches are unbounded).
# On 150 MB of ever-new words, 2 cores (`benchmarks/encode_engine.py --memory --words --limit-mb 150`):
# gigatoken's default budget (512 MiB a worker) peaked at 905 MiB, this one at 249 MiB, flat from
# the first 50 MB; gigatoken 0.10.0 reached 1,490 MiB and was still growing. On the bench corpus
# all stay near 200 MiB. A wipe only costs recomputing pre-tokens: the ids never change.
CACHE_BYTES = 64 << 20
PROBE_DOCS = 64  # of the run's own documents, the first this many are probed
PROBE_CHARS = 8192  # each cut to its first this many characters (bench corpus: 75k characters, 0.16 s cold, 0.02 s warm)
PROBE_SPECIAL = 64  # special added tokens checked (all of them in every shipped tokenizer)
PROBE_ADDED = 32  # non-special added tokens checked, spread over the list (Gemma 3 has 6,406)
EDGE_CASES = ("", " ", "   \n\n\t  x  \n", "\u00a0\u200b\ufeff 😀🤖 \r\n café")


@dataclass(frozen=True)
class EngineChoice:
    """What encodes the run's documents, and why.

    Attributes:
        requested: the recipe's ``tokenizer.engine``.
        engine: ``tokenizers`` or ``gigatoken``.
        reason: why this engine (the probe's verdict, or why gigatoken could not be used).
        probed: texts encoded both ways (0 when the probe did not run).
        differing: the first text whose ids differed, ``{"text", "kind", "excerpt", "at",
            "tokenizers", "gigatoken"}`` (``at``: the first differing position in the framed
            ids); None when none did.
        version: the gigatoken version installed, None when it is not.
    """

    requested: str
    engine: str
    reason: str
    probed: int = 0
    differing: dict[str, Any] | None = None
    version: str | None = None

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``tokenizer.engine`` object."""
        return asdict(self)


def warm_up() -> None:
    """Import gigatoken and what its ``encode_batch`` returns (awkward: ~0.1 s at the first encode),
    where installed: a worker process does this while its run still prepares."""
    if importlib.util.find_spec("gigatoken") is not None:
        importlib.import_module("awkward")
        importlib.import_module("gigatoken")


def gigatoken_version() -> str | None:
    """The installed gigatoken's version (of either distribution), or None when it is not installed."""
    if importlib.util.find_spec("gigatoken") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    for name in _DISTRIBUTIONS:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            continue
    return "gigatoken (unknown version)"


class LoadedTokenizer(Protocol):
    """What the choice needs of a :class:`dataprep.text.tokenizer.LoadedTokenizer` (which imports this module)."""

    tokenizer: Any  # tokenizers.Tokenizer
    tokens: dict[str, str | None]
    split_special_tokens: bool
    fingerprint: str
    _json: bytes

    def encode_docs_tokenizers(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...

    def frame(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Engine:
    """A tokenizer's engine: the one requested, chosen once (by the first of several threads to
    ask), and kept when the tokenizer is pickled to a worker, which then never probes again.

    Raises:
        TokenizerError: ``requested`` is not one of :data:`ENGINES`.
    """

    def __init__(self, requested: str, choice: EngineChoice | None = None):
        if requested not in ENGINES:
            raise TokenizerError(f"`tokenizer.engine` is {requested!r}; valid values are {', '.join(ENGINES)}")
        self.requested = requested
        self.choice = choice
        self.run_choice: EngineChoice | None = None  # set by LoadedTokenizer.choose_engine; not pickled
        self._encoder: GigatokenEncoder | None = None
        self._lock = threading.Lock()

    def encoder(self, tokenizer: LoadedTokenizer, documents: list[str]) -> GigatokenEncoder | None:
        """gigatoken's encoder when it is (or is now chosen to be) the engine, else None: the
        choice is made on ``documents`` (:func:`choose`) unless it was made already."""
        choice = self.choice
        if choice is not None and (choice.engine == TOKENIZERS or self._encoder is not None):
            return self._encoder
        with self._lock:
            if self.choice is None:
                self.choice, self._encoder = choose(tokenizer, self.requested, documents)
            elif self.choice.engine == GIGATOKEN and self._encoder is None:  # chosen in the parent process
                self._encoder = gigatoken_encoder(tokenizer)
        return self._encoder


class GigatokenEncoder:
    """gigatoken built from a tokenizer's JSON, encoding as ``tokenizers`` does with the run's
    ``split_special_tokens`` (see the module docstring).

    Raises:
        TokenizerError: gigatoken is not installed, or does not support this tokenizer (WordPiece,
            Unigram, BPE without byte-level or byte fallback), with gigatoken's reason.
    """

    def __init__(self, json_text: str, *, split_special_tokens: bool):
        try:
            import gigatoken
        except ImportError as exc:
            raise TokenizerError(f"gigatoken is not installed ({exc}); `{INSTALL}`") from exc
        self.version = gigatoken_version()
        if split_special_tokens:
            json_text = _without_special_added_tokens(json_text)
        budget = getattr(gigatoken, "set_max_cache_bytes", None)  # absent from gigatoken 0.10.0
        before = gigatoken.get_max_cache_bytes() if budget else None
        try:
            if budget:  # process-global, read when a tokenizer is made: set for this one only
                budget(CACHE_BYTES)
            self._tokenizer = gigatoken.Tokenizer.from_json(json_text)
        except Exception as exc:  # the Rust side raises RuntimeError/ValueError with its reason
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TokenizerError(f"gigatoken cannot encode with this tokenizer: {first}") from exc
        finally:
            if budget:
                budget(before)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, lengths)``: the int32 ids of every text back to back, and the int64 count of each."""
        if not texts:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)
        layout = self._tokenizer.encode_batch(texts, parallel=parallel_here()).layout
        offsets = np.asarray(layout.offsets)  # an awkward ListOffsetArray: no Python list per document
        content = np.asarray(layout.content.data)[offsets[0] : offsets[-1]]
        return content.astype(np.int32), np.diff(offsets).astype(np.int64)


_ENCODERS: OrderedDict[tuple[str, bool], GigatokenEncoder] = OrderedDict()
_ENCODERS_KEEP = 4
_ENCODERS_LOCK = threading.Lock()


def gigatoken_encoder(tokenizer: LoadedTokenizer) -> GigatokenEncoder:
    """:class:`GigatokenEncoder` of ``tokenizer``, built once per tokenizer JSON and setting in a
    process (0.6 s for GPT-2, 3 s for gpt-oss: every run and every ``validate`` made its own).

    Raises:
        TokenizerError: as :class:`GigatokenEncoder` (a refusal is not kept: it is cheap and says why).
    """
    key = (tokenizer.fingerprint, tokenizer.split_special_tokens)
    with _ENCODERS_LOCK:
        found = _ENCODERS.get(key)
        if found is not None:
            _ENCODERS.move_to_end(key)
            return found
    found = GigatokenEncoder(tokenizer._json.decode("utf-8"), split_special_tokens=tokenizer.split_special_tokens)
    with _ENCODERS_LOCK:
        _ENCODERS[key] = found
        while len(_ENCODERS) > _ENCODERS_KEEP:
            _ENCODERS.popitem(last=False)
    return found


def frame_documents(tokens: np.ndarray, piece_lens: np.ndarray, counts: np.ndarray, *, bos: int | None,
                    eos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Join each document's pieces (``counts`` of them, ``piece_lens`` tokens each) and put ``[bos]?``
    before and ``[eos]?`` after it: the flat layout of ``encode_docs``, whichever engine encoded."""
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
    out_ends = np.cumsum(lengths)
    out = np.empty(int(out_ends[-1]) if len(out_ends) else 0, dtype=np.int32)
    # The content goes wherever BOS/EOS do not, in order: one boolean mask (a 16x faster
    # scatter than moving each token by its own offset; 0.05 s for 19 M tokens)
    content = np.ones(len(out), dtype=bool)
    bos_at = (out_ends - lengths)[heads == 1] if bos is not None else None
    if bos_at is not None:
        content[bos_at] = False
    if eos is not None:
        content[out_ends - 1] = False
    out[content] = tokens
    if bos_at is not None:
        out[bos_at] = bos
    if eos is not None:
        out[out_ends - 1] = eos
    return out, lengths


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_KEY = re.compile(r'[ \t\n\r]*("(?:[^"\\]|\\.)*")[ \t\n\r]*:[ \t\n\r]*')


def _without_special_added_tokens(json_text: str) -> str:
    """The tokenizer JSON without its special added tokens: gigatoken then encodes their text as
    ``tokenizers`` does with ``encode_special_tokens`` (their ids are never produced).

    Only the top-level ``added_tokens`` value is parsed and written again, found by reading the
    top-level keys in order (``tokenizers`` writes it before the model); the rest of the text is
    kept as it is. Where the key may stand again later (a repeated key: a whole parse keeps the last),
    the whole JSON is parsed. A whole parse and dump cost 0.05 s for a 32k BPE and 0.9 s for Gemma 3's 31 MB,
    in the run's process and again in each worker."""
    decoder = json.JSONDecoder()
    at = _JSON_SPACE.match(json_text).end()
    if json_text[at : at + 1] == "{":
        at += 1
        while (key := _JSON_KEY.match(json_text, at)) is not None:
            value, end = decoder.raw_decode(json_text, key.end())
            if json.loads(key.group(1)) == "added_tokens":
                if '"added_tokens"' in json_text[end:]:  # maybe a second one, which a whole parse would take
                    break
                kept = [t for t in value or [] if not t.get("special")]
                return json_text[: key.end()] + json.dumps(kept, ensure_ascii=False) + json_text[end:]
            at = _JSON_SPACE.match(json_text, end).end()
            if json_text[at : at + 1] != ",":
                break
            at += 1
    data = json.loads(json_text)  # no top-level added_tokens: as tokenizers would read it
    data["added_tokens"] = [t for t in data.get("added_tokens") or [] if not t.get("special")]
    return json.dumps(data, ensure_ascii=False)


def probe_texts(tokenizer: LoadedTokenizer, documents: list[str]) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs the probe encodes both ways: the run's first documents, a text per
    special token (and a spread of the others), and the edge cases."""
    texts = [("document", doc[:PROBE_CHARS]) for doc in documents[:PROBE_DOCS]]
    added = tokenizer.tokenizer.get_added_tokens_decoder()
    special = [t.content for _, t in sorted(added.items()) if t.special][:PROBE_SPECIAL]
    others = [t.content for _, t in sorted(added.items()) if not t.special]
    if len(others) > PROBE_ADDED:
        others = [others[i * len(others) // PROBE_ADDED] for i in range(PROBE_ADDED)]
    roles = [tok for tok in tokenizer.tokens.values() if tok is not None]
    for token in dict.fromkeys([*roles, *special, *others]):
        texts.append(("added token", f"{token}a{token} b {token}\n{token}\n\n x{token}"))
    texts += [("edge case", text) for text in EDGE_CASES]
    return texts


def probe(tokenizer: LoadedTokenizer, encoder: GigatokenEncoder, documents: list[str]) -> dict[str, Any] | None:
    """Encode :func:`probe_texts` with both engines, framed as the run frames documents.

    Returns:
        None when every id is the same; else the first differing text (see
        :attr:`EngineChoice.differing`).
    """
    texts = probe_texts(tokenizer, documents)
    plain = [t for _, t in texts]
    want, want_lens = tokenizer.encode_docs_tokenizers(plain)
    got, got_lens = tokenizer.frame(*encoder.encode(plain))
    want_ends, got_ends = np.cumsum(want_lens), np.cumsum(got_lens)
    for i, (kind, text) in enumerate(texts):
        a = want[want_ends[i] - want_lens[i] : want_ends[i]]
        b = got[got_ends[i] - got_lens[i] : got_ends[i]]
        if len(a) != len(b) or not np.array_equal(a, b):
            n = min(len(a), len(b))
            at = int(np.flatnonzero(a[:n] != b[:n])[0]) if (a[:n] != b[:n]).any() else n
            return {
                "text": i, "kind": kind, "excerpt": text[:80], "at": at,
                "tokenizers": a[at : at + 8].tolist(), "gigatoken": b[at : at + 8].tolist(),
            }
    return None


def choose(tokenizer: LoadedTokenizer, requested: str, documents: list[str]) -> tuple[EngineChoice, GigatokenEncoder | None]:
    """The engine for a run whose documents start with ``documents``, and gigatoken's encoder when chosen.

    ``auto`` falls back to ``tokenizers`` (logged, with the reason) when gigatoken is missing, cannot
    load the tokenizer, or its probe differs.

    Raises:
        TokenizerError: ``requested`` is not an engine, or it is ``gigatoken`` and gigatoken cannot
            be used (the reason, and how to fix it).
    """
    if requested not in ENGINES:
        raise TokenizerError(f"`tokenizer.engine` is {requested!r}; valid values are {', '.join(ENGINES)}")
    version = gigatoken_version()
    if requested == TOKENIZERS:
        return EngineChoice(requested, TOKENIZERS, "tokenizer.engine is tokenizers", version=version), None
    try:
        encoder = gigatoken_encoder(tokenizer)
    except TokenizerError as exc:
        return fall_back(requested, str(exc), version, probed=0, differing=None), None
    differing = probe(tokenizer, encoder, documents)
    probed = len(probe_texts(tokenizer, documents))
    if differing is not None:
        reason = (f"gigatoken's ids differ from tokenizers' on probe text {differing['text']} ({differing['kind']} "
                  f"{differing['excerpt'][:40]!r}) at token {differing['at']}")
        return fall_back(requested, reason, version, probed=probed, differing=differing), None
    reason = f"gigatoken gave the ids tokenizers gives on all {probed} probe texts"
    log.info("encoding with %s: %s", version, reason)
    return EngineChoice(requested, GIGATOKEN, reason, probed=probed, version=version), encoder


def fall_back(requested: str, reason: str, version: str | None, *, probed: int, differing: dict | None) -> EngineChoice:
    """``tokenizers``, with ``reason`` logged, where ``auto`` was requested.

    Raises:
        TokenizerError: ``gigatoken`` was requested (the reason, and how to fix it).
    """
    if requested == GIGATOKEN:
        raise TokenizerError(f"`tokenizer.engine: gigatoken` cannot be used: {reason}. Set `tokenizer.engine: auto` "
                             "(or tokenizers) to encode with tokenizers")
    # a differing probe is a gigatoken bug worth seeing; an unsupported tokenizer is expected
    (log.warning if differing is not None else log.info)("encoding with tokenizers: %s", reason)
    return EngineChoice(requested, TOKENIZERS, reason, probed=probed, differing=differing, version=version)


def settle(tokenizer: LoadedTokenizer, choice: EngineChoice) -> None:
    """Make ``choice``, made by a task's own probe (fine-tuning's, :mod:`dataprep.tasks.sft.engine_choice`),
    the tokenizer's and its run's: it travels with the pickled tokenizer to every worker and the
    manifest records it, as :meth:`~dataprep.text.tokenizer.LoadedTokenizer.choose_engine` does."""
    engine = tokenizer._engine  # type: ignore[attr-defined]
    with engine._lock:
        engine.choice, engine._encoder = choice, None
        engine.run_choice = choice
