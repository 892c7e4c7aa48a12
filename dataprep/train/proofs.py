"""The proofs the trainer runs on a model and the loader's rows: mask, packing, task.

They take a model and the loader's rows, so they also run outside the trainer:

* **mask proof**: labels rebuilt with random token ids at every position the *data* says is
  not a target (``assistant_masks`` 0, pad, each piece's first token) give bit-identical loss and
  gradients; changing one target label does change the loss (the proof is not vacuous).
* **packing proof**: examples packed into rows score the same token-weighted loss as the same
  examples run one at a time (fp32; tolerance 1e-4), so segments never leak into each other.
* **task proof**: greedy decoding from held-out prompts; an answer counts only if it is
  followed by the stop token, so a model that never learned to stop scores 0.

Where the prompt ends is read from the recipe's template (the literal text after its last
``{field}``, e.g. ``"\\nA: "``), not from ``assistant_masks``: a dataset whose mask is broken must
not get to define its own answers. Templates whose tail tokenizes differently in context fall
back to the mask (``split: assistant_masks`` in the report).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.errors import DataprepError
from dataprep.train.device import to_device
from dataprep.train.loader import ArrowRows, Collator, DatasetInfo, Row
from dataprep.train.model import Transformer, attention_backend


def examples(rows: ArrowRows, *, limit: int, whole_only: bool = False) -> Iterator[Row]:
    """Up to ``limit`` single-example rows: every non-pad piece of the split's rows, in order; with
    ``whole_only``, not a row's first or last piece (in a token stream those are parts of documents
    cut at the row's edges)."""
    produced = 0
    for i in range(len(rows)):
        row = rows[i]
        lengths = np.asarray(row[C.SEQ_LENS])
        count = len(lengths) - (1 if row[C.NUM_PAD] > 0 else 0)
        labels = np.atleast_1d(row.get(C.LABEL_IDS, row.get(C.LABEL_ID, -1)))
        start = 0
        for k in range(count):
            end = start + int(lengths[k])
            if whole_only and (k == 0 or k == count - 1):
                start = end
                continue
            example: Row = {C.INPUT_IDS: row[C.INPUT_IDS][start:end], C.SEQ_LENS: np.array([end - start]), C.NUM_PAD: 0}
            if C.LOSS_MASK in row:
                example[C.LOSS_MASK] = row[C.LOSS_MASK][start:end]
            if C.LABEL_ID in row or C.LABEL_IDS in row:
                example[C.LABEL_ID] = int(labels[k])
            yield example
            produced += 1
            if produced >= limit:
                return
            start = end


def pack(rows: list[Row], *, seq_len: int) -> list[Row]:
    """Concatenate single-example rows, in order, into rows of at most ``seq_len`` tokens."""
    packed: list[list[Row]] = [[]]
    for row in rows:
        if packed[-1] and sum(len(r[C.INPUT_IDS]) for r in packed[-1]) + len(row[C.INPUT_IDS]) > seq_len:
            packed.append([])
        packed[-1].append(row)
    out = []
    for group in packed:
        merged: Row = {
            C.INPUT_IDS: np.concatenate([r[C.INPUT_IDS] for r in group]),
            C.SEQ_LENS: np.array([len(r[C.INPUT_IDS]) for r in group]),
            C.NUM_PAD: 0,
        }
        if C.LOSS_MASK in group[0]:
            merged[C.LOSS_MASK] = np.concatenate([r[C.LOSS_MASK] for r in group])
        out.append(merged)
    return out


def _non_targets(row: Row) -> np.ndarray:
    """Positions the data says carry no loss: assistant_masks 0, the pad piece, each piece's first token."""
    n = len(row[C.INPUT_IDS])
    non = ~np.asarray(row[C.LOSS_MASK], dtype=bool) if C.LOSS_MASK in row else np.zeros(n, dtype=bool)
    lengths = np.asarray(row[C.SEQ_LENS])
    non[np.cumsum(lengths) - lengths] = True
    if row[C.NUM_PAD] > 0:
        non[n - row[C.NUM_PAD] :] = True
    return non


def _loss_and_grads(model: Transformer, batch: dict[str, Any], labels: torch.Tensor | None = None) -> tuple[float, int, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    total, count = model.lm_loss(batch, labels=labels)
    (total / max(count, 1)).backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return float(total.detach()) / max(count, 1), count, grads


def fp32_backend(model: Transformer) -> str:
    """The attention backend the fp32 proofs run on: the model's, unless it has no fp32 kernel."""
    return "sdpa" if model.attention == "varlen" else model.attention


def mask_proof(model: Transformer, rows: list[Row], collator: Collator, device: torch.device, *, seed: int = 0) -> dict[str, Any]:
    """Randomize the labels at every non-target position; loss and gradients must not move."""
    with attention_backend(model, fp32_backend(model)):
        return _mask_proof(model, rows, collator, device, seed=seed)


def _mask_proof(model: Transformer, rows: list[Row], collator: Collator, device: torch.device, *, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vocab = model.cfg.vocab_size
    perturbed, expected_targets = [], 0
    for row in rows:
        non = _non_targets(row)
        expected_targets += int((~non).sum())
        noise = rng.integers(0, vocab, size=len(non))
        perturbed.append(dict(row, label_values=np.where(non, noise, row[C.INPUT_IDS])))
    batch, noisy = to_device(collator(rows), device), to_device(collator(perturbed), device)
    loss, count, grads = _loss_and_grads(model, batch)
    loss2, _, grads2 = _loss_and_grads(model, batch, noisy["labels"])
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads, grads2))
    changed = noisy["labels"].clone()  # one target label moved: the loss must notice
    t = torch.nonzero(changed[:, 1:] != C.IGNORE_INDEX)
    if len(t):
        b, i = t[0].tolist()
        changed[b, i + 1] = (changed[b, i + 1] + 1) % vocab
    loss3, _, _ = _loss_and_grads(model, batch, changed)
    passed = loss == loss2 and grad_diff <= 1e-6 and count == expected_targets and (loss3 != loss or not len(t))
    return {
        "targets": count,
        "targets_in_data": expected_targets,
        "labels_randomized": int(sum(_non_targets(r).sum() for r in rows)),
        "loss_diff": abs(loss - loss2),
        "max_grad_diff": grad_diff,
        "one_target_changed_loss_diff": abs(loss3 - loss),
        "pass": bool(passed),
    }


def packing_proof(model: Transformer, singles: list[Row], collator: Collator, device: torch.device, *, seq_len: int,
                  tolerance: float = 1e-4) -> dict[str, Any]:
    """Loss of the examples packed into rows vs the token-weighted loss of each one alone (fp32).

    Rows hold at least two examples even when two do not fit ``seq_len`` (positions restart
    in every segment, so nothing depends on the row length).
    """
    backend = fp32_backend(model)
    longest = sorted(len(r[C.INPUT_IDS]) for r in singles)[-2:]
    with torch.no_grad(), attention_backend(model, backend):
        packed_rows = pack(singles, seq_len=max(seq_len, sum(longest)))
        total, count = model.lm_loss(to_device(collator(packed_rows), device))
        alone_total, alone_count = 0.0, 0
        for row in singles:
            t, c = model.lm_loss(to_device(collator([row]), device))
            alone_total, alone_count = alone_total + float(t), alone_count + c
    packed_loss, alone_loss = float(total) / max(count, 1), alone_total / max(alone_count, 1)
    return {
        "examples": len(singles),
        "rows": len(packed_rows),
        "targets": count,
        "packed_loss": packed_loss,
        "one_at_a_time_loss": alone_loss,
        "abs_diff": abs(packed_loss - alone_loss),
        "tolerance": tolerance,
        "backend": backend,
        "pass": bool(count == alone_count and abs(packed_loss - alone_loss) <= tolerance),
    }


def response_marker(info: DatasetInfo) -> str | None:
    """The literal text that ends the template's prompt (``"\\nA: "``), or None."""
    template = info.manifest.recipe.get("template")
    if isinstance(template, str) and template != "chat":
        from dataprep.tasks.sft.templates import get_template

        template = {"prompt": get_template(template).prompt}
    if not isinstance(template, dict) or not template.get("prompt"):
        return None
    last_literal, last_field = "", None
    for literal, field, _, _ in string.Formatter().parse(template["prompt"]):
        last_literal, last_field = literal, field
    return last_literal if last_field is None and last_literal else None


def load_decoder(info: DatasetInfo) -> Any | None:
    """The dataset's ``tokenizers.Tokenizer``, or None when it cannot be found (ids are shown instead)."""
    try:
        return info.dataset.tokenizer().tokenizer
    except DataprepError:
        return None


def _split_at(ids: np.ndarray, needle: np.ndarray) -> int | None:
    """Index just past the first occurrence of ``needle`` in ``ids``, or None."""
    if not len(needle) or len(ids) < len(needle):
        return None
    hits = np.flatnonzero((np.lib.stride_tricks.sliding_window_view(ids, len(needle)) == needle).all(axis=1))
    return int(hits[0]) + len(needle) if len(hits) else None


def task_examples(info: DatasetInfo, rows: ArrowRows, *, limit: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(prompt ids, answer ids + stop token) pairs from held-out rows, and how they were split."""
    items = [np.asarray(ex[C.INPUT_IDS]) for ex in examples(rows, limit=limit)]
    marker, tokenizer = response_marker(info), load_decoder(info)
    if marker and tokenizer is not None:
        needle = np.array(tokenizer.encode(marker, add_special_tokens=False).ids)
        cuts = [_split_at(ids, needle) for ids in items]
        if items and None not in cuts:  # the marker must split every example, or none is split by it
            return [(ids[:cut], ids[cut:]) for ids, cut in zip(items, cuts)], "template marker"
    pairs = []
    for ex in examples(rows, limit=limit):
        ids, mask = np.asarray(ex[C.INPUT_IDS]), np.asarray(ex[C.LOSS_MASK], dtype=bool)
        first = int(np.argmax(mask)) if mask.any() else len(ids)
        pairs.append((ids[:first], ids[first:]))
    return pairs, "assistant_masks"


@torch.no_grad()
def greedy(model: Transformer, prompts: list[np.ndarray], *, stop_ids: tuple[int, ...], pad_id: int, max_new: int,
           device: torch.device, batch_size: int = 256) -> list[np.ndarray]:
    """Greedy continuations (cut after the first stop token) of each prompt.

    Prompts are left-padded; the padding is a segment of its own, so it is invisible.
    """
    out: list[np.ndarray] = []
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo : lo + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        doc = torch.zeros_like(ids)
        pos = torch.zeros_like(ids)
        for b, p in enumerate(chunk):
            ids[b, width - len(p) :] = torch.from_numpy(np.array(p, dtype=np.int64))
            doc[b, width - len(p) :] = 1
            pos[b, : width - len(p)] = torch.arange(width - len(p))
            pos[b, width - len(p) :] = torch.arange(len(p))
        ids, doc, pos = ids.to(device), doc.to(device), pos.to(device)
        for _ in range(max_new):
            nxt = model.logits(model.hidden(ids, pos, doc)[:, -1]).argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
            doc = torch.cat([doc, doc[:, -1:]], 1)
            pos = torch.cat([pos, pos[:, -1:] + 1], 1)
        for row in ids[:, width:].cpu().numpy():
            stop = np.flatnonzero(np.isin(row, stop_ids))
            out.append(row[: stop[0] + 1] if len(stop) else row)
    return out


def task_proof(model: Transformer, pairs: list[tuple[np.ndarray, np.ndarray]], *, stop_ids: tuple[int, ...], pad_id: int,
               device: torch.device, decoder: Any | None = None, show: int = 3) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers; the stop token must close every answer."""
    max_new = max(len(a) for _, a in pairs) + 4  # room to show a model that does not stop
    was_training = model.training
    model.eval()
    # decoding grows the sequence every step: sdpa takes any length without recompiling
    with attention_backend(model, "sdpa"):
        outputs = greedy(model, [p for p, _ in pairs], stop_ids=stop_ids, pad_id=pad_id, max_new=max_new, device=device)
    model.train(was_training)
    right = [len(o) == len(a) and bool((o == a).all()) and a[-1] in stop_ids for o, (_, a) in zip(outputs, pairs)]
    # how a wrong answer is wrong: a model that never learned the stop token runs on
    on_time = [len(o) == len(a) and o[-1] in stop_ids for o, (_, a) in zip(outputs, pairs)]
    ran_on = [len(o) == 0 or o[-1] not in stop_ids for o in outputs]

    def text(ids: np.ndarray) -> str:
        return decoder.decode(ids.tolist(), skip_special_tokens=False) if decoder is not None else str(ids.tolist())

    samples = [{"prompt": text(p), "expected": text(a), "got": text(o)} for (p, a), o in list(zip(pairs, outputs))[:show]]
    return {"accuracy": float(np.mean(right)), "stopped_on_time": float(np.mean(on_time)),
            "never_stopped": float(np.mean(ran_on)), "max_new_tokens": max_new, "examples": len(pairs), "samples": samples}
