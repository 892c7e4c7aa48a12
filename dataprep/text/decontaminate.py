"""Decontamination: training documents that share a word n-gram with an evaluation item are dropped.

An evaluation set is a file of items (any format dataprep reads) or a dataprep dataset's validation
split. Its items' n-grams are hashed to 64 bits into one sorted array; :meth:`DecontaminationIndex.match`
hashes a document's the same way, and one in the array drops it (:data:`CONTAMINATED`), naming the item::

    item dialogsum_dev.jsonl:7  "#Person1#: Hello, how are you doing today? #Person2#: I've been ..."
    words                       person1 hello how are you doing today person2 i ve been ...
    document                    "... HELLO how are you doing today?? Person2: I've   been ..." -> dropped

**Words**, the same on both sides (:func:`words`): Unicode NFKC, lowercase, then the maximal runs
of letters, combining marks and digits (``\\p{L}\\p{M}\\p{N}``); punctuation, symbols, underscores
and spacing only separate words, so changing them does not hide a copy. Marks keep Devanagari or
Thai words whole. A script written without spaces gives one "word" per clause: a Chinese item is
found only in a long verbatim copy, and 6 of XQuAD's 240 Chinese paragraphs have under 13 clauses.

**n = 13**: GPT-3's training-set filter (Brown et al. 2020, appendix C: 13-grams of lowercased
words without punctuation) and lm-evaluation-harness's ("we just used 13", docs/decontamination.md).
**Short items**: an item under n words has no n-gram; lm-evaluation-harness's ``janitor.word_ngrams``
yields none, so it is never found, and the default ``min_words = n`` does the same. A lower
``min_words`` makes an item of ``min_words`` to n - 1 words one "n-gram" of all its words (keep it
at 8 or more, GPT-3's floor in its overlap analysis: a 2-word answer matches everywhere).
Documents are dropped whole: GPT-3 cut 200 characters around each hit, which can leave the rest
of an item in the text. Each distinct word of a batch is hashed once (xxh3); the rest is Arrow and numpy.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from dataprep import columns as C
from dataprep.errors import ConfigError, InputError
from dataprep.read import FieldSpec, InputSpec, read_records, resolve_inputs

CONTAMINATED = "contaminated"  # the drop reason
NGRAM = 13
SPLIT = "validation"  # the split of a dataprep dataset that is its evaluation set
SEPARATORS = r"[^\p{L}\p{M}\p{N}]+"  # RE2: what is not part of a word
_CHUNK_BYTES = 1 << 22  # match() hashes documents about this many bytes of text at a time (bounded memory)
# ASCII bytes -> themselves lowercased when letters or digits, else a space (what words() splits at)
_ASCII_TABLE = bytes(c | 0x20 if chr(c).isalpha() else c if chr(c).isdigit() else 32 for c in range(128)) + bytes(range(128, 256))
# 64-bit weights of the word positions in an n-gram: xxh3 is a fixed spec, so every process and version agrees
_WEIGHTS = np.array([xxhash.xxh3_64_intdigest(f"decontaminate {i}".encode()) for i in range(64)], np.uint64)


@dataclass(frozen=True)
class EvalSetSpec:
    """One entry of a recipe's ``decontaminate:`` list.

    Attributes:
        path: A file, folder or glob of items, or a dataprep dataset folder (it holds manifest.json).
        fields: The fields of an item's text, joined by newlines (an n-gram may span two).
        format: ``auto`` or a dataprep input format (not for a dataset folder).
        name: The set's name in counts and the side file; default the file name before its first dot.
        id_field: A field whose value is the item's id; default the item's ``file:line``.
        split: A dataset folder's split; txt_unit: a txt file's items, ``line`` or ``paragraph``.
    """

    path: str
    fields: tuple[str, ...] = ("text",)
    format: str = "auto"
    name: str | None = None
    id_field: str | None = None
    split: str = SPLIT
    txt_unit: str = "line"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", (self.fields,) if isinstance(self.fields, str) else tuple(self.fields))
        if not self.fields:
            raise ConfigError(f"decontaminate {self.path}: `fields:` is empty; name the fields that hold an item's text")
        if self.name is None:
            stem = PurePath(self.path.rstrip("/")).name
            object.__setattr__(self, "name", stem.split(".")[0] or stem)


def words(texts: pa.Array | Sequence[str]) -> pa.ListArray:
    """Each text's words: NFKC, lowercased, split at every run of non-letters/marks/digits (the
    split leaves "" where a text starts or ends with a separator)."""
    texts = pa.array(texts, pa.large_string()) if not isinstance(texts, pa.Array) else texts
    return pc.split_pattern_regex(pc.utf8_lower(pc.utf8_normalize(texts, "NFKC")), SEPARATORS)


def _ascii_words(texts: pa.Array) -> pa.ListArray:
    """:func:`words` of ASCII texts (where NFKC changes nothing): a byte table and a whitespace
    split instead of the regex, three times as fast."""
    validity, offsets, data = texts.buffers()
    lowered = pa.py_buffer(data.to_pybytes().translate(_ASCII_TABLE)) if data is not None else data
    return pc.ascii_split_whitespace(pa.Array.from_buffers(texts.type, len(texts), [validity, offsets, lowered], offset=texts.offset))


def _word_hashes(texts: pa.Array | Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hashes, doc, counts)``: each word's 64-bit hash and document index, and each document's
    number of words. A document's words are contiguous and in order (ASCII documents first)."""
    texts = pa.array(texts, pa.large_string()) if not isinstance(texts, pa.Array) else texts
    fast = pc.fill_null(pc.string_is_ascii(texts), True).to_numpy(zero_copy_only=False)
    flat, doc = [], []
    for part, split in ((fast, _ascii_words), (~fast, words)):
        if part.any():
            lists = split(texts if part.all() else texts.filter(pa.array(part)))
            nonempty = pc.greater(pc.binary_length(pc.list_flatten(lists)), 0)
            flat.append(pc.list_flatten(lists).filter(nonempty))
            doc.append(np.flatnonzero(part)[pc.list_parent_indices(lists).filter(nonempty).to_numpy()])
    flat = pa.concat_arrays(flat) if flat else pa.array([], pa.large_string())
    doc = np.concatenate(doc) if doc else np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat)
    unique = np.fromiter((xxhash.xxh3_64_intdigest(w) for w in encoded.dictionary.cast(pa.large_binary()).to_pylist()), np.uint64)
    hashes = unique[encoded.indices.to_numpy()] if len(flat) else np.zeros(0, np.uint64)
    return hashes, doc.astype(np.int64), np.bincount(doc, minlength=len(texts))


def _finish(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over the weighted word sum (an n-gram and its n+1-gram already
    differ by the last word's weighted hash)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _grams(hashes: np.ndarray, doc: np.ndarray, lengths: Iterable[int]) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
    """For each wanted length L (ascending): ``(L, starts, gram_hashes)`` of every run of L words
    inside one document, starts being indices into ``hashes``."""
    wanted = sorted(set(lengths))
    sums = np.zeros(len(hashes), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(wanted[-1] if wanted else 0):
            if len(hashes) <= j:
                return
            sums[: len(hashes) - j] += hashes[j:] * _WEIGHTS[j]
            if j + 1 in wanted:
                starts = np.flatnonzero(doc[: len(doc) - j] == doc[j:])
                yield j + 1, starts, _finish(sums[starts])


@dataclass(eq=False)  # numpy fields: compare hashes and entries, not the objects
class DecontaminationIndex:
    """Every evaluation n-gram's hash (sorted, unique) and the first item holding it (sets in
    order, items in reading order). Picklable, the same arrays for the same inputs: workers get a copy.
    Build with :func:`load_index` (a recipe's sets) or :meth:`from_items` (texts in hand)."""

    n: int
    min_words: int
    set_names: list[str]
    item_ids: list[str]  # the items indexed, all sets
    item_set: np.ndarray  # int32: each item's set
    hashes: np.ndarray  # uint64, sorted, unique
    entries: np.ndarray  # int32: each hash's item
    lengths: tuple[int, ...]  # n-gram lengths held: n, and the word counts of whole short items
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # see stats()
    _bitmap: tuple[int, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_items(cls, sets: Sequence[tuple[str, Sequence[tuple[str, str]]]], *, n: int = NGRAM,
                   min_words: int | None = None) -> DecontaminationIndex:
        """Index ``[(set name, [(item id, text), ...]), ...]``.

        Raises:
            ConfigError: ``n`` or ``min_words`` out of range, or two sets of one name.
            InputError: a set with no item of ``min_words`` words or more.
        """
        min_words = n if min_words is None else min_words
        if not 1 <= min_words <= n <= len(_WEIGHTS):
            raise ConfigError(f"decontamination needs 1 <= min_words <= n <= {len(_WEIGHTS)}, got n={n}, min_words={min_words}")
        names = [name for name, _ in sets]
        if len(set(names)) < len(names):
            raise ConfigError(f"decontaminate: two evaluation sets are named {sorted({x for x in names if names.count(x) > 1})}",
                              "give each a different `name:`")
        ids, owner, found, counts, lengths = [], [], [], {}, {n}
        for number, (name, items) in enumerate(sets):
            hashes, doc, size = _word_hashes([text for _, text in items])
            keep = size >= min_words
            if not keep.any():
                raise InputError(name, None, f"the evaluation set has no item of {min_words} words or more",
                                 "check its path, fields and split, or lower `min_words`")
            entry = np.cumsum(keep) - 1 + len(ids)  # item -> its place in item_ids
            ids += [item for (item, _), k in zip(items, keep) if k]
            owner += [number] * int(keep.sum())
            short = set(size[keep & (size < n)].tolist())  # whole short items, one "n-gram" each
            lengths |= short
            grams = 0
            for length, starts, hashed in _grams(hashes, doc, {n} | short):
                item = doc[starts]
                use = keep[item] & ((size[item] >= n) if length == n else (size[item] == length))
                found.append((hashed[use], entry[item[use]]))
                grams += len(np.unique(hashed[use]))
            counts[name] = {"items": int(keep.sum()), "short_items": int((~keep).sum()), "ngrams": grams}
        hashes, entries = (np.concatenate(x) for x in zip(*found))
        order = np.lexsort((entries, hashes))  # each hash once, with the first item that holds it
        first = order[np.append(True, hashes[order][1:] != hashes[order][:-1])]
        return cls(n, min_words, names, ids, np.array(owner, np.int32), hashes[first], entries[first].astype(np.int32),
                   tuple(sorted(lengths)), counts)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per set: ``items`` indexed, ``short_items`` left out (under ``min_words`` words), and
        distinct ``ngrams`` (one that two sets share counts in each)."""
        return {name: dict(self.counts[name]) for name in self.set_names}

    def match(self, texts: pa.Array | Sequence[str]) -> list[tuple[str, str] | None]:
        """For each document (a string array, as the filters get it, or a list), ``(set name, item
        id)`` for the first of its n-grams (in reading order) that an item holds, or None. Hashed
        about 4 MB at a time, so memory stays near 20 bytes per byte of that."""
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        texts = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.large_string())
        ends = np.cumsum(pc.fill_null(pc.binary_length(texts), 0).to_numpy())
        out: list[tuple[str, str] | None] = [None] * len(texts)
        start = 0
        while start < len(texts):
            stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _CHUNK_BYTES, "right")))
            for offset, entry in self._first_hits(texts.slice(start, stop - start)):
                out[start + offset] = (self.set_names[self.item_set[entry]], self.item_ids[entry])
            start = stop
        return out

    def _first_hits(self, texts: pa.Array) -> Iterable[tuple[int, int]]:
        hashes, doc, _ = _word_hashes(texts)
        bits, table = self._table()
        hits = []  # (start, entry) arrays
        for _, starts, hashed in _grams(hashes, doc, self.lengths):
            slot = hashed >> np.uint64(64 - bits)  # most n-grams are in no item, and one bit says so
            maybe = np.flatnonzero((table[slot >> np.uint64(3)] >> (slot & np.uint64(7)).astype(np.uint8)) & 1)
            at = np.minimum(np.searchsorted(self.hashes, hashed[maybe]), len(self.hashes) - 1)
            found = self.hashes[at] == hashed[maybe]
            hits.append((starts[maybe[found]], self.entries[at[found]]))
        start, entry = (np.concatenate(x) for x in zip(*hits)) if hits else (np.zeros(0, int),) * 2
        order = np.lexsort((entry, start))  # earliest start first; at one start, the earliest item
        docs, first = np.unique(doc[start[order]], return_index=True)
        return zip(docs.tolist(), entry[order][first].tolist())

    def _table(self) -> tuple[int, np.ndarray]:
        """A bitmap of the hashes' top bits, 16 bits per hash (about 6% of absent n-grams pass on
        to the binary search); made on first use in each process, never pickled."""
        if self._bitmap is None:
            bits = int(min(30, max(16, np.ceil(np.log2(len(self.hashes) * 16 + 1)))))
            slot = self.hashes >> np.uint64(64 - bits)
            table = np.zeros(1 << (bits - 3), np.uint8)
            np.bitwise_or.at(table, slot >> np.uint64(3), np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8))
            self._bitmap = (bits, table)
        return self._bitmap

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bitmap": None}


def load_index(specs: Sequence[EvalSetSpec], *, base_dir: Path, n: int = NGRAM, min_words: int | None = None,
               open_dataset: Callable[[Path], Any] | None = None) -> DecontaminationIndex:
    """The index of a recipe's ``decontaminate:`` sets (see :func:`read_items`)."""
    return DecontaminationIndex.from_items(
        [(spec.name, read_items(spec, base_dir=base_dir, open_dataset=open_dataset)) for spec in specs],
        n=n, min_words=min_words)


def read_items(spec: EvalSetSpec, *, base_dir: Path, open_dataset: Callable[[Path], Any] | None = None) -> list[tuple[str, str]]:
    """One set's ``(item id, text)`` in reading order, through dataprep's readers. ``open_dataset``
    (:func:`dataprep.dataset.reader.open_dataset`) opens a dataset folder: that format sits a layer
    above ``text`` (tests/test_architecture.py), so the caller passes it in.

    Raises:
        InputError: no such path, an item without a field (file and line named), or no items.
        ConfigError: a dataset folder without ``open_dataset``, or of span-corrupted rows.
    """
    folder = Path(base_dir) / spec.path
    if (folder / C.MANIFEST_FILE).is_file():
        if open_dataset is None:
            raise ConfigError(f"decontaminate {spec.path}: a dataset folder needs open_dataset (dataprep.dataset.reader)")
        items = dataset_items(open_dataset(folder), spec.split)
    else:
        items = list(_file_items(spec, Path(base_dir)))
    if not items:
        raise InputError(spec.path, None, f"the evaluation set {spec.name!r} has no items",
                         "check `path:` (and `split:` for a dataset folder), or remove the set from `decontaminate:`")
    return items


def _file_items(spec: EvalSetSpec, base_dir: Path) -> Iterable[tuple[str, str]]:
    files = resolve_inputs([InputSpec(spec.path, format=spec.format, txt_unit=spec.txt_unit)], base_dir=base_dir)
    fields = {path: FieldSpec(path) for path in dict.fromkeys(spec.fields)}
    id_column = f"id:{spec.id_field}"
    if spec.id_field is not None:
        fields[id_column] = FieldSpec(spec.id_field, "any")
    for source, file in enumerate(files):
        where = file.location if file.url else os.path.relpath(file.path, base_dir)
        try:
            for batch in read_records(file, source, fields=fields, batch_size=4096, on_error="raise", drops=Counter()):
                texts = [batch.column(name).to_pylist() for name in dict.fromkeys(spec.fields)]
                joined = ["\n".join(parts) for parts in zip(*texts)]
                if spec.id_field is None:
                    ids = [f"{where}:{line}" for line in batch.column(C.LINE).to_pylist()]
                else:
                    ids = batch.column(id_column).to_pylist()
                yield from zip(ids, joined)
        except InputError as exc:
            if not exc.reason_message.startswith("missing field"):
                raise
            raise InputError(exc.path, exc.location, exc.reason_message,
                             f"give every item the field, or name the fields items have in `decontaminate: "
                             f"[{{path: {spec.path}, fields: [...]}}]`") from exc


def dataset_items(dataset: Any, split: str = SPLIT) -> list[tuple[str, str]]:
    """``(id, text)`` of an opened dataset's split, decoded with its own tokenizer, as its manifest's
    ``rows`` say documents lie: ``stream`` (wrap) documents run across rows, so the tokens are joined
    and cut after each EOS (``validation:document 3``; one item per row without EOS); ``pieces`` and
    ``examples`` rows hold one per piece (``validation:row 3 piece 1``). Special tokens (BOS, EOS,
    pad: the run makes its pad special) decode to nothing, so a pad piece is no item."""
    rows, table = dataset.manifest.rows, dataset.table(split)
    if rows.layout == "corrupted":
        raise ConfigError(f"decontaminate {dataset.path}: span-corrupted rows are not text",
                          "name the files that dataset was built from instead")
    if not len(table):
        return []
    lists = table.column(C.INPUT_IDS).combine_chunks()
    if rows.layout == "stream" or C.SEQ_LENS not in table.column_names:  # one segment per row
        lengths, names = pc.list_value_length(lists).to_numpy(), [f"{split}:row {r}" for r in range(len(table))]
    else:  # one segment per piece: the pieces tile the rows
        pieces = table.column(C.SEQ_LENS).combine_chunks()
        lengths, row = pieces.flatten().to_numpy(), pc.list_parent_indices(pieces).to_numpy()
        names = [f"{split}:row {r} piece {p}" for r, p in zip(row, np.arange(len(row)) - np.searchsorted(row, row))]
    segments = np.split(lists.flatten().to_numpy(), np.cumsum(lengths)[:-1])
    eos = dataset.manifest.tokenizer.eos_id
    if rows.layout == "stream" and rows.ends_with_eos and eos is not None:  # documents run across rows
        joined = np.concatenate(segments)
        cuts = np.unique(np.append(np.flatnonzero(joined == eos) + 1, len(joined)))
        segments = np.split(joined, cuts[:-1])
        names = [f"{split}:document {k}" for k in range(len(segments))]
    texts = dataset.tokenizer().tokenizer.decode_batch([s.tolist() for s in segments], skip_special_tokens=True)
    return [(name, text) for name, text in zip(names, texts) if text.strip()]


def contaminated_counts(matches: Iterable[tuple[str, str] | None]) -> Counter:
    """Documents dropped per evaluation set (the manifest's per-set counts)."""
    return Counter(match[0] for match in matches if match is not None)


def side_file_lines(matches: Sequence[tuple[str, str] | None], locations: Sequence[str]) -> list[str]:
    """One JSON line per contaminated document, ``{"set", "item", "document"}``, in document order;
    ``locations`` names each document as the run does (``source:line``)."""
    return [json.dumps({"set": m[0], "item": m[1], "document": where}, ensure_ascii=False)
            for m, where in zip(matches, locations) if m is not None]
