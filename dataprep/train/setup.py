"""What a next-token run trains with: the data, the device, the model and its optimizer (:class:`Setup`).

:func:`build` makes them in a fixed order (the seed is set just before the model's weights
are drawn), so the same settings give the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from dataprep.errors import ConfigError
from dataprep.train import fewshot_eval, init_from
from dataprep.train.config import TrainConfig, check_shape, is_folder_model
from dataprep.train.device import autocast_dtype, pick_device
from dataprep.train.fewshot_eval import FewshotEval
from dataprep.train.loader import ArrowRows, Batches, Collator, DatasetInfo
from dataprep.train.model import ModelConfig, Transformer, pick_attention, preset
from dataprep.train.schedule import PEAK_LR


@dataclass
class Setup:
    """A next-token run's data, device, model and optimizer, as :func:`build` made them."""

    info: DatasetInfo
    cfg: TrainConfig
    device: torch.device
    dtype: torch.dtype             # autocast dtype: bf16 on CUDA, fp32 on CPU
    train_rows: ArrowRows
    val_rows: ArrowRows
    collator: Collator
    batch_size: int
    workers: int                   # DataLoader worker processes (0: batches built in this process)
    head: bool                     # a classification head on label_id instead of the LM loss
    fewshot: FewshotEval | None    # --eval-fewshot's queries
    model_name: str                # the preset (cpu | gpu), or the transformers model and its folder
    model_cfg: ModelConfig
    attention: str                 # the attention backend pick_attention chose (transformers: its own)
    model: Any                     # Transformer, or hf_model.HFCausalLM (--model PATH)
    opt: torch.optim.Optimizer
    peak_lr: float
    init: dict[str, Any] | None = None  # where the weights came from (--init-from), for verify.json
    data_found: tuple[dict[str, Any], list[Any]] | None = None  # evaluate.data_checks' result: the data does not change

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """(summed loss, number of targets) of a batch already on the device."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            if self.head:
                total, count, _ = self.model.class_loss(batch)
                return total, count
            return self.model.lm_loss(batch)

    def batches(self, *, seed: int, start: int, count: int | None) -> Any:
        """The training batches from step ``start``; worker processes build them ahead when asked."""
        batches = Batches(self.train_rows, self.collator, batch_size=self.batch_size, seed=seed, start_step=start,
                          num_steps=count)
        if not self.workers:
            return batches
        return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=self.workers,
                                           pin_memory=self.device.type == "cuda")

    def origin(self) -> list[str]:
        """Lines saying where the weights come from, when not from the seed alone (--init-from, --model PATH)."""
        lines = []
        about = getattr(self.model, "about", None)
        if about:
            off = ", ".join(f"{k}={v:g}" for k, v in about["dropout_turned_off"].items())
            lines.append(f"transformers {about['architecture']} from {about['folder']}: weights {about['weights']}; "
                         f"tokenizer {about['tokenizer']}"
                         + (f"; dropout turned off ({off} -> 0: the proofs compare forward passes exactly)" if off else ""))
        if self.init is not None:
            added = self.init["added_tokens"]
            rows = "rows the model already has" if hasattr(self.model, "hf") else "rows at the mean of the old ones"
            lines.append(f"starting from {self.init['path']} (step {self.init['step']})"
                         + (f"; {added} new token{'s' if added > 1 else ''} get embedding {rows}" if added else ""))
        return lines

    def describe(self) -> str:
        """The line a run starts with: data, device, model."""
        return (f"train {self.info.path} ({self.info.task}, {len(self.train_rows):,} train / {len(self.val_rows):,} "
                f"validation rows) on {self.device}: {self.model_name} model {self.params / 1e6:.2f}M params, "
                f"attention {self.attention}, {'head' if self.head else 'lm'} loss")


def build(info: DatasetInfo, cfg: TrainConfig) -> Setup:
    """The data, device, model and optimizer a next-token run on ``info`` trains with.

    Raises:
        ConfigError: settings that cannot work with this dataset or machine.
    """
    head = classification(info, cfg) == "head"
    if cfg.task_proof == "on" and (info.task != "sft" or not info.stop_ids):
        raise ConfigError(f"task_proof=on needs a fine-tuning dataset with a stop token; {info.path} is {info.task} data"
                          f"{'' if info.stop_ids else ' without one'}", fix="--set task_proof=auto (or off)")
    fewshot = fewshot_eval.prepare(cfg.eval_fewshot, info, limit=cfg.task_examples) if cfg.eval_fewshot else None
    train_rows, val_rows = ArrowRows(info.dataset, "train"), ArrowRows(info.dataset, "validation")
    device = pick_device(cfg.device)
    # CUDA: every batch padded to seq_len, so compiled kernels see one shape instead of dozens
    collator = Collator(pad_id=info.pad_id, pad_to=info.seq_len if device.type == "cuda" else None)

    torch.manual_seed(cfg.seed)  # the weights below are the first random draw of the run
    dtype = autocast_dtype(device)
    longest = max(info.seq_len, fewshot.longest if fewshot else 0)  # k-shot prompts may be longer than the rows
    model_name, model_cfg, attention, model, init, default_lr = make_model(
        info, cfg, device, dtype, longest=longest, num_labels=len(info.labels) if head else 0)
    model = model.to(device)
    peak_lr = cfg.lr if cfg.lr is not None else default_lr
    return Setup(info=info, cfg=cfg, device=device, dtype=dtype, train_rows=train_rows, val_rows=val_rows,
                 collator=collator, batch_size=cfg.batch_size or max(1, 4096 // info.seq_len),
                 workers=cfg.workers if cfg.workers is not None else (4 if device.type == "cuda" else 0),
                 head=head, fewshot=fewshot, model_name=model_name, model_cfg=model_cfg, attention=attention,
                 model=model, opt=adamw(model, cfg, peak_lr, device), peak_lr=peak_lr, init=init)


def make_model(info: DatasetInfo, cfg: TrainConfig, device: torch.device, dtype: torch.dtype, *, longest: int,
               num_labels: int) -> tuple[str, ModelConfig, str, Any, dict[str, Any] | None, float]:
    """The run's model: a preset, a transformers folder (``--model PATH``) or another run's (``--init-from``).

    Returns:
        Its name, shape, attention backend, the model (on the CPU), where its weights came from
        (``--init-from``, else None) and the peak learning rate when ``lr`` is unset.

    Raises:
        ConfigError: settings the model cannot take (a shape setting against a folder or a
            checkpoint, a head on a transformers model, --model PATH with --init-from).
    """
    folder = is_folder_model(cfg.model)
    shape = [k for k in ("d_model", "n_layers", "n_heads") if getattr(cfg, k) is not None]
    if folder and (shape or num_labels or cfg.init_from):
        what = (f"--set {shape[0]}" if shape else "--classification head" if num_labels else "--init-from")
        raise ConfigError(f"--model {cfg.model} is a transformers model: {what} does not apply to it (its shape is its "
                          "config.json's; it trains classification data generatively; --init-from brings its own model)",
                          fix=f"drop {what}" + (" (or --classification generative)" if num_labels else ""))
    start = init_from.read_start(cfg.init_from) if cfg.init_from else None
    if folder:
        from dataprep.train import hf_model

        model, about = hf_model.load(cfg.model, vocab_size=info.vocab_size, longest=longest,
                                     tokenizer=info.dataset.tokenizer().tokenizer)
        lr = hf_model.LR_RANDOM if about["weights"].startswith("random") else hf_model.LR_PRETRAINED
        return hf_model.name(about), model.cfg, f"{model.attention} (transformers)", model, None, lr
    if start is not None and "hf_config" in start:  # a run of --model PATH: the same architecture again
        model, init = init_from.load_hf(start, info)
        return start["preset"], model.cfg, f"{model.attention} (transformers)", model, init, start["peak_lr"]
    model_name = start.get("preset") if start is not None else preset_name(
        cfg, device, train_tokens=info.manifest.splits.train.tokens, vocab_size=info.vocab_size)
    if start is not None:
        added = init_from.added_tokens(start, info)  # the tokenizer first: another one makes every other check moot
        model_cfg = init_from.model_config(start, cfg, info, max_seq_len=longest + 64, num_labels=num_labels)
    else:
        model_cfg = model_config(cfg, model_name, vocab_size=info.vocab_size, max_seq_len=longest + 64, num_labels=num_labels)
    attention = pick_attention(device, dtype=dtype, prefer=cfg.attention)
    model = Transformer(model_cfg, attention=attention)
    init = init_from.load_weights(model, start, added=added) if start is not None else None
    return model_name, model_cfg, attention, model, init, PEAK_LR[model_name]


def classification(info: DatasetInfo, cfg: TrainConfig) -> str:
    """``generative`` or ``head``: the setting, else what the recipe says (``sft.classification_train``).

    Raises:
        ConfigError: ``head`` for a dataset without class labels.
    """
    chosen = cfg.classification
    if chosen == "auto":
        sft = info.manifest.sft
        chosen = (sft.classification_train if sft is not None else None) or "generative"
    if chosen == "head" and info.labels is None:
        raise ConfigError(f"classification 'head' needs a classification dataset; {info.path} has no label_id",
                          fix="--classification generative (or train a classification dataset)")
    return chosen


# ``auto`` takes the gpu preset only for data that can feed it: about 20 training tokens per parameter
# (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"). Below that the 85M-parameter
# model memorizes what the 0.6M one generalizes: demo-sft (133k tokens) on an H200 reached 88.6% and 86.7%
# task accuracy with the gpu preset (two inits) and 93.3-95.0% with the cpu preset (benchmarks/README.md,
# gpu_check.py).
TOKENS_PER_PARAM = 20


def preset_name(cfg: TrainConfig, device: torch.device, *, train_tokens: int, vocab_size: int) -> str:
    """The model preset: the setting; else ``gpu`` on CUDA when the training split holds at least
    :data:`TOKENS_PER_PARAM` tokens per gpu-preset parameter, and ``cpu`` otherwise."""
    if cfg.model != "auto":
        return cfg.model
    if device.type != "cuda":
        return "cpu"
    return "gpu" if train_tokens >= TOKENS_PER_PARAM * preset_params("gpu", vocab_size=vocab_size) else "cpu"


def preset_params(name: str, *, vocab_size: int) -> int:
    """Parameters of preset ``name`` for a vocabulary (counted on the meta device: nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Transformer(preset(name, vocab_size=vocab_size, max_seq_len=64)).parameters())


def model_config(cfg: TrainConfig, name: str, *, vocab_size: int, max_seq_len: int, num_labels: int = 0) -> ModelConfig:
    """The preset ``name`` with the settings' ``d_model`` / ``n_layers`` / ``n_heads`` over it.

    Raises:
        ConfigError: the resulting width does not split into the heads (e.g. ``--set d_model=100``
            with the cpu preset's 4 heads).
    """
    shape = {k: v for k, v in (("d_model", cfg.d_model), ("n_layers", cfg.n_layers), ("n_heads", cfg.n_heads)) if v}
    model_cfg = replace(preset(name, vocab_size=vocab_size, max_seq_len=max_seq_len, num_labels=num_labels), **shape)
    check_shape(model_cfg.d_model, model_cfg.n_heads, preset=name)
    return model_cfg


def adamw(model: Transformer, cfg: TrainConfig, lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")
