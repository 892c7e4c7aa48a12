"""Tokenize a rendered example once, with offsets, and turn its target spans into a loss mask.

A token is a target iff its character span overlaps a target span of the
:class:`~dataprep.tasks.sft.templates.Rendered` example. Prompt and response are never tokenized
separately, so ``ids`` is always exactly the tokenizer's encoding of the full text::

    text    = "...### Response:\\n" "Red." "<|endoftext|>"            (GPT-2, alpaca)
    tokens  =  ... ':'  '\\n'        'Red' '.'  '<|endoftext|>'
    mask    =  ...  0    0            1     1    1

**Straddles.** A token may hold characters on both sides of a target boundary, e.g. a
template ending in a space merged into the response's first token (GPT-2 ``"Summary: The"``
gives ``' The'``). Such a token overlaps the target, so it *is* a target (the model must
produce it), and it is counted in :attr:`Encoded.straddles` so the run can report it.

**Special tokens are recognised.** The rendered text contains the template's special-token
strings (``<|end|>``, ``<|endoftext|>``) and they must encode to their special ids, as
``apply_chat_template(..., tokenize=True)`` does. :class:`~dataprep.text.tokenizer.LoadedTokenizer`
sets ``encode_special_tokens = split_special_tokens`` (default True: specials inside
*documents* are plain text), so this module encodes with a private copy of the tokenizer
with ``encode_special_tokens=False`` (:func:`~dataprep.text.tokenizer_cache.specials_matched`, which the
reference check shares), made once per tokenizer's files and never handed out: the
last two are kept by fingerprint, so a second run (or validate's recheck) in the same process
with the same tokenizer reuses it instead of parsing the vocabulary again. A tokenizer with
``split_special_tokens: false`` reads them already and is used as it is, never changed here. The flip side,
also true of transformers: a special-token string inside a record's field encodes as that
special token.

**Engines.** Where the run chose it (:mod:`dataprep.tasks.sft.engine_choice`), gigatoken encodes
and each token's span comes from its byte length (:mod:`dataprep.text.byte_offsets`), exactly the
offsets ``tokenizers`` gives, without building a string and offsets per token
(``benchmarks/sft_throughput.py`` runs both); else ``tokenizers``' ``encode_batch``. The masks are
the same either way.

**Stripping added tokens.** Added tokens with ``lstrip``/``rstrip`` (Phi-3's ``<|end|>``,
``<|assistant|>``) absorb neighbouring whitespace into their match, and their offsets cover it.
For the overlap test such a token's span is its literal text only, so ``<|end|>\\n`` is a clean
target (no straddle) and ``<|assistant|>\\n`` never becomes one by absorbing leading spaces of
the reply.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from dataprep.tasks.sft.templates import Rendered
from dataprep.text.byte_offsets import ByteOffsets, byte_offsets
from dataprep.text.encode_engine import GIGATOKEN, GigatokenEncoder
from dataprep.text.tokenizer import LoadedTokenizer
from dataprep.text.tokenizer_cache import specials_matched

__all__ = ["Encoded", "EncodedBatch", "encode_with_mask", "encode_batch_with_mask", "encode_batch_flat", "fast_encoder",
           "FINE_TUNING"]

log = logging.getLogger("dataprep.sft")

# How a fine-tuning engine choice's reason starts (:mod:`dataprep.tasks.sft.engine_choice`): only a
# choice made by fine-tuning's own probe (ids and offsets) lets gigatoken encode examples.
FINE_TUNING = "fine-tuning:"


@dataclass(frozen=True, eq=False)
class Encoded:
    """One tokenized example.

    Attributes:
        ids: int32 token ids of the whole rendered text, no special tokens added.
        mask: uint8, 1 where the token overlaps a target span.
        straddles: Target tokens whose span also covers non-target characters.
        prompt_tokens: Leading tokens that end at or before ``Rendered.prompt_end`` (the
            part ``truncate_prompt`` may cut; earlier assistant turns included).
    """

    ids: np.ndarray
    mask: np.ndarray
    straddles: int
    prompt_tokens: int

    @property
    def num_targets(self) -> int:
        return int(self.mask.sum())


@dataclass
class _Templated:
    """A copy of the tokenizer that matches special tokens in text, plus stripping tokens."""

    tokenizer: Tokenizer
    strips: np.ndarray = field(repr=False)  # bool per id: an added token with lstrip/rstrip
    content: dict[int, str] = field(default_factory=dict)


_NO_STRIPS = _Templated(None, np.zeros(0, dtype=bool))  # type: ignore[arg-type]
_CACHE: weakref.WeakKeyDictionary[LoadedTokenizer, _Templated] = weakref.WeakKeyDictionary()
_KEEP = 2  # fast encoders kept by fingerprint (Gemma 3's is large)
_LOCK = threading.Lock()


def _templated(tokenizer: LoadedTokenizer) -> _Templated:
    found = _CACHE.get(tokenizer)
    if found is None:  # the run's own tokenizer where it matches specials already, else a private copy
        # kept per process by fingerprint, for a run after a run or validate's recheck (specials_matched)
        found = _CACHE[tokenizer] = _with_strips(specials_matched(tokenizer))
    return found


def _with_strips(encoder: Tokenizer) -> _Templated:
    added = encoder.get_added_tokens_decoder()
    size = max([encoder.get_vocab_size(with_added_tokens=True), *(i + 1 for i in added)])
    strips = np.zeros(size, dtype=bool)
    content = {i: t.content for i, t in added.items() if t.lstrip or t.rstrip}
    strips[list(content)] = True
    return _Templated(encoder, strips, content)


@dataclass(frozen=True)
class FastEncoder:
    """gigatoken matching every added token in the text (as :func:`_templated`'s copy does), and
    the byte lengths that give its tokens' offsets."""

    encoder: GigatokenEncoder
    offsets: ByteOffsets


class _NoSpans(Exception):
    """gigatoken's token bytes do not spell a probed text."""


_FAST: weakref.WeakKeyDictionary[LoadedTokenizer, FastEncoder] = weakref.WeakKeyDictionary()
# and by fingerprint, as the private copies: the next run's LoadedTokenizer of the same files in this
# process reuses gigatoken's build (Llama 3: seconds) and the byte table
_FAST_BY_FINGERPRINT: OrderedDict[str, FastEncoder] = OrderedDict()


def fast_encoder(tokenizer: LoadedTokenizer) -> FastEncoder | None:
    """gigatoken's encoder for fine-tuning when the run chose it (its engine choice comes from
    fine-tuning's probe and says gigatoken), else None: ``tokenizers`` encodes."""
    choice = tokenizer.engine_choice
    if choice is None or choice.engine != GIGATOKEN or not choice.reason.startswith(FINE_TUNING):
        return None
    return _fast_for(tokenizer)


def _fast_for(tokenizer: LoadedTokenizer) -> FastEncoder:
    """Built once per tokenizer and process.

    Raises:
        TokenizerError: gigatoken cannot load the tokenizer, or byte lengths do not give its
            offsets (:class:`~dataprep.text.byte_offsets.Unsupported`), with the reason.
    """
    found = _FAST.get(tokenizer)
    if found is None:
        with _LOCK:
            found = _FAST.get(tokenizer) or _FAST_BY_FINGERPRINT.get(tokenizer.fingerprint)
            if found is None:
                offsets = byte_offsets(tokenizer.tokenizer)  # the cheaper refusal first
                found = FastEncoder(GigatokenEncoder(tokenizer._json.decode("utf-8"), split_special_tokens=False), offsets)
            _FAST[tokenizer] = _FAST_BY_FINGERPRINT[tokenizer.fingerprint] = found
            _FAST_BY_FINGERPRINT.move_to_end(tokenizer.fingerprint)
            while len(_FAST_BY_FINGERPRINT) > _KEEP:
                _FAST_BY_FINGERPRINT.popitem(last=False)
    return found


@dataclass(frozen=True, eq=False)
class EncodedBatch:
    """Many tokenized examples, flat: example ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Attributes:
        ids: int32 token ids of every example, back to back.
        mask: uint8, aligned with ``ids``.
        lengths: int64 tokens per example.
        offsets: int64, ``len(lengths) + 1`` cumulative lengths.
        straddles: int64 per example (see :class:`Encoded`).
        prompt_tokens: int64 per example (see :class:`Encoded`).
    """

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    straddles: np.ndarray
    prompt_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Encoded:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return Encoded(ids=self.ids[a:b], mask=self.mask[a:b], straddles=int(self.straddles[i]), prompt_tokens=int(self.prompt_tokens[i]))


def encode_with_mask(tokenizer: LoadedTokenizer, rendered: Rendered) -> Encoded:
    """Tokenize ``rendered.text`` once (specials recognised, none added) and build its loss mask.

    Args:
        tokenizer: The run's tokenizer; its ``split_special_tokens`` is ignored here (see
            the module docstring).
        rendered: The example and its target spans.

    Returns:
        The ids, the loss mask, and the straddle and prompt-token counts.
    """
    return encode_batch_flat(tokenizer, [rendered])[0]


def encode_batch_with_mask(tokenizer: LoadedTokenizer, rendered: Sequence[Rendered]) -> list[Encoded]:
    """:func:`encode_with_mask` for many examples (one :func:`encode_batch_flat` call)."""
    batch = encode_batch_flat(tokenizer, rendered)
    return [batch[i] for i in range(len(batch))]


def encode_batch_flat(tokenizer: LoadedTokenizer, rendered: Sequence[Rendered], *, engine: str | None = None) -> EncodedBatch:
    """Encode many examples in one call and build every mask in one vectorised pass over the batch,
    with no Python loop per token or per example (bar the few stripping added tokens).

    The encoder is the run's fine-tuning engine (:mod:`dataprep.tasks.sft.engine_choice`): gigatoken's ids, with
    spans from their byte lengths (:mod:`dataprep.text.byte_offsets`), or ``tokenizers``'
    ``encode_batch`` with offsets (Rust thread pool). ``engine`` forces one (the probe's use).

    The examples are laid side by side on one character axis (example ``i`` starts at
    ``base[i]``, with a gap of 2 after each text), so one ``searchsorted`` over all target spans
    gives what a per-example search would: a token's first span ending after its start is a
    span of its own example, or lies past the gap where no token of the example reaches.
    """
    n = len(rendered)
    if n == 0:
        zero, empty = np.zeros(0, np.int64), np.zeros(0, np.int32)
        return EncodedBatch(empty, np.zeros(0, np.uint8), zero, np.zeros(1, np.int64), zero, zero)
    texts = [r.text for r in rendered]
    fast = fast_encoder(tokenizer) if engine is None else (_fast_for(tokenizer) if engine == GIGATOKEN else None)
    found = _encode_fast(fast, texts, probing=engine is not None) if fast is not None else None
    # a tokenizer with no stripping added token needs no private copy on the fast path
    t = _NO_STRIPS if found is not None and not fast.offsets.rstrip.any() else _templated(tokenizer)
    ids, lengths, spans = found if found is not None else _encode(t, texts)
    return _masked(t, rendered, texts, ids, lengths, spans)


def _encode_fast(fast: FastEncoder, texts: list[str], *, probing: bool) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """:func:`_encode` with gigatoken, spans from the ids' byte lengths; None when they do not
    spell the texts (then ``tokenizers`` encodes the batch; the probe raises instead)."""
    ids, lengths = fast.encoder.encode(texts)
    spans = fast.offsets.char_spans(texts, ids, lengths)
    if spans is not None:
        return ids, lengths, spans
    if probing:
        raise _NoSpans("gigatoken's token bytes do not spell the texts")
    # expected where a text holds what the lengths cannot spell (Gemma's literal ▁); else a bug to see
    held = any(u in text for text in texts for u in fast.offsets.unspelled)
    (log.info if held else log.warning)("gigatoken's token bytes do not spell a batch's texts%s; encoding it with "
                                        "tokenizers", " (one holds ▁ or an added token's text)" if held else "")
    return None


def _encode(t: _Templated, texts: list[str]) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """``(ids, lengths, (starts, ends))``: int32 ids of every text back to back, int64 tokens per
    text, and each token's character span in its own text, from ``tokenizers``' offsets."""
    n = len(texts)
    encodings = t.tokenizer.encode_batch(texts, add_special_tokens=False)
    id_lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=n)
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32, count=total)
    pairs = itertools.chain.from_iterable(itertools.chain.from_iterable(e.offsets for e in encodings))
    spans = np.fromiter(pairs, dtype=np.int64, count=2 * total).reshape(-1, 2)
    return ids, lengths, (spans[:, 0].copy(), spans[:, 1].copy())


def _masked(t: _Templated, rendered: Sequence[Rendered], texts: list[str], ids: np.ndarray, lengths: np.ndarray,
            spans: tuple[np.ndarray, np.ndarray]) -> EncodedBatch:
    """The masks, straddles and prompt lengths of encoded examples (see :func:`encode_batch_flat`)."""
    n = len(rendered)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    starts, ends = spans
    example = np.repeat(np.arange(n, dtype=np.int64), lengths)  # example of each token
    text_lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    base = np.zeros(n, dtype=np.int64)
    np.cumsum(text_lens[:-1] + 2, out=base[1:])
    # Stripping added tokens: shrink the span to the token's own text (few per example).
    for k in np.flatnonzero(t.strips[ids]).tolist() if total and len(t.strips) else ():
        text = t.content[int(ids[k])]
        i = int(example[k])
        at = texts[i].find(text, int(starts[k]), int(ends[k]))
        if at >= 0:
            starts[k], ends[k] = at, at + len(text)
    span_starts, span_ends = _target_spans(rendered, text_lens, base)
    token_base = base[example]
    starts += token_base
    ends += token_base
    mask = np.zeros(total, dtype=np.uint8)
    straddles = np.zeros(n, dtype=np.int64)
    count = len(span_starts)
    if count and total:
        # An empty token span (a, a) counts as the point a.
        stops = np.maximum(ends, starts + 1)
        # First target span ending after the token's start; overlap iff it also starts before the token's end.
        k = np.searchsorted(span_ends, starts, side="right")
        kk = np.minimum(k, count - 1)
        overlap = (k < count) & (span_starts[kk] < stops)
        inside = (starts >= span_starts[kk]) & (stops <= span_ends[kk])
        mask[overlap] = 1
        straddles = np.bincount(example[overlap & ~inside], minlength=n).astype(np.int64)
    # prompt_tokens: index of the first token ending after prompt_end (the length when none does).
    prompt_end = np.fromiter((r.prompt_end for r in rendered), dtype=np.int64, count=n) + base
    local = np.arange(total, dtype=np.int64) - offsets[example]
    first_after = np.where(ends > prompt_end[example], local, lengths[example])
    prompt_tokens = lengths.copy()
    nonempty = lengths > 0
    if total:
        prompt_tokens[nonempty] = np.minimum.reduceat(first_after, offsets[:-1][nonempty])
    return EncodedBatch(ids, mask, lengths, offsets, straddles, prompt_tokens)


def _target_spans(rendered: Sequence[Rendered], text_lens: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every example's target spans on the joint axis (example ``i`` from ``base[i]``) as :func:`_spans`
    gives them, for all examples at once: the gap between examples keeps their spans from merging."""
    n = len(rendered)
    counts = np.fromiter((len(r.targets) for r in rendered), dtype=np.int64, count=n)
    pairs = itertools.chain.from_iterable(itertools.chain.from_iterable(r.targets for r in rendered))
    flat = np.fromiter(pairs, dtype=np.int64, count=2 * int(counts.sum())).reshape(-1, 2)
    own = np.repeat(np.arange(n, dtype=np.int64), counts)
    a, b = flat[:, 0], flat[:, 1]
    bad = (a < 0) | (a > b) | (b > text_lens[own])
    if bad.any():
        _spans(rendered[int(own[np.argmax(bad)])])  # raises, naming the span
    keep = a < b
    a, b = a[keep] + base[own[keep]], b[keep] + base[own[keep]]
    if not len(a):
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    # a span opens a new merged one when it starts after every earlier span has ended
    opens = np.flatnonzero(np.concatenate(([True], a[1:] > np.maximum.accumulate(b)[:-1])))
    return a[opens], np.maximum.reduceat(b, opens)


def _spans(rendered: Rendered) -> tuple[np.ndarray, np.ndarray]:
    """Target spans sorted, empty ones dropped, overlapping or touching ones merged."""
    merged: list[list[int]] = []
    for a, b in sorted(rendered.targets):
        if not 0 <= a <= b <= len(rendered.text):
            raise ValueError(f"target span {(a, b)} is outside the text (length {len(rendered.text)})")
        if a == b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    spans = np.asarray(merged, dtype=np.int64).reshape(-1, 2)
    return spans[:, 0], spans[:, 1]
