"""Train MLM and span-corruption datasets: an encoder and a prefix LM, and prove the loss falls.

``dataprep train`` hands a dataset whose manifest has an ``objective`` section here::

    mlm               bidirectional attention inside each piece; loss on the chosen positions,
                      not shifted (masks from the shards, or drawn by MlmCollator every step)
    span_corruption   a prefix LM (the "prefix-LM variant" of T5): one sequence per row,
                      input_ids (bidirectional) then labels (causal, each also sees every input);
                      loss on the labels, shifted

    input     a b <X0> e f </s> | <X0>  c  d  </s>
    sees      ←——— all inputs ——→| inputs + earlier labels
    predicts                 <X0>|  c   d  </s>  -      (position t predicts token t + 1)

Dynamic masks are seeded by ``(mlm.seed, step)``: a run is reproducible and a fresh batch of
masks comes with every step, so every epoch sees new masks. The check is the learning one of
the next-token trainer: the last 10% of steps average at most ``(1 - loss_drop)`` times the
first 10%, and the validation loss falls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataprep import columns as C
from dataprep.dataset.manifest_tasks import Mlm, Span
from dataprep.errors import ConfigError
from dataprep.tasks.mlm import Masker, word_starts
from dataprep.train import save, speed
from dataprep.train.checks import learning_check, objective_verdict
from dataprep.train.config import TrainConfig
from dataprep.train.device import to_device
from dataprep.train.evaluate import validation_loss
from dataprep.train.loader import ArrowRows, Batches, Collator, DatasetInfo
from dataprep.train.model import Transformer
from dataprep.train.schedule import PEAK_LR, lr_at
from dataprep.train.setup import model_config, preset_name
from dataprep.train.step import Clock, History, optimizer_step

ROW_COLUMNS = (C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD, C.LABELS)


class MlmCollator:
    """Pretraining rows -> an MLM batch: the :class:`~dataprep.train.loader.Collator`'s positions and
    segments, ``labels`` from the shards (static) or from fresh masks (dynamic, seeded by step).

    Args:
        pad_id: the pad id.
        masker: draws dynamic masks; None when the rows carry ``labels``.
        seed: with the step, seeds the dynamic masks.
    """

    def __init__(self, *, pad_id: int, masker: Masker | None, seed: int = 0, pad_to: int | None = None):
        self.base = Collator(pad_id=pad_id, pad_to=pad_to)
        self.masker, self.seed = masker, seed

    def __call__(self, rows: Sequence[Mapping[str, Any]], *, step: int | None = None) -> dict[str, Any]:
        batch = self.base(rows)
        B, T = batch["input_ids"].shape
        if C.LABELS in rows[0]:
            labels = np.full((B, T), C.IGNORE_INDEX, dtype=np.int64)
            for b, r in enumerate(rows):
                labels[b, : len(r[C.LABELS])] = r[C.LABELS]
        else:
            if self.masker is None:
                raise ConfigError("rows without labels need dynamic masking: build MlmCollator with a Masker")
            keep = np.zeros((B, T), dtype=bool)
            for b, r in enumerate(rows):
                keep[b, : len(r[C.INPUT_IDS]) - int(r.get(C.NUM_PAD, 0))] = True
            starts = batch["cu_seqlens"][:-1].numpy().astype(np.int64)
            rng = np.random.default_rng([self.seed, step or 0])
            inputs, flat = self.masker.mask(batch["input_ids"].numpy().reshape(-1), rng, maskable=keep.reshape(-1), boundaries=starts)
            batch["input_ids"] = torch.from_numpy(inputs.astype(np.int64).reshape(B, T))
            labels = flat.astype(np.int64).reshape(B, T)
        batch["labels"] = torch.from_numpy(labels)
        batch["num_targets"] = int((labels != C.IGNORE_INDEX).sum())
        return batch


class SpanCollator:
    """Span-corruption rows -> prefix-LM batches: ``[input_ids | labels]`` per row, ``prefix_len``
    = the input length, loss on the labels (see the module docstring)."""

    def __call__(self, rows: Sequence[Mapping[str, Any]], *, step: int | None = None) -> dict[str, Any]:
        inputs = np.stack([np.asarray(r[C.INPUT_IDS], dtype=np.int64) for r in rows])
        labels = np.stack([np.asarray(r[C.LABELS], dtype=np.int64) for r in rows])
        B, P = inputs.shape
        T = P + labels.shape[1]
        return {
            "input_ids": torch.from_numpy(np.concatenate([inputs, labels], axis=1)),
            "labels": torch.from_numpy(np.concatenate([np.full((B, P), C.IGNORE_INDEX, dtype=np.int64), labels], axis=1)),
            "position_ids": torch.arange(T).repeat(B, 1),
            "document_ids": torch.zeros(B, T, dtype=torch.long),
            "prefix_len": torch.full((B,), P, dtype=torch.long),
            "cu_seqlens": torch.arange(B + 1, dtype=torch.int32) * T,
            "max_seqlen": T,
            "num_tokens": B * T,
            "num_targets": int(labels.size),
        }


def masker_from_manifest(info: DatasetInfo) -> Masker:
    """The dynamic masker a dataset's ``objective`` section describes."""
    obj = info.manifest.objective
    assert isinstance(obj, Mlm)
    special = np.zeros(info.vocab_size, dtype=bool)
    special[list(obj.never_masked_ids)] = True
    starts = word_starts(info.dataset.tokenizer())[0] if obj.whole_word else None
    return Masker(mask_id=obj.mask_token_id, special=special, rate=obj.rate, mask_ratio=obj.mask_ratio,
                  random_ratio=obj.random_ratio, starts=starts)


def objective_collator(info: DatasetInfo) -> tuple[Any, str, int]:
    """The collator, the attention mask and the sequence length of an objective dataset."""
    obj = info.manifest.objective
    if isinstance(obj, Mlm):
        masker = masker_from_manifest(info) if obj.masking == "dynamic" else None
        return MlmCollator(pad_id=info.pad_id, masker=masker, seed=obj.seed), "bidirectional", info.seq_len
    assert isinstance(obj, Span)
    return SpanCollator(), "prefix", info.seq_len + obj.labels_length


def train_objective(info: DatasetInfo, out: Path, cfg: TrainConfig, *, device: torch.device,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train an encoder (MLM) or a prefix LM (span corruption) on ``info``'s dataset; see the module docstring.

    Raises:
        ConfigError: settings this trainer does not support (a classification head).
    """
    assert info.manifest.objective is not None
    name = info.manifest.objective.name
    if cfg.classification == "head":
        raise ConfigError(f"classification 'head' does not apply to {name} data", fix="--set classification=auto")
    train_rows = ArrowRows(info.dataset, "train", columns=ROW_COLUMNS)
    val_rows = ArrowRows(info.dataset, "validation", columns=ROW_COLUMNS)
    collator, mask, length = objective_collator(info)

    # --- model and optimizer: the seed is set just before the weights are drawn
    torch.manual_seed(cfg.seed)
    model_name = preset_name(cfg, device, train_tokens=info.manifest.splits.train.tokens, vocab_size=info.vocab_size)
    model_cfg = model_config(cfg, model_name, vocab_size=info.vocab_size, max_seq_len=length + 8)
    model = Transformer(model_cfg, attention="sdpa", mask=mask).to(device)
    loss_fn = model.masked_loss if name == "mlm" else model.lm_loss
    peak_lr = cfg.lr if cfg.lr is not None else PEAK_LR[model_name]
    batch_size = cfg.batch_size or max(1, 4096 // length)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.01)
    params = sum(p.numel() for p in model.parameters())
    what = "encoder (bidirectional), masked-token loss" if name == "mlm" else "prefix LM (inputs bidirectional, labels causal)"
    echo(f"train {info.path} ({name}, {len(train_rows):,} train / {len(val_rows):,} validation rows) on {device}: "
         f"{model_name} model {params / 1e6:.2f}M params, {what}")

    # --- train: validation loss before and after (the collator's masks are seeded: the same ones each time)
    val_loss = partial(validation_loss, model, loss_fn, val_rows, collator, batch_size=batch_size,
                       eval_rows=cfg.eval_rows, device=device)
    history = History()
    history.add_validation(0, val_loss())
    model.train()
    clock, every = Clock(device), cfg.validation_every
    progress = speed.Progress(start=0, total=cfg.steps, every=cfg.progress_every)
    echo(f"training {cfg.steps:,} steps (a line every {cfg.progress_every:g} s)")
    batches = Batches(train_rows, collator, batch_size=batch_size, seed=cfg.seed, num_steps=cfg.steps)
    for step, batch in enumerate(batches, start=1):
        lr = lr_at(step - 1, cfg, peak_lr)
        loss = optimizer_step(model, opt, loss_fn, to_device(batch, device), lr=lr, grad_clip=cfg.grad_clip)
        history.add_step(step, loss, lr, batch["num_tokens"])
        elapsed = progress.due(step)
        evaluate_now = every and step % every == 0 and step != cfg.steps
        if elapsed is None and not evaluate_now:
            continue
        history.seconds += clock.lap()
        if elapsed is not None:
            echo(progress.line(step, loss=loss, lr=lr, tokens_per_s=history.tokens_per_s, elapsed=elapsed))
        if evaluate_now:
            history.add_validation(step, val_loss())
        clock.restart()
    history.add_validation(cfg.steps, val_loss())

    # --- the learning check and the run folder
    learning = learning_check(history.loss, val_before=history.val_loss[0], val_after=history.val_loss[-1],
                              required_drop=cfg.loss_drop)
    save.atomic_save({"model": model.state_dict(), "config": asdict(cfg), "model_config": asdict(model_cfg), "mask": mask},
                     out / save.CHECKPOINT)
    report = {
        "dataset": str(info.path), "task": info.task, "objective": name, "attention_mask": mask, "device": str(device),
        "peak_lr": peak_lr, "batch_size": batch_size, "model": {"preset": model_name, "params": params, **asdict(model_cfg)},
        "config": asdict(cfg), "steps": cfg.steps, "train_seconds": history.seconds, "train_tokens": history.tokens,
        "checks": {"learning": learning}, "passed": learning["pass"],
    }
    save.write_report(out, report)
    save.plot(history, out / save.CURVE, title=f"{info.name}: {name}, {model_name} model, {cfg.steps} steps")
    echo(objective_verdict(report))
    return report
