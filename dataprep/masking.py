"""Tokenize a rendered example once, with offsets, and turn its target spans into a loss mask.

A token is a target iff its character span overlaps a target span of the
:class:`~dataprep.templates.Rendered` example. Prompt and response are never tokenized
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
``apply_chat_template(..., tokenize=True)`` does. :class:`~dataprep.tokenizer.LoadedTokenizer`
sets ``encode_special_tokens = split_special_tokens`` (default True: specials inside
*documents* are plain text), so this module encodes with a private copy of the tokenizer
with ``encode_special_tokens=False``, made once per tokenizer and never shared. The flip side,
also true of transformers: a special-token string inside a record's field encodes as that
special token.

**Stripping added tokens.** Added tokens with ``lstrip``/``rstrip`` (Phi-3's ``<|end|>``,
``<|assistant|>``) absorb neighbouring whitespace into their match, and their offsets cover it.
For the overlap test such a token's span is its literal text only, so ``<|end|>\\n`` is a clean
target (no straddle) and ``<|assistant|>\\n`` never becomes one by absorbing leading spaces of
the reply.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding, Tokenizer

from .templates import Rendered
from .tokenizer import LoadedTokenizer

__all__ = ["Encoded", "encode_with_mask", "encode_batch_with_mask"]


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


_CACHE: weakref.WeakKeyDictionary[LoadedTokenizer, _Templated] = weakref.WeakKeyDictionary()


def _templated(tokenizer: LoadedTokenizer) -> _Templated:
    found = _CACHE.get(tokenizer)
    if found is None:
        copy = Tokenizer.from_str(tokenizer.tokenizer.to_str())
        copy.encode_special_tokens = False
        added = copy.get_added_tokens_decoder()
        size = max([copy.get_vocab_size(with_added_tokens=True), *(i + 1 for i in added)])
        strips = np.zeros(size, dtype=bool)
        content = {i: t.content for i, t in added.items() if t.lstrip or t.rstrip}
        strips[list(content)] = True
        found = _CACHE[tokenizer] = _Templated(copy, strips, content)
    return found


def encode_with_mask(tokenizer: LoadedTokenizer, rendered: Rendered) -> Encoded:
    """Tokenize ``rendered.text`` once (specials recognised, none added) and build its mask.

    Args:
        tokenizer: The run's tokenizer; its ``split_special_tokens`` is ignored here (see
            the module docstring).
        rendered: The example and its target spans.

    Returns:
        The ids, the mask, and the straddle and prompt-token counts.
    """
    t = _templated(tokenizer)
    return _mask(t, rendered, t.tokenizer.encode(rendered.text, add_special_tokens=False))


def encode_batch_with_mask(tokenizer: LoadedTokenizer, rendered: Sequence[Rendered]) -> list[Encoded]:
    """:func:`encode_with_mask` for many examples, encoded in one ``encode_batch`` call
    (Rust thread pool, offsets tracked); the mask is vectorised per example."""
    t = _templated(tokenizer)
    encodings = t.tokenizer.encode_batch([r.text for r in rendered], add_special_tokens=False)
    return [_mask(t, r, e) for r, e in zip(rendered, encodings)]


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


def _mask(t: _Templated, rendered: Rendered, encoding: Encoding) -> Encoded:
    ids = np.asarray(encoding.ids, dtype=np.int32)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0].copy(), offsets[:, 1].copy()
    # Stripping added tokens: shrink the span to the token's own text (few per example).
    for k in np.flatnonzero(t.strips[ids]) if len(ids) else ():
        text = t.content[int(ids[k])]
        at = rendered.text.find(text, int(starts[k]), int(ends[k]))
        if at >= 0:
            starts[k], ends[k] = at, at + len(text)
    span_starts, span_ends = _spans(rendered)
    count = len(span_starts)
    mask = np.zeros(len(ids), dtype=np.uint8)
    straddles = 0
    if count and len(ids):
        # An empty token span (a, a) counts as the point a.
        stops = np.maximum(ends, starts + 1)
        # First target span ending after the token's start; overlap iff it also starts before the token's end.
        k = np.searchsorted(span_ends, starts, side="right")
        kk = np.minimum(k, count - 1)
        overlap = (k < count) & (span_starts[kk] < stops)
        inside = (starts >= span_starts[kk]) & (stops <= span_ends[kk])
        mask[overlap] = 1
        straddles = int(np.count_nonzero(overlap & ~inside))
    after = np.flatnonzero(ends > rendered.prompt_end)
    prompt_tokens = int(after[0]) if len(after) else len(ids)
    return Encoded(ids=ids, mask=mask, straddles=straddles, prompt_tokens=prompt_tokens)
