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
    masks       the rows cut each pair where an independent path cuts it: the first 512 source
                records are rendered again (:mod:`dataprep.train.reference_preference`: a text
                template as one text + the stop token, a chat through a {% generation %}-tagged
                template, --set reference_chat_template=PATH), each of prompt + chosen and
                prompt + rejected is looked up among the rows by its ids, and where the row's
                prompt ends must be where the reference's response starts (>= 90% found, every
                found one equal; records longer than max_length are not compared). And on every
                row: no response empty or the same as the other, each ends with a stop token.
                Skipped (``pass`` None, "not proven", as fine-tuning's targets proof) when the
                reference cannot render the data; the row checks still fail it
    heldout     no validation prompt is also a training prompt (the build splits by prompt), so
                the held-out figures are about prompts the policy never trained on

The DPO loss cannot see a mask over the prompt (those tokens add the same log-ratio to chosen
and rejected and cancel in the margin), so only the ``masks`` check catches one: training
would pass and every reported reward would carry the prompt's share.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.train import reference_preference
from dataprep.train.checks import KINDS, MARK, learning_check, learning_line
from dataprep.train.data_proofs import FOUND_SHARE, REFERENCE_RECORDS
from dataprep.train.device import to_device
from dataprep.train.dpo_loss import dpo_loss
from dataprep.train.loader import ArrowRows, Batches

SCAN_LIMIT = 500_000  # pairs per split the masks check reads at most
CONFLICTING = -1      # the cut of a sequence that rows cut in two places (never the reference's)
PROVES = {
    "learning": "a model learns from these pairs: the DPO loss falls, on held-out pairs too",
    "preference": "the trained policy prefers the chosen response of held-out pairs, relative to its start",
    "masks": "each pair is cut between prompt and response where an independent rendering cuts it, each response "
             "ending with its stop token: the rows train the responses only",
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


def masks_check(splits: dict[str, ArrowRows], *, info: Any, decoder: Any = None, chat_template: str | None = None,
                limit: int = REFERENCE_RECORDS) -> dict[str, Any]:
    """The row checks on every pair of every split (up to :data:`SCAN_LIMIT` each), then the
    re-rendered source records against the rows (see the module docstring). ``pass`` None: the rows
    pass and the reference could not render (``skipped`` says why): the masks are not proven."""
    rendering, skipped = _reference(info, decoder, chat_template=chat_template, limit=limit)
    rows = _scan(splits, stop_ids=info.stop_ids, index=skipped is None)
    out = {k: rows[k] for k in ("pairs", "empty", "identical", "without_stop_last", "first_bad")}
    rows_ok = rows["pairs"] > 0 and not (rows["empty"] or rows["identical"] or rows["without_stop_last"])
    if skipped is not None:
        return {**out, "reference": {"skipped": skipped}, "skipped": f"not proven: {skipped}",
                "pass": None if rows_ok else False}
    reference = _compare(rendering, rows["cuts"], decoder=decoder)
    return {**out, "reference": reference, "pass": bool(rows_ok and reference["pass"])}


def _reference(info: Any, decoder: Any, *, chat_template: str | None, limit: int) -> tuple[Any, str | None]:
    """(the re-rendered pairs, None) or (None, why the reference cannot render them)."""
    if decoder is None:
        return None, "the dataset's tokenizer cannot be loaded"
    if not info.stop_ids:
        return None, "no stop token stated"
    rows = info.manifest.rows
    bos = info.manifest.tokenizer.bos_id if rows is not None and rows.starts_with_bos else None
    rendering = reference_preference.render(info.manifest, decoder, stop_id=info.stop_ids[0], bos_id=bos, limit=limit,
                                            chat_template=chat_template)
    return rendering, rendering.skipped


def _key(ids: np.ndarray) -> bytes:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


def _scan(splits: dict[str, ArrowRows], *, stop_ids: tuple[int, ...], index: bool) -> dict[str, Any]:
    """The row checks' counts, and (``index``) where each sequence's prompt ends, keyed by its
    prompt + response ids (:data:`CONFLICTING`: rows of the same sequence cut in two places)."""
    stops = np.array(sorted(stop_ids), dtype=np.int64)
    found = {"pairs": 0, "empty": 0, "identical": 0, "without_stop_last": 0, "first_bad": None, "cuts": {}}
    cuts: dict[bytes, int] = found["cuts"]

    def bad(counter: str, split: str, i: int, why: str) -> None:
        found[counter] += 1
        found["first_bad"] = found["first_bad"] or {"split": split, "row": i, "why": why}

    for split, rows in splits.items():
        for i in range(min(len(rows), SCAN_LIMIT)):
            row = rows[i]
            prompt = np.asarray(row[C.PROMPT_IDS], dtype=np.int64)
            chosen, rejected = np.asarray(row[C.CHOSEN_IDS]), np.asarray(row[C.REJECTED_IDS])
            found["pairs"] += 1
            if not len(chosen) or not len(rejected):
                bad("empty", split, i, "an empty response")
                continue
            if np.array_equal(chosen, rejected):
                bad("identical", split, i, "chosen and rejected are the same")
            if len(stops) and not (np.isin(chosen[-1], stops) and np.isin(rejected[-1], stops)):
                bad("without_stop_last", split, i, "a response without a stop token last")
            for response in (chosen, rejected) if index else ():
                key = _key(np.concatenate([prompt, response]))
                cuts[key] = len(prompt) if cuts.get(key, len(prompt)) == len(prompt) else CONFLICTING
    return found


def _compare(rendering: Any, cuts: dict[bytes, int], *, decoder: Any) -> dict[str, Any]:
    """Each rendered pair looked up among the rows (each sequence by its ids), and its cut compared."""
    too_long = found = equal = 0
    missing: list[str] = []
    mismatch: dict[str, Any] | None = None
    not_compared: Counter = Counter()
    for pair in rendering.expected:
        sides = (pair.chosen, pair.rejected)
        if max(len(s.ids) for s in sides) > rendering.max_length:  # the build drops or cuts it: not comparable
            too_long += 1
            continue
        hits = [cuts.get(_key(s.ids)) for s in sides]
        if None in hits:
            missing.append(pair.where)
            continue
        found += 1
        not_compared.update(pair.not_compared)
        wrong = []
        for side, cut in zip(sides, hits):
            data = (np.arange(len(side.ids)) >= cut) & ~side.free  # the row's response, as the reference compares it
            if not np.array_equal(data, side.mask):
                wrong.append((side, data))
        if not wrong:
            equal += 1
        elif mismatch is None:
            side, data = wrong[0]
            mismatch = {"record": pair.where, "data_response_not_reference": _text(decoder, side.ids[data & ~side.mask]),
                        "reference_response_not_data": _text(decoder, side.ids[side.mask & ~data])}
    comparable = len(rendering.expected) - too_long
    ok = comparable > 0 and equal == found and found >= FOUND_SHARE * comparable
    excused = ", not comparing " + " and ".join(f"{n} {reason} tokens" for reason, n in not_compared.items()) if not_compared else ""
    return {"rendered": len(rendering.expected), "too_long": too_long, "found": found, "cuts_equal": equal,
            "not_found": len(missing), "first_not_found": missing[0] if missing else None, "first_mismatch": mismatch,
            "unrendered": dict(rendering.unrendered), "not_compared": dict(not_compared),
            "needs": f"every found pair cut as the reference cuts it{excused}, >= {FOUND_SHARE:.0%} of {comparable} found",
            "pass": bool(ok)}


def _text(decoder: Any, ids: Any) -> str:
    return decoder.decode([int(i) for i in ids], skip_special_tokens=False)


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
        "masks": masks_check(splits, info=info, decoder=decoder, chat_template=cfg.reference_chat_template),
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
    lines = [
        "the data:",
        learning_line(c["learning"], "DPO"),
        f"preference {MARK[p['pass']]}  held-out reward accuracy {acc[0]:.1%} -> {acc[1]:.1%} on {p['pairs']} pairs (needs "
        f"{p['rule']}); margin {margin[0]:+.3f} -> {margin[1]:+.3f} (chosen reward {ch[0]:+.3f} -> {ch[1]:+.3f}, rejected "
        f"{rj[0]:+.3f} -> {rj[1]:+.3f}); the policy itself prefers chosen in {own[0]:.0%} -> {own[1]:.0%}",
        masks_line(m),
        f"heldout   {MARK[h['pass']]}  {h['in_both_splits']} of {h['validation_pairs']:,} validation pairs have one of the "
        f"{h['train_prompts']:,} training prompts",
        f"verdict: {'PASS' if report['passed'] else 'FAIL'}",
    ]
    return "\n".join(lines)


def masks_line(m: dict[str, Any]) -> str:
    """The masks check's line: the reference's comparison (or why it was skipped), then the row checks."""
    rows = (f"{m['pairs']:,} pairs: {m['empty']} empty, {m['identical']} identical, {m['without_stop_last']} without a "
            "stop token last")
    if m["first_bad"]:
        rows += f" (first: {m['first_bad']['split']} row {m['first_bad']['row']}, {m['first_bad']['why']})"
    r = m["reference"]
    if "skipped" in r:
        return (f"masks     {MARK[None]}  not proven: {r['skipped']}; {rows}" if m["pass"] is None else
                f"masks     {MARK[False]}  {rows}; not re-rendered: {r['skipped']}")
    why = ""
    if r["first_mismatch"]:
        d = r["first_mismatch"]
        why = (f"; first difference {d['record']}: the data's response holds {d['data_response_not_reference']!r}, the "
               f"reference's {d['reference_response_not_data']!r}")
    elif not r["pass"]:
        why = f"; first not found: {r['first_not_found']}"
    return (f"masks     {MARK[m['pass']]}  {r['rendered']} source records re-rendered independently: {r['found']} found, "
            f"{r['cuts_equal']} cut equal ({r['needs']}){why}; {rows}")


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
