"""The checks a run reports, each numbers and a pass/fail, and the printed verdict.

What the data proves (each fails on a dataset that would train the wrong thing; see
:mod:`dataprep.train.data_proofs` and ``tests/test_proofs.py``, which plants each fault):

    learning  the last 10% of steps average at most (1 - loss_drop) x the first 10%, and the
              validation loss falls
    task      held-out accuracy after training (exact match >= task_threshold; a
              classification head must beat always answering the commonest class)
    targets   source records re-rendered independently are found in the rows with equal masks
    heldout   no validation example is also a training example
    labels    classification: each label id names the class its target text spells
    learned   after training the loss fell on the tokens the independent reference calls targets

What the trainer's code does with the data (they pass for any data; a failure is a bug here):

    collator  from :func:`dataprep.train.proofs.mask_proof`: the loss reads exactly the tokens
              the rows mark as targets
    attention from :func:`dataprep.train.proofs.packing_proof`: packed examples never see each other

``passed`` is every check that ran passing (a skipped one is ``None``). Speed is reported
beside them (:mod:`dataprep.train.speed`), never as one: it measures the machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataprep.train import proofs, speed
from dataprep.train.data_proofs import learned_check
from dataprep.train.evaluate import TaskPlan
from dataprep.train.setup import Setup

MARK = {True: "PASS", False: "FAIL", None: "skip"}
# What each check is a proof of: the data, or the trainer's code.
KINDS = {"learning": "data", "task": "data", "targets": "data", "heldout": "data", "labels": "data", "learned": "data",
         "collator": "code", "attention": "code", "preference": "data", "masks": "data"}  # the last two: DPO (dpo_checks)
__all__ = ["KINDS", "MARK", "learned_check", "learning_check", "learning_line", "passed", "task_check", "task_skipped",
           "verdict"]


def learning_check(losses: list[float], *, val_before: float, val_after: float, required_drop: float) -> dict[str, Any]:
    """The mean loss of the last 10% of steps vs the first 10%'s, and the validation loss before and after."""
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    drop = 1 - last / first if first > 0 else 0.0
    return {"first_loss": first, "last_loss": last, "drop": drop, "required_drop": required_drop,
            "val_loss_before": val_before, "val_loss_after": val_after,
            "pass": bool(drop >= required_drop and val_after < val_before)}


def task_check(setup: Setup, plan: TaskPlan, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Accuracy before and after against the rule: ``task_threshold``, or the majority class for classification data."""
    if setup.info.labels is not None:  # classification: beat always answering the commonest class
        examples = proofs.examples(setup.val_rows, limit=10**9)
        counts = np.bincount([int(e.get("label_id", 0)) for e in examples])
        threshold, rule = float(counts.max() / counts.sum()), "beats the majority class"
        passed = after["accuracy"] > threshold
    else:
        threshold, rule = setup.cfg.task_threshold, f">= {setup.cfg.task_threshold:.0%}"
        passed = after["accuracy"] >= threshold
    return {"before": before["accuracy"] if before else None, "after": after["accuracy"],
            "threshold": threshold, "rule": rule, "examples": after["examples"],
            "mode": "head" if setup.head else "greedy exact match + stop token", "split": plan.split_by,
            "stopped_on_time": after.get("stopped_on_time"), "never_stopped": after.get("never_stopped"),
            "samples": after.get("samples", []), "pass": bool(passed)}


def task_skipped(task: str, task_proof: str) -> dict[str, Any]:
    """The task check of a run that does not decode answers, and why."""
    why = ("pretraining data" if task == "pretrain" else
           "few-shot prompts (exact match: --eval-fewshot)" if task == "fewshot" else
           "turned off (task_proof=off)" if task_proof == "off" else
           "answers too long for exact match (use --set task_proof=on to force)")
    return {"skipped": why, "pass": None}


def passed(checks: dict[str, dict[str, Any]]) -> bool:
    """Every check that ran passed."""
    return all(c["pass"] for c in checks.values() if c["pass"] is not None)


def verdict(report: dict[str, Any]) -> str:
    """A few lines: each check's number and PASS / FAIL / skip, the speed (informational), then the verdict."""
    if "objective" in report:  # mlm / span_corruption runs check learning only
        return objective_verdict(report)
    c = report["checks"]
    task = c["task"]
    if task["pass"] is None:
        task_line = f"task      {MARK[None]}  {task['skipped']}"
    else:
        before = "n/a" if task["before"] is None else f"{task['before']:.1%}"
        task_line = (f"task      {MARK[task['pass']]}  accuracy {before} -> {task['after']:.1%} on {task['examples']} held-out "
                     f"({task['mode']}; needs {task['rule']})")
    lines = ["the data:", learning_line(c["learning"]), task_line, *_data_lines(c),
             "the trainer's code (passes for any data):", *_code_lines(c),
             speed.line(report["throughput"]), f"verdict: {'PASS' if report['passed'] else 'FAIL'}"]
    return "\n".join(lines)


def _skip(name: str, check: dict[str, Any]) -> str:
    return f"{name:<9} {MARK[None]}  {check['skipped']}"


def _data_lines(c: dict[str, dict[str, Any]]) -> list[str]:
    """targets, heldout, labels and learned, one line each."""
    lines = []
    t = c.get("targets", {"skipped": "not run", "pass": None})
    if t["pass"] is None:
        lines.append(_skip("targets", t))
    else:
        why = ""
        if t["first_mismatch"]:
            m = t["first_mismatch"]
            why = (f"; first difference {m['record']}: data trains {m['data_trains_not_reference']!r}, reference "
                   f"{m['reference_trains_not_data']!r}")
        elif not t["pass"]:
            why = f"; first not found: {t['first_not_found']}"
        lines.append(f"targets   {MARK[t['pass']]}  {t['rendered']} source records re-rendered independently: {t['found']} found, "
                     f"{t['masks_equal']} masks equal ({t['needs']}){why}")
    h = c.get("heldout", {"skipped": "not run", "pass": None})
    lines.append(_skip("heldout", h) if h["pass"] is None else
                 f"heldout   {MARK[h['pass']]}  {h['in_both_splits']} validation examples also in train "
                 f"({', '.join(f'{n:,} {s}' for s, n in h['examples'].items())})")
    lb = c.get("labels", {"skipped": "not run", "pass": None})
    lines.append(_skip("labels", lb) if lb["pass"] is None else
                 f"labels    {MARK[lb['pass']]}  {lb['wrong']} of {lb['examples']} label ids name another class than their target text")
    le = c.get("learned", {"skipped": "not run", "pass": None})
    lines.append(_skip("learned", le) if le["pass"] is None else
                 f"learned   {MARK[le['pass']]}  loss on the reference's targets {le['target_loss'][0]:.3f} -> {le['target_loss'][1]:.3f} "
                 f"(-{le['target_drop']:.0%}, needs -{le['required_drop']:.0%} and more than the prompt's "
                 f"{le['prompt_loss'][0]:.3f} -> {le['prompt_loss'][1]:.3f}, {-le['prompt_drop']:+.0%})")
    return lines


def _code_lines(c: dict[str, dict[str, Any]]) -> list[str]:
    mask, pack = c["collator"], c["attention"]
    return [
        f"collator  {MARK[mask['pass']]}  {mask['labels_randomized']} non-target labels randomized: loss diff {mask['loss_diff']:.1e}, "
        f"grad diff {mask['max_grad_diff']:.1e}; {mask['targets']} targets (data: {mask['targets_in_data']})",
        f"attention {MARK[pack['pass']]}  packed {pack['packed_loss']:.6f} vs one at a time {pack['one_at_a_time_loss']:.6f} "
        f"(|diff| {pack['abs_diff']:.1e} <= {pack['tolerance']:.0e}, {pack['examples']} examples in {pack['rows']} rows)",
    ]


def objective_verdict(report: dict[str, Any]) -> str:
    """The learning check and the verdict of an MLM or span-corruption run."""
    return "\n".join([learning_line(report["checks"]["learning"], report["objective"]),
                      f"verdict: {'PASS' if report['passed'] else 'FAIL'}"])


def learning_line(learn: dict[str, Any], objective: str | None = None) -> str:
    what = f"{objective} train loss" if objective else "train loss"
    return (f"learning  {MARK[learn['pass']]}  {what} {learn['first_loss']:.3f} -> {learn['last_loss']:.3f} "
            f"({-learn['drop']:+.0%}, needs -{learn['required_drop']:.0%}); validation {learn['val_loss_before']:.3f} -> "
            f"{learn['val_loss_after']:.3f}")
