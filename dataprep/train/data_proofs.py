"""Proofs about the *data*: each fails on a dataset that would train the wrong thing.

* **targets**: the source records re-rendered by an independent path
  (:mod:`dataprep.train.reference`) are found among the dataset's examples, token for token,
  and their masks are equal: the data trains the response and its stop token, nothing else
  (a chat reference's generation prompt and whitespace after the stop are not compared, and
  counted: :mod:`dataprep.train.reference_chat`).
  Fails on prompts marked as targets, a stop token not trained, targets shifted by one, two
  examples merged into one segment (then they are not found), a wrong template.
* **heldout**: no validation example is also a training example.
* **labels**: classification data: every example's ``label_id`` names the class its target text
  spells (fails on a swapped label map).
* **learned**: after training, the model's loss on the tokens the *reference* says are targets
  fell by at least ``loss_drop``, and by more than on the prompt tokens: the model learned the
  answers, wherever the dataset's mask put the loss.

Each returns a dict with ``pass`` (None: skipped, with ``skipped`` saying why).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.pack.mixture import MIXTURE
from dataprep.train import reference
from dataprep.train.loader import ArrowRows, Collator, DatasetInfo
from dataprep.train.proofs import examples

FOUND_SHARE = 0.9     # of the comparable rendered records, the share that must be found
SCAN_LIMIT = 500_000  # examples indexed per split at most
LEARNED_EXAMPLES = 64   # validation examples the learned check scores
REFERENCE_RECORDS = 512  # source records the targets proof re-renders


@dataclass
class Index:
    """The dataset's examples by their token ids: split, mask and label of each."""

    entries: dict[bytes, tuple[str, np.ndarray | None, int | None]] = field(default_factory=dict)
    overlap: list[bytes] = field(default_factory=list)  # examples in both splits
    scanned: dict[str, int] = field(default_factory=dict)


def index_examples(splits: dict[str, ArrowRows], *, stream: bool = False) -> Index:
    """Every example of every split (up to :data:`SCAN_LIMIT` each), keyed by its ids; ``stream``: the
    rows are a token stream (wrap packing), whose whole documents are the pieces inside each row."""
    index = Index()
    for split, rows in splits.items():
        count = 0
        for ex in examples(rows, limit=SCAN_LIMIT, whole_only=stream):
            ids = np.asarray(ex[C.INPUT_IDS], dtype=np.int64)
            mask = np.asarray(ex[C.LOSS_MASK], dtype=bool) if C.LOSS_MASK in ex else None
            label = ex.get(C.LABEL_ID)
            key = ids.tobytes()
            seen = index.entries.get(key)
            if seen is not None and seen[0] != split:
                index.overlap.append(key)
            index.entries.setdefault(key, (split, mask, label))
            count += 1
        index.scanned[split] = count
    return index


def _text(decoder: Any, ids: Iterable[int]) -> str:
    ids = [int(i) for i in ids]
    return decoder.decode(ids, skip_special_tokens=False) if decoder is not None else str(ids)


def targets_proof(info: DatasetInfo, index: Index, *, decoder: Any, limit: int,
                  chat_template: str | None = None) -> tuple[dict[str, Any], list[reference.Expected]]:
    """The re-rendered records against the dataset; also the validation examples found (for ``learned``).
    ``chat_template``: a generation-tagged template that re-renders chat records."""
    if decoder is None:
        return {"skipped": "the dataset's tokenizer cannot be loaded", "pass": None}, []
    rows = info.manifest.rows
    bos = info.manifest.tokenizer.bos_id if rows is not None and rows.starts_with_bos else None
    stop = info.stop_ids[0] if info.stop_ids else None
    if stop is None:
        return {"skipped": "no stop token stated", "pass": None}, []
    rendering = reference.render(info.manifest, decoder, stop_id=stop, bos_id=bos, limit=limit, chat_template=chat_template)
    if rendering.skipped:
        return {"skipped": rendering.skipped, "pass": None}, []
    too_long = found = equal = by_mixture = 0
    left_out = info.manifest.drops_by_input(MIXTURE)  # input -> records the mixture may still have left out
    missing: list[str] = []
    mismatch: dict[str, Any] | None = None
    validation: list[reference.Expected] = []
    not_compared: Counter = Counter()  # reference targets by reason, in the found records
    for exp in rendering.expected:
        if len(exp.ids) > rendering.max_length:  # the run drops or cuts it: not comparable
            too_long += 1
            continue
        hit = index.entries.get(exp.ids.tobytes())
        if hit is None and _left_out_by_mixture(exp.where, left_out):
            by_mixture += 1  # not comparable: the mixture subsampled its input
            continue
        if hit is None:
            missing.append(exp.where)
            continue
        found += 1
        split, mask, _ = hit
        if split == "validation":
            validation.append(exp)
        free = np.zeros(len(exp.ids), dtype=bool)
        for reason, positions in getattr(exp, "not_compared", {}).items():  # chat references only
            free |= positions
            not_compared[reason] += int(positions.sum())
        data = (mask if mask is not None else np.zeros(len(exp.ids), dtype=bool)) & ~free
        if mask is not None and np.array_equal(data, exp.mask):
            equal += 1
        elif mismatch is None:
            mismatch = {"record": exp.where,
                        "data_trains_not_reference": _text(decoder, exp.ids[data & ~exp.mask]),
                        "reference_trains_not_data": _text(decoder, exp.ids[exp.mask & ~data])}
    comparable = len(rendering.expected) - too_long - by_mixture
    ok = comparable > 0 and equal == found and found >= FOUND_SHARE * comparable
    excused = ", not comparing " + " and ".join(f"{n} {reason} tokens" for reason, n in not_compared.items()) if not_compared else ""
    return {"rendered": len(rendering.expected), "too_long": too_long, "left_out_by_mixture": by_mixture, "found": found, "masks_equal": equal,
            "not_found": len(missing), "first_not_found": missing[0] if missing else None,
            "first_mismatch": mismatch, "unrendered": dict(rendering.unrendered or {}), "not_compared": dict(not_compared),
            "needs": f"every found mask equal{excused}, >= {FOUND_SHARE:.0%} of {comparable} found", "pass": bool(ok)}, validation


def _left_out_by_mixture(where: str, left_out: Counter) -> bool:
    """A record not found whose input the mixture subsampled: one of the documents it left out, while
    that input has such documents to spare (``where`` is ``FILE line N``)."""
    path = where.rsplit(" line ", 1)[0]
    if left_out[path] <= 0:
        return False
    left_out[path] -= 1
    return True


def heldout_check(index: Index, *, decoder: Any) -> dict[str, Any]:
    """No example of the validation split is also in the training split."""
    first = _text(decoder, np.frombuffer(index.overlap[0], dtype=np.int64)) if index.overlap else None
    return {"examples": dict(index.scanned), "in_both_splits": len(index.overlap), "first": first,
            "pass": not index.overlap}


def labels_check(info: DatasetInfo, index: Index, *, decoder: Any) -> dict[str, Any]:
    """Classification: the label id of each example names the class its target text spells."""
    if info.labels is None:
        return {"skipped": "not classification data", "pass": None}
    if decoder is None:
        return {"skipped": "the dataset's tokenizer cannot be loaded", "pass": None}
    names = {i: name for name, i in info.labels.items()}
    stops = set(info.stop_ids)
    checked = wrong = 0
    first = None
    for key, (_, mask, label) in index.entries.items():
        if mask is None or label is None:
            continue
        ids = np.frombuffer(key, dtype=np.int64)
        text = _text(decoder, [t for t in ids[mask] if t not in stops]).strip()
        checked += 1
        if text != names.get(int(label)):
            wrong += 1
            first = first or {"target_text": text, "label_id": int(label), "names": names.get(int(label))}
    return {"examples": checked, "wrong": wrong, "first_wrong": first, "pass": checked > 0 and wrong == 0}


@torch.no_grad()
def token_losses(model: Any, expected: list[reference.Expected], *, pad_id: int, device: torch.device) -> dict[str, float]:
    """Mean loss on the reference's target tokens and on the prompt tokens (after the first) of ``expected``."""
    was_training = model.training
    model.eval()
    collator = Collator(pad_id=pad_id)
    sums = {"targets": 0.0, "prompt": 0.0}
    counts = {"targets": 0, "prompt": 0}
    for exp in expected:
        row = {C.INPUT_IDS: exp.ids, C.SEQ_LENS: np.array([len(exp.ids)]), C.NUM_PAD: 0}
        batch = collator([row])
        ids = batch["input_ids"].to(device)
        h = model.hidden(ids, batch["position_ids"].to(device), batch["document_ids"].to(device))
        logp = torch.log_softmax(model.logits(h).float(), -1)[0, :-1]
        losses = -logp.gather(-1, ids[0, 1:, None])[:, 0].cpu().numpy()
        target = exp.mask[1:]
        sums["targets"] += float(losses[target].sum())
        counts["targets"] += int(target.sum())
        sums["prompt"] += float(losses[~target].sum())
        counts["prompt"] += int((~target).sum())
    model.train(was_training)
    return {k: sums[k] / max(counts[k], 1) for k in sums}


def learned_check(before: dict[str, float] | None, after: dict[str, float] | None, *, required_drop: float) -> dict[str, Any]:
    """The reference targets' loss fell by ``required_drop`` and by more than the prompt's."""
    if before is None or after is None:
        return {"skipped": "needs the independent reference (see targets)", "pass": None}
    drop = {k: 1 - after[k] / before[k] if before[k] > 0 else 0.0 for k in before}
    ok = drop["targets"] >= required_drop and drop["targets"] > drop["prompt"]
    return {"target_loss": [before["targets"], after["targets"]], "prompt_loss": [before["prompt"], after["prompt"]],
            "target_drop": drop["targets"], "prompt_drop": drop["prompt"], "required_drop": required_drop, "pass": bool(ok)}
