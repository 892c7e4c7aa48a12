"""Test oracles: independent re-derivations of what the package produces, kept out of the package.

An oracle shares no code with the producer it checks, so a bug in one cannot hide in the other.
"""

from __future__ import annotations

from collections.abc import Iterable


def reconstruct(inputs: Iterable[int], labels: Iterable[int], sentinels: Iterable[int], *, eos: int | None) -> list[int]:
    """The raw tokens of one span-corruption row, by merging its input and labels at the sentinels.

    ``inputs`` keeps the raw tokens outside the spans, with one sentinel where each span was;
    ``labels`` lists each sentinel followed by the span it replaced; with ``eos``, both end with it::

        inputs  a b <X0> e f g <X1> i j </s>
        labels  <X0> c d <X1> h </s>            ->  a b c d e f g h i j
    """
    inputs, labels = [int(t) for t in inputs], [int(t) for t in labels]
    if eos is not None:
        assert inputs[-1] == eos and labels[-1] == eos, "both columns end with EOS"
        inputs, labels = inputs[:-1], labels[:-1]
    sentinel_set = {int(t) for t in sentinels}
    assert not labels or labels[0] in sentinel_set, "labels open with a sentinel"
    spans: dict[int, list[int]] = {}
    current = None
    for token in labels:
        if token in sentinel_set:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out: list[int] = []
    for token in inputs:
        out.extend(spans[token] if token in sentinel_set else [token])
    return out
