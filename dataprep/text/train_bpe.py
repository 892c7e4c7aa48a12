"""Training a byte-level BPE on the recipe's own documents (``tokenizer.train``).

The trained tokenizer is GPT-2 shaped (byte-level pre-tokenizer and decoder, no normalizer), its
one special token is ``<|endoftext|>`` (EOS and pad, source ``trained``), and training is
deterministic for the same texts. A run saves it inside its output
(:meth:`~dataprep.text.tokenizer.LoadedTokenizer.save`), so readers load it like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from dataprep.errors import TokenizerError
from dataprep.text.special_tokens import ENDOFTEXT, resolve_roles
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, check_spec

__all__ = ["train_tokenizer"]

BYTE_LEVEL_ALPHABET = 256
TRAIN_KEYS = {"vocab_size", "min_frequency"}


def train_tokenizer(texts: Iterable[str], spec: TokenizerSpec) -> LoadedTokenizer:
    """Train a byte-level BPE on ``texts`` as ``spec.train`` says; deterministic for the same texts.

    The special token is ``<|endoftext|>`` (EOS and pad), plus any ``bos_token``/
    ``eos_token``/``pad_token`` the spec names.

    Args:
        texts: The training documents.
        spec: The recipe's ``tokenizer:`` section, with ``train`` set.

    Returns:
        The trained tokenizer; ``source`` is ``"trained"``.

    Raises:
        TokenizerError: ``train`` missing or invalid, or ``path``/``lowercase`` also set.
    """
    check_spec(spec)
    if spec.train is None:
        raise TokenizerError("train_tokenizer needs `tokenizer.train` in the recipe; to load a file use load_tokenizer")
    if spec.lowercase:
        raise TokenizerError("`tokenizer.lowercase` only applies to a WordPiece vocab.txt; remove it from the recipe")
    specials = list(dict.fromkeys([ENDOFTEXT, *(t for t in (spec.bos_token, spec.eos_token, spec.pad_token) if t)]))
    vocab_size, min_frequency = _train_options(spec.train, minimum=BYTE_LEVEL_ALPHABET + len(specials))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokens, sources = resolve_roles(
        tokenizer, overrides=spec.named_tokens, add_bos=spec.add_bos, add_eos=spec.add_eos,
        kind="trained", config={}, config_file=None, source="trained",
    )
    return LoadedTokenizer(
        tokenizer,
        tokens=tokens,
        sources=sources,
        source="trained",
        add_bos=spec.add_bos,
        add_eos=spec.add_eos,
        split_special_tokens=spec.split_special_tokens,
        engine=spec.engine,  # the recipe's encode engine for the trained tokenizer too
    )


def _train_options(train: dict, *, minimum: int) -> tuple[int, int]:
    if not isinstance(train, dict):
        raise TokenizerError(f"`tokenizer.train` must be a mapping like {{vocab_size: 32000}}, got {train!r}")
    unknown = sorted(set(train) - TRAIN_KEYS)
    if unknown:
        raise TokenizerError(f"`tokenizer.train` has unknown key(s) {unknown}; valid keys are {sorted(TRAIN_KEYS)}")
    vocab_size = train.get("vocab_size")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
        raise TokenizerError(
            f"`tokenizer.train.vocab_size` must be an integer >= {minimum} (256 byte symbols + "
            f"special tokens), got {vocab_size!r}"
        )
    min_frequency = train.get("min_frequency", 2)
    if not isinstance(min_frequency, int) or isinstance(min_frequency, bool) or min_frequency < 0:
        raise TokenizerError(f"`tokenizer.train.min_frequency` must be an integer >= 0, got {min_frequency!r}")
    return vocab_size, min_frequency
