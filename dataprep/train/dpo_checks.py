"""What a DPO run (:mod:`dataprep.train.dpo`) measures on held-out pairs, and the checks it reports.

On the validation pairs (the first ``eval_rows``, in file order), before and after training::

    reward          beta * (logp_policy - logp_reference), of chosen and of rejected
    reward_accuracy share of pairs whose chosen reward beats the rejected one (a tie is no win,
                    so 0 before training, when the policy is the reference)
    margin          mean of chosen reward - rejected reward
    prefers_chosen  share of pairs whose chosen response the policy itself finds likelier
                    (logp_policy(chosen) > logp_policy(rejected)); the start model's share says
                    whether the fine-tuned start already agreed with the labels
    loss            mean DPO loss (ln 2 before training)

The checks (each ``pass`` True / False, ``proves`` as :data:`dataprep.train.checks.KINDS` says)::

    learning    the DPO loss fell: the last 10% of steps average <= (1 - loss_drop) x the first
                10%, and the held-out loss fell
    preference  held-out reward accuracy after training >= task_threshold (0.9): the policy
                learned to prefer what the data calls chosen, on prompts it never saw. A dataset
                whose training pairs are swapped falls to about 0 (tests/test_train_dpo.py)
    masks       the responses start after the prompt, whose tokens chosen and rejected share:
                no pair's response is empty or the same as the other, each ends with a stop
                token, and no single token opens both responses of more than half of the pairs.
                A response mask that covers the end of the prompt (the template's "A: ", an
                assistant header) opens every pair with the same tokens; real responses differ
    heldout     no validation prompt is also a training prompt (the build splits by prompt), so
                the held-out figures are about prompts the policy never trained on

The DPO loss cannot see a mask over the prompt (those tokens add the same log-ratio to chosen
and rejected and cancel in the margin), so only the ``masks`` check catches one: training
would pass and every reported reward would carry the prompt's share.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.train.checks import KINDS, MARK, learning_check, learning_line
from dataprep.train.device import to_device
from dataprep.train.dpo_loss import dpo_loss
from dataprep.train.loader import ArrowRows, Batches

MAX_SHARED_OPENING = 0.5  # the most pairs one token may open both responses of
SCAN_LIMIT = 500_000      # pairs per split the masks check reads at most
PROVES = {
    "learning": "a model learns from these pairs: the DPO loss falls, on held-out pairs too",
    "preference": "the trained policy prefers the chosen response of held-out pairs, relative to its start",
    "masks": "the responses start after the prompt and end with a stop token: the rows train the responses only",
    "heldout": "no validation prompt is a training prompt",
}


@torch.no_grad()
def evaluate(setup: Any, *, scores: bool = True) -> dict[str, Any]:
    """The held-out figures of the module docstring (``scores=False``: the loss only, for the curve);
    ``setup``: a :class:`~dataprep.train.dpo.PairSetup`."""
    model, cfg = setup.model, setup.cfg
    was_training = model.training
    model.eval()
    found: dict[str, list[torch.Tensor]] = {"loss": [], "chosen": [], "rejected": [], "policy": []}
    steps = max(1, -(-min(cfg.eval_rows, len(setup.val_rows)) // setup.batch_size))
    for batch in Batches(setup.val_rows, setup.collator, batch_size=setup.batch_size, shuffle=False, num_steps=steps):
        batch = to_device(batch, setup.device)
        policy, reference = setup.logps(batch)
        loss, chosen, rejected = dpo_loss(policy, reference, beta=cfg.beta)
        pairs = batch["pairs"]
        found["loss"].append(loss.cpu())
        found["chosen"].append(chosen.cpu())
        found["rejected"].append(rejected.cpu())
        found["policy"].append((policy[:pairs] > policy[pairs:]).cpu())
    model.train(was_training)
    got = {k: torch.cat(v).double() for k, v in found.items()}
    out = {"loss": float(got["loss"].mean()), "pairs": len(got["loss"])}
    if scores:
        out.update({"reward_accuracy": float((got["chosen"] > got["rejected"]).double().mean()),
                    "margin": float((got["chosen"] - got["rejected"]).mean()),
                    "chosen_reward": float(got["chosen"].mean()), "rejected_reward": float(got["rejected"].mean()),
                    "prefers_chosen": float(got["policy"].mean())})
    return out


def preference_check(before: dict[str, Any], after: dict[str, Any], *, threshold: float) -> dict[str, Any]:
    """Held-out reward accuracy after training against ``threshold``, with the margins and rewards before and after."""
    keys = ("reward_accuracy", "margin", "chosen_reward", "rejected_reward", "prefers_chosen")
    return {**{k: [before[k], after[k]] for k in keys}, "pairs": after["pairs"], "threshold": threshold,
            "rule": f">= {threshold:.0%}", "pass": bool(after["reward_accuracy"] >= threshold)}


def masks_check(splits: dict[str, ArrowRows], *, stop_ids: tuple[int, ...], decoder: Any = None) -> dict[str, Any]:
    """Every pair of every split (up to :data:`SCAN_LIMIT` each): see the module docstring."""
    stops = np.array(sorted(stop_ids), dtype=np.int64)
    pairs = empty = identical = no_stop = shared = 0
    openings: Counter = Counter()
    first_bad: dict[str, Any] | None = None
    for split, rows in splits.items():
        for i in range(min(len(rows), SCAN_LIMIT)):
            row = rows[i]
            chosen, rejected = np.asarray(row[C.CHOSEN_IDS]), np.asarray(row[C.REJECTED_IDS])
            pairs += 1
            if not len(chosen) or not len(rejected):
                empty += 1
                first_bad = first_bad or {"split": split, "row": i, "why": "an empty response"}
                continue
            if np.array_equal(chosen, rejected):
                identical += 1
                first_bad = first_bad or {"split": split, "row": i, "why": "chosen and rejected are the same"}
            if len(stops) and not (np.isin(chosen[-1], stops) and np.isin(rejected[-1], stops)):
                no_stop += 1
                first_bad = first_bad or {"split": split, "row": i, "why": "a response without a stop token last"}
            if chosen[0] == rejected[0]:
                shared += 1
                openings[int(chosen[0])] += 1
    token, count = openings.most_common(1)[0] if openings else (None, 0)
    share = count / pairs if pairs else 0.0
    text = None if token is None else (decoder.decode([token], skip_special_tokens=False) if decoder is not None else str(token))
    ok = pairs > 0 and not (empty or identical or no_stop) and share <= MAX_SHARED_OPENING
    return {"pairs": pairs, "empty": empty, "identical": identical, "without_stop_last": no_stop,
            "opening_shared": shared / pairs if pairs else 0.0, "commonest_shared_opening": text,
            "commonest_shared_opening_share": share, "max_shared_opening": MAX_SHARED_OPENING,
            "first_bad": first_bad, "pass": bool(ok)}


def heldout_check(splits: dict[str, ArrowRows], *, decoder: Any = None) -> dict[str, Any]:
    """No prompt of the validation split is also a prompt of the training split."""
    seen = {np.asarray(splits["train"][i][C.PROMPT_IDS], dtype=np.int64).tobytes()
            for i in range(min(len(splits["train"]), SCAN_LIMIT))}
    val = splits["validation"]
    both = [i for i in range(min(len(val), SCAN_LIMIT)) if np.asarray(val[i][C.PROMPT_IDS], dtype=np.int64).tobytes() in seen]
    first = None
    if both:
        ids = [int(t) for t in val[both[0]][C.PROMPT_IDS]]
        first = decoder.decode(ids, skip_special_tokens=False) if decoder is not None else str(ids)
    return {"train_prompts": len(seen), "validation_pairs": min(len(val), SCAN_LIMIT), "in_both_splits": len(both),
            "first": first, "pass": not both}


def checks(setup: Any, history: Any, before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``learning``, ``preference`` and ``masks`` checks of a DPO run, each with what it ``proves``."""
    from dataprep.train.proofs import load_decoder

    cfg, info = setup.cfg, setup.info
    splits = {"train": setup.train_rows, "validation": setup.val_rows}
    decoder = load_decoder(info)
    found = {
        "learning": learning_check(history.loss, val_before=before["loss"], val_after=after["loss"], required_drop=cfg.loss_drop),
        "preference": preference_check(before, after, threshold=cfg.task_threshold),
        "masks": masks_check(splits, stop_ids=info.stop_ids, decoder=decoder),
        "heldout": heldout_check(splits, decoder=decoder),
    }
    for name, check in found.items():
        check["proves"] = KINDS[name]
    return found


def verdict(report: dict[str, Any]) -> str:
    """One line per check, then the verdict."""
    c = report["checks"]
    p, m, h = c["preference"], c["masks"], c["heldout"]
    acc, margin, ch, rj, own = (p[k] for k in ("reward_accuracy", "margin", "chosen_reward", "rejected_reward", "prefers_chosen"))
    opening = "" if m["commonest_shared_opening"] is None else f", the commonest ({m['commonest_shared_opening']!r}) in {m['commonest_shared_opening_share']:.0%}"
    lines = [
        "the data:",
        learning_line(c["learning"], "DPO"),
        f"preference {MARK[p['pass']]}  held-out reward accuracy {acc[0]:.1%} -> {acc[1]:.1%} on {p['pairs']} pairs (needs "
        f"{p['rule']}); margin {margin[0]:+.3f} -> {margin[1]:+.3f} (chosen reward {ch[0]:+.3f} -> {ch[1]:+.3f}, rejected "
        f"{rj[0]:+.3f} -> {rj[1]:+.3f}); the policy itself prefers chosen in {own[0]:.0%} -> {own[1]:.0%}",
        f"masks     {MARK[m['pass']]}  {m['pairs']:,} pairs: both responses open with the same token in {m['opening_shared']:.0%}"
        f"{opening} (needs <= {m['max_shared_opening']:.0%}: a mask over the prompt's end opens every pair alike); "
        f"{m['empty']} empty, {m['identical']} identical, {m['without_stop_last']} without a stop token last",
        f"heldout   {MARK[h['pass']]}  {h['in_both_splits']} of {h['validation_pairs']:,} validation pairs have one of the "
        f"{h['train_prompts']:,} training prompts",
        f"verdict: {'PASS' if report['passed'] else 'FAIL'}",
    ]
    return "\n".join(lines)


def look_next(dataset: str | Path, out: Path, checks: dict[str, Any]) -> str:
    """Where to look next, and what each check proves when it passes."""
    import shlex

    from dataprep.train.save import CURVE, VERIFY

    data = shlex.quote(str(dataset))
    where = {f"dataprep inspect {data}": "the pairs as text: the prompt once, chosen | rejected side by side",
             str(out / VERIFY): f"every figure below, before and after ({CURVE}: the DPO loss curve)"}
    width = max(map(len, where)) + 2
    lines = ["look next:", *(f"  {what:<{width}}{why}" for what, why in where.items()), "what each check proves when it passes:"]
    return "\n".join(lines + [f"  {name:<10} {PROVES[name]}" for name in PROVES if name in checks])
