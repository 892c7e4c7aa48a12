"""Document filters over Arrow arrays. Every dropped document is counted under its reason.

Reasons (the keys of ``counts.dropped`` in the manifest): ``empty``, ``too_short``,
``too_long``, ``too_few_words``; ``language`` (``filter.languages``, :mod:`dataprep.text.language`);
each quality rule's own (``gopher_*``, ``c4_*``, ``fineweb_*``: ``filter.quality``,
:mod:`dataprep.text.quality`); and, in the ordered stage, ``duplicate`` (``dedup: exact`` or
``minhash``) and ``near_duplicate`` (``dedup: minhash``, :mod:`dataprep.text.minhash`).

:func:`dataprep.text.filter_chain.keep_documents` runs them in FineWeb's order: the cheap length rules,
then language, then the quality rules, each on what the earlier ones kept.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.text.minhash import MinhashSpec


@dataclass(frozen=True)
class FilterSpec:
    """A recipe's ``filter:`` section."""

    min_chars: int = 1
    max_chars: int | None = None
    min_words: int = 0
    dedup: str = "exact"  # none | exact | minhash (exact duplicates first, then near-duplicates)
    minhash: MinhashSpec = field(default_factory=MinhashSpec)
    languages: tuple[str, ...] | str | None = None  # None: no language identification; "all": any language
    language_threshold: float = 0.65  # the schema's default (datatrove's, FineWeb's)
    quality: tuple = ()  # quality.quality_filters(recipe filter.quality): the rules on, in run order


EMPTY = "empty"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
TOO_FEW_WORDS = "too_few_words"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
MINHASH = "minhash"


def dropper(n: int, drops: Counter) -> tuple[np.ndarray, Callable[[np.ndarray, str], None]]:
    """A keep-mask over ``n`` documents, and ``drop(where, reason)``: drops those of ``where`` still
    kept, counting each document once, under the first reason that drops it."""
    keep = np.ones(n, dtype=bool)

    def drop(where: np.ndarray, reason: str) -> None:
        hit = where & keep
        if count := int(hit.sum()):
            drops[reason] += count
            keep[hit] = False

    return keep, drop


def filter_mask(texts: pa.Array, spec: FilterSpec, drops: Counter) -> np.ndarray:
    """Boolean keep-mask for normalized ``texts``; counts each drop once, under its first reason."""
    keep, drop = dropper(len(texts), drops)
    if len(texts) == 0:
        return keep
    lengths = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
    drop(lengths == 0, EMPTY)
    drop(lengths < spec.min_chars, TOO_SHORT)
    if spec.max_chars is not None:
        drop(lengths > spec.max_chars, TOO_LONG)
    if spec.min_words > 0:
        words = pc.fill_null(pc.count_substring_regex(texts, pattern=r"\S+"), 0).to_numpy(zero_copy_only=False)
        drop(words < spec.min_words, TOO_FEW_WORDS)
    return keep


def content_hashes(texts: list[str] | pa.Array) -> list[bytes]:
    """128-bit BLAKE2b of each text's UTF-8: the identity used for dedup and for the split.

    An Arrow string array (without nulls) is hashed from its buffer, with no Python string made
    and encoded again (a third less time on the bench corpus); the digests are the same.
    """
    blake2b = hashlib.blake2b
    if isinstance(texts, pa.Array) and texts.null_count == 0 and len(texts):
        kind = np.int64 if pa.types.is_large_string(texts.type) else np.int32
        offsets = np.frombuffer(texts.buffers()[1], dtype=kind)[texts.offset : texts.offset + len(texts) + 1].tolist()
        data = memoryview(texts.buffers()[2] or b"")
        return [blake2b(data[start:end], digest_size=16).digest() for start, end in zip(offsets, offsets[1:])]
    if isinstance(texts, pa.Array):
        texts = texts.to_pylist()
    return [blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]


def validation_flags(hashes: list[bytes], *, fraction: float, salt: str) -> np.ndarray:
    """True where a document goes to validation: a pure function of its content (and the salt).

    A document's split never changes as the corpus grows, and exact duplicates share it.
    """
    if fraction <= 0.0 or not hashes:
        return np.zeros(len(hashes), dtype=bool)
    if fraction >= 1.0:
        return np.ones(len(hashes), dtype=bool)
    salt_bytes = salt.encode("utf-8")
    threshold = int(fraction * 2**64)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(h + salt_bytes, digest_size=8).digest(), "big") < threshold
            for h in hashes
        ),
        dtype=bool,
        count=len(hashes),
    )
