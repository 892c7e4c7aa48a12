"""Encoding many documents, and long ones, in bounded memory and on every core.

:func:`encode_pieces` is what :meth:`~dataprep.text.tokenizer.LoadedTokenizer.encode_docs` encodes
with. It gives the same tokens as encoding every document whole, and bounds what encoding holds:

- texts are encoded in groups of about ``ENCODE_GROUP_CHARS`` characters (an ``Encoding`` holds
  every token's string and offsets besides its id);
- a document longer than ``LONG_DOC_CHARS`` is cut into pieces at *seams* proven not to change its
  tokens (:func:`seams`), so that it neither holds ~110 bytes per character at once nor runs on
  one core;
- after each call the pages the encodings freed go back to the OS (glibc's ``malloc_trim``).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
from tokenizers import Tokenizer

__all__ = ["encode_pieces", "seams"]

# Characters per encode call in encode_docs: bounds the memory the Rust encodings hold
# (~110 bytes per character while encoding: every token's string, offsets and the
# pre-tokenizer's per-byte alignments), ~120 MB a call; chunks on threads encode side by side.
ENCODE_GROUP_CHARS = 1 << 20
# A document longer than LONG_DOC_CHARS is encoded in pieces of about SEAM_EVERY characters,
# cut at seams proven not to change its tokens (see seams): without them one
# 3.5 MB book held ~400 MB while it encoded, and ran on one core.
LONG_DOC_CHARS = 1 << 18
SEAM_EVERY = 1 << 17
SEAM_WINDOW = 256  # characters each side of a candidate seam that are encoded to check it
SEAM_TRIES = 8  # candidates checked before the rest of a document is encoded whole
# Candidate seams: after a newline between two non-space characters, or before a space between
# two word characters (books whose paragraphs are single lines have no newline candidates).
_SEAM = re.compile(r"(?<=\S\n)(?=\S)|(?<=\w)(?= \w)")


def encode_pieces(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode ``texts`` (``add_special_tokens=False``), long ones in pieces.

    Args:
        tokenizer: The encoding tokenizer.
        texts: The documents, at least one.

    Returns:
        ``(tokens, piece_lens, counts)``: int32 tokens of every piece back to back, the int64
        token count of each piece, and the int64 number of pieces of each document.
    """
    # Long documents become several pieces (seams that change no token); every piece of a
    # document is encoded, and the caller joins the pieces again.
    pieces: list[str] = []
    counts = np.ones(len(texts), dtype=np.int64)  # pieces per document
    for i, text in enumerate(texts):
        if len(text) > LONG_DOC_CHARS:
            cuts = seams(tokenizer, text)
            counts[i] = len(cuts) + 1
            pieces.extend(text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]))
        else:
            pieces.append(text)
    # Encode in groups of about ENCODE_GROUP_CHARS characters: an Encoding holds every token's
    # string and offsets besides its id; groups keep that bounded (the output is the same).
    parts = [_encode_group(tokenizer, pieces[a:b]) for a, b in _groups(pieces, ENCODE_GROUP_CHARS)]
    tokens = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    piece_lens = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    _release_freed_memory()
    return tokens, piece_lens, counts


def _encode_group(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of ``texts`` back to back (int32) and the count of each (int64)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    # Each `.ids` builds a fresh Python list, so read it exactly once. np.fromiter over a
    # chain with a known count builds no per-document arrays and was at or near the best
    # way to flatten them (vs preallocate + fill, concatenate, list.extend + np.array).
    ids = [enc.ids for enc in encodings]
    del encodings
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return tokens, lengths


def seams(tokenizer: Tokenizer, text: str) -> list[int]:
    """Where to cut a long document so that its pieces' tokens, joined, are its own tokens.

    A candidate (``_SEAM``) follows a newline between two non-space characters, or precedes
    a space between two word characters, about every ``SEAM_EVERY`` characters. It is used
    only if encoding ``SEAM_WINDOW`` characters each side of it as one text and as two texts
    gives the same tokens. That holds for regex pre-tokenizers (GPT-2, Llama 3, BERT: a
    newline or a space between two words is a pre-token boundary wherever matching started)
    and fails wherever a piece would be encoded differently as a text start (a prepended
    ``▁``, a stripped edge), whose documents stay whole. A document with no usable candidate
    after ``SEAM_TRIES`` checks is encoded whole from there on.

    Args:
        tokenizer: The encoding tokenizer.
        text: A document longer than ``LONG_DOC_CHARS``.

    Returns:
        The character offsets to cut at, ascending; empty when the document stays whole.
    """
    cuts: list[int] = []
    start = 0
    while len(text) - start > LONG_DOC_CHARS:
        cut = None
        for tries, match in enumerate(_SEAM.finditer(text, start + SEAM_EVERY)):
            if tries == SEAM_TRIES or len(text) - match.end() < SEAM_EVERY // 2:
                break
            if _seam_holds(tokenizer, text, match.end()):
                cut = match.end()
                break
        if cut is None:
            break
        cuts.append(cut)
        start = cut
    return cuts


def _seam_holds(tokenizer: Tokenizer, text: str, at: int) -> bool:
    a, b = max(0, at - SEAM_WINDOW), min(len(text), at + SEAM_WINDOW)
    whole, left, right = tokenizer.encode_batch_fast([text[a:b], text[a:at], text[at:b]], add_special_tokens=False)
    return whole.ids == left.ids + right.ids


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
