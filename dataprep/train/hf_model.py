"""``dataprep train DATASET --model PATH``: a local ``transformers`` causal LM, trained and proved like the bundled one.

PATH is a folder as ``save_pretrained`` writes it: ``config.json`` and ``model.safetensors``
(or sharded safetensors with their index) to start from those weights, or ``config.json`` alone
for random weights drawn from the run's seed. Nothing is ever downloaded (``local_files_only``;
a Hub id is an error saying how to download it yourself), and no code from the folder runs
(``trust_remote_code`` stays off). ``transformers`` is imported only here, and only when
``--model`` names a folder: the demo install has no transformers.

:class:`HFCausalLM` wraps the model in the interface the trainer and the proofs use
(``hidden``, ``logits``, ``lm_loss``, ``cfg.vocab_size``, ``attention``), so the same checks run
on it. Packed rows are kept apart the way #16 proved for ``transformers`` 5: ``position_ids``
restarting at every segment, no ``attention_mask``, and ``use_cache=False`` on every forward.
With a cache (``config.use_cache`` is True by default), transformers ignores the restarts and
packed examples attend to each other without an error; the attention check at initialization
fails on such a model (``tests/test_train_model.py`` runs one)::

    input_ids     5 6 7 8 | 9 10 11 | 0 0     two examples and a pad piece in one row
    position_ids  0 1 2 3 | 0  1  2 | 0 1     restarts: transformers builds a block-causal mask

With pretrained weights, the dataset's tokenizer must be the model's: when the folder holds a
``tokenizer.json``, every one of its tokens must have the same id in the dataset's tokenizer, and
any other token must be an added special token (else a ``ConfigError`` naming both); without one
the run says the tokenizer was not checked. The vocabulary must fit the model's embedding rows.

Dropout is turned off (every ``*dropout*`` / ``*_pdrop`` setting of the config set to 0, and the
run says so): the proofs compare two forward passes bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dataprep.columns import IGNORE_INDEX
from dataprep.errors import ConfigError
from dataprep.train.config import model_problem
from dataprep.train.model import ModelConfig

WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
# Peak learning rates when --lr is unset: random weights train like the presets' small models;
# pretrained weights are fine-tuned gently.
LR_RANDOM, LR_PRETRAINED = 1e-3, 3e-5


def _no_dropout(config: Any) -> dict[str, float]:
    """Set every dropout probability of ``config`` to 0; returns the ones that were not 0."""
    changed = {}
    for key, value in list(config.to_dict().items()):
        if ("dropout" in key or key.endswith("_pdrop")) and isinstance(value, float) and value > 0:
            setattr(config, key, 0.0)
            changed[key] = value
    return changed


def _check_tokenizer(path: Path, tokenizer: Any) -> str:
    """With pretrained weights, the dataset's tokenizer must give every token of the folder's ``tokenizer.json``
    the id the model learned it under; tokens it adds must be added (special) tokens. Returns what was checked.

    Raises:
        ConfigError: a token whose id differs, or one the dataset's tokenizer lacks.
    """
    from tokenizers import Tokenizer

    if not (path / "tokenizer.json").is_file():
        return "not checked: the folder has no tokenizer.json"
    theirs = Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)
    ours = tokenizer.get_vocab(with_added_tokens=True)
    wrong = sorted((i, t) for t, i in theirs.items() if ours.get(t) != i)
    added = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    extra = sorted((i, t) for t, i in ours.items() if t not in theirs and t not in added)
    if extra:  # e.g. a BPE trained further: merges the model never saw
        i, token = extra[0]
        raise ConfigError(f"--model {path}: the dataset was built with another tokenizer than the model's ({len(extra):,} "
                          f"of its tokens are not the model's and not added special tokens, e.g. {token!r}: id {i})",
                          fix=f"build the dataset with the model's tokenizer (recipe: tokenizer: {{path: {path}}})")
    if wrong:
        i, token = wrong[0]
        raise ConfigError(f"--model {path}: the dataset was built with another tokenizer than the model's ({len(wrong):,} of "
                          f"its {len(theirs):,} tokens have another id or none, e.g. {token!r}: id {i} in the model, "
                          f"{ours.get(token)} in the dataset)",
                          fix=f"build the dataset with the model's tokenizer (recipe: tokenizer: {{path: {path}}})")
    return "the folder's tokenizer.json: every token has the model's id"


def load(path: str | Path, *, vocab_size: int, longest: int, tokenizer: Any | None = None) -> tuple[HFCausalLM, dict[str, Any]]:
    """The model in folder ``path`` (weights, or random ones from the current torch seed), wrapped.

    Args:
        path: a ``save_pretrained`` folder.
        vocab_size: the dataset tokenizer's ids (the model's embedding must have a row for each).
        longest: the longest row (or few-shot prompt) the run feeds it.
        tokenizer: the dataset's ``tokenizers.Tokenizer``, checked against the folder's with pretrained weights.

    Returns:
        The adapter, and what ``verify.json`` records of the model (folder, type, weights or random, dropout turned off).

    Raises:
        ConfigError: no such folder, not a causal LM, custom code, other weight formats, a
            vocabulary or a row length the model cannot take.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    problem = model_problem(str(path))
    if problem:
        raise problem
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--model {path}: its config.json cannot be read by transformers ({str(exc).splitlines()[0][:200]})",
                          fix="a folder written by save_pretrained of a model transformers knows (no custom code)") from exc
    _check_fits(config, path, vocab_size=vocab_size, longest=longest)
    dropout = _no_dropout(config)
    weights = next((w for w in WEIGHTS if (path / w).is_file()), None)
    if weights is None and any(path.glob("*.bin")):
        raise ConfigError(f"--model {path} holds pytorch_model.bin weights, which dataprep does not unpickle",
                          fix="save the model with save_pretrained(..., safe_serialization=True) (model.safetensors)")
    checked = _check_tokenizer(path, tokenizer) if weights and tokenizer is not None else "not needed: random weights"
    try:
        if weights:
            hf = AutoModelForCausalLM.from_pretrained(path, config=config, local_files_only=True, trust_remote_code=False,
                                                      dtype=torch.float32)
        else:
            hf = AutoModelForCausalLM.from_config(config, trust_remote_code=False, dtype=torch.float32)
    except ValueError as exc:
        raise ConfigError(f"--model {path} ({config.model_type}) is not a causal language model transformers can build "
                          f"({str(exc).splitlines()[0][:200]})",
                          fix="give a causal LM (LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, ...)") from exc
    about = {"folder": str(path), "model_type": config.model_type, "architecture": type(hf).__name__,
             "weights": weights or "random (config.json only; the run's seed)", "vocab_size": config.vocab_size,
             "tokenizer": checked, "dropout_turned_off": dropout, "attention": hf.config._attn_implementation}
    model = HFCausalLM(hf)
    model.about = about
    return model, about


def name(about: dict[str, Any]) -> str:
    """How a run names the model: its type and folder, and whether its weights were random."""
    random = " random init" if about["weights"].startswith("random") else ""
    return f"{about['model_type']}{random} ({about['folder']})"


def from_checkpoint(config_dict: dict[str, Any]) -> HFCausalLM:
    """An adapter of the architecture a checkpoint recorded (``hf_config``), with random weights to load into."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config_dict = dict(config_dict)
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    return HFCausalLM(AutoModelForCausalLM.from_config(config, dtype=torch.float32))


def _check_fits(config: Any, path: Path, *, vocab_size: int, longest: int) -> None:
    if config.vocab_size < vocab_size:
        raise ConfigError(f"--model {path} has {config.vocab_size:,} embedding rows, but the dataset's tokenizer has "
                          f"{vocab_size:,} ids", fix="build the dataset with the model's own tokenizer, or resize the model's "
                          f"embeddings (model.resize_token_embeddings({vocab_size}); save_pretrained)")
    most = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if most is not None and longest > most:
        raise ConfigError(f"--model {path} takes at most {most:,} positions (max_position_embeddings), but rows run to {longest:,} tokens",
                          fix="build the dataset with a smaller seq_len, or raise max_position_embeddings in config.json")


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM behind the bundled model's interface (see the module docstring).

    Args:
        hf: an ``AutoModelForCausalLM`` model.
        use_cache: what every forward passes as ``use_cache``; False keeps packed rows apart. None
            leaves it to the model's config (the trap: only for the test that shows the proof catches it).
    """

    def __init__(self, hf: nn.Module, *, use_cache: bool | None = False):
        super().__init__()
        self.hf, self.use_cache = hf, use_cache
        self.about: dict[str, Any] = {}  # what load() found in the folder
        c = hf.config
        self.cfg = ModelConfig(vocab_size=c.vocab_size, d_model=c.hidden_size, n_layers=c.num_hidden_layers,
                               n_heads=c.num_attention_heads, d_ff=getattr(c, "intermediate_size", None),
                               max_seq_len=getattr(c, "max_position_embeddings", None) or 0)
        # the proofs switch the bundled model's backend (attention_backend); here it only names
        # transformers' implementation, which keeps segments apart the same way for each
        self.attention = c._attn_implementation

    def hidden(self, input_ids: torch.Tensor, position_ids: torch.Tensor, document_ids: torch.Tensor, *,
               cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None,
               prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``[B, T, hidden]``; segments are told apart by ``position_ids`` restarting at 0
        (``document_ids`` and ``cu_seqlens`` describe the same segments: the collator builds both)."""
        if prefix_len is not None:
            raise ValueError("a transformers causal LM has no prefix-LM mask")
        kwargs: dict[str, Any] = {} if self.use_cache is None else {"use_cache": self.use_cache}
        return self.hf.base_model(input_ids=input_ids, position_ids=position_ids, **kwargs).last_hidden_state

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits, with the scalings some architectures apply after the output layer."""
        c = self.hf.config
        logits = self.hf.get_output_embeddings()(h)
        if getattr(c, "logit_scale", None):  # cohere
            logits = logits * c.logit_scale
        if getattr(c, "logits_scaling", None):  # granite
            logits = logits / c.logits_scaling
        if getattr(c, "final_logit_softcapping", None):  # gemma 2 / 3
            logits = torch.tanh(logits / c.final_logit_softcapping) * c.final_logit_softcapping
        return logits

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` for a collated batch."""
        return self.logits(self.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"]))

    def lm_loss(self, batch: dict[str, Any], *, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy over the targets and their count, as the bundled model's ``lm_loss``."""
        labels = batch["labels"] if labels is None else labels
        h = self.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"])
        shifted = labels[:, 1:]
        keep = shifted != IGNORE_INDEX
        logits = self.logits(h[:, :-1][keep]).float()
        return F.cross_entropy(logits, shifted[keep], reduction="sum"), int(keep.sum())

    def class_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, torch.Tensor]:
        raise ValueError("a transformers model trains classification data generatively (--classification generative)")
