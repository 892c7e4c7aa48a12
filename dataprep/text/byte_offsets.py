"""Token offsets from ids alone: what ``tokenizers``' offsets say, for a byte-level BPE (and Gemma 3, Phi-3).

Fine-tuning needs each token's character span in the rendered text to build its loss mask
(:mod:`dataprep.tasks.sft.loss_mask`). ``tokenizers``' ``encode_batch`` gives offsets, at the cost
of building every token's string and offsets in Python objects; ``gigatoken`` gives ids only,
several times faster. For a byte-level BPE whose text nothing rewrites, the ids say the offsets:

- every vocabulary token is the bytes its string spells in the ByteLevel alphabet (``Ġ`` is the
  byte 0x20), and an added token is its content's UTF-8; the tokens of a text are its bytes in
  order, so cumulative byte lengths are each token's byte span;
- ``tokenizers`` aligns each byte with the whole character it came from, so a token's characters
  run from the character holding its first byte to the one holding its last, both included: a
  token that ends inside a multi-byte character (an emoji cut in two) covers that character, and
  so does the next one; one vectorized pass maps bytes to characters
  (:meth:`ByteOffsets.char_spans`).

When this holds (:func:`byte_offsets`): a BPE model (no dropout, no subword prefix or suffix)
behind no normalizer (an empty ``Sequence`` counts as none), a pre-tokenizer that is ByteLevel
without ``add_prefix_space``, alone or after ``Split``/``Digits``/``Punctuation`` (which only cut,
so offsets stay the original's), and no post-processor that trims offsets (a ByteLevel one with
``trim_offsets: true``; it applies even without added special tokens). Also a SentencePiece BPE
whose normalizer turns each space into ``▁`` (Gemma 3), maybe after prepending one ``▁`` (Phi-3):
each ``▁`` of a token is one space, a byte-fallback token ``<0xNN>`` one byte, the rest its UTF-8;
``tokenizers`` aligns each normalized character with the one it came from, and a prepended ``▁``
(put before every piece of text between added tokens) with the piece's first character, so the
first token of a piece is a byte shorter and a ``▁`` alone spans the next character. A text
holding ``▁`` itself is not spelled so (its batch goes to ``tokenizers``). An added token with
``rstrip`` (Phi-3's ``<|end|>``) takes the whitespace after it (Rust's ``char::is_whitespace``)
into its span: its length is found in the text, one token at a time (a few per example). An added
token with ``lstrip`` or ``single_word``, any other normalizer or model raise :class:`Unsupported`
with the reason, and fine-tuning keeps ``tokenizers``' offsets (WordPiece: BERT). An added token the
model also spells from other bytes (Gemma's ``▁▁`` runs) counts as the model's where its text is
absent from the batch, the only case where the matcher cannot have produced it. Each batch is
checked as well: its token bytes must add up to each text's UTF-8 length, else
:meth:`ByteOffsets.char_spans` returns None and the caller encodes that batch with ``tokenizers``
(the ids are the same; a token whose length is unknown, as a model's unknown token, makes the
same verdict). The proof that the spans are exactly ``tokenizers``' is ``tests/test_sft_engine.py``,
on every shipped tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from dataprep.errors import TokenizerError

__all__ = ["ByteOffsets", "Unsupported", "byte_offsets", "byte_alphabet"]

# pre-tokenizers that only cut the text (each piece keeps the original's offsets)
_CUTTING = {"Split", "Digits", "Punctuation"}
SPACE = "\u2581"  # SentencePiece's ▁
_SPACES = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
_PREPEND_SPACES = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, _SPACES]}
_SPLIT_SPACES = {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>\Z")  # byte fallback


class Unsupported(TokenizerError):
    """The tokenizer's offsets are not its tokens' byte lengths (the message says why)."""


def byte_alphabet() -> dict[str, int]:
    """ByteLevel's alphabet, character -> byte (GPT-2's ``bytes_to_unicode``, inverted): printable
    bytes stand for themselves, the others for 256 + their rank."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


class ByteOffsets:
    """Each id's length in bytes (``-1`` where none is known) and how to turn ids into spans.

    Args:
        lengths: int64 per id.
        unspelled: texts that ``lengths`` do not spell (a batch holding one is refused).
        added: bool per id, the added tokens; with ``prepend``, the first other token after one
            (or at a text's start) holds the ``▁`` the normalizer put before that piece, no byte of
            the text: a byte shorter, and a token of that ``▁`` alone spans the next character.
        rstrip: bool per id, added tokens that take the whitespace after them into their span.
    """

    def __init__(self, lengths: np.ndarray, unspelled: tuple[str, ...] = (), *, added: np.ndarray | None = None,
                 rstrip: np.ndarray | None = None, prepend: bool = False):
        self.lengths = lengths
        self.unspelled = unspelled
        self.added = np.zeros(len(lengths), dtype=bool) if added is None else added
        self.rstrip = np.zeros(len(lengths), dtype=bool) if rstrip is None else rstrip
        self.prepend = prepend

    def char_spans(self, texts: Sequence[str], ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(starts, ends)``, int64 per token: its character span in its own text, as ``tokenizers``
        reports it; None when the ids do not spell the texts' bytes (see the module docstring).

        Args:
            texts: The encoded texts.
            ids: Their ids, back to back.
            counts: Tokens per text.
        """
        n = len(texts)
        if len(ids) == 0:
            return (np.zeros(0, np.int64),) * 2 if all(not t for t in texts) else None
        if int(ids.max()) >= len(self.lengths) or int(ids.min()) < 0:
            return None
        joined = "".join(texts)
        if any(text in joined for text in self.unspelled):
            return None
        sizes, first = self._sizes(ids, counts)
        if sizes is None:
            return None
        raw = joined.encode("utf-8")
        ascii_only = len(raw) == len(joined)
        char_lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        char_of = None
        if not ascii_only:
            data = np.frombuffer(raw, dtype=np.uint8)
            char_of = np.cumsum((data & 0xC0) != 0x80, dtype=np.int32)  # 1 + the character holding each byte
            char_of -= 1
        if self.rstrip[ids].any() and not _absorb(sizes, np.flatnonzero(self.rstrip[ids]), joined, raw, char_of,
                                                  np.repeat(np.cumsum(char_lens), counts)):
            return None
        ends = np.cumsum(sizes)  # byte ends on the joined axis (texts back to back)
        text_bytes = ends[np.cumsum(counts)[counts > 0] - 1]  # where each non-empty text's tokens end
        if ascii_only:
            byte_ends = np.cumsum(char_lens)
        else:
            byte_ends = np.cumsum(np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=n))
        if ends[-1] != len(raw) or not np.array_equal(text_bytes, byte_ends[counts > 0]) or (
                (char_lens[counts == 0] > 0).any()):
            return None
        starts = ends - sizes
        char_base = np.repeat(np.cumsum(char_lens) - char_lens, counts)
        if ascii_only:
            begin, stop = starts, ends
        else:
            begin = char_of[np.minimum(starts, len(raw) - 1)].astype(np.int64)
            stop = char_of[np.maximum(ends - 1, 0)] + 1
        stop = np.where(sizes > 0, stop, begin + 1)  # a prepended ▁ alone: the character it stands before
        return begin - char_base, stop - char_base

    def _sizes(self, ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Each token's bytes of the text, and which hold a prepended ``▁``; None when a length is unknown."""
        sizes = self.lengths[ids]
        first = np.zeros(len(ids), dtype=bool)
        if self.prepend:
            added = self.added[ids]
            after = np.ones(len(ids), dtype=bool)  # after an added token, or a text's first token
            after[1:] = added[:-1]
            after[(np.cumsum(counts) - counts)[counts > 0]] = True
            first = ~added & after
            sizes = sizes - first
        if (self.lengths[ids] <= 0).any() or ((sizes == 0) & ~first).any():
            return None, first
        return sizes, first


# what Rust's char::is_whitespace (tokenizers' rstrip) takes; Python's str.isspace also takes \x1c-\x1f
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(map(chr, range(0x2000, 0x200B))))


def _absorb(sizes: np.ndarray, at: np.ndarray, joined: str, raw: bytes, char_of: np.ndarray | None,
            text_end: np.ndarray) -> bool:
    """Add to each stripping token (``at``, in order) the whitespace after it, up to its text's end.
    False when a token's end is not inside the text."""
    ends = np.cumsum(sizes)
    shift = 0
    for k in at.tolist():
        b = int(ends[k]) + shift  # the token's byte end, after the whitespace the earlier ones took
        if b > len(raw):
            return False
        c0 = b if char_of is None else (int(char_of[b]) if b < len(raw) else len(joined))
        c1, limit = c0, int(text_end[k])
        while c1 < limit and joined[c1] in WHITESPACE:
            c1 += 1
        taken = c1 - c0 if char_of is None else len(joined[c0:c1].encode("utf-8"))
        sizes[k] += taken
        shift += taken
    return True


def byte_offsets(tokenizer: Tokenizer) -> ByteOffsets:
    """The byte lengths of a ``tokenizers.Tokenizer`` whose offsets they give. Read from the Rust
    object (its vocabulary, its components' JSON), not the tokenizer's whole JSON: Llama 3's
    vocabulary and merges take a second to parse, this a tenth of that.

    Raises:
        Unsupported: they do not give its offsets, with the reason.
    """
    spaces, prepend = _check(tokenizer)
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    added = tokenizer.get_added_tokens_decoder()
    size = max([*vocab.values(), *added, -1]) + 1
    lengths = np.full(size, -1, dtype=np.int64)
    tokens = list(vocab)
    ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(tokens))
    if spaces:  # each ▁ one space, <0xNN> one byte, the rest its UTF-8
        spelled = [1 if _BYTE_TOKEN.match(t) else len(t.replace(SPACE, " ").encode("utf-8")) for t in tokens]
        lengths[ids] = spelled
    else:
        ok = _in_alphabet(tokens)  # one alphabet character a byte
        lengths[ids[ok]] = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))[ok]
    model = tokenizer.model
    if model.unk_token is not None and not getattr(model, "byte_fallback", False) and model.unk_token in vocab:
        lengths[vocab[model.unk_token]] = -1  # stands for any unknown character
    # ▁ in a text is not a space (SentencePiece mode); an added token the model also spells otherwise is
    # the model's where its text is absent (only then it cannot have been matched), unknown where present
    unspelled = {SPACE} if spaces else set()
    for i, token in added.items():
        own = len(token.content.encode("utf-8"))
        if lengths[i] in (-1, own) or own == 0:
            lengths[i] = own if own > 0 else -1
        else:
            unspelled.add(token.content)
    if spaces:
        unspelled = {t for t in unspelled if t == SPACE or SPACE not in t}
    is_added, rstrip = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    is_added[list(added)] = True
    rstrip[[i for i, t in added.items() if t.rstrip]] = True
    return ByteOffsets(lengths, tuple(sorted(unspelled)), added=is_added, rstrip=rstrip, prepend=prepend)


def _in_alphabet(tokens: list[str]) -> np.ndarray:
    """Per token: every character is in the ByteLevel alphabet (so it spells one byte each)."""
    chars = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    points = np.frombuffer("".join(tokens).encode("utf-32-le"), dtype=np.uint32)
    foreign = ~np.isin(points, np.fromiter(map(ord, byte_alphabet()), dtype=np.uint32))
    nonempty = chars > 0
    outside = np.zeros(len(tokens), dtype=np.int64)
    if nonempty.any():
        outside[nonempty] = np.add.reduceat(foreign.astype(np.int64), (np.cumsum(chars) - chars)[nonempty])
    return nonempty & (outside == 0)


def _component(part: Any) -> dict[str, Any] | None:
    """A tokenizer component (normalizer, pre-tokenizer, post-processor) as its JSON, None when absent."""
    return None if part is None else json.loads(part.__getstate__())


def _check(tokenizer: Tokenizer) -> tuple[bool, bool]:
    """Raise :class:`Unsupported` unless byte lengths give the offsets; ``(spaces, prepend)``:
    SentencePiece's spaces-as-▁ (a ``Replace(" ", "▁")`` normalizer), after a ``Prepend("▁")``
    (Phi-3); both False for a byte-level BPE."""
    model = tokenizer.model
    kind = type(model).__name__
    if kind != "BPE":
        raise Unsupported(f"the model is {kind}, not a byte-level BPE")
    if model.dropout or model.continuing_subword_prefix or model.end_of_word_suffix:
        raise Unsupported("the BPE model has dropout or a subword prefix/suffix")
    normalizer = _component(tokenizer.normalizer)
    spaces, prepend = normalizer == _SPACES, normalizer == _PREPEND_SPACES
    if not (spaces or prepend) and not _no_op(normalizer):
        raise Unsupported(f"a normalizer ({normalizer['type']}) rewrites the text other than spaces to ▁")
    pre = _component(tokenizer.pre_tokenizer) or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    added = tokenizer.get_added_tokens_decoder().values()
    if spaces or prepend:  # no spaces are left to split on
        if pre and pre != _SPLIT_SPACES:
            raise Unsupported(f"the pre-tokenizer ({pre.get('type')}) works on SentencePiece's ▁")
        if any(t.normalized for t in added):
            raise Unsupported("added tokens are matched in the normalized text")
    else:
        if not steps or kinds[-1] != "ByteLevel" or any(k not in _CUTTING for k in kinds[:-1]):
            raise Unsupported(f"the pre-tokenizer is not ByteLevel after cutting steps only ({', '.join(map(str, kinds))})")
        if steps[-1].get("add_prefix_space"):
            raise Unsupported("the ByteLevel pre-tokenizer adds a prefix space")
    post = _component(tokenizer.post_processor) or {}
    for step in post.get("processors", []) if post.get("type") == "Sequence" else [post]:
        if step.get("type") == "ByteLevel" and step.get("trim_offsets"):
            raise Unsupported("the ByteLevel post-processor trims spaces from offsets")
    stripping = [t.content for t in added if t.lstrip or t.single_word]
    if stripping:
        raise Unsupported(f"added tokens take whitespace before them or match whole words only ({', '.join(stripping[:3])})")
    return spaces or prepend, prepend


def _no_op(normalizer: dict[str, Any] | None) -> bool:
    return normalizer is None or (normalizer.get("type") == "Sequence" and all(map(_no_op, normalizer.get("normalizers", []))))
