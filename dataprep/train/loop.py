"""The bundled trainer: train a small transformer on a dataprep dataset and prove the data trains.

One flat run, top to bottom (nanoGPT style)::

    read the manifest -> memory-map the splits -> pick device, dtype, attention backend
    -> proofs at initialization (mask, packing) -> task accuracy before
    -> train (AdamW, warmup + cosine; seeded: the same config gives the same losses)
    -> validation loss, task accuracy after, loader vs training tokens/s
    -> RUN/verify.json, RUN/loss.png, RUN/checkpoint.pt, and a printed verdict

Measured on the default config, demo-sft (5,376 train / 624 held-out prompts), CPU, 2 cores,
torch 2.13: exact match 0.0% before -> 97.6% after (624 held-out prompts), in about 150 s of
training at about 12k tokens/s; the loader alone delivers about 1.3M tokens/s. The same
config on a copy whose masks train the prompt instead of the answer scores 0%, and on one
whose stop token is not trained, 0% (the model runs on past the answer).

Classification datasets (rows with ``label_id`` / ``label_ids``) train as their recipe says
(``classification.train``, in the manifest): the generative label target by default, or with
``head`` a linear head on each example's last prompt token, and the task check becomes head
accuracy vs the majority class. ``classification=`` (``--classification``) overrides it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep.train import fewshot_eval, proofs as verify
from dataprep.errors import ConfigError, OutputError
from dataprep.train.loader import ArrowRows, Batches, Collator, read_info
from dataprep.train.model import Transformer, pick_attention, preset
from dataprep.train.outputs import CHECKPOINT, CURVE, VERIFY, plot
from dataprep.train.schedule import PEAK_LR, lr_at

CHOICES = {
    "model": ("auto", "cpu", "gpu"),
    "attention": ("auto", "varlen", "flex", "sdpa"),
    "device": ("auto", "cpu", "cuda"),
    "classification": ("auto", "generative", "head"),
    "task_proof": ("auto", "on", "off"),
}

@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint and in verify.json."""

    model: str = "auto"            # cpu | gpu | auto (gpu when CUDA is present)
    d_model: int | None = None     # override the preset's width / depth / heads
    n_layers: int | None = None
    n_heads: int | None = None
    attention: str = "auto"        # auto | varlen | flex | sdpa (see dataprep/train/model.py)
    device: str = "auto"           # auto | cpu | cuda
    steps: int = 2000              # optimizer steps
    batch_size: int | None = None  # rows per step (None: 4096 // seq_len, e.g. 64 rows of demo-sft)
    lr: float | None = None        # peak learning rate (None: the preset's, PEAK_LR)
    min_lr: float = 1e-4           # end of the cosine
    warmup: int = 100              # linear warmup steps
    weight_decay: float = 0.5      # strong decay: demo-sft's additions generalize instead of being memorized
    grad_clip: float = 1.0
    seed: int = 0
    workers: int | None = None     # DataLoader worker processes (None: 0 on CPU, where cores train; 4 on CUDA)
    classification: str = "auto"   # auto (the recipe's classification.train) | generative | head
    eval_fewshot: str | None = None  # a task: fewshot dataset: exact match zero-shot / k-shot, before and after training
    eval_every: int = 250          # validation loss every N steps (0: only at the end)
    eval_rows: int = 512           # validation rows per evaluation
    checkpoint_every: int = 500    # also save a checkpoint every N steps (0: only at the end)
    # verification
    loss_drop: float = 0.25        # learning: the last 10% of steps average <= (1 - loss_drop) x the first 10%
    task_proof: str = "auto"       # auto (short answers: demo-sft, classification) | on | off
    task_examples: int = 624       # held-out prompts decoded (demo-sft has 624)
    task_threshold: float = 0.9    # exact-match accuracy after training (classification: beat the majority)
    proof_examples: int = 16       # examples in the mask and packing proofs
    loader_ratio: float = 10.0     # loader tokens/s must be >= this x training tokens/s

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"training setting {name!r} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        for name in ("steps", "batch_size", "warmup", "eval_rows", "task_examples", "proof_examples", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "warmup" else 1):
                raise ConfigError(f"training setting {name!r} must be positive, got {value}")


def config_from(overrides: dict[str, str] | None = None, **options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from ``KEY=VALUE`` strings (values parsed as YAML) and keyword options.

    Raises:
        ConfigError: an unknown key, or a value of the wrong type.
    """
    import difflib

    import yaml

    known = {f.name: f for f in fields(TrainConfig)}
    values: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    for key, text in (overrides or {}).items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"unknown training setting {key!r}{hint}")
        # text settings stay text: YAML would read "off" as False
        values[key] = text if known[key].type.startswith("str") else yaml.safe_load(text)
    for key, value in values.items():
        values[key] = _coerce(key, value, known[key].type)
    return TrainConfig(**values)


def _coerce(key: str, value: Any, annotation: str) -> Any:
    kind = float if annotation.startswith("float") else int if annotation.startswith("int") else str
    if value is None and annotation.endswith("| None"):
        return None
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if kind is float and not isinstance(value, bool):
        try:  # YAML reads 1e-3 as a string, and an int is a fine float
            return float(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"training setting {key!r} must be {kind.__name__}, got {value!r}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def train(dataset: str | Path, out: str | Path, cfg: TrainConfig | None = None, *, resume: bool = False,
          overwrite: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on ``dataset`` and write ``verify.json``, ``loss.png`` and ``checkpoint.pt`` to ``out``.

    Args:
        dataset: a dataprep output folder.
        out: the run folder (created).
        cfg: the run's settings (default: :class:`TrainConfig`).
        resume: continue from ``out/checkpoint.pt`` (same data order, same result).
        overwrite: replace a finished run in ``out``.
        echo: where progress lines go.

    Returns:
        The verification report (what ``verify.json`` holds).

    Raises:
        InputError: ``dataset`` is not a dataprep dataset.
        OutputError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        ConfigError: settings that cannot work with this dataset or machine.
    """
    cfg = cfg or TrainConfig()
    out = Path(out)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not (resume or overwrite):
        raise OutputError(f"{out} already holds a run; pass --resume to continue it or --overwrite to start again")
    if resume and not ckpt_path.exists():
        raise OutputError(f"nothing to resume: {ckpt_path} does not exist")
    out.mkdir(parents=True, exist_ok=True)

    # --- data ------------------------------------------------------------------------------
    info = read_info(dataset)
    if info.manifest.get("objective"):  # mlm / span_corruption: an encoder or a prefix LM (train_objectives.py)
        from dataprep.train.objectives import train_objective

        if resume or cfg.eval_fewshot:
            raise ConfigError(f"{info.path} is {info.manifest['objective']['name']} data: --resume and --eval-fewshot apply to next-token training only")
        return train_objective(info, out, cfg, device=_device(cfg.device), echo=echo)
    fewshot = fewshot_eval.prepare(cfg.eval_fewshot, info, limit=cfg.task_examples) if cfg.eval_fewshot else None
    train_rows, val_rows = ArrowRows(info.dataset, "train"), ArrowRows(info.dataset, "validation")
    device = _device(cfg.device)
    # CUDA: every batch padded to seq_len, so compiled kernels see one shape instead of dozens
    collator = Collator(pad_id=info.pad_id, pad_to=info.seq_len if device.type == "cuda" else None)
    workers = cfg.workers if cfg.workers is not None else (4 if device.type == "cuda" else 0)
    batch_size = cfg.batch_size or max(1, 4096 // info.seq_len)
    classification = cfg.classification
    if classification == "auto":  # as the recipe says (manifest sft.classification_train), else generative
        classification = (info.manifest.get("sft") or {}).get("classification_train") or "generative"
    if classification == "head" and info.labels is None:
        raise ConfigError(f"classification 'head' needs a classification dataset; {info.path} has no label_id")
    head = classification == "head"

    # --- device, model, optimizer -------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    # bf16 autocast on CUDA: fp32 master weights, bf16 matmuls; CPU stays fp32 (bf16 is slower there)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model_name = cfg.model if cfg.model != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    longest = max(info.seq_len, fewshot.longest if fewshot else 0)  # k-shot prompts may be longer than the rows
    model_cfg = preset(model_name, vocab_size=info.vocab_size, max_seq_len=longest + 64,
                       num_labels=len(info.labels) if head else 0)
    shape = {k: v for k, v in (("d_model", cfg.d_model), ("n_layers", cfg.n_layers), ("n_heads", cfg.n_heads)) if v}
    model_cfg = replace(model_cfg, **shape)
    attention = pick_attention(device, dtype=dtype, prefer=cfg.attention)
    model = Transformer(model_cfg, attention=attention).to(device)
    peak_lr = cfg.lr if cfg.lr is not None else PEAK_LR[model_name]
    decay = [p for p in model.parameters() if p.dim() >= 2]  # no weight decay on norms and biases
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=peak_lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    params = sum(p.numel() for p in model.parameters())
    echo(f"train {info.path} ({info.task}, {len(train_rows):,} train / {len(val_rows):,} validation rows) on {device}: "
         f"{model_name} model {params / 1e6:.2f}M params, attention {attention}, {'head' if head else 'lm'} loss")

    def loss_of(batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if head:
                total, count, _ = model.class_loss(batch)
                return total, count
            return model.lm_loss(batch)

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        total, count = 0.0, 0
        for batch in Batches(val_rows, collator, batch_size=batch_size, shuffle=False,
                             num_steps=max(1, -(-min(cfg.eval_rows, len(val_rows)) // batch_size))):
            t, c = loss_of(verify.to_device(batch, device))
            total, count = total + float(t), count + c
        model.train()
        return total / max(count, 1)

    if cfg.task_proof == "on" and (info.task != "sft" or not info.stop_ids):
        raise ConfigError("the task proof needs a fine-tuning dataset with a stop token; use --task-proof off")
    task_on = cfg.task_proof == "on" or (cfg.task_proof == "auto" and info.task == "sft" and bool(info.stop_ids))
    pairs, split_by, decoder = [], None, verify.load_decoder(info)
    if task_on and not head:
        pairs, split_by = verify.task_examples(info, val_rows, limit=cfg.task_examples)
        # "auto": exact match means something only for short answers (demo-sft, class labels)
        if cfg.task_proof == "auto" and (not pairs or np.median([len(a) for _, a in pairs]) > 16):
            task_on = False

    def task_accuracy() -> dict[str, Any]:
        if head:
            model.eval()
            right = count = 0
            with torch.no_grad():
                for batch in Batches(val_rows, collator, batch_size=batch_size, shuffle=False):
                    _, n, pred = model.class_loss(verify.to_device(batch, device))
                    right += int((pred.cpu() == batch["class_labels"]).sum())
                    count += n
            model.train()
            return {"accuracy": right / max(count, 1), "examples": count}
        return verify.task_proof(model, pairs, stop_ids=info.stop_ids, pad_id=info.pad_id, device=device, decoder=decoder)

    # --- resume or start ------------------------------------------------------------------------
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        changed = {k: v for k, v in state["config"].items() if asdict(cfg).get(k) != v}
        if changed:  # another schedule, model or seed would not continue the same run
            saved = ", ".join(f"{k}={v}" for k, v in changed.items())
            raise ConfigError(f"{ckpt_path} was trained with other settings; resume with the same ones: {saved}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history, before = state["step"], state["history"], state["before"]
        echo(f"resumed at step {step}")
    else:
        step, history = 0, {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": [], "tokens": 0, "seconds": 0.0}
        singles = list(verify.examples(val_rows, limit=cfg.proof_examples))
        before = {
            "mask": verify.mask_proof(model, singles, collator, device, seed=cfg.seed),
            "packing": verify.packing_proof(model, singles, collator, device, seq_len=info.seq_len),
            "val_loss": evaluate(),
            "task": task_accuracy() if task_on else None,
            "fewshot": fewshot_eval.evaluate(model, fewshot, pad_id=info.pad_id, device=device, decoder=decoder) if fewshot else None,
        }
        history["val_step"].append(0)
        history["val_loss"].append(before["val_loss"])

    def save(path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history,
                    "before": before, "config": asdict(cfg), "model_config": asdict(model_cfg)}, tmp)
        os.replace(tmp, path)

    def stream(seed: int, start: int, count: int | None) -> Any:
        """The training batches from step ``start``; worker processes build them ahead when asked."""
        batches = Batches(train_rows, collator, batch_size=batch_size, seed=seed, start_step=start, num_steps=count)
        if not workers:
            return batches
        return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")

    # --- train ------------------------------------------------------------------------------------
    model.train()
    batches = stream(cfg.seed, step, max(0, cfg.steps - step))
    report_every = max(1, cfg.steps // 20)
    tick = time.perf_counter()
    for batch in batches:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, peak_lr)
        total, count = loss_of(verify.to_device(batch, device))
        loss = total / max(count, 1)  # token-weighted mean over the batch's targets
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(opt.param_groups[0]["lr"])
        history["tokens"] += batch["num_tokens"]
        if step % report_every == 0 or step == cfg.steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            history["seconds"] += time.perf_counter() - tick
            echo(f"step {step:>5}/{cfg.steps}  loss {history['loss'][-1]:.4f}  lr {history['lr'][-1]:.2e}  "
                 f"{history['tokens'] / max(history['seconds'], 1e-9):,.0f} tok/s")
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
                history["val_step"].append(step)
                history["val_loss"].append(evaluate())
                echo(f"           validation loss {history['val_loss'][-1]:.4f}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save(ckpt_path)
            tick = time.perf_counter()

    # --- verify ---------------------------------------------------------------------------------
    val_loss = evaluate()
    history["val_step"].append(step)
    history["val_loss"].append(val_loss)
    save(ckpt_path)
    losses = history["loss"]
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    drop = 1 - last / first if first > 0 else 0.0
    train_tps = history["tokens"] / max(history["seconds"], 1e-9)
    loader_tps = verify.loader_tokens_per_s(stream(cfg.seed + 1, 0, None))  # the same loader, alone
    checks: dict[str, Any] = {
        "learning": {"first_loss": first, "last_loss": last, "drop": drop, "required_drop": cfg.loss_drop,
                     "val_loss_before": before["val_loss"], "val_loss_after": val_loss,
                     "pass": bool(drop >= cfg.loss_drop and val_loss < before["val_loss"])},
        "mask": before["mask"],
        "packing": before["packing"],
        "throughput": {"train_tokens_per_s": train_tps, "loader_tokens_per_s": loader_tps,
                       "ratio": loader_tps / max(train_tps, 1e-9), "required_ratio": cfg.loader_ratio,
                       "pass": bool(loader_tps >= cfg.loader_ratio * train_tps)},
    }
    if task_on or head:
        after = task_accuracy()
        if info.labels is not None:  # classification: beat always answering the commonest class
            counts = np.bincount([int(e.get("label_id", 0)) for e in verify.examples(val_rows, limit=10**9)])
            threshold = float(counts.max() / counts.sum())
            rule = "beats the majority class"
        else:
            threshold, rule = cfg.task_threshold, f">= {cfg.task_threshold:.0%}"
        checks["task"] = {"before": before["task"]["accuracy"] if before["task"] else None, "after": after["accuracy"],
                          "threshold": threshold, "rule": rule, "examples": after["examples"],
                          "mode": "head" if head else "greedy exact match + stop token", "split": split_by,
                          "stopped_on_time": after.get("stopped_on_time"), "never_stopped": after.get("never_stopped"),
                          "samples": after.get("samples", []),
                          "pass": bool(after["accuracy"] >= threshold if info.labels is None else after["accuracy"] > threshold)}
    else:
        checks["task"] = {"skipped": "pretraining data" if info.task == "pretrain" else
                          "few-shot prompts (exact match: --eval-fewshot)" if info.task == "fewshot" else
                          "answers too long for exact match (use --task-proof on to force)", "pass": None}
    fewshot_result = None
    if fewshot is not None:
        fewshot_result = fewshot_eval.summary(fewshot, before["fewshot"], fewshot_eval.evaluate(model, fewshot, pad_id=info.pad_id, device=device, decoder=decoder))
        echo(fewshot_eval.table(fewshot_result))
    report = {
        "dataset": str(info.path), "task": info.task, "fewshot": fewshot_result, "device": str(device), "attention": attention, "peak_lr": peak_lr,
        "batch_size": batch_size, "loader_workers": workers,
        "model": {"preset": model_name, "params": params, **asdict(model_cfg)}, "config": asdict(cfg),
        "steps": step, "train_seconds": history["seconds"], "train_tokens": history["tokens"],
        "checks": checks,
        "passed": all(c["pass"] for c in checks.values() if c["pass"] is not None),
    }
    (out / VERIFY).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(history, out / CURVE, title=f"{info.name}: {model_name} model, {step} steps")
    echo(verdict(report))
    return report


def verdict(report: dict[str, Any]) -> str:
    """A few lines: each check's number and PASS / FAIL / skip, then the overall verdict."""
    if "objective" in report:  # mlm / span_corruption runs check learning only
        from dataprep.train.objectives import verdict as objective_verdict

        return objective_verdict(report)
    c = report["checks"]
    mark = {True: "PASS", False: "FAIL", None: "skip"}
    learn, mask, pack, speed, task = c["learning"], c["mask"], c["packing"], c["throughput"], c["task"]
    if task["pass"] is None:
        task_line = f"task      {mark[None]}  {task['skipped']}"
    else:
        before = "n/a" if task["before"] is None else f"{task['before']:.1%}"
        task_line = (f"task      {mark[task['pass']]}  accuracy {before} -> {task['after']:.1%} on {task['examples']} held-out "
                     f"({task['mode']}; needs {task['rule']})")
    lines = [
        f"learning  {mark[learn['pass']]}  train loss {learn['first_loss']:.3f} -> {learn['last_loss']:.3f} "
        f"(-{learn['drop']:.0%}, needs -{learn['required_drop']:.0%}); validation {learn['val_loss_before']:.3f} -> {learn['val_loss_after']:.3f}",
        task_line,
        f"mask      {mark[mask['pass']]}  {mask['labels_randomized']} non-target labels randomized: loss diff {mask['loss_diff']:.1e}, "
        f"grad diff {mask['max_grad_diff']:.1e}; {mask['targets']} targets (data: {mask['targets_in_data']})",
        f"packing   {mark[pack['pass']]}  packed {pack['packed_loss']:.6f} vs one at a time {pack['one_at_a_time_loss']:.6f} "
        f"(|diff| {pack['abs_diff']:.1e} <= {pack['tolerance']:.0e}, {pack['examples']} examples in {pack['rows']} rows)",
        f"speed     {mark[speed['pass']]}  training {speed['train_tokens_per_s']:,.0f} tok/s, loader {speed['loader_tokens_per_s']:,.0f} tok/s "
        f"({speed['ratio']:.0f}x, needs {speed['required_ratio']:.0f}x)",
        f"verdict: {'PASS' if report['passed'] else 'FAIL'}",
    ]
    return "\n".join(lines)
