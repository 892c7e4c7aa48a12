"""Masked language modeling (``objective: mlm``): framed document pieces and seeded masks.

::

    read -> [normalize -> filter -> tokenize, no BOS/EOS] (workers) -> dedup -> split
         -> MlmPacker: cut documents into pieces of seq_len - frame tokens, frame each piece
            as the tokenizer's post-processor does ([CLS] piece [SEP] for BERT), best-fit rows
         -> static masking: mask each block of rows (seeded) -> write

Every piece is framed, so every row starts with ``[CLS]`` and every piece ends with ``[SEP]``;
``seq_lengths`` keeps the pieces apart. BERT-base-cased, ``seq_len=8``, one short document::

    text         "Hello world, unbelievable"
    pieces       [CLS] Hello world , un ##believable [SEP] | [PAD]      seq_lengths [7, 1], num_pad 1
    static mask  [CLS] Hello [MASK] , un ##believable [SEP] | [PAD]
    labels       -100  -100  world -100 -100 -100     -100  | -100

Masking (:class:`Masker`, the same code for static shards and the loader's dynamic masks):
each maskable token (or each word, with ``whole_word``) is chosen with probability ``rate``;
a chosen token becomes the mask token (``mask_ratio``), a random non-special token
(``random_ratio``) or stays as it is (the rest). Special tokens (every special added token:
``[CLS] [SEP] [PAD] [UNK] [MASK]``) and padding are never chosen. ``labels`` hold the original
id at chosen positions and ``IGNORE_INDEX`` everywhere else.

Randomness: ``numpy.random.default_rng([seed, split, first row])`` per block of
``MASK_BLOCK_ROWS`` rows (static; the split's last block is shorter) or ``[seed, step]`` per
training batch (dynamic). The blocks are a function of the rows alone, never of ``--workers`` or
the input chunking, so shards stay byte-identical.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import models

from dataprep import columns as C
from dataprep.dataset.manifest_tasks import Frame, Mlm, StaticMasks, TaskSections
from dataprep.errors import ConfigError, TokenizerError
from dataprep.pack.bfd import BfdPacker
from dataprep.pack.rows import PackedRows, RowBlocks
from dataprep.tasks import pretrain
from dataprep.tasks.base import Plan, stream_facts, with_special_tokens

if TYPE_CHECKING:
    from dataprep.recipe import MlmSpec, Recipe
    from dataprep.text.tokenizer import LoadedTokenizer

MASK_TOKENS = ("[MASK]", "<mask>")
FORMAT_STATIC = "dataprep.mlm/2"
MASK_BLOCK_ROWS = 1024  # rows masked with one generator (static masks; see RowBlocks)


def special_table(tokenizer: LoadedTokenizer) -> np.ndarray:
    """bool per id: a special token (never masked, never drawn as a random replacement)."""
    table = np.zeros(tokenizer.vocab_size, dtype=bool)
    special = [i for i, t in tokenizer.tokenizer.get_added_tokens_decoder().items() if t.special]
    special += [i for i in (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id) if i is not None]
    table[[i for i in special if i < len(table)]] = True
    return table


def word_starts(tokenizer: LoadedTokenizer) -> tuple[np.ndarray, str]:
    """bool per id: the token starts a word; and the rule used (``wordpiece`` / ``byte_level`` / ``metaspace`` / ``token``).

    WordPiece marks continuations (``##``); byte-level BPE marks a preceding space (``Ġ``), and
    sentencepiece-style vocabularies a word start (``▁``). With none of them every token is a word.
    """
    vocab = tokenizer.tokenizer.get_vocab(with_added_tokens=True)
    table = np.ones(tokenizer.vocab_size, dtype=bool)
    model = tokenizer.tokenizer.model
    if isinstance(model, models.WordPiece):
        prefix = model.continuing_subword_prefix
        for token, i in vocab.items():
            table[i] = not token.startswith(prefix)
        return table, "wordpiece"
    for marker, rule in (("Ġ", "byte_level"), ("▁", "metaspace")):
        marked = sum(token.startswith(marker) for token in vocab)
        if marked > len(vocab) // 10:
            for token, i in vocab.items():
                table[i] = token.startswith(marker)
            return table, rule
    return table, "token"


def mask_id_of(tokenizer: LoadedTokenizer, mask_token: str | None) -> int:
    """The mask token's id.

    Raises:
        TokenizerError: the vocabulary has no mask token (or not the one the recipe names).
    """
    names = (mask_token,) if mask_token else MASK_TOKENS
    for name in names:
        i = tokenizer.tokenizer.token_to_id(name)
        if i is not None:
            return i
    raise TokenizerError(
        f"{tokenizer.source}: objective mlm needs a mask token and the vocabulary has none of {list(names)}; "
        "use a tokenizer with one (e.g. bert-base-cased's [MASK]) or name it with `mlm.mask_token`"
    )


def frame_of(tokenizer: LoadedTokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a single sequence (``[CLS]`` / ``[SEP]``).

    A tokenizer without a post-processor that adds tokens is framed by the recipe's
    ``add_bos`` / ``add_eos`` instead.
    """
    plain = tokenizer.tokenizer.encode("a", add_special_tokens=False).ids
    full = tokenizer.tokenizer.encode("a", add_special_tokens=True).ids
    for i in range(len(full) - len(plain) + 1):
        if full != plain and full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    prefix = [tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else []
    suffix = [tokenizer.eos_id] if tokenizer.add_eos and tokenizer.eos_id is not None else []
    return prefix, suffix


class Masker:
    """Choose and replace tokens as BERT does (see the module docstring); numpy only.

    Args:
        mask_id: the mask token.
        special: bool per id, never chosen nor drawn.
        rate, mask_ratio, random_ratio: the recipe's ``mlm`` options.
        starts: bool per id, word starts (whole-word masking), or None for token masking.

    Raises:
        ConfigError: ``mask_ratio + random_ratio > 1``, or no token is left to draw at random.
    """

    def __init__(self, *, mask_id: int, special: np.ndarray, rate: float, mask_ratio: float, random_ratio: float,
                 starts: np.ndarray | None = None):
        if mask_ratio + random_ratio > 1 + 1e-9:
            raise ConfigError(f"mlm.mask_ratio {mask_ratio} + mlm.random_ratio {random_ratio} is over 1; lower one of them")
        self.mask_id, self.special, self.starts = mask_id, special, starts
        self.rate, self.mask_ratio, self.random_ratio = rate, mask_ratio, random_ratio
        self.pool = np.flatnonzero(~special).astype(np.int32)
        if random_ratio > 0 and not len(self.pool):
            raise ConfigError("mlm.random_ratio > 0 but every token is special: nothing to draw; set mlm.random_ratio: 0")

    @classmethod
    def from_recipe(cls, spec: MlmSpec, tokenizer: LoadedTokenizer) -> Masker:
        return cls(mask_id=mask_id_of(tokenizer, spec.mask_token), special=special_table(tokenizer), rate=spec.rate,
                   mask_ratio=spec.mask_ratio, random_ratio=spec.random_ratio,
                   starts=word_starts(tokenizer)[0] if spec.whole_word else None)

    def mask(self, ids: np.ndarray, rng: np.random.Generator, *, maskable: np.ndarray | None = None,
             boundaries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Masked copy of flat ``ids`` and their labels.

        Args:
            ids: token ids (any integer dtype), flat.
            rng: the generator (see the module docstring for seeding).
            maskable: bool, positions that may be chosen besides the special-id rule (e.g. not padding).
            boundaries: positions where a word cannot continue from the previous token (row and piece starts).

        Returns:
            ``(inputs, labels)``: int32 ids after replacement, int32 labels (``IGNORE_INDEX`` where not chosen).
        """
        ids = np.asarray(ids)
        n = len(ids)
        ok = ~self.special[ids]
        if maskable is not None:
            ok &= maskable
        if self.starts is not None and n:
            start = self.starts[ids] | ~ok
            start[1:] |= ~ok[:-1]  # a word never continues across a special token or padding
            start[0] = True
            if boundaries is not None:
                start[boundaries] = True
            word = np.cumsum(start) - 1
            chosen = (rng.random(int(word[-1]) + 1) < self.rate)[word] & ok
        else:
            chosen = (rng.random(n) < self.rate) & ok
        action = rng.random(n)
        inputs = ids.astype(np.int32, copy=True)
        to_mask = chosen & (action < self.mask_ratio)
        to_random = chosen & (action >= self.mask_ratio) & (action < self.mask_ratio + self.random_ratio)
        inputs[to_mask] = self.mask_id
        inputs[to_random] = self.pool[rng.integers(0, len(self.pool), int(to_random.sum()))] if to_random.any() else 0
        labels = np.where(chosen, ids, C.IGNORE_INDEX).astype(np.int32)
        return inputs, labels


def frame_pieces(tokens: np.ndarray, doc_lens: np.ndarray, *, prefix: list[int], suffix: list[int],
                 seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut documents into pieces of at most ``seq_len - frame`` tokens and frame each piece.

    ``prefix=[CLS]``, ``suffix=[SEP]``, ``seq_len=5``, documents ``[a b c d e]`` and ``[f]``::

        [CLS a b c SEP] [CLS d e SEP] [CLS f SEP]     lengths [5, 4, 3]

    Returns:
        ``(tokens, lengths)`` of the framed pieces; an empty document gives the bare frame.

    Raises:
        ConfigError: ``seq_len`` leaves no room inside the frame.
    """
    P, S = len(prefix), len(suffix)
    cap = seq_len - P - S
    if cap < 1:
        raise ConfigError(f"packing.seq_len {seq_len} leaves no room for tokens inside the {P + S}-token frame; raise it")
    doc_lens = np.asarray(doc_lens, dtype=np.int64)
    n_pieces = np.maximum(-(-doc_lens // cap), 1)  # a document with no tokens is still written: [CLS] [SEP]
    lens = np.full(int(n_pieces.sum()), cap, dtype=np.int64)
    last = np.cumsum(n_pieces) - 1
    lens[last] = doc_lens - (n_pieces - 1) * cap
    framed = lens + P + S
    out_start = np.cumsum(framed) - framed
    in_start = np.cumsum(lens) - lens
    out = np.empty(int(framed.sum()), dtype=np.int32)
    out[np.repeat(out_start + P - in_start, lens) + np.arange(int(lens.sum()), dtype=np.int64)] = tokens
    for j, token in enumerate(prefix):
        out[out_start + j] = token
    for j, token in enumerate(suffix):
        out[out_start + P + lens + j] = token
    return out, framed


def pad_positions(rows: PackedRows) -> np.ndarray:
    """bool per token of ``rows``: inside the trailing pad piece."""
    ends = rows.row_offsets[1:]
    mark = np.zeros(len(rows.input_ids) + 1, dtype=np.int64)
    np.add.at(mark, ends - rows.num_pad, 1)
    np.add.at(mark, ends, -1)
    return np.cumsum(mark[:-1]) > 0


def piece_starts(rows: PackedRows) -> np.ndarray:
    """Flat positions where each piece starts (rows start with one)."""
    ends = np.cumsum(rows.seq_lens.astype(np.int64))
    return ends - rows.seq_lens


class MlmPacker:
    """Frame documents into pieces, best-fit them into rows, and mask the rows (static).

    Args:
        recipe: the recipe (``packing`` and ``mlm``).
        tokenizer: gives the frame and, for static masking, the :class:`Masker`.
        stream: which packer of the run this is (0 train, 1 validation): part of the seed.
    """

    def __init__(self, recipe: Recipe, tokenizer: LoadedTokenizer, *, stream: int):
        p, self.spec = recipe.packing, recipe.mlm
        self.prefix, self.suffix = frame_of(tokenizer)
        self.seq_len, self.stream = p.seq_len, stream
        self.inner = BfdPacker(seq_len=p.seq_len, buffer_tokens=p.buffer_tokens, pad_id=tokenizer.pad_id,
                               pad_rows=p.pad_rows, split_long=False)
        self.stats = self.inner.stats
        self.masker = Masker.from_recipe(self.spec, tokenizer) if self.spec.masking == "static" else None
        self.blocks = RowBlocks(MASK_BLOCK_ROWS)  # static masks: one generator per block
        self.counts = {"maskable": 0, "chosen": 0, "masked": 0, "random": 0, "unchanged": 0}

    def add(self, tokens: np.ndarray, doc_lens: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> PackedRows:
        # documents longer than a framed piece holds are cut into pieces that rows place apart
        self.stats.split_documents += int(np.count_nonzero(np.asarray(doc_lens) > self.seq_len - len(self.prefix) - len(self.suffix)))
        framed, lens = frame_pieces(tokens, doc_lens, prefix=self.prefix, suffix=self.suffix, seq_len=self.seq_len)
        return self._mask(self.inner.add(framed, lens), final=False)

    def finish(self) -> PackedRows:
        return self._mask(self.inner.finish(), final=True)

    def _mask(self, rows: PackedRows, *, final: bool) -> PackedRows:
        if self.masker is None:
            return rows
        masked = [self._mask_block(first, block) for first, block in self.blocks.add(rows, final=final)]
        return PackedRows.concat(masked, {C.LABELS: np.dtype(np.int32)})

    def _mask_block(self, first: int, rows: PackedRows) -> PackedRows:
        rng = np.random.default_rng([self.spec.seed, self.stream, first])
        ids = rows.input_ids
        keep = ~pad_positions(rows)
        inputs, labels = self.masker.mask(ids, rng, maskable=keep, boundaries=piece_starts(rows))
        chosen = labels != C.IGNORE_INDEX
        c = self.counts
        c["maskable"] += int((keep & ~self.masker.special[ids]).sum())
        c["chosen"] += int(chosen.sum())
        c["masked"] += int((chosen & (inputs == self.masker.mask_id)).sum())
        c["unchanged"] += int((chosen & (inputs == ids)).sum())
        c["random"] = c["chosen"] - c["masked"] - c["unchanged"]  # a random draw equal to the original counts as unchanged
        return PackedRows(input_ids=inputs, row_offsets=rows.row_offsets, seq_lens=rows.seq_lens,
                          seq_offsets=rows.seq_offsets, num_pad=rows.num_pad, extras={C.LABELS: labels})


def row_schema(recipe: Recipe) -> Any:
    """Arrow schema of the rows: pretraining rows, plus ``labels`` with static masking."""
    import pyarrow as pa

    if recipe.mlm.masking == "dynamic":
        return C.PRETRAIN_ROW_SCHEMA
    return C.PRETRAIN_ROW_SCHEMA.append(pa.field(C.LABELS, pa.list_(pa.int32())))


def unframed(tokenizer: LoadedTokenizer) -> LoadedTokenizer:
    """A view of ``tokenizer`` that adds no BOS/EOS: the pieces get the post-processor's frame instead."""
    raw = copy.copy(tokenizer)
    raw.add_bos = raw.add_eos = False
    return raw


class MlmTask:
    """``objective: mlm``: the pretraining worker (normalize, filter, tokenize), documents framed and
    packed for an encoder; masked statically here or dynamically by the trainer."""

    name = "mlm"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer: LoadedTokenizer, tmp) -> LoadedTokenizer:
        """A tokenizer this recipe trains gets the mask token (a loaded one must have its own)."""
        wanted = [recipe.mlm.mask_token or "<mask>"] if recipe.tokenizer.train is not None else []
        return with_special_tokens(recipe, tokenizer, wanted, tmp)

    def local_mode(self, recipe: Recipe) -> str:
        return "threads"  # pyarrow kernels, hashing and the encoders all release the GIL

    def plan(self, recipe: Recipe, tokenizer: LoadedTokenizer, files) -> Plan:
        """The pretraining reader and worker (with an unframed tokenizer: the packer frames each
        piece), MLM's packer, and its ``objective`` section."""
        return _plan(recipe, tokenizer, files)


def _plan(recipe: Recipe, tokenizer: LoadedTokenizer, files=None) -> Plan:
    masker = Masker.from_recipe(recipe.mlm, tokenizer)  # fails early: no mask token, bad ratios
    prefix, suffix = frame_of(tokenizer)
    frame_pieces(np.zeros(0, np.int32), np.zeros(0, np.int64), prefix=prefix, suffix=suffix, seq_len=recipe.packing.seq_len)
    streams = itertools.count()

    def make_packer() -> MlmPacker:
        return MlmPacker(recipe, tokenizer, stream=next(streams))

    def manifest(stage: Any) -> TaskSections:
        spec = recipe.mlm
        static = None
        if spec.masking == "static":
            packers = list(stage.packers.values())  # the stage's own: a resumed run restored them from its checkpoint
            totals = {k: sum(p.counts[k] for p in packers) for k in packers[0].counts}
            static = StaticMasks(**totals, chosen_ratio=totals["chosen"] / totals["maskable"] if totals["maskable"] else 0.0)
        return TaskSections(objective=Mlm(
            masking=spec.masking, rate=spec.rate, mask_ratio=spec.mask_ratio, random_ratio=spec.random_ratio,
            whole_word=spec.whole_word, word_starts=word_starts(tokenizer)[1] if spec.whole_word else None, seed=spec.seed,
            mask_token_id=masker.mask_id, never_masked_ids=tuple(np.flatnonzero(masker.special).tolist()),
            frame=Frame(prefix=tuple(prefix), suffix=tuple(suffix)),
            added_tokens=tuple(tokenizer.added_tokens),  # <mask>, for a trained tokenizer
            static=static,
        ))

    ids = tokenizer.special_ids
    return Plan(
        format=FORMAT_STATIC if recipe.mlm.masking == "static" else pretrain.FORMAT,
        schema=row_schema(recipe),
        reader=pretrain.chunk_reader(recipe),
        worker=(pretrain.chunk_worker, (recipe, unframed(tokenizer), files)),
        make_packer=make_packer,
        to_batch=lambda rows: rows.to_record_batch(),
        dedup=recipe.filter.dedup == "exact",
        rows=stream_facts(recipe,  # each piece is framed by the post-processor, not the recipe's add_bos/add_eos
                          starts_with_bos=ids.get("bos") is not None and list(prefix[-1:]) == [ids["bos"]],
                          ends_with_eos=ids.get("eos") is not None and list(suffix[:1]) == [ids["eos"]]),
        manifest=manifest,
    )
