"""``dataprep train --eval-fewshot FEWSHOT``: in-context learning vs fine-tuning, in one table.

A few-shot dataset (``task: fewshot``) holds, per held-out query, the k-shot prompt and, from
``query_start``, the query alone. Exact match (greedy, the stop token must close the answer) is
measured for both prompts before training and after it, and printed as one table::

    exact match on N held-out queries     before training   after fine-tuning
    zero-shot (query alone)                      untrained         fine-tuning
    k-shot (demonstrations in context)    in-context alone   both together

Zero-shot before training is the untrained model; k-shot before training is in-context learning
alone (from random weights there is nothing to learn from context yet, so without ``--init-from``
the row is a floor); zero-shot after training is fine-tuning. Both datasets must share the tokenizer. Started from a pretrained model
(``--init-from``), the "before" column is that base model, and the k-shot cell is what in-context
learning does for it (the two-stage demo: benchmarks/two_stage.py).

An answer ends at the stop token or, as the k-shot prompt shows between demonstrations (and as
few-shot harnesses stop at ``"\n\n"``), at the first token of the demonstration separator: a
base model pretrained on blank-line separated episodes closes an answer that way. Either way,
exact match is the answer's tokens, all of them, then one of those ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.train import proofs
from dataprep.errors import ConfigError
from dataprep.train.loader import ArrowRows, DatasetInfo, read_info
from dataprep.train.model import attention_backend

COLUMNS = (C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD, C.LOSS_MASK, C.QUERY_START)


@dataclass
class FewshotEval:
    """Held-out queries of a few-shot dataset, as (prompt, answer) pairs in both settings."""

    path: Path
    k: int
    zero_shot: list[tuple[np.ndarray, np.ndarray]]
    k_shot: list[tuple[np.ndarray, np.ndarray]]
    stop_ids: tuple[int, ...]
    longest: int  # longest k-shot prompt + answer, in tokens
    ends: tuple[int, ...] = ()  # what closes an answer: the stop tokens and the separator's first token


def prepare(path: str | Path, trained: DatasetInfo, *, limit: int) -> FewshotEval:
    """Read up to ``limit`` validation queries of the few-shot dataset at ``path``.

    Raises:
        ConfigError: not a few-shot dataset, another tokenizer than the trained data's, or no held-out rows.
        InputError: ``path`` is not a dataprep dataset.
    """
    info = read_info(path)
    if info.task != "fewshot":
        raise ConfigError(f"--eval-fewshot {path} is a {info.task} dataset, not a few-shot one",
                          fix="build one with a `task: fewshot` recipe (e.g. recipes/fewshot-demo.yaml)")
    ours, theirs = trained.manifest.tokenizer.fingerprint, info.manifest.tokenizer.fingerprint
    if ours != theirs:
        raise ConfigError(f"--eval-fewshot {path} was tokenized with another tokenizer than {trained.path}",
                          fix="build both with the same `tokenizer`")
    rows = ArrowRows(info.dataset, "validation", columns=COLUMNS)
    if not len(rows):
        raise ConfigError(f"--eval-fewshot {path} has no validation rows to evaluate",
                          fix="set `split.validation` above 0 in its recipe")
    zero, shots = [], []
    for i in range(min(limit, len(rows))):
        row = rows[i]
        ids, mask, start = np.asarray(row[C.INPUT_IDS]), np.asarray(row[C.LOSS_MASK], dtype=bool), int(row[C.QUERY_START])
        first = int(np.argmax(mask))
        zero.append((ids[start:first], ids[first:]))
        shots.append((ids[:first], ids[first:]))
    return FewshotEval(Path(path), info.manifest.fewshot.k, zero, shots, info.stop_ids,
                       longest=max(len(p) + len(a) for p, a in shots), ends=answer_ends(info))


def answer_ends(info: DatasetInfo) -> tuple[int, ...]:
    """The stop tokens, and the first token of the separator between demonstrations (when the
    tokenizer can be read: otherwise only the stop tokens, which exact match then needs)."""
    separator, tokenizer = info.manifest.fewshot.separator, proofs.load_decoder(info)
    if not separator or tokenizer is None:
        return tuple(info.stop_ids)
    first = tokenizer.encode(separator, add_special_tokens=False).ids[:1]
    return tuple(dict.fromkeys([*info.stop_ids, *first]))


def evaluate(model: Any, ev: FewshotEval, *, pad_id: int, device: torch.device, decoder: Any | None = None) -> dict[str, Any]:
    """Exact match of greedy answers, zero-shot and k-shot."""
    return {setting: score(model, pairs, ends=ev.ends or ev.stop_ids, pad_id=pad_id, device=device, decoder=decoder)
            for setting, pairs in (("zero_shot", ev.zero_shot), ("k_shot", ev.k_shot))}


def score(model: Any, pairs: list[tuple[np.ndarray, np.ndarray]], *, ends: tuple[int, ...], pad_id: int,
          device: torch.device, decoder: Any | None = None, show: int = 3) -> dict[str, Any]:
    """Exact match of greedy answers: the answer's tokens (its stop token aside), then one of ``ends``."""
    was_training = model.training
    model.eval()
    with attention_backend(model, "sdpa"):
        outputs = proofs.greedy(model, [p for p, _ in pairs], stop_ids=ends, pad_id=pad_id,
                                max_new=max(len(a) for _, a in pairs) + 4, device=device)
    model.train(was_training)
    right = [len(o) == len(a) and bool((o[:-1] == a[:-1]).all()) and o[-1] in ends for o, (_, a) in zip(outputs, pairs)]

    def text(ids: np.ndarray) -> str:
        return decoder.decode(ids.tolist(), skip_special_tokens=False) if decoder is not None else str(ids.tolist())

    samples = [{"prompt": text(p)[-200:], "expected": text(a), "got": text(o)} for (p, a), o in list(zip(pairs, outputs))[:show]]
    return {"accuracy": float(np.mean(right)), "examples": len(pairs), "samples": samples}


def summary(ev: FewshotEval, before: dict[str, Any], after: dict[str, Any], *, base: bool = False) -> dict[str, Any]:
    """What verify.json records: the three numbers of the comparison, and both full rows. ``base``: the run
    started from a pretrained model (``--init-from``), so "before" is that base model, not a random one."""
    return {
        "dataset": str(ev.path), "k": ev.k, "queries": len(ev.zero_shot),
        "before_is": "base model" if base else "random initialization",
        "zero_shot": before["zero_shot"]["accuracy"], "k_shot": before["k_shot"]["accuracy"],
        "fine_tuned": after["zero_shot"]["accuracy"], "fine_tuned_k_shot": after["k_shot"]["accuracy"],
        "before": before, "after": after,
    }


def table(result: dict[str, Any]) -> str:
    """The comparison as a small text table."""
    head = f"exact match on {result['queries']} held-out queries"
    rows = [("zero-shot (query alone)", result["zero_shot"], result["fine_tuned"]),
            (f"{result['k']}-shot (demonstrations in context)", result["k_shot"], result["fine_tuned_k_shot"])]
    width = max(len(head), *(len(r[0]) for r in rows))
    before = "base model" if result.get("before_is") == "base model" else "before training"
    lines = [f"{head:<{width}}   {before:>15}   after fine-tuning"]
    lines += [f"{name:<{width}}   {b:>15.1%}   {a:>17.1%}" for name, b, a in rows]
    return "\n".join(lines)
