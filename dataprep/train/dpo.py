"""Direct preference optimization: ``dataprep train PAIRS --init-from RUN`` on a ``task: preference`` dataset.

DPO (Rafailov et al. 2023, the sigmoid loss TRL's ``DPOTrainer`` defaults to) starts from a
fine-tuned model and moves it towards the chosen response of each pair and away from the
rejected one, *relative to where it started*: the reference model is a frozen copy of the same
start (no second file), so the policy cannot win by making every answer likelier::

    logp(x) = sum of log p(response token | everything before it)   (prompt tokens never count)
    reward  = beta * (logp_policy(x) - logp_reference(x))          (chosen and rejected each)
    loss    = -log sigmoid(reward(chosen) - reward(rejected))      (mean over the pairs)

A row is one pair in TRL's columns (``prompt_ids``, ``chosen_ids``, ``rejected_ids``); the
collator makes two sequences of it, ``prompt + chosen`` and ``prompt + rejected``, with the
response tokens as targets (:class:`PairCollator`), and one forward scores both: a batch of B
pairs is 2B sequences, the B chosen then the B rejected. Before training the policy *is* the
reference: every reward is 0, the loss is ln 2 and reward accuracy 0 (a tie is not a win).

What a run proves, and the numbers it reports before and after on held-out pairs
(:mod:`dataprep.train.dpo_checks`): reward accuracy, the mean margin, the chosen and rejected
rewards, and the ``learning``, ``preference`` and ``masks`` checks in ``verify.json``.

KTO data (``completion_ids`` + ``label``) is refused: its loss (an unpaired reference point) is
not implemented here; :class:`dataprep.api.trl_trainers.KTOTrainer` trains TRL's KTO on those rows as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dataprep import columns as C
from dataprep.errors import ConfigError
from dataprep.train import dpo_checks, save
from dataprep.train.config import TrainConfig, is_folder_model
from dataprep.train.device import autocast_dtype, pick_device
from dataprep.train.dpo_loss import PairCollator, dpo_loss, sequence_logps
from dataprep.train.loader import ArrowRows, Batches, DatasetInfo
from dataprep.train.reference_preference import KTO_FORMAT  # the one copy in the trainer
from dataprep.train.setup import adamw, make_model
from dataprep.train.step import History
from dataprep.train.steps import train_steps

PAIR_COLUMNS = (C.PROMPT_IDS, C.CHOSEN_IDS, C.REJECTED_IDS)
# Peak learning rate when --lr is unset: the start run's peak over this (DPO moves a trained model a little:
# from a 2,000-step demo-sft run, 200 DPO steps at beta 0.5 reached more held-out reward accuracy at 2e-4
# than at 4e-4 or 1e-4)
LR_DIVISOR = 20
SFT_COMMAND = "dataprep train out/demo-sft --out runs/sft --steps 400"


@dataclass
class PairSetup:
    """A DPO run's data, device, policy, frozen reference and optimizer (the attributes
    :func:`dataprep.train.save.save_checkpoint` reads are named as a next-token run's)."""

    info: DatasetInfo
    cfg: TrainConfig
    device: torch.device
    dtype: torch.dtype
    train_rows: ArrowRows
    val_rows: ArrowRows
    collator: PairCollator
    batch_size: int
    model_name: str
    model_cfg: Any
    attention: str
    model: Any        # the policy
    reference: Any    # the start, frozen
    opt: torch.optim.Optimizer
    peak_lr: float
    init: dict[str, Any]

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def logps(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy and reference sequence log-probabilities of a batch already on the device."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            with torch.no_grad():
                reference = sequence_logps(self.reference, batch)
            return sequence_logps(self.model, batch), reference

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """(summed DPO loss, number of pairs) of a batch already on the device."""
        policy, reference = self.logps(batch)
        losses, _, _ = dpo_loss(policy, reference, beta=self.cfg.beta)
        return losses.sum(), batch["pairs"]

    def batches(self, *, seed: int, start: int, count: int | None) -> Batches:
        return Batches(self.train_rows, self.collator, batch_size=self.batch_size, seed=seed, start_step=start,
                       num_steps=count)


def refuse(info: DatasetInfo, cfg: TrainConfig) -> None:
    """Stop a preference run that cannot work, before anything is built.

    Raises:
        ConfigError: KTO data, no ``--init-from``, or a setting that does not apply to DPO.
    """
    if info.manifest.format == KTO_FORMAT:
        raise ConfigError(f"{info.path} is KTO data (prompt_ids, completion_ids, label): dataprep train does not "
                          "implement the KTO loss yet", fix="train it with TRL through dataprep.api.trl_trainers.KTOTrainer, "
                          "which takes these rows as they are; or build pairs (preference.shape: triples, conversation or transcripts) for DPO")
    if not cfg.init_from:
        raise ConfigError(f"{info.path} is preference data: DPO starts from a fine-tuned model and needs --init-from RUN "
                          "(the policy starts from RUN's weights, the reference is a frozen copy of them)",
                          fix=f"fine-tune a model with the dataset's tokenizer first, e.g. `{SFT_COMMAND}`, then "
                              f"`dataprep train {info.path} --init-from runs/sft`")
    if is_folder_model(cfg.model):
        raise ConfigError(f"--model {cfg.model} does not apply to preference data: the model is --init-from's",
                          fix="drop --model (start from a --model PATH run with --init-from)")
    other = [name for name, on in (("--eval-fewshot", cfg.eval_fewshot), ("--classification head", cfg.classification == "head"),
                                   ("--set task_proof=on", cfg.task_proof == "on")) if on]
    if other:
        raise ConfigError(f"{info.path} is preference data: {', '.join(other)} applies to next-token training only",
                          fix=f"drop {other[0]}")


def build(info: DatasetInfo, cfg: TrainConfig) -> PairSetup:
    """The pairs, the policy (--init-from's weights), its frozen copy and the optimizer.

    Raises:
        ConfigError: see :func:`refuse`, and --init-from's own errors (another tokenizer, no checkpoint).
    """
    refuse(info, cfg)
    device = pick_device(cfg.device)
    dtype = autocast_dtype(device)
    torch.manual_seed(cfg.seed)
    name, model_cfg, attention, model, init, start_lr = make_model(info, cfg, device, dtype, longest=info.seq_len,
                                                                   num_labels=0)
    model = model.to(device)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    peak_lr = cfg.lr if cfg.lr is not None else start_lr / LR_DIVISOR
    return PairSetup(info=info, cfg=cfg, device=device, dtype=dtype,
                     train_rows=ArrowRows(info.dataset, "train", columns=PAIR_COLUMNS),
                     val_rows=ArrowRows(info.dataset, "validation", columns=PAIR_COLUMNS),
                     collator=PairCollator(pad_id=info.pad_id, pad_to=info.seq_len if device.type == "cuda" else None),
                     batch_size=cfg.batch_size or max(1, 4096 // info.seq_len), model_name=name, model_cfg=model_cfg,
                     attention=attention, model=model, reference=reference, opt=adamw(model, cfg, peak_lr, device),
                     peak_lr=peak_lr, init=init)


def train_preference(info: DatasetInfo, out: Path, cfg: TrainConfig, *, checkpoint: Path, resume: bool,
                     threads: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """DPO on ``info``'s pairs from ``cfg.init_from``; writes the run folder and returns the report.

    Raises:
        ConfigError: see :func:`build`.
    """
    setup = build(info, cfg)
    echo(f"train {info.path} (preference, {len(setup.train_rows):,} train / {len(setup.val_rows):,} validation pairs) "
         f"on {setup.device}: DPO (sigmoid, beta {cfg.beta:g}), {setup.model_name} model {setup.params / 1e6:.2f}M params, "
         f"{threads} CPU thread{'s' if threads > 1 else ''}")
    echo(f"policy and frozen reference from {setup.init['path']} (step {setup.init['step']}); peak lr {setup.peak_lr:g}")
    if resume:
        step, history, before = save.load_checkpoint(checkpoint, setup)
        echo(f"resumed at step {step}")
    else:
        echo("held-out pairs before training (the policy is the reference: every reward 0)")
        step, history = 0, History()
        before = dpo_checks.evaluate(setup)
        history.add_validation(0, before["loss"])
    step = train_steps(setup, history, step, before=before, checkpoint=checkpoint, echo=echo,
                       validate=lambda: dpo_checks.evaluate(setup, scores=False)["loss"])
    echo("held-out pairs after training")
    after = dpo_checks.evaluate(setup)
    history.add_validation(step, after["loss"])
    save.save_checkpoint(checkpoint, setup, step=step, history=history, before=before)
    checks = dpo_checks.checks(setup, history, before, after)
    report = {
        "dataset": str(info.path), "task": info.task, "objective": "dpo", "beta": cfg.beta, "init_from": setup.init,
        "device": str(setup.device), "attention": setup.attention, "peak_lr": setup.peak_lr, "batch_size": setup.batch_size,
        "model": {"preset": setup.model_name, "params": setup.params, **asdict(setup.model_cfg)}, "config": asdict(cfg),
        "steps": step, "train_seconds": history.seconds, "train_tokens": history.tokens, "threads": threads,
        "preference": {"before": before, "after": after}, "checks": checks,
        "passed": all(c["pass"] for c in checks.values() if c["pass"] is not None),
    }
    save.write_report(out, report)
    save.plot(history, out / save.CURVE, title=f"{info.name}: DPO from {Path(setup.init['path']).parent.name}, {step} steps",
              ylabel="DPO loss (per pair)")
    echo(dpo_checks.look_next(info.path, out, checks))
    echo(dpo_checks.verdict(report))
    return report
