"""Quality filters for pretraining text: Gopher quality and repetition, C4 and FineWeb's line rules.

Each filter is a frozen dataclass of thresholds defaulting to the published values (its
docstring cites them), called on a batch (an Arrow string array): ``keep, texts = f(texts,
drops)``. A dropped document is counted once, under its first failed rule, as in
``filters.filter_mask``; only :class:`C4Quality` rewrites text (it removes lines). Where
datatrove walks each document in Python, these count with Arrow's RE2 kernels over the batch
and find repeated lines and n-grams from 64-bit hashes with polars and numpy. Words are
whitespace-separated (no tokenizer model to download), lines split on ``\\n``; where a rule
differs from datatrove's, the class says how. :func:`apply_quality` runs them in turn.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dataprep.errors import ConfigError
from dataprep.text.filters import EMPTY, dropper

SYMBOL = r"\p{P}\p{S}"  # Unicode punctuation and symbols: what a "symbol-only" token consists of
SPACE = r"\t-\r\x{1c}-\x{1f}\x{85}\p{Z}"  # Python's str.isspace() (RE2's \s is ASCII only)
WORD = f"[^{SPACE}]+"  # a word: what str.split() and pc.utf8_split_whitespace give
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
TERMINAL = ".!?。！？｡．؟۔।॥։።፧‼‽⁇⁈⁉"  # sentence ends: Latin, CJK, Arabic, Indic, Armenian, Ethiopic
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _as_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.fill_null(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts, "")


def _np(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False)


def _count(texts: pa.Array, pattern: str) -> np.ndarray:
    return _np(pc.count_substring_regex(texts, pattern)).astype(np.int64)


def _mix(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of (h, x), order-sensitive (splitmix64's finalizer): n-gram and line keys."""
    with np.errstate(over="ignore"):
        z = (h * _MIX) ^ x.astype(np.uint64)  # the product spreads small h (a document index)
        z ^= z >> np.uint64(29)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        return z ^ (z >> np.uint64(32))


def _hashes(strings: pa.Array) -> np.ndarray:
    """64-bit hashes of strings (equal strings, equal hashes: all this module compares)."""
    return pl.from_arrow(strings).hash().to_numpy()


def _repeats(keys: np.ndarray) -> np.ndarray:
    """True where a key was seen earlier in ``keys``."""
    return ~pl.Series(keys, dtype=pl.UInt64).is_first_distinct().to_numpy()



def _parts(lists: pa.Array, drop_blank: bool) -> tuple[pa.Array, np.ndarray]:
    """The pieces of a list array (less whitespace-only ones if ``drop_blank``), and their documents."""
    parents = _np(pc.list_parent_indices(lists)).astype(np.int64)
    flat = pc.list_flatten(lists)
    if drop_blank and len(flat):
        solid = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0)
        flat, parents = flat.filter(solid), parents[_np(solid).astype(bool)]
    return flat, parents


def _per_doc(parents: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(parents, weights=weights, minlength=n)


def _dup_elements(pieces: pa.Array, parents: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per document: pieces, repeated pieces (not their first occurrence) and the repeats' chars."""
    repeat = _repeats(_mix(parents.astype(np.uint64), _hashes(pieces))) * 1.0
    return _per_doc(parents, n), _per_doc(parents, n, repeat), _per_doc(parents, n, repeat * _np(pc.utf8_length(pieces)))


@dataclass(frozen=True)
class GopherQuality:
    """Gopher's quality rules and thresholds (Rae et al. 2021, appendix A.1.1): 50 to 100,000
    words; mean word length 3 to 10; "#" and ellipses each at most 0.1 per word; at most 90% of
    lines starting with a bullet, 30% ending in an ellipsis; at least 80% of words with a letter;
    at least 2 of the stop words (whole lower-case words). As in datatrove's
    ``GopherQualityFilter``, word counts and mean length skip words of punctuation and symbols
    only; the mean counts letters and digits ("dog." is 3), as NLTK's split gives datatrove.
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple[str, ...] = STOP_WORDS

    def __call__(self, texts: pa.Array, drops: Counter, lines: Counter | None = None) -> tuple[np.ndarray, pa.Array]:
        texts = _as_text(texts)
        keep, drop = dropper(len(texts), drops)
        words = np.maximum(_count(texts, WORD), 1)
        content = _count(texts, rf"[{SYMBOL}]*[^{SPACE}{SYMBOL}][^{SPACE}]*")
        drop(content < self.min_words, "gopher_too_few_words")
        drop(content > self.max_words, "gopher_too_many_words")
        letters = _np(pc.utf8_length(pc.replace_substring_regex(texts, rf"[{SPACE}{SYMBOL}]+", ""))).astype(np.float64)
        mean = letters / np.maximum(content, 1)
        drop(mean < self.min_mean_word_length, "gopher_short_words")
        drop(mean > self.max_mean_word_length, "gopher_long_words")
        ellipses = _np(pc.count_substring(texts, "...")) + _np(pc.count_substring(texts, "…"))
        drop(_np(pc.count_substring(texts, "#")) / words > self.max_symbol_word_ratio, "gopher_hash_ratio")
        drop(ellipses / words > self.max_symbol_word_ratio, "gopher_ellipsis_ratio")
        pieces, parents = _parts(pc.split_pattern(texts, "\n"), drop_blank=False)
        n_lines = _per_doc(parents, len(texts))
        bullets = _per_doc(parents, len(texts), _np(pc.match_substring_regex(pieces, rf"^[{SPACE}]*[•‣◦⁃*\-]")) * 1.0)
        trailing = _per_doc(parents, len(texts), _np(pc.match_substring_regex(pieces, rf"(\.\.\.|…)[{SPACE}]*$")) * 1.0)
        drop(bullets / n_lines > self.max_bullet_lines, "gopher_bullet_lines")
        drop(trailing / n_lines > self.max_ellipsis_lines, "gopher_ellipsis_lines")
        drop(_count(texts, rf"[^{SPACE}]*\pL[^{SPACE}]*") / words < self.min_alpha_words, "gopher_alpha_words")
        if self.min_stop_words > 0:
            drop(~self._enough_stop_words(texts, keep), "gopher_stop_words")
        return keep, texts

    def _enough_stop_words(self, texts: pa.Array, alive: np.ndarray) -> np.ndarray:
        """Two vectorized passes settle most documents (the first stop word and one of the
        others); only the rest are counted in Python."""
        words = [re.escape(word) for word in self.stop_words]
        enough = np.zeros(len(texts), bool)
        if self.min_stop_words <= 2 and len(words) > 1:
            enough = (_np(pc.match_substring_regex(texts, rf"\b{words[0]}\b"))
                      & _np(pc.match_substring_regex(texts, rf"\b(?:{'|'.join(words[1:])})\b")))
        pattern = re.compile(rf"\b(?:{'|'.join(words)})\b", re.ASCII)  # RE2's \b is ASCII's too
        for i in np.flatnonzero(alive & ~enough):
            enough[i] = len(set(pattern.findall(texts[int(i)].as_py()))) >= self.min_stop_words
        return enough


@dataclass(frozen=True)
class GopherRepetition:
    """Gopher's repetition rules and thresholds (Rae et al. 2021, appendix A.1.1, table A1).

    Lines (blank ones left out) and paragraphs (split on blank lines): the share that repeat an
    earlier one, and the share of the document's characters in those repeats. Top 2/3/4-gram:
    characters of the most frequent n-gram (spaces included) times its count (ties: the first
    seen); one seen once is no repetition (datatrove counts it, dropping any document of a few words). Duplicated
    5..10-grams: characters (without spaces, as datatrove) of the words inside a repeat of an
    earlier n-gram, each counted once however many repeats cover it (the paper's wording;
    datatrove's scan skips ahead after a repeat). Ratios are over the document's characters.
    """

    max_dup_line_frac: float = 0.3
    max_dup_para_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_dup_para_char_frac: float = 0.2
    top_ngram_char_frac: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_ngram_char_frac: tuple[tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))

    def __call__(self, texts: pa.Array, drops: Counter, lines: Counter | None = None) -> tuple[np.ndarray, pa.Array]:
        texts = _as_text(texts)
        n = len(texts)
        keep, drop = dropper(n, drops)
        chars = np.maximum(_np(pc.utf8_length(texts)).astype(np.float64), 1)
        paras = pc.split_pattern_regex(pc.utf8_trim_whitespace(texts), r"\n{2,}")
        count, dups, dup_chars = _dup_elements(*_parts(paras, drop_blank=False), n)
        drop(dups / np.maximum(count, 1) > self.max_dup_para_frac, "gopher_dup_para_frac")
        drop(dup_chars / chars > self.max_dup_para_char_frac, "gopher_dup_para_char_frac")
        count, dups, dup_chars = _dup_elements(*_parts(pc.split_pattern(texts, "\n"), drop_blank=True), n)
        drop(dups / np.maximum(count, 1) > self.max_dup_line_frac, "gopher_dup_line_frac")
        drop(dup_chars / chars > self.max_dup_line_char_frac, "gopher_dup_line_char_frac")
        words, parents = _parts(pc.utf8_split_whitespace(texts), drop_blank=True)
        ngrams = _NGrams(_hashes(words), _np(pc.utf8_length(words)).astype(np.int64), parents, n)
        for size, limit in self.top_ngram_char_frac:
            drop(ngrams.top(size) / chars > limit, f"gopher_top_{size}gram")
        for size, limit in sorted(self.dup_ngram_char_frac):  # a repeated n-gram repeats its (n-1)-grams:
            covered = ngrams.duplicated(size)  # so each n looks only at documents the last n flagged
            drop(covered / chars > limit, f"gopher_dup_{size}gram")
            ngrams = ngrams.only(keep & (covered > 0))
        return keep, texts


class _NGrams:
    """Word n-grams of a batch as 64-bit keys, one per starting word, built a word longer at a time."""

    def __init__(self, ids, lengths, parents, n_docs: int, keys: np.ndarray | None = None, size: int = 1):
        self.ids, self.lengths, self.parents, self.n_docs, self.size = ids, lengths, parents, n_docs, size
        self.prefix = np.concatenate([[0], np.cumsum(lengths)])
        self.keys = _mix(parents.astype(np.uint64), ids) if keys is None else keys

    def only(self, docs: np.ndarray) -> _NGrams:
        """The words (and keys) of the documents where ``docs``, a mask over documents, is True."""
        rows = docs[self.parents]
        return _NGrams(self.ids[rows], self.lengths[rows], self.parents[rows], self.n_docs, self.keys[rows], self.size)

    def _keys(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The keys of the ``size``-grams inside one document, and the positions they start at."""
        if size < self.size:
            self.size, self.keys = 1, _mix(self.parents.astype(np.uint64), self.ids)
        while self.size < size:
            shifted = np.zeros_like(self.ids)  # the last words' keys run past the end: never valid
            shifted[: len(self.ids) - self.size] = self.ids[self.size :]
            self.keys, self.size = _mix(self.keys, shifted), self.size + 1
        starts = np.flatnonzero(self.parents[: max(len(self.ids) - size + 1, 0)] == self.parents[size - 1 :])
        return self.keys[starts], starts

    def top(self, size: int) -> np.ndarray:
        """Per document: characters of its most frequent ``size``-gram (spaces included) times its
        count, the first seen of equally frequent ones; 0 where no ``size``-gram repeats."""
        keys, starts = self._keys(size)
        out = np.zeros(self.n_docs)
        if len(keys):
            counts = pl.DataFrame({"k": pl.Series(keys, dtype=pl.UInt64)}).select(pl.len().over("k"))
            counts = counts.to_series().to_numpy().astype(np.int64)  # how often each row's n-gram occurs
            docs = self.parents[starts]
            heads = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            best = np.maximum.reduceat(counts * 2**32 + (2**32 - 1 - starts), heads)  # count, then first
            count, first = best >> 32, 2**32 - 1 - (best & (2**32 - 1))
            chars = self.prefix[first + size] - self.prefix[first] + size - 1
            out[docs[heads]] = np.where(count >= 2, count * chars, 0)
        return out

    def duplicated(self, size: int) -> np.ndarray:
        """Per document: characters of the words inside any repeat of an earlier ``size``-gram."""
        keys, starts = self._keys(size)
        repeat = _repeats(keys)
        begin = starts[repeat]
        edges = np.bincount(begin, minlength=len(self.ids) + 1) - np.bincount(begin + size, minlength=len(self.ids) + 1)
        covered = np.cumsum(edges)[: len(self.ids)] > 0
        return _per_doc(self.parents, self.n_docs, covered * self.lengths.astype(np.float64))


POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
C4_LINE_RULES = ("long_word", "no_terminal_punct", "too_few_words", "lorem_ipsum", "javascript",
                 "curly_bracket", "policy")  # in the order C4 checks them; the codes below index it


@dataclass(frozen=True)
class C4Quality:
    """C4's rules (Raffel et al. 2020, section 2.2) with the values of TFDS's ``c4_utils``, which
    built C4. Lines (stripped, without citation marks like "[3]") are dropped for a word over
    1000 characters, no terminal mark (. ? ! "; not an ellipsis), under 5 words, "javascript",
    or privacy/cookie boilerplate; the document, for "lorem ipsum" or "{" in a line that passed
    the first three checks, or under 3 sentences in its kept lines, else it becomes those lines.
    datatrove's ``C4QualityFilter`` asks 5 sentences and 3 words (and takes "'"). Sentences are
    terminal marks before a space or the line's end, at least one a line (TFDS uses Punkt).
    Removed non-blank lines of kept documents are counted in ``lines`` as ``c4_line_<rule>``.
    """

    min_sentences: int = 3
    min_words_per_line: int = 5
    max_word_length: int = 1000
    remove_citations: bool = True
    drop_unterminated_lines: bool = True
    lorem_ipsum: bool = True
    javascript: bool = True
    curly_bracket: bool = True
    policy: bool = True

    def __call__(self, texts: pa.Array, drops: Counter, lines: Counter | None = None) -> tuple[np.ndarray, pa.Array]:
        texts = _as_text(texts)
        keep, drop = dropper(len(texts), drops)
        pieces, parents = _parts(pc.split_pattern(texts, "\n"), drop_blank=False)
        pieces = pc.utf8_trim_whitespace(pieces)
        if self.remove_citations:
            pieces = pc.replace_substring_regex(pieces, r"\[\d*\]|\[edit\]|\[citation needed\]", "")
        status = self._line_status(pieces)
        killers = np.flatnonzero((status == 4) | (status == 6))
        killers = killers[np.r_[True, parents[killers][1:] != parents[killers][:-1]]] if len(killers) else killers
        for code, reason in ((4, "c4_lorem_ipsum"), (6, "c4_curly_bracket")):
            drop(np.isin(np.arange(len(texts)), parents[killers[status[killers] == code]]), reason)
        kept = status == 0
        sentences = np.maximum(_count(pieces, rf"[.!?]+[\"')\]]*(?:[{SPACE}]|$)"), 1) * kept
        drop(_per_doc(parents, len(texts), sentences * 1.0) < self.min_sentences, "c4_too_few_sentences")
        if lines is not None:
            counted = keep[parents] & (_np(pc.utf8_length(pieces)) > 0)
            for code, rule in enumerate(C4_LINE_RULES, start=1):
                if (removed := int((counted & (status == code)).sum())):
                    lines[f"c4_line_{rule}"] += removed
        kept &= keep[parents]
        sizes = np.bincount(parents[kept], minlength=len(texts))
        offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]), pa.int32())
        rewritten = pc.binary_join(pa.ListArray.from_arrays(offsets, pieces.filter(pa.array(kept))), pa.scalar("\n", pieces.type))
        return keep, rewritten

    def _line_status(self, pieces: pa.Array) -> np.ndarray:
        """0 for a kept line, else 1 + the index in C4_LINE_RULES of the first rule it fails."""
        status = np.zeros(len(pieces), np.int8)

        def rule(where: np.ndarray, code: int) -> None:
            status[(status == 0) & where] = code

        def has(pattern: str, text: pa.Array = pieces) -> np.ndarray:
            return _np(pc.match_substring_regex(text, pattern)).astype(bool)

        long_word = np.zeros(len(pieces), bool)
        for i in np.flatnonzero(_np(pc.utf8_length(pieces)) > self.max_word_length):  # rare: in Python
            long_word[i] = max(map(len, pieces[int(i)].as_py().split())) > self.max_word_length
        rule(long_word, 1)
        if self.drop_unterminated_lines:
            rule(~has(r"[.?!\"]$", pieces) | has(r"\.\.\.$", pieces), 2)
        rule(_count(pieces, WORD) < self.min_words_per_line, 3)
        lower = pc.utf8_lower(pieces)
        for on, pattern, text, code in ((self.lorem_ipsum, "lorem ipsum", lower, 4), (self.javascript, "javascript", lower, 5),
                                        (self.curly_bracket, r"\{", pieces, 6), (self.policy, "|".join(POLICY), lower, 7)):
            if on:
                rule(has(pattern, text), code)
        return status


@dataclass(frozen=True)
class FineWebQuality:
    """FineWeb's own line rules (Penedo et al. 2024, section 3.3; datatrove's
    ``FineWebQualityFilter`` defaults), over the document's non-blank lines: at least 12% end in
    terminal punctuation, at most 67% are 30 characters or shorter, at most 1% of the
    characters (newlines left out) are in lines repeating an earlier one, and at most 0.3
    newlines per word (a list, not prose). Terminal punctuation is :data:`TERMINAL`, a shorter
    list than datatrove's (all of Unicode's Sentence_Terminal).
    """

    min_line_punct_ratio: float = 0.12
    max_short_line_ratio: float = 0.67
    short_line_length: int = 30
    max_dup_line_char_ratio: float = 0.01
    max_newline_word_ratio: float = 0.3

    def __call__(self, texts: pa.Array, drops: Counter, lines: Counter | None = None) -> tuple[np.ndarray, pa.Array]:
        texts = _as_text(texts)
        n = len(texts)
        keep, drop = dropper(n, drops)
        pieces, parents = _parts(pc.split_pattern(texts, "\n"), drop_blank=True)
        count = _per_doc(parents, n)
        drop(count == 0, EMPTY)
        ends = _np(pc.match_substring_regex(pieces, f"[{re.escape(TERMINAL)}]$")) * 1.0
        drop(_per_doc(parents, n, ends) / np.maximum(count, 1) < self.min_line_punct_ratio, "fineweb_line_punct")
        short = (_np(pc.utf8_length(pieces)) <= self.short_line_length) * 1.0
        drop(_per_doc(parents, n, short) / np.maximum(count, 1) > self.max_short_line_ratio, "fineweb_short_lines")
        newlines = _np(pc.count_substring(texts, "\n")).astype(np.float64)
        chars = np.maximum(_np(pc.utf8_length(texts)) - newlines, 1)
        drop(_dup_elements(pieces, parents, n)[2] / chars > self.max_dup_line_char_ratio, "fineweb_dup_line_chars")
        drop(newlines / np.maximum(_count(texts, WORD), 1) > self.max_newline_word_ratio, "fineweb_list_like")
        return keep, texts


FILTERS = {"gopher_repetition": GopherRepetition, "gopher_quality": GopherQuality, "c4": C4Quality,
           "fineweb": FineWebQuality}  # in run order: FineWeb's pipeline order


def quality_filters(options: Mapping[str, bool | Mapping]) -> tuple:
    """The filters a recipe's ``filter.quality`` turns on, in run order: ``{name: true}`` for the
    published defaults, ``{name: {threshold: value}}`` to change some, false or absent for off."""
    chosen = []
    for name in sorted(set(options) - set(FILTERS))[:1]:
        raise ConfigError(f"filter.quality: unknown filter {name!r}", fix=f"use one of {', '.join(FILTERS)}")
    for name, cls in FILTERS.items():
        given = {} if options.get(name) is True else dict(options.get(name) or {})
        for key in sorted(set(given) - {f.name for f in fields(cls)})[:1]:
            raise ConfigError(f"filter.quality.{name}: unknown option {key!r}",
                              fix=f"use {', '.join(f.name for f in fields(cls))}")
        if options.get(name) not in (None, False):
            chosen.append(cls(**{key: tuple(map(tuple, value)) if key.endswith("gram_char_frac") else  # JSON lists
                                 tuple(value) if isinstance(value, list) else value for key, value in given.items()}))
    return tuple(chosen)


def apply_quality(texts: pa.Array, filters: tuple, drops: Counter,
                  lines: Counter | None = None) -> tuple[np.ndarray, pa.Array]:
    """Run ``filters`` in turn, each on the documents the earlier ones kept. Returns the keep-mask
    over ``texts`` and the kept documents' texts (rewritten by :class:`C4Quality` if it ran)."""
    current = _as_text(texts)
    alive = np.arange(len(current))
    for f in filters:
        if not len(current):
            break
        keep, current = f(current, drops, lines)
        alive, current = alive[keep], current.filter(pa.array(keep))
    mask = np.zeros(len(texts), bool)
    mask[alive] = True
    return mask, current
