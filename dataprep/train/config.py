"""The trainer's settings: :class:`TrainConfig`, read from ``--set KEY=VALUE`` by :func:`config_from`.

Every setting is checked when the config is made, so a bad one stops the run before any data
is read, as a :class:`~dataprep.errors.ConfigError` that names the setting and the fix::

    $ dataprep train out/demo-sft --set d_model=65 --set n_heads=2
    error: training settings d_model=65 and n_heads=2 do not fit: ...
      fix: --set d_model=64 (a multiple of 2 x n_heads)

The model's shape is checked again once the preset fills in what was not set
(:func:`check_shape`), so ``--set d_model=100`` alone is caught against the preset's heads.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dataprep.errors import ConfigError

CHOICES = {
    "attention": ("auto", "varlen", "flex", "sdpa"),
    "device": ("auto", "cpu", "cuda"),
    "classification": ("auto", "generative", "head"),
    "task_proof": ("auto", "on", "off"),
}


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint and in verify.json.

    Raises:
        ConfigError: a setting out of its range, or settings that do not fit together.
    """

    model: str = "auto"            # cpu | gpu | auto (gpu on CUDA for >= 20 train tokens per its parameter) | a transformers folder
    d_model: int | None = None     # override the preset's width / depth / heads
    n_layers: int | None = None
    n_heads: int | None = None
    attention: str = "auto"        # auto | varlen | flex | sdpa (see dataprep/train/model.py)
    device: str = "auto"           # auto | cpu | cuda
    steps: int = 2000              # optimizer steps
    batch_size: int | None = None  # rows per step (None: 4096 // seq_len, e.g. 64 rows of demo-sft)
    lr: float | None = None        # peak learning rate (None: the preset's, PEAK_LR)
    min_lr: float = 1e-4           # end of the cosine
    warmup: float = 0.05           # linear warmup: this fraction of the steps (100 of demo-sft's 2,000)
    weight_decay: float = 0.5      # strong decay: demo-sft's additions generalize instead of being memorized
    grad_clip: float = 1.0
    seed: int = 0
    workers: int | None = None     # DataLoader worker processes (None: 0 on CPU, where cores train; 4 on CUDA)
    threads: int | None = None     # torch CPU threads (None: the cores this process may run on; busy machine: 1)
    progress_every: float = 10.0   # seconds between progress lines (0: every step)
    classification: str = "auto"   # auto (the recipe's classification.train) | generative | head
    eval_fewshot: str | None = None  # a task: fewshot dataset: exact match zero-shot / k-shot, before and after training
    init_from: str | None = None   # a run folder (checkpoint.pt) whose model this run starts from (pretrain, then fine-tune)
    beta: float = 0.1              # DPO (preference data): how far the policy may move from its start (reward = beta x log-ratio)
    reference_chat_template: str | None = None  # a {% generation %}-tagged Jinja template: the targets proof's reference for chats
    eval_every: int | None = None  # validation loss every N steps (None: 20 times a run, a curve; 0: only at the end)
    eval_rows: int = 512           # validation rows per evaluation
    checkpoint_every: int = 500    # also save a checkpoint every N steps (0: only at the end)
    # verification
    loss_drop: float = 0.25        # learning: the last 10% of steps average <= (1 - loss_drop) x the first 10%
    task_proof: str = "auto"       # auto (short answers: demo-sft, classification) | on | off
    task_examples: int = 624       # held-out prompts decoded (demo-sft has 624)
    task_threshold: float = 0.9    # exact-match accuracy after training (classification: beat the majority)
    proof_examples: int = 16       # examples in the mask and packing proofs
    loader_ratio: float = 10.0     # speed (informational, not a check): loader tokens/s expected >= this x training's

    def __post_init__(self) -> None:
        found = problems(self)
        if found:
            raise found[0]  # each message is complete: the first one stops the run

    @property
    def warmup_steps(self) -> int:
        """Steps of linear warmup: ``warmup`` x ``steps``, at least 1 unless ``warmup`` is 0."""
        return max(1, round(self.warmup * self.steps)) if self.warmup > 0 else 0

    @property
    def validation_every(self) -> int:
        """Steps between validation losses: ``eval_every``, else a twentieth of the run (0: only before and after)."""
        return self.eval_every if self.eval_every is not None else max(1, self.steps // VALIDATION_POINTS)


# The smallest value each numeric setting may take, and whether it may equal it.
MINIMUM: dict[str, tuple[float, bool]] = {
    "d_model": (1, True), "n_layers": (1, True), "n_heads": (1, True), "steps": (1, True), "batch_size": (1, True),
    "lr": (0, False), "beta": (0, False), "min_lr": (0, True), "warmup": (0, True), "weight_decay": (0, True), "grad_clip": (0, False),
    "seed": (0, True), "workers": (0, True), "threads": (1, True), "progress_every": (0, True),
    "eval_every": (0, True), "eval_rows": (1, True), "checkpoint_every": (0, True), "loss_drop": (0, True),
    "task_examples": (1, True), "task_threshold": (0, True), "proof_examples": (1, True), "loader_ratio": (0, True),
}
# Fractions: at most 1.
FRACTIONS = ("loss_drop", "task_threshold", "warmup")
# Validation losses a run draws when ``eval_every`` is not set: enough points for a curve.
VALIDATION_POINTS = 20


def problems(cfg: TrainConfig) -> list[ConfigError]:
    """Every setting of ``cfg`` that cannot work, each as an error naming it and its fix."""
    found = []
    for name, allowed in CHOICES.items():
        value = getattr(cfg, name)
        if value not in allowed:
            found.append(ConfigError(f"training setting {name}={value!r} is not one of {', '.join(allowed)}",
                                     fix=f"--set {name}={allowed[0]} (or {', '.join(allowed[1:])})"))
    for name, (least, inclusive) in MINIMUM.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        # written so that NaN fails too
        if not (value >= least if inclusive else value > least) or (name in FRACTIONS and not value <= 1):
            found.append(ConfigError(f"training setting {name}={value!r} is out of range: it must be "
                                     f"{_range(name, least, inclusive)}", fix=_fix(name)))
    if cfg.lr is not None and cfg.lr > 0 and cfg.min_lr > cfg.lr:
        found.append(ConfigError(f"training settings min_lr={cfg.min_lr!r} and lr={cfg.lr!r} do not fit: the cosine would "
                                 "climb from lr up to min_lr", fix=f"--set min_lr={cfg.lr / 10:g} (at most lr)"))
    model = model_problem(cfg.model)
    if model:
        found.append(model)
    shape = shape_problem(cfg.d_model, cfg.n_heads)
    if shape:
        found.append(shape)
    return found


PRESET_NAMES = ("auto", "cpu", "gpu")  # --model: these, or a transformers folder


def is_folder_model(value: str) -> bool:
    """``--model`` names a transformers folder, not a preset."""
    return value not in PRESET_NAMES


def model_problem(value: str) -> ConfigError | None:
    """Why ``--model VALUE`` cannot be used, or None: a preset, or a folder holding ``config.json``."""
    if not is_folder_model(value):
        return None
    path = Path(value)
    if path.is_dir() and (path / "config.json").is_file():
        return None
    if path.is_dir():
        return ConfigError(f"--model {value}: the folder has no config.json, so it is not a transformers model",
                           fix="give a folder written by save_pretrained (config.json, and model.safetensors for weights)")
    if value.count("/") == 1 and not value.startswith((".", "/", "~")) and not path.exists():
        name = value.split("/")[1]
        return ConfigError(f"--model {value}: no such folder; it looks like a Hugging Face Hub id, and dataprep never downloads",
                           fix=f"download it yourself (`hf download {value} --local-dir models/{name}`), then --model models/{name}")
    return ConfigError(f"--model {value} is neither a preset (auto, cpu, gpu) nor a folder",
                       fix="--model cpu (or gpu, auto), or the folder of a transformers causal LM (config.json)")


def _range(name: str, least: float, inclusive: bool) -> str:
    if name in FRACTIONS:
        return "a fraction from 0 to 1"
    return f"at least {least}" if inclusive else f"above {least}"


def _fix(name: str) -> str:
    """How to get back to the default of setting ``name``."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    return f"leave {name} unset (the default)" if default is None else f"--set {name}={default} (the default)"


def shape_problem(d_model: int | None, n_heads: int | None, *, preset: str | None = None) -> ConfigError | None:
    """Why ``d_model`` and ``n_heads`` cannot shape the attention, or None when they can (or one is unset).

    Each head gets ``d_model / n_heads`` dimensions, and rotary positions rotate them in pairs,
    so ``d_model`` must be a multiple of ``2 * n_heads``.
    """
    if d_model is None or n_heads is None or d_model < 1 or n_heads < 1 or d_model % (2 * n_heads) == 0:
        return None
    from_preset = f" (the {preset} preset's shape with your settings)" if preset else ""
    why = ("d_model must divide into n_heads heads of equal size" if d_model % n_heads else
           f"each head's {d_model // n_heads} dimensions must be even (rotary positions rotate them in pairs)")
    fits = max(2 * n_heads, round(d_model / (2 * n_heads)) * 2 * n_heads)
    heads = [h for h in range(1, d_model // 2 + 1) if d_model % (2 * h) == 0]
    other = f" or --set n_heads={min(heads, key=lambda h: abs(h - n_heads))}" if heads else ""
    return ConfigError(f"training settings d_model={d_model} and n_heads={n_heads}{from_preset} do not fit: {why}",
                       fix=f"--set d_model={fits} (a multiple of 2 x n_heads){other}")


def check_shape(d_model: int, n_heads: int, *, preset: str) -> None:
    """Raise :func:`shape_problem`'s error for the model's final shape (the preset's values filled in)."""
    problem = shape_problem(d_model, n_heads, preset=preset)
    if problem:
        raise problem


def config_from(overrides: dict[str, str] | None = None, **options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from ``KEY=VALUE`` strings (values parsed as YAML) and keyword options.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or settings that cannot work.
    """
    import yaml

    known = {f.name: f for f in fields(TrainConfig)}
    values: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    for key, text in (overrides or {}).items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(known)}"
            fix = f"--set {close[0]}={text}" if close else "use one of the known settings"
            raise ConfigError(f"unknown training setting {key!r}; {hint}", fix=fix)
        # text settings stay text: YAML would read "off" as False
        try:
            values[key] = text if known[key].type.startswith("str") else yaml.safe_load(text)
        except yaml.YAMLError:
            values[key] = text
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
    example = {int: "a whole number, e.g. 64", float: "a number, e.g. 3e-3", str: "text"}[kind]
    raise ConfigError(f"training setting {key}={value!r} must be {kind.__name__} ({example})", fix=_fix(key))
