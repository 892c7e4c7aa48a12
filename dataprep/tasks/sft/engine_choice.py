"""Which library encodes fine-tuning examples: gigatoken where it gives exactly tokenizers' ids,
offsets and masks, else tokenizers.

Pretraining needs ids only, and chooses with :meth:`~dataprep.text.tokenizer.LoadedTokenizer.choose_engine`.
Fine-tuning builds its loss masks from each token's character span (:mod:`.loss_mask`), which
gigatoken does not give: its spans come from the ids' byte lengths (:mod:`dataprep.text.byte_offsets`),
so its own probe compares ids, spans *and* masks, on examples as the run renders them (every
special-token string of the template matched as a token). The run chooses once, before its
work (:func:`choose_engine`); the choice travels with the pickled tokenizer to every worker
process or Ray actor, and the manifest's ``tokenizer.engine`` records it. Its ``reason`` starts
with :data:`~.loss_mask.FINE_TUNING`, which is what lets gigatoken encode examples
(:func:`~.loss_mask.fast_encoder`). ``tokenizer.engine`` means what it means for pretraining:
``auto`` falls back to tokenizers with the reason logged (byte lengths do not give this
tokenizer's offsets: BERT's WordPiece; gigatoken missing; a probe that differs),
``gigatoken`` makes those an error, ``tokenizers`` never probes.

The probe (:func:`probe`): the run's first ``PROBE_DOCS`` examples (each cut to ``PROBE_CHARS``
characters), one text per special token (and a spread of the other added tokens) and the edge
cases of :func:`dataprep.text.encode_engine.probe_texts`, and :data:`EXTRA_EDGE_CASES` (scripts
whose characters are 3 and 4 UTF-8 bytes, an emoji sequence joined by U+200D); a third of each
synthetic text is its target.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from dataprep.errors import DataprepError, TokenizerError
from dataprep.read import InputFile, collecting
from dataprep.recipe import Recipe
from dataprep.tasks.sft.loss_mask import FINE_TUNING, _encode, _fast_for, _NoSpans, _templated, encode_batch_flat
from dataprep.tasks.sft.records import iter_chunks
from dataprep.tasks.sft.templates import Rendered
from dataprep.tasks.sft.worker import SftWorker
from dataprep.text.encode_engine import (GIGATOKEN, PROBE_CHARS, PROBE_DOCS, TOKENIZERS, EngineChoice, fall_back,
                                         gigatoken_version, log, probe_texts, settle)

__all__ = ["choose_engine", "choose", "probe", "first_examples", "EXTRA_EDGE_CASES"]

EXTRA_EDGE_CASES = ("中文字符 ひらがな カタカナ 한국어 👨\u200d👩\u200d👧\u200d👦 x😀y", "Привет, мир! Ελληνικά العربية")


def choose_engine(recipe: Recipe, tokenizer, files: list[InputFile]) -> EngineChoice:
    """The run's fine-tuning engine, probed on its first examples (:func:`first_examples`), made
    the tokenizer's and the run's (``dataprep.build.run`` calls it before the plan, as
    pretraining calls ``tokenizer.choose_engine``).

    Raises:
        TokenizerError: ``tokenizer.engine`` is ``gigatoken`` and gigatoken cannot be used.
    """
    return choose(tokenizer, first_examples(recipe, tokenizer, files))


def first_examples(recipe: Recipe, tokenizer, files: list[InputFile]) -> list[Rendered]:
    """The run's first examples, rendered as its workers render them, from the first chunk that
    renders any. Read quietly: a bad record is skipped, and a damaged file or a recipe the worker
    refuses ends the sample (the run's own work reports both, in order)."""
    # chunks of PROBE_DOCS records: the sample costs the records it keeps, not a whole chunk's
    small = dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, chunk_records=PROBE_DOCS))
    try:
        with collecting([]):
            worker = SftWorker(recipe, tokenizer, files, None)
            for index, batch in iter_chunks(files, small, Counter(), Counter()):
                found = worker.examples(batch, files[index].entry)
                if found:
                    return found[:PROBE_DOCS]
    except DataprepError:
        pass
    return []


def choose(tokenizer, examples: Sequence[Rendered]) -> EngineChoice:
    """The engine for examples like ``examples`` (see the module docstring), set on ``tokenizer``.

    Raises:
        TokenizerError: ``tokenizer.engine`` is ``gigatoken`` and gigatoken cannot be used.
    """
    requested, version = tokenizer.engine, gigatoken_version()
    if requested == TOKENIZERS:
        choice = EngineChoice(requested, TOKENIZERS, f"{FINE_TUNING} tokenizer.engine is tokenizers", version=version)
    else:
        choice = _probed(tokenizer, requested, version, examples)
    settle(tokenizer, choice)
    return choice


def _probed(tokenizer, requested: str, version: str | None, examples: Sequence[Rendered]) -> EngineChoice:
    try:
        _fast_for(tokenizer)
    except TokenizerError as exc:
        return fall_back(requested, f"{FINE_TUNING} {exc}", version, probed=0, differing=None)
    texts = probe_examples(tokenizer, examples)
    differing = probe(tokenizer, texts)
    if differing is not None:
        reason = (f"{FINE_TUNING} gigatoken differs from tokenizers on probe example {differing['text']} "
                  f"({differing['kind']} {differing['excerpt'][:40]!r}) at token {differing['at']}: {differing['what']}")
        return fall_back(requested, reason, version, probed=len(texts), differing=differing)
    reason = f"{FINE_TUNING} gigatoken gave the ids, offsets and masks tokenizers gives on all {len(texts)} probe examples"
    log.info("encoding fine-tuning examples with %s: %s", version, reason)
    return EngineChoice(requested, GIGATOKEN, reason, probed=len(texts), version=version)


def probe_examples(tokenizer, examples: Sequence[Rendered]) -> list[tuple[str, Rendered]]:
    """``(kind, example)`` pairs the probe encodes both ways."""
    out = [("example", _cut(r)) for r in examples[:PROBE_DOCS]]
    synthetic = [(kind, text) for kind, text in probe_texts(tokenizer, []) if kind != "document"]
    for kind, text in [*synthetic, *(("edge case", t) for t in EXTRA_EDGE_CASES)]:
        third = len(text) // 3
        out.append((kind, Rendered(text, ((third, 2 * third),), third)))
    return out


def _cut(r: Rendered) -> Rendered:
    if len(r.text) <= PROBE_CHARS:
        return r
    n = PROBE_CHARS
    return Rendered(r.text[:n], tuple((min(a, n), min(b, n)) for a, b in r.targets), min(r.prompt_end, n))


def probe(tokenizer, texts: list[tuple[str, Rendered]]) -> dict[str, Any] | None:
    """Encode ``texts`` with both engines: None when ids, spans and masks are all the same, else the
    first differing text, ``{"text", "kind", "excerpt", "at", "what", "tokenizers", "gigatoken"}``
    (``what``: ids, offsets or mask; ``at``: the first differing token)."""
    plain = [r.text for _, r in texts]
    want_ids, want_lens, (want_starts, want_ends) = _encode(_templated(tokenizer), plain)
    fast = _fast_for(tokenizer)
    got_ids, got_lens = fast.encoder.encode(plain)
    want_mask = encode_batch_flat(tokenizer, [r for _, r in texts], engine=TOKENIZERS)
    got_mask = _gigatoken_masks(tokenizer, [r for _, r in texts])
    ends_w, ends_g = np.cumsum(want_lens), np.cumsum(got_lens)
    for i, (kind, r) in enumerate(texts):
        a = want_ids[ends_w[i] - want_lens[i] : ends_w[i]]
        b = got_ids[ends_g[i] - got_lens[i] : ends_g[i]]
        found = _first_difference(a, b)
        what, left, right = "ids", a, b
        if found is None:
            spans = fast.offsets.char_spans([r.text], b, got_lens[i : i + 1])
            got = np.zeros((len(b), 2), np.int64) - 1 if spans is None else np.stack(spans, axis=1)
            want = np.stack([want_starts[ends_w[i] - want_lens[i] : ends_w[i]], want_ends[ends_w[i] - want_lens[i] : ends_w[i]]], axis=1)
            what, left, right = "offsets", want, got
            found = _first_difference(want, got)
        if found is None:
            mine = got_mask[i] if got_mask is not None else encode_batch_flat(tokenizer, [r], engine=GIGATOKEN)[0]
            what, left, right = "mask", want_mask[i].mask, mine.mask
            found = _first_difference(left, right)
            if found is None and (mine.straddles, mine.prompt_tokens) != (want_mask[i].straddles, want_mask[i].prompt_tokens):
                found = 0
        if found is not None:
            return {"text": i, "kind": kind, "excerpt": r.text[:80], "at": found, "what": what,
                    "tokenizers": left[found : found + 8].tolist(), "gigatoken": right[found : found + 8].tolist()}
    return None


def _gigatoken_masks(tokenizer, rendered: list[Rendered]):
    """All the masks in one call; None when a text's bytes are not spelled (the loop above finds which)."""
    try:
        return encode_batch_flat(tokenizer, rendered, engine=GIGATOKEN)
    except _NoSpans:
        return None


def _first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    n = min(len(a), len(b))
    unequal = (a[:n] != b[:n]).reshape(n, -1).any(axis=1) if n else np.zeros(0, dtype=bool)
    if unequal.any():
        return int(np.flatnonzero(unequal)[0])
    return None if len(a) == len(b) else n
