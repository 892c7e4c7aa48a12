"""Mixtures: how many tokens each source puts in the output, which documents, and in what order.

A recipe's inputs are the mixture's *sources* (inputs sharing a ``group:`` are one source). Each
asks for one of (training split; the validation split follows, see :func:`validation_rates`):

- ``epochs: e``: ``e`` times its available tokens (2.0 repeats every document twice, 0.25 keeps a
  quarter of them: a subsample, never a repeat);
- ``tokens: t``: ``t`` tokens (``epochs = t / available``);
- ``weight: w``: a share ``w`` of the whole output's tokens.

Weights alone are normalized to shares; with ``mixture.tokens`` the output has that many tokens,
else it is the largest mixture that repeats no document (the scarcest source, for its weight, is
used whole). Weights beside ``epochs``/``tokens`` sources are absolute shares summing below 1: the
fixed sources make ``1 - sum(weights)`` of the output (the continued-pretraining case: a domain
corpus as it is, general text replayed at 20%). A source that asks for nothing is ``epochs: 1``.

Available tokens are known only after filtering and dedup, so the run first collects every kept
document per source and split (:mod:`dataprep.build.mixing`), then resolves the rates here, then
draws: each source's stream is ``floor(e)`` whole passes over its documents in input order, then a
fractional pass of a seeded random sample of documents whose tokens come to ``frac(e)`` of the
available ones (within one document); the streams are interleaved a block at a time (about one row
of tokens), always from the source furthest behind its target, so every stretch of the output, and
every shard, holds the mix. All of it is a function of the data and the recipe: the same for any
worker count and either engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dataprep.errors import DataLossError, Issue

MIXTURE = "mixture"  # drop reason: a document a subsampling source (epochs < 1) left out
DEFAULT_EPOCHS = 1.0


@dataclass(frozen=True)
class SourceSpec:
    """One source of a mixture: the recipe inputs it reads and what it asks for (at most one of
    ``weight``, ``tokens``, ``epochs``; none means ``epochs: 1``)."""

    name: str
    entries: tuple[int, ...]  # indexes into the recipe's inputs
    weight: float | None = None
    tokens: int | None = None
    epochs: float | None = None

    @property
    def requested(self) -> dict[str, float]:
        """What the recipe asked for, as the manifest records it."""
        if self.weight is not None:
            return {"weight": self.weight}
        if self.tokens is not None:
            return {"tokens": self.tokens}
        return {"epochs": DEFAULT_EPOCHS if self.epochs is None else self.epochs}


@dataclass(frozen=True)
class MixtureSpec:
    """A recipe's mixture: its sources, in the order of their first input, and its options."""

    sources: tuple[SourceSpec, ...]
    seed: int = 0
    tokens: int | None = None  # with weights: the training split's total tokens

    def source_of_entries(self, inputs: int) -> list[int]:
        """For each recipe input index, the index of its source."""
        owner = [0] * inputs
        for index, source in enumerate(self.sources):
            for entry in source.entries:
                owner[entry] = index
        return owner


def train_rates(spec: MixtureSpec, available: list[int]) -> list[float]:
    """Each source's epochs over its ``available`` training tokens (the rate its documents are drawn at).

    Raises:
        DataLossError: a source the mixture needs has no training token left after the filters.
    """
    empty = [s.name for s, a in zip(spec.sources, available) if a == 0 and (s.weight or s.tokens)]
    if empty:
        raise DataLossError(
            f"mixture source(s) {', '.join(empty)} have no training document left after reading, filtering and dedup, "
            "so their weight or tokens cannot be met",
            "check those inputs (`dataprep inspect --recipe RECIPE` shows why documents drop), or remove them from the mixture",
        )
    fixed = [0.0 if s.weight is not None else (s.tokens if s.tokens is not None else
                                               (DEFAULT_EPOCHS if s.epochs is None else s.epochs) * a)
             for s, a in zip(spec.sources, available)]
    weights = [s.weight or 0.0 for s in spec.sources]
    share = sum(weights)
    if share == 0:
        total = 0.0
    elif all(s.weight is not None for s in spec.sources):
        weights = [w / share for w in weights]  # shares of the whole
        total = spec.tokens if spec.tokens is not None else min(a / w for a, w in zip(available, weights))
    else:
        total = sum(fixed) / (1.0 - share)  # the fixed sources fill 1 - share of it
    targets = [f if s.weight is None else w * total for s, f, w in zip(spec.sources, fixed, weights)]
    return [t / a if a else 0.0 for t, a in zip(targets, available)]


def validation_rates(rates: list[float]) -> list[float]:
    """The validation split's rates: the training shares without repeating a document (an evaluation
    set that counts a document twice only weights its loss): every rate scaled down by the largest
    when that is over 1."""
    top = max(rates, default=0.0)
    return [r / top for r in rates] if top > 1 else list(rates)


def pass_masks(lengths: np.ndarray, rate: float, seed: tuple[int, ...]) -> list[np.ndarray | None]:
    """The passes a source makes over its documents (``lengths``: tokens per document, in input
    order): one ``None`` (every document) per whole epoch, then, for a fractional rest, a mask of a
    seeded random sample whose tokens come closest to ``frac(rate)`` of the total (documents taken
    in a random order until the target is reached, then shown in input order)."""
    whole = math.floor(rate + 1e-12)
    rest = rate - whole
    passes: list[np.ndarray | None] = [None] * whole
    total = int(lengths.sum())
    want = rest * total
    if rest <= 1e-12 or want < 0.5:
        return passes
    order = np.random.default_rng(list(seed)).permutation(len(lengths))
    cum = np.cumsum(lengths[order])
    k = int(np.searchsorted(cum, want))  # the first prefix reaching the target
    if k > 0 and (k == len(cum) or want - cum[k - 1] <= cum[k] - want):
        k -= 1  # the prefix before it is closer
    mask = np.zeros(len(lengths), dtype=bool)
    mask[order[: k + 1]] = True
    return passes + [mask]


@dataclass
class Stream:
    """One source's draw for one split: its passes, and how far along them it is."""

    lengths: np.ndarray  # tokens per available document
    passes: list[np.ndarray | None]
    target: int = 0  # tokens the passes hold
    emitted: int = 0
    at_pass: int = 0
    at_doc: int = 0
    _cum: np.ndarray | None = None  # the current pass's cumulative drawn tokens

    def __post_init__(self) -> None:
        self.target = sum(int(self.lengths.sum()) if m is None else int(self.lengths[m].sum()) for m in self.passes)

    @property
    def done(self) -> bool:
        return self.at_pass >= len(self.passes)

    def take(self, block: int) -> tuple[int, int, np.ndarray | None]:
        """The next ``(start, stop, mask)`` of documents of the current pass holding at least ``block``
        drawn tokens (at least one document), or the pass's rest."""
        mask = self.passes[self.at_pass]
        if self._cum is None:
            self._cum = np.cumsum(self.lengths if mask is None else np.where(mask, self.lengths, 0))
        start, cum = self.at_doc, self._cum
        before = int(cum[start - 1]) if start else 0
        stop = min(int(np.searchsorted(cum, before + block)) + 1, len(cum))
        self.emitted += int(cum[stop - 1]) - before
        self.at_doc = stop
        if stop >= len(cum):
            self.at_pass, self.at_doc, self._cum = self.at_pass + 1, 0, None
        return start, stop, (None if mask is None else mask[start:stop])


def schedule(streams: list[Stream], block: int):
    """Yield ``(source, start, stop, mask)`` blocks of the sources' streams, interleaved: each next
    block from the source furthest behind its own target (ties: the first source), until all are drawn."""
    live = [i for i, s in enumerate(streams) if s.passes and s.target > 0]
    while live:
        i = min(live, key=lambda k: (streams[k].emitted / streams[k].target, k))
        start, stop, mask = streams[i].take(block)
        yield i, start, stop, mask
        if streams[i].done:
            live.remove(i)


MIX_KEYS = ("weight", "tokens", "epochs")  # what a source asks for; with "group", the input keys a mixture reads


def mixture_from_recipe(inputs: list[dict], options: dict | None) -> tuple[MixtureSpec | None, list[Issue]]:
    """The mixture a resolved recipe's ``inputs`` (with ``group`` / ``weight`` / ``tokens`` / ``epochs``)
    and ``mixture:`` options describe, or None when it has none; and every problem found, with its
    path in the recipe."""
    if options is None and not any(key in spec for spec in inputs for key in ("group", *MIX_KEYS)):
        return None, []
    issues: list[Issue] = []
    groups: dict[str, list[int]] = {}
    asks: dict[str, dict[str, float]] = {}
    for index, spec in enumerate(inputs):
        name = spec.get("group") or (spec["path"] if spec["path"] not in groups else f"{spec['path']}#{index}")
        groups.setdefault(name, []).append(index)
        given = {key: spec[key] for key in MIX_KEYS if key in spec}
        if len(given) > 1:
            issues.append(Issue(f"inputs.{index}", f"gives {' and '.join(given)}: a source asks for one of weight, tokens, epochs"))
        elif given and asks.get(name, given) != given:
            issues.append(Issue(f"inputs.{index}", f"group {name!r} asks for {asks[name]} on an earlier input and {given} here: "
                                                   "give it once, on one input of the group"))
        elif given:
            asks[name] = given
    sources = tuple(SourceSpec(name=name, entries=tuple(entries), **asks.get(name, {})) for name, entries in groups.items())
    options = options or {}
    weights = [s.weight for s in sources if s.weight is not None]
    if options.get("tokens") is not None and len(weights) != len(sources):
        issues.append(Issue("mixture.tokens", "sets the total for weighted sources: give every source a weight "
                                              "(or drop mixture.tokens and give sources tokens or epochs)"))
    if weights and len(weights) != len(sources) and sum(weights) >= 1:
        issues.append(Issue("inputs", f"weights sum to {sum(weights):g} beside sources with tokens or epochs: there they "
                                      "are shares of the whole output and must sum below 1 (the other sources fill the rest)"))
    return MixtureSpec(sources=sources, seed=options.get("seed", 0), tokens=options.get("tokens")), issues
