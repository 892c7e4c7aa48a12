"""Starting a run from another run's weights: ``dataprep train DATASET --init-from RUN``.

Pretrain a base, then fine-tune it: the fine-tuning run takes the base run's model (its shape and
weights; a fresh optimizer and schedule). The tokenizer must be the one the base was trained with,
checked by what every checkpoint records of it (:func:`tokenizer_identity`):

* the same tokenizer (its fingerprint, the sha256 of its ``tokenizer.json``): the weights load as they are;
* the same tokenizer plus added tokens after the old ones (a chat or tool token added for fine-tuning:
  the same model, normalizer and pre-tokenizer, every old token keeping its id; checked by sha256s of
  those parts of ``tokenizer.json`` and of the vocabulary in id order): the embedding
  grows by one row per new token, initialised to the mean of the old rows (so a new token starts as
  an average word rather than a random one), and the run says so;
* anything else: a :class:`~dataprep.errors.ConfigError` naming both tokenizers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dataprep.errors import ConfigError
from dataprep.train.loader import DatasetInfo
from dataprep.train.model import ModelConfig, Transformer

CHECKPOINT = "checkpoint.pt"
SHAPE = ("d_model", "n_layers", "n_heads", "d_ff")


def _vocab_sha(tokens: list[str]) -> str:
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def _tokens_by_id(info: DatasetInfo) -> list[str]:
    vocab = info.dataset.tokenizer().tokenizer.get_vocab(with_added_tokens=True)
    by_id = [""] * (max(vocab.values()) + 1 if vocab else 0)
    for token, i in vocab.items():
        by_id[i] = token
    return by_id


def _segmenter_sha(info: DatasetInfo) -> str:
    """sha256 of what splits text into tokens: tokenizer.json without its added tokens and post-processor."""
    spec = json.loads(info.dataset.tokenizer().tokenizer.to_str())
    parts = {k: spec.get(k) for k in ("normalizer", "pre_tokenizer", "model", "decoder")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def tokenizer_identity(info: DatasetInfo) -> dict[str, Any]:
    """What a checkpoint records of the tokenizer its model was trained with."""
    tokens = _tokens_by_id(info)
    return {"fingerprint": info.manifest.tokenizer.fingerprint, "vocab_size": info.vocab_size,
            "tokens": len(tokens), "vocab_sha256": _vocab_sha(tokens), "segmenter_sha256": _segmenter_sha(info)}


def read_start(path: str | Path) -> dict[str, Any]:
    """The checkpoint of run folder (or checkpoint file) ``path``.

    Raises:
        ConfigError: there is no checkpoint there, or it is not a next-token run's.
    """
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"--init-from {path}: no {CHECKPOINT} there",
                          fix="give the folder of a finished `dataprep train` run (it holds checkpoint.pt)")
    state = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ConfigError(f"--init-from {file} is not a dataprep training checkpoint", fix="give a `dataprep train` run folder")
    if "optimizer" not in state:  # mlm / span runs save weights only, for another model
        raise ConfigError(f"--init-from {file} is an encoder or prefix-LM run (mlm / span corruption)",
                          fix="start a next-token run from a next-token (pretraining or fine-tuning) run")
    state["path"] = str(file)
    return state


def added_tokens(start: dict[str, Any], info: DatasetInfo) -> int:
    """How many tokens the dataset's tokenizer adds after the checkpoint's (0: the same tokenizer).

    Raises:
        ConfigError: another tokenizer, or the checkpoint does not record its tokenizer.
    """
    old = start.get("tokenizer")
    if old is None:
        raise ConfigError(f"--init-from {start['path']} does not record its tokenizer (a run made before --init-from)",
                          fix="train the base again with this version, or fine-tune without --init-from")
    if old["fingerprint"] == info.manifest.tokenizer.fingerprint:
        return 0
    tokens = _tokens_by_id(info)
    if (len(tokens) > old["tokens"] and _vocab_sha(tokens[: old["tokens"]]) == old["vocab_sha256"]
            and _segmenter_sha(info) == old.get("segmenter_sha256")):
        return info.vocab_size - old["vocab_size"]
    raise ConfigError(
        f"{info.path} was built with another tokenizer than the --init-from run {start['path']}: fingerprint "
        f"{info.manifest.tokenizer.fingerprint[:12]} ({info.vocab_size:,} ids) vs {old['fingerprint'][:12]} "
        f"({old['vocab_size']:,} ids); it is not the run's tokenizer with tokens added after its own",
        fix="build the dataset with the tokenizer the base run used (its dataset's OUT/tokenizer folder)")


def model_config(start: dict[str, Any], settings: Any, info: DatasetInfo, *, max_seq_len: int, num_labels: int) -> ModelConfig:
    """The checkpoint's shape, for this dataset's vocabulary and row length.

    Raises:
        ConfigError: a shape setting (``d_model`` ...) that differs from the checkpoint's.
    """
    saved = start["model_config"]
    clash = {k: getattr(settings, k) for k in ("d_model", "n_layers", "n_heads")
             if getattr(settings, k) is not None and getattr(settings, k) != saved[k]}
    if clash:
        raise ConfigError(f"--init-from {start['path']} has {', '.join(f'{k}={saved[k]}' for k in clash)}, not "
                          f"{', '.join(f'{k}={v}' for k, v in clash.items())}", fix="leave the model's shape unset")
    shape = {k: saved[k] for k in SHAPE if k in saved}
    return replace(ModelConfig(vocab_size=info.vocab_size, max_seq_len=max_seq_len, num_labels=num_labels,
                               rope_base=saved.get("rope_base", 10000.0)), **shape)


def load_hf(start: dict[str, Any], info: DatasetInfo) -> tuple[Any, dict[str, Any]]:
    """The transformers model of a ``--model PATH`` run, rebuilt from the architecture its checkpoint
    records, with its weights. Tokens added after the base's fit only in embedding rows the model
    already has (rows past the old tokenizer's ids: random, or the base's untrained ones).

    Raises:
        ConfigError: another tokenizer, or more tokens than the model's embedding rows.
    """
    from dataprep.train.hf_model import from_checkpoint

    added = added_tokens(start, info)
    model = from_checkpoint(start["hf_config"])
    if info.vocab_size > model.cfg.vocab_size:
        raise ConfigError(f"--init-from {start['path']}: its transformers model has {model.cfg.vocab_size:,} embedding rows, "
                          f"the dataset's tokenizer {info.vocab_size:,} ids",
                          fix="build the dataset with the base run's tokenizer (its OUT/tokenizer folder)")
    model.load_state_dict(start["model"])
    return model, {"path": start["path"], "step": start.get("step"), "tokenizer": start["tokenizer"]["fingerprint"],
                   "added_tokens": added, "preset": start.get("preset")}


@torch.no_grad()
def load_weights(model: Transformer, start: dict[str, Any], *, added: int) -> dict[str, Any]:
    """The checkpoint's weights into ``model``; new token rows get the mean of the old ones.
    Returns what ``verify.json`` records under ``init_from``."""
    weights = dict(start["model"])
    old = weights["embed.weight"]
    if added:
        grown = old.new_empty((old.shape[0] + added, old.shape[1]))
        grown[: old.shape[0]] = old
        grown[old.shape[0]:] = old.mean(0)
        weights["embed.weight"] = grown
    missing, unexpected = model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("head.")}, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ConfigError(f"--init-from {start['path']}: its weights do not fit the model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})", fix="start from a run of this version")
    return {"path": start["path"], "step": start.get("step"), "tokenizer": start["tokenizer"]["fingerprint"],
            "added_tokens": added, "preset": start.get("preset")}
