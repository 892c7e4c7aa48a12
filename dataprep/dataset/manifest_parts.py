"""The sections every manifest has: tokenizer, inputs, padding, counts, packing, shards, rows, run.

Each is a frozen record whose fields are its JSON keys in written order (:mod:`._codec`);
``schemas/manifest.schema.json`` describes the same keys. :class:`Rows` holds what the run
decided about its rows, so that no reader works it out again from the recipe::

    "rows": {"length": 128, "fixed_length": true, "packing": "bfd", "layout": "pieces",
             "cut_documents": true, "starts_with_bos": false, "ends_with_eos": true, "label_column": null}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataprep.dataset._codec import optional

SPLITS = ("train", "validation")

# Rows.layout: how documents (or examples) sit in the rows
STREAM = "stream"  # wrap: documents back to back through the rows, cut at row ends
PIECES = "pieces"  # bfd, mlm: a document is one piece of a row, or several pieces placed apart when cut
EXAMPLES = "examples"  # fine-tuning, few-shot: each piece is one whole example
CORRUPTED = "corrupted"  # span corruption: each row is one corrupted stretch of the token stream
LAYOUTS = (STREAM, PIECES, EXAMPLES, CORRUPTED)


@dataclass(frozen=True, kw_only=True)
class SpecialToken:
    """One special role: its token, its id, and where the role came from (``recipe``,
    ``tokenizer_config``, ``post_processor``, ``model``, ``trained``, ``well_known_name``)."""

    token: str
    id: int
    source: str


@dataclass(frozen=True, kw_only=True)
class TokenizerFile:
    path: str  # as the recipe wrote it (relative to the recipe's folder; dataset.paths.resolve)
    sha256: str


@dataclass(frozen=True, kw_only=True)
class TokenizerEngine:
    """What encoded the documents (:mod:`dataprep.text.encode_engine`): the recipe's request, the
    engine used, why, the texts its parity probe encoded both ways and the first that differed."""

    requested: str  # auto | tokenizers | gigatoken
    engine: str  # tokenizers | gigatoken
    reason: str
    probed: int
    differing: dict[str, Any] | None  # {"text", "kind", "excerpt", "at", "tokenizers", "gigatoken"}
    version: str | None  # the gigatoken installed


@dataclass(frozen=True, kw_only=True)
class Tokenizer:
    """Where the tokenizer came from, its files' digests, its special roles and document framing."""

    source: str
    trained: bool
    saved_as: str | None  # folder inside the dataset holding a saved copy
    files: tuple[TokenizerFile, ...]
    fingerprint: str
    vocab_size: int
    special_ids: dict[str, int]  # bos / eos / pad
    special_tokens: dict[str, SpecialToken] | None = optional()  # bos / eos / pad / unk; absent in older datasets
    add_bos: bool
    add_eos: bool
    reference: str | None = optional()  # tokenizers | transformers
    transformers_version: str | None = optional()
    engine: TokenizerEngine | None = optional()  # absent in older datasets, and where no document was encoded

    @property
    def bos_id(self) -> int | None:
        return self.special_ids.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self.special_ids.get("eos")


@dataclass(frozen=True, kw_only=True)
class Input:
    """One file the run read, with what became of its records."""

    path: str
    format: str
    encoding: str | None = optional()  # text formats only
    bytes: int
    sha256: str
    records_read: int | None = optional()
    documents: int | None = optional()  # written from this file, after dedup
    dropped: dict[str, int] | None = optional()
    tokens: int | None = optional()  # of those documents, before packing
    unknown_tokens: int | None = optional()


@dataclass(frozen=True, kw_only=True)
class Padding:
    pad_token_id: int | None
    trailing_piece: bool  # pad tokens form the last piece of a row
    column: str  # num_pad


@dataclass(frozen=True, kw_only=True)
class PerSplit:
    train: int
    validation: int

    def __getitem__(self, split: str) -> int:
        return getattr(self, split)

    @property
    def total(self) -> int:
        return self.train + self.validation


@dataclass(frozen=True, kw_only=True)
class NearDuplicates:
    """``filter.dedup: minhash``: what the near-duplicate index did (:mod:`dataprep.build.near_dup`).

    Attributes:
        documents: dropped as ``near_duplicate`` (equal to ``dropped["near_duplicate"]``).
        clusters: kept documents with at least one near-duplicate dropped against them.
        largest_cluster: documents in the largest cluster, its kept one included (0: none).
        candidates_rejected: band collisions whose estimated Jaccard was below the threshold.
    """

    documents: int
    clusters: int
    largest_cluster: int
    candidates_rejected: int


@dataclass(frozen=True, kw_only=True)
class Counts:
    """Records in and out, tokens and rows; ``records_read == records_written + sum(dropped)``."""

    records_read: int
    records_written: int
    dropped: dict[str, int]
    documents: PerSplit
    tokens: int  # content tokens in rows (pad excluded)
    unknown_tokens: PerSplit | None = optional()
    pad_tokens: int
    remainder_tokens_dropped: int
    rows: PerSplit
    packing_efficiency: float
    near_duplicates: NearDuplicates | None = optional()  # filter.dedup: minhash only
    redacted: dict[str, int] | None = optional()  # normalize.pii: placeholders in the written documents, per kind
    mojibake_fixed: int | None = optional()  # normalize.fix_mojibake: documents written whose text ftfy repaired
    languages: dict[str, dict[str, int]] | None = optional()  # filter.languages: {code: {documents, tokens}} written
    dropped_examples: dict[str, list[dict[str, str]]] | None = optional()  # pretraining: reason -> first documents it dropped


@dataclass(frozen=True, kw_only=True)
class PackStats:
    """One split's packer counters (:class:`dataprep.pack.rows.PackStats`)."""

    seq_len: int
    documents: int
    content_tokens: int
    pad_tokens: int
    rows: int
    dropped_tokens: int
    dropped_rows: int
    split_documents: int  # documents cut into pieces (wrap: across rows; bfd, mlm: into pieces)
    efficiency: float


@dataclass(frozen=True, kw_only=True)
class Packing:
    train: PackStats
    validation: PackStats

    def __getitem__(self, split: str) -> PackStats:
        return getattr(self, split)


@dataclass(frozen=True, kw_only=True)
class Shard:
    """One Arrow IPC stream in a split's folder."""

    file: str
    rows: int
    tokens: int  # content tokens (pad excluded)
    bytes: int
    sha256: str
    xxh3_128: str | None = optional()  # the fast checksum validate prefers


@dataclass(frozen=True, kw_only=True)
class Split:
    shards: tuple[Shard, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)


@dataclass(frozen=True, kw_only=True)
class Splits:
    train: Split
    validation: Split

    def __getitem__(self, split: str) -> Split:
        return getattr(self, split)


@dataclass(frozen=True, kw_only=True)
class Rows:
    """What the run decided about its rows (stated, so that readers never work it out again).

    Attributes:
        length: the longest a row may be (``packing.seq_len``, or ``max_length`` when unpacked).
        fixed_length: every row is exactly ``length`` tokens (wrap; bfd with ``pad_rows``).
        packing: ``wrap``, ``bfd`` or ``none``.
        layout: how documents sit in the rows: ``stream``, ``pieces``, ``examples`` or ``corrupted``
            (see the constants above).
        cut_documents: some document was cut into several pieces (``packing.*.split_documents``
            counts them). With the ``pieces`` layout those pieces lie apart, so two different
            documents can share an equal piece.
        starts_with_bos: every document (mlm: every piece) starts with the tokenizer's BOS.
        ends_with_eos: every document (mlm: every piece) ends with the tokenizer's EOS.
        label_column: the class-label column (``label_id``, or ``label_ids`` when packed), or None.
    """

    length: int
    fixed_length: bool
    packing: str
    layout: str
    cut_documents: bool
    starts_with_bos: bool
    ends_with_eos: bool
    label_column: str | None


@dataclass(frozen=True, kw_only=True)
class MixtureSplit:
    """One source's draw into one split (:mod:`dataprep.build.mixing`)."""

    epochs: float  # the rate its documents were drawn at
    available_documents: int  # kept for the split after filters and dedup
    available_tokens: int
    documents: int  # written at least once (the others are dropped as ``mixture``)
    occurrences: int  # written, repeats counted
    requested_tokens: int  # epochs x available tokens
    tokens: int  # written, repeats counted
    requested_share: float
    share: float  # of the split's mixture tokens


@dataclass(frozen=True, kw_only=True)
class MixtureSource:
    name: str  # the inputs' group, or the input's path
    inputs: tuple[int, ...]  # the recipe inputs it reads
    requested: dict[str, float]  # {"weight": w} | {"tokens": t} | {"epochs": e}
    train: MixtureSplit
    validation: MixtureSplit


@dataclass(frozen=True, kw_only=True)
class Mixture:
    """A recipe that mixes its inputs (:mod:`dataprep.pack.mixture`): asked and written, per source and split."""

    seed: int
    tokens: int | None  # mixture.tokens as set (None: not set)
    sources: tuple[MixtureSource, ...]


@dataclass(frozen=True, kw_only=True)
class EvalSetCounts:
    """One evaluation set of ``decontaminate:``: what was indexed, and the documents it removed."""

    items: int  # indexed (at least min_words words)
    short_items: int  # left out: under min_words words
    ngrams: int  # distinct n-grams indexed
    documents: int  # training documents dropped as contaminated by this set


@dataclass(frozen=True, kw_only=True)
class Decontamination:
    """``decontaminate:``: the n-gram rule, each set's counts, and the side file naming every match."""

    ngram: int
    min_words: int
    file: str  # in the dataset folder: one JSON line per dropped document ({set, item, document})
    sets: dict[str, EvalSetCounts]


@dataclass(frozen=True, kw_only=True)
class Run:
    """What differs between two runs of one recipe (:func:`dataprep.dataset.paths.portable`)."""

    seconds: float
    workers: int
    engine: str | None = optional()  # local | ray
    created_unix: int | None = optional()
    recipe_dir: str | None = optional()  # absolute; the manifest's relative paths are relative to it
    checkpoints: dict[str, Any] | None = optional()


def legacy_rows(d: dict[str, Any]) -> Rows:
    """The :class:`Rows` of a manifest written before they were stated, from its recipe and
    sections exactly as this version's run decides them (``tests/test_manifest.py`` checks that
    the two agree on every shipped task)."""
    recipe, task = d["recipe"], d["task"]
    packing = recipe.get("packing") or {}
    mode = packing.get("mode", "wrap")
    objective = (d.get("objective") or {}).get("name", "clm")
    ids = d["tokenizer"]["special_ids"]
    bos, eos = bool(d["tokenizer"]["add_bos"]), bool(d["tokenizer"]["add_eos"])
    if objective == "mlm":  # pieces are framed by the post-processor instead
        frame = d["objective"]["frame"]
        bos = ids.get("bos") is not None and frame["prefix"][-1:] == [ids["bos"]]
        eos = ids.get("eos") is not None and frame["suffix"][:1] == [ids["eos"]]
    if task != "pretrain":
        layout = EXAMPLES
    elif objective == "span_corruption":
        layout = CORRUPTED
    else:
        layout = STREAM if mode == "wrap" else PIECES
    cut = sum(int(d["packing"][s]["split_documents"]) for s in SPLITS) > 0
    label_column = None
    if task == "sft" and recipe.get("classification") is not None:
        label_column = "label_ids" if mode == "bfd" else "label_id"
    return Rows(
        length=d["seq_len"],
        fixed_length=(task == "pretrain" and mode == "wrap") or (mode == "bfd" and bool(packing.get("pad_rows", True))),
        packing=mode,
        layout=layout,
        cut_documents=cut or objective == "mlm",  # an older run did not count mlm's cuts: they may be there
        starts_with_bos=bos,
        ends_with_eos=eos,
        label_column=label_column,
    )
