"""Re-made units against stored ones (``--recheck-sources``): each finding names the record (file,
line) and, where the unit is stored, its split, row and position.

For each re-made unit, in input order: a stored unit with the same tokens, loss mask and
label_id claims it. What is left is explained, or is a finding::

    same tokens, other mask / label_id  -> recheck_mask / recheck_label at the first differing position
    same tokens in the other split      -> recheck_split
    the split's wrap remainder          -> not stored (whole), or its head compared token by token (cut)
    a stored unit sharing a half        -> recheck_tokens at the first changed token
    nothing                             -> recheck_tokens: the split does not hold it (stale)

With ``--sample all`` a stored unit is claimed once, and the unclaimed ones are ``recheck_extra``.

A preference pair is a unit whose mask is its segments (:mod:`.recheck_pairs`): a changed token
or length names the column and its position (``chosen_ids[3]``), a moved prompt/response
boundary is ``recheck_mask``, a flipped KTO label ``recheck_label``; near misses are found by the
prompt (or by the responses), whatever their lengths.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from dataprep.pack.mixture import MIXTURE
from dataprep.text.filters import DUPLICATE, NEAR_DUPLICATE

from .findings import EXAMPLES, Finding
from . import recheck_pairs as P
from .recheck_remake import Unit, remake
from .recheck_rows import SplitUnits, Stored, Wanted, digest, keys3, scan

LEFT_OUT = {NEAR_DUPLICATE: "near_duplicates", MIXTURE: "left_out_by_mixture"}  # recheck stats of what the run dropped late


def match(expected: Any) -> list[Finding]:
    """Findings for every re-made unit of ``expected`` (:class:`.recheck.Expected`) not stored as made."""
    s, every = expected.setup, expected.every
    units = [u for r in expected.records if r.refused is None and not r.duplicate for u in r.units]
    wanted = _wanted(units, every, pairs=s.pairs)
    scanned = scan(s.out, s.manifest, wanted, documents=s.documents, eos=s.eos, bos=s.bos, remainder={k: v > 0 for k, v in s.dropped.items()}, pairs=s.pairs)
    expected.report.notes += [f"recheck could not read {problem}" for problem in scanned.problems]
    pools: dict[tuple, list[Stored]] = defaultdict(list)  # (split, digest, mask digest, label) -> unclaimed units
    for split, here in scanned.splits.items():
        for group in here.by_digest.values():
            for e in reversed(group):
                pools[split, e.digest, e.mask_digest, e.label].append(e)
    left = []
    mixture, repeats = s.manifest.mixture, Counter()
    for u in units:
        pool = pools.get((u.record.split, u.digest, u.mask_digest, u.label))
        if not pool:
            left.append(u)
            continue
        hit = pool.pop() if every else pool[-1]  # --sample all: each stored unit claimed once
        hit.claimed = True
        while every and mixture is not None and pool:  # a mixture repeats documents: the copies too
            pool.pop().claimed = True
            repeats[u.record.split] += 1
    matcher = _Matcher(expected, scanned.splits, upto=max((u.record.index for u in left), default=-1) + 1)
    findings = [f for u in left for f in matcher.explain(u)]
    for split in sorted({u.record.split for u in left}):
        tail = expected.tails.get(split)
        if tail is not None and tail.short is not None:
            why = f"the re-made {split} documents hold {tail.short:,} tokens, fewer than the {s.dropped[split]:,} the remainder dropped (manifest packing.{split}.dropped_tokens)"
            findings.append(Finding("recheck_remainder", why, split=split))
    if every and late_drops(s.manifest):
        _claim_cut_repeats(scanned.splits, units, matcher.counts)
    if every:
        findings += [f for split in scanned.splits.values() for f in _unclaimed(split)]
    for split, n in repeats.items():
        stated = sum(getattr(source, split).occurrences - getattr(source, split).documents for source in mixture.sources)
        if n > stated:
            why = f"the {split} split repeats re-made units {n:,} times, the mixture says {stated:,} (manifest mixture.sources[].{split}.occurrences - documents)"
            findings.append(Finding("recheck_extra", why, split=split))
    stats = expected.report.stats.setdefault("recheck", {})
    stats.update({k: v for k, v in matcher.counts.items() if v})
    return findings


def late_drops(manifest) -> bool:
    """Whether the run dropped or drew documents after the workers in a way the re-make does not replay
    (a mixture, near-duplicates): the rows' stream is then not the re-made records in input order."""
    return manifest.mixture is not None or manifest.counts.dropped.get(NEAR_DUPLICATE, 0) > 0


def _claim_cut_repeats(splits: dict[str, SplitUnits], units: list[Unit], counts: Counter) -> None:
    """A mixture's split may end cut inside a repeat of a document whose other copy claimed its re-made
    unit: its unterminated last piece is explained when it is a prefix of a re-made unit of that split."""
    for split, here in splits.items():
        p = here.partial
        if p is not None and not p.claimed and any(
                u.record.split == split and len(u.tokens) > p.length and np.array_equal(u.tokens[: p.length], p.tokens)
                for u in units):
            p.claimed = True
            counts["cut_by_remainder"] += 1


def _wanted(units: list[Unit], every: bool, *, pairs: bool = False) -> Wanted:
    lengths = np.array([len(u.tokens) for u in units], dtype=np.int64)
    tokens = np.concatenate([u.tokens for u in units]) if units else np.zeros(0, np.int32)
    cuts = P.cuts(np.array([P.prompt_length(u.mask) for u in units], dtype=np.int64), lengths) if pairs else None
    whole, first, second = keys3(tokens, np.cumsum(lengths) - lengths, lengths, cuts)
    for u, f, h in zip(units, first.tolist(), second.tolist()):
        u.digest, u.mask_digest, u.first, u.second = digest(u.tokens), digest(u.mask), f, h
    triples = {(u.digest, u.mask_digest, u.label) for u in units}
    return Wanted(
        whole=None if every else np.unique(whole), first=np.unique(first), second=np.unique(second),
        digests={u.digest for u in units}, triples=triples, variants=Counter(d for d, _, _ in triples),
    )


class _Matcher:
    """Explains the re-made units no stored unit claimed exactly, one at a time, in input order."""

    def __init__(self, expected: Any, splits: dict[str, SplitUnits], *, upto: int):
        self.expected = expected
        self.setup = expected.setup
        self.every = expected.every
        self.splits = splits
        self.counts: Counter = Counter()
        self.upto = upto  # records before the last unclaimed one: where a duplicate's original may be
        self.first_seen: dict[bytes, int] | None = None
        self.near: dict[str, dict[tuple, list[Stored]]] = {}  # split -> (half, length, key) -> near candidates
        self.left_out: dict[str, Counter] | None = None  # reason -> input path -> records it may still have left out
        self.remainder: dict[str, int] = {}  # mixture: split -> remainder tokens not yet explained
        self.what = "example" if self.setup.examples else ("document" if self.setup.documents else "piece")
        if self.setup.pairs:
            self.what = "KTO example" if self.setup.kto else "pair"

    def explain(self, u: Unit) -> list[Finding]:
        r = u.record
        split, here = r.split, self.splits[r.split]
        where = {"file": r.source, "line": r.line, "split": split}
        same = [e for e in here.by_digest.get(u.digest, ()) if not (self.every and e.claimed)]
        if same:
            if self._duplicate(u):
                self.counts["duplicates"] += 1
                return []
            same[0].claimed = True
            return self._differences(u, same[0], here, where)
        other = "train" if split == "validation" else "validation"
        elsewhere = [e for e in self.splits[other].by_digest.get(u.digest, ()) if not (self.every and e.claimed)]
        if elsewhere:
            elsewhere[0].claimed = True
            shard, row, pos = self.splits[other].place(elsewhere[0].start)
            why = f"re-makes the {self.what} stored in {other} ({shard} row {row} position {pos}), but its content hash now puts it in {split}: the split salt or fraction changed"
            return [Finding("recheck_split", why, **where)]
        partial = here.partial
        if partial is not None and not partial.claimed and partial.length == len(u.tokens) and np.array_equal(partial.tokens, u.tokens):
            partial.claimed = True  # the split's last document, stored whole just before the remainder
            return []
        if late_drops(self.setup.manifest):  # the stream is not the re-made records in order: budget the remainder
            if self._in_mixture_remainder(u, here):
                return []
        elif self.setup.documents and self.setup.dropped[split]:
            explained = self._remainder(u, here, where)
            if explained is not None:
                return explained
        near = self._nearest(u, here)
        if near is not None:
            near.claimed = True
            return [self._changed_pair(u, near, here, where) if self.setup.pairs else self._changed_tokens(u, near, here, where)]
        if self._left_out(r):
            return []
        head = " ".join(map(str, u.tokens[:8].tolist()))
        why = f"re-makes {len(u.tokens):,} tokens ({head} ...) that the {split} split does not hold: the dataset is stale (tokenizer, template, normalization or code changed since the run)"
        return [Finding("recheck_tokens", why, **where)]

    # --- explanations --------------------------------------------------------------------

    def _remainder(self, u: Unit, here: SplitUnits, where: dict) -> list[Finding] | None:
        """None when the record is not in the split's wrap remainder."""
        tail = self.expected.tail(here.split)
        if tail is None:
            return None
        key = (u.record.source, u.record.line)
        if key in tail.records or (not self.every and u.record.hash in tail.hashes and (tail.cut or ())[:2] != key):
            self.counts["in_remainder"] += 1  # wholly in the dropped remainder (or a duplicate of a record there)
            return []
        if tail.cut is None or tail.cut[:2] != key:
            return None
        p, partial = tail.cut[2], here.partial
        if partial is None or partial.length != p:
            held = "no unterminated document" if partial is None else f"an unterminated last document of {partial.length:,} tokens"
            why = f"the {here.split} remainder cuts this {len(u.tokens):,}-token document after {p:,} tokens, but the split ends with {held}"
            return [Finding("recheck_remainder", why, **where)]
        partial.claimed = True
        if np.array_equal(partial.tokens, u.tokens[:p]):
            self.counts["cut_by_remainder"] += 1
            return []
        return [self._changed_tokens(u, partial, here, where, prefix=p)]

    def _differences(self, u: Unit, e: Stored, here: SplitUnits, where: dict) -> list[Finding]:
        """Same tokens; the loss mask and the label_id, value by value."""
        if self.setup.pairs:
            return self._pair_differences(u, e, here, where)
        found = []
        start = "{} row {} position {}".format(*here.place(e.start))
        if u.mask_digest != e.mask_digest:
            if e.mask is None or u.mask is None or len(e.mask) != len(u.mask):
                why = f"the {self.what} stored at {start} has the record's tokens but a different loss mask (or none)"
                found.append(Finding("recheck_mask", why, **where))
            else:
                diff = np.flatnonzero(e.mask != u.mask)
                shard, row, pos = here.place(e.start + int(diff[0]))
                why = (f"{shard} row {row} position {pos} has assistant_masks {int(e.mask[diff[0]])} where the record gives {int(u.mask[diff[0]])} "
                       f"({len(diff):,} of {len(u.mask):,} values differ); the {self.what} at {start} has the record's tokens")
                found.append(Finding("recheck_mask", why, row=row, position=pos, **where))
        if u.label != e.label:
            shard, row, _ = here.place(e.start)
            why = (f"{shard} row {row} holds label_id {e.label} ({self._word(e.label)}) for the {self.what} at {start}, which has the "
                   f"record's tokens; the record's label {self._word(u.label)} is label_id {u.label} in the manifest's sft.labels")
            found.append(Finding("recheck_label", why, row=row, **where))
        return found

    def _changed_tokens(self, u: Unit, e: Stored, here: SplitUnits, where: dict, prefix: int | None = None) -> Finding:
        made = u.tokens if prefix is None else u.tokens[:prefix]
        diff = np.flatnonzero(e.tokens != made)
        k = int(diff[0])
        shard, row, pos = here.place(e.start + k)
        start = "{} row {} position {}".format(*here.place(e.start))
        what = f"first {prefix:,} tokens (the rest fell in the dropped remainder) of the {self.what}" if prefix else self.what
        why = (f"{shard} row {row} position {pos} holds id {int(e.tokens[k])} where the record gives {int(made[k])}: "
               f"{len(diff):,} of the {len(made):,} tokens differ in the {what} stored at {start}")
        if prefix is None and e.mask is not None and u.mask is not None and not np.array_equal(e.mask, u.mask):
            why += f"; {int(np.count_nonzero(e.mask != u.mask)):,} assistant_masks values differ too"
        if prefix is None and e.label != u.label:
            why += f"; its label_id is {e.label}, the record's {u.label}"
        return Finding("recheck_tokens", why, row=row, position=pos, **where)

    def _nearest(self, u: Unit, here: SplitUnits) -> Stored | None:
        """The stored unit of the same length sharing a half with ``u`` and differing least (a pair:
        sharing its prompt or its responses, of any length)."""
        pairs = self.setup.pairs
        index = self.near.get(here.split)
        if index is None:
            index = self.near[here.split] = defaultdict(list)
            for c in here.near:
                index["first", 0 if pairs else c.length, c.first].append(c)
                index["second", 0 if pairs else c.length, c.second].append(c)
        n = 0 if pairs else len(u.tokens)
        near = [c for c in index.get(("first", n, u.first), []) + index.get(("second", n, u.second), []) if not (self.every and c.claimed)]
        if pairs:
            return min(near, key=lambda c: P.score((c.tokens, c.mask), (u.tokens, u.mask), self.setup.kto), default=None)
        return min(near, key=lambda c: int(np.count_nonzero(c.tokens != u.tokens)), default=None)

    # --- preference pairs ------------------------------------------------------------------

    def _changed_pair(self, u: Unit, e: Stored, here: SplitUnits, where: dict) -> Finding:
        """A stored pair sharing the record's prompt (or responses) but not all its tokens: the
        first column that differs, and where."""
        shard, row, _ = here.place(e.start)
        column, k, why = P.difference((e.tokens, e.mask), (u.tokens, u.mask), self.setup.kto) or ("", 0, "")
        why = f"{shard} row {row}: {why}" if why else f"{shard} row {row} holds the record's tokens"
        if self.setup.kto and e.label != u.label:
            why += f"; its label is {P.label_word(e.label)}, the record's {P.label_word(u.label)}"
        return Finding("recheck_tokens", why, row=row, position=k, path=column or None, **where)

    def _pair_differences(self, u: Unit, e: Stored, here: SplitUnits, where: dict) -> list[Finding]:
        """The record's tokens, stored with another prompt/response boundary or another KTO label."""
        shard, row, _ = here.place(e.start)
        found = []
        if u.mask_digest != e.mask_digest:
            kto = self.setup.kto
            why = (f"{shard} row {row} holds the record's tokens split into other columns ({P.layout(u.tokens, e.mask, kto)} "
                   f"tokens; the record gives {P.layout(u.tokens, u.mask, kto)})")
            found.append(Finding("recheck_mask", why, row=row, **where))
        if u.label != e.label:
            why = f"{shard} row {row} holds label {P.label_word(e.label)} where the record's label is {P.label_word(u.label)}"
            found.append(Finding("recheck_label", why, row=row, path="label", **where))
        return found

    def _in_mixture_remainder(self, u: Unit, here: SplitUnits) -> bool:
        """A mixture's stream ends with whichever document the draw put last (and with near-duplicates
        dropped, the re-made records' tail is not the stream's): the split's unterminated
        last piece must be a prefix of a re-made document (``cut_by_remainder``), and documents wholly
        in the dropped remainder may not hold more tokens than it (``in_remainder``)."""
        if not (self.setup.documents and self.setup.dropped[here.split]):
            return False
        budget = self.remainder.setdefault(here.split, self.setup.dropped[here.split])
        partial = here.partial
        if (partial is not None and not partial.claimed and len(u.tokens) > partial.length
                and np.array_equal(u.tokens[: partial.length], partial.tokens)):
            partial.claimed = True
            self.remainder[here.split] = budget - (len(u.tokens) - partial.length)
            self.counts["cut_by_remainder"] += 1
            return True
        if len(u.tokens) <= budget:
            self.remainder[here.split] = budget - len(u.tokens)
            self.counts["in_remainder"] += 1
            return True
        return False

    def _left_out(self, r) -> bool:
        """A record the run dropped after the workers, where the re-make cannot follow without replaying the
        whole corpus: a near-duplicate (``filter.dedup: minhash``) or a document a mixture's sample left out.
        Counted per input, never more than the manifest says that input lost so (``inputs[].dropped``), and
        never a finding; which records they were is not checked here."""
        manifest = self.setup.manifest
        if self.left_out is None:
            self.left_out = {reason: manifest.drops_by_input(reason) for reason in (NEAR_DUPLICATE, MIXTURE)}
        for reason, budget in self.left_out.items():
            if budget[r.source] > 0:
                budget[r.source] -= 1
                self.counts[LEFT_OUT[reason]] += 1
                return True
        return False

    def _duplicate(self, u: Unit) -> bool:
        """A sampled record whose content an earlier record had: dedup dropped it, and the stored
        unit with its tokens is that record's (whose mask or label may differ)."""
        if self.every or not self.setup.dedup or not self.setup.manifest.counts.dropped.get(DUPLICATE):
            return False
        if self.first_seen is None:  # once, for every unclaimed unit
            self.first_seen = {}
            for r in remake(self.setup, range(self.upto)):
                if r.units:
                    self.first_seen.setdefault(r.hash, r.index)
        return self.first_seen.get(u.record.hash, u.record.index) < u.record.index

    def _word(self, label: int | None) -> str:
        labels = self.setup.labels or ()
        return repr(labels[label]) if label is not None and 0 <= label < len(labels) else "not in sft.labels"


def _unclaimed(here: SplitUnits) -> list[Finding]:
    """``--sample all``: stored units no record re-makes."""
    units = here.unclaimed()
    found = []
    for e in units[:EXAMPLES]:
        shard, row, pos = here.place(e.start)
        head = "" if e.tokens is None else " (" + " ".join(map(str, e.tokens[:8].tolist())) + " ...)"
        why = f"{e.length:,} tokens{head} that no source record re-makes"
        found.append(Finding("recheck_extra", why, file=shard, split=here.split, row=row, position=pos))
    rest = len(units) - len(found) + here.not_kept
    if rest:
        found.append(Finding("recheck_extra", f"{rest:,} more stored units that no source record re-makes", split=here.split, count=rest))
    return found
