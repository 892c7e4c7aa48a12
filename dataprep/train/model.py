"""A small decoder-only transformer that trains on packed rows without crossing their segments.

Pre-norm blocks (RMSNorm, attention, GELU MLP), rotary positions read from ``position_ids``
(so they restart at every segment), tied input/output embeddings, and an optional
classification head. Attention stays inside each segment of a packed row; the backend that
does it is chosen once, by :func:`pick_attention`:

* ``varlen``: ``torch.nn.attention.varlen.varlen_attn`` (flash attention) over the collator's
  ``cu_seqlens``: every segment is its own sequence, no mask is built. CUDA, bf16/fp16.
* ``flex``: ``flex_attention`` with a block mask built from ``document_ids``; fully masked
  tiles are skipped. CUDA, compiled (on CPU it runs forward only: no backward kernel).
* ``sdpa``: ``scaled_dot_product_attention`` with a dense ``[B, 1, T, T]`` block-causal bool
  mask. Runs everywhere; the reference the others are checked against.

On CUDA ``auto`` tries varlen, then flex, then sdpa, and keeps the first whose output matches
sdpa's on a small packed probe; anything that raises or disagrees is skipped with a log line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dataprep.columns import IGNORE_INDEX

log = logging.getLogger("dataprep.model")

BACKENDS = ("varlen", "flex", "sdpa")
MASKS = ("causal", "bidirectional", "prefix")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model.

    Attributes:
        vocab_size: tokens in the vocabulary.
        d_model: width of the residual stream.
        n_layers: transformer blocks.
        n_heads: attention heads (``d_model`` must divide by it).
        d_ff: hidden width of the MLP (default ``4 * d_model``).
        max_seq_len: the longest position the rotary table covers.
        num_labels: classes of the classification head (0: no head).
        rope_base: rotary frequency base.
    """

    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None = None
    max_seq_len: int = 2048
    num_labels: int = 0
    rope_base: float = 10000.0


# The two shapes the trainer knows. "cpu" (0.62M parameters with a byte vocabulary) was tuned on
# demo-sft on 2 cores (what it reaches there: the README's training section); "gpu" is GPT-2-small-sized.
PRESETS: dict[str, dict[str, int]] = {
    "cpu": {"d_model": 128, "n_layers": 3, "n_heads": 4},
    "gpu": {"d_model": 768, "n_layers": 12, "n_heads": 12},
}


def preset(name: str, *, vocab_size: int, max_seq_len: int, num_labels: int = 0) -> ModelConfig:
    """The ``cpu`` or ``gpu`` config for a vocabulary and row length."""
    return ModelConfig(vocab_size=vocab_size, max_seq_len=max_seq_len, num_labels=num_labels, **PRESETS[name])


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_table(head_dim: int, max_seq_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, T, D]`` by per-token angles ``cos``/``sin`` ``[B, 1, T, D/2]``."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        backend = ctx["backend"]
        if backend == "varlen":
            from torch.nn.attention.varlen import varlen_attn

            def flat(t: torch.Tensor) -> torch.Tensor:  # [B, H, T, d] -> [B*T, H, d]
                return t.transpose(1, 2).reshape(B * T, self.n_heads, -1)

            cu, max_len = ctx["cu_seqlens"], ctx["max_seqlen"]
            y = varlen_attn(flat(q), flat(k), flat(v), cu, cu, max_len, max_len, window_size=(-1, 0))
            y = y.view(B, T, D)
        else:
            if backend == "flex":
                y = ctx["flex"](q, k, v, block_mask=ctx["block_mask"])
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx["mask"])
            y = y.transpose(1, 2).reshape(B, T, D)
        return self.out(y)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        d_ff = cfg.d_ff or 4 * cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_ff, bias=False), nn.GELU(), nn.Linear(d_ff, cfg.d_model, bias=False))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], ctx: dict[str, Any]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, ctx)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """Decoder-only LM (plus an optional classification head) over packed rows.

    Args:
        cfg: the shape.
        attention: ``sdpa``, ``flex`` or ``varlen`` (see the module docstring); use
            :func:`pick_attention` to choose one for a device.
    """

    def __init__(self, cfg: ModelConfig, *, attention: str = "sdpa", mask: str = "causal"):
        super().__init__()
        if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
            raise ValueError(f"d_model {cfg.d_model} must split into {cfg.n_heads} heads of even size")
        if mask not in MASKS:
            raise ValueError(f"attention mask {mask!r} is not one of {MASKS}")
        if mask != "causal" and attention != "sdpa":
            raise ValueError(f"the {mask} mask runs on the sdpa backend only, not {attention}")
        # causal: decoder LM; bidirectional: an encoder (MLM); prefix: a prefix LM (span corruption,
        # the first prefix_len tokens of a row see each other, the rest are causal). Always within segments.
        self.cfg, self.attention, self.mask = cfg, attention, mask
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.num_labels) if cfg.num_labels else None
        cos, sin = rotary_table(cfg.d_model // cfg.n_heads, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # residual projections scaled down with depth (GPT-2)
            for proj in (block.attn.out, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
        self._flex = None

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def _context(self, document_ids: torch.Tensor, cu_seqlens: torch.Tensor | None, max_seqlen: int | None,
                 prefix_len: torch.Tensor | None = None) -> dict[str, Any]:
        """What the chosen backend needs to keep segments apart, built once per forward."""
        B, T = document_ids.shape
        if self.attention == "varlen":
            if cu_seqlens is None:  # derive segments from document_ids (decoding builds none)
                change = torch.ones(B * T, dtype=torch.bool, device=document_ids.device)
                change[1:] = document_ids.reshape(-1)[1:] != document_ids.reshape(-1)[:-1]
                change[::T] = True
                starts = torch.nonzero(change).flatten()
                cu_seqlens = torch.cat([starts, starts.new_tensor([B * T])]).to(torch.int32)
                max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
            return {"backend": "varlen", "cu_seqlens": cu_seqlens.to(document_ids.device), "max_seqlen": int(max_seqlen)}
        if self.attention == "flex":
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            if self._flex is None:
                self._flex = torch.compile(flex_attention) if document_ids.is_cuda else flex_attention

            def same_segment_causal(b, h, q, k):
                return (document_ids[b, q] == document_ids[b, k]) & (q >= k)

            block_mask = create_block_mask(same_segment_causal, B, None, T, T, device=document_ids.device)
            return {"backend": "flex", "flex": self._flex, "block_mask": block_mask}
        allowed = document_ids[:, :, None] == document_ids[:, None, :]
        if self.mask != "bidirectional":
            visible = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()[None]
            if self.mask == "prefix":  # every query also sees the whole prefix of its row
                keys = torch.arange(T, device=document_ids.device)
                visible = visible | (keys[None, None, :] < prefix_len.to(document_ids.device)[:, None, None])
            allowed = allowed & visible
        return {"backend": "sdpa", "mask": allowed[:, None]}

    def hidden(self, input_ids: torch.Tensor, position_ids: torch.Tensor, document_ids: torch.Tensor, *,
               cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None,
               prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``[B, T, d_model]``; segments never see each other."""
        if self.mask == "prefix" and prefix_len is None:
            raise ValueError("a prefix-LM model needs prefix_len (tokens per row that see each other)")
        ctx = self._context(document_ids, cu_seqlens, max_seqlen, prefix_len)
        rope = (self.rope_cos[position_ids][:, None], self.rope_sin[position_ids][:, None])
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, rope, ctx)
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits from hidden states (the output layer is the tied embedding)."""
        return F.linear(h, self.embed.weight)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` for a collated batch."""
        return self.logits(self._hidden_of(batch))

    def _hidden_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"],
                           cu_seqlens=batch.get("cu_seqlens"), max_seqlen=batch.get("max_seqlen"),
                           prefix_len=batch.get("prefix_len"))

    def masked_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy where ``labels`` is not ``IGNORE_INDEX``, *not* shifted (MLM: each
        chosen position predicts its own original token), and how many such positions there are."""
        labels = batch["labels"]
        keep = labels != IGNORE_INDEX
        logits = self.logits(self._hidden_of(batch)[keep]).float()
        return F.cross_entropy(logits, labels[keep], reduction="sum"), int(keep.sum())

    def lm_loss(self, batch: dict[str, Any], *, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy over the targets, and how many targets there are.

        ``labels`` (default ``batch["labels"]``) are aligned with ``input_ids``: position ``t``
        predicts ``labels[t + 1]``. Only target positions reach the output layer, so a large
        vocabulary costs memory only for the tokens that are trained.
        """
        labels = batch["labels"] if labels is None else labels
        h = self._hidden_of(batch)
        shifted = labels[:, 1:]
        keep = shifted != IGNORE_INDEX
        logits = self.logits(h[:, :-1][keep]).float()
        return F.cross_entropy(logits, shifted[keep], reduction="sum"), int(keep.sum())

    def class_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Summed classification cross-entropy (head on each example's last prompt token),
        the number of examples, and the predicted classes."""
        if self.head is None:
            raise ValueError("this model has no classification head (num_labels=0)")
        h = self._hidden_of(batch)
        logits = self.head(h.reshape(-1, h.shape[-1])[batch["class_positions"]]).float()
        loss = F.cross_entropy(logits, batch["class_labels"], reduction="sum")
        return loss, len(batch["class_labels"]), logits.argmax(-1)


def _probe(device: torch.device, dtype: torch.dtype, backend: str) -> float:
    """Largest difference between ``backend`` and the sdpa reference on a small packed batch. Its random
    draws come from a forked generator: the run's seed, set before the probe, still decides the run's
    weights (a probe that reseeded the global one gave every run on CUDA the same init, whatever ``seed``)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _probe_forked(device, dtype, backend)


def _probe_forked(device: torch.device, dtype: torch.dtype, backend: str) -> float:
    cfg = ModelConfig(vocab_size=64, d_model=64, n_layers=1, n_heads=2, max_seq_len=128)
    torch.manual_seed(0)
    ref = Transformer(cfg).to(device)
    other = Transformer(cfg, attention=backend).to(device)
    other.load_state_dict(ref.state_dict())
    doc = torch.tensor([[0] * 40 + [1] * 88, [2] * 128], device=device)
    pos = torch.cat([torch.arange(40), torch.arange(88), torch.arange(128)]).view(2, 128).to(device)
    ids = torch.randint(0, 64, (2, 128), device=device)
    cu = torch.tensor([0, 40, 128, 256], dtype=torch.int32, device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        a = ref.hidden(ids, pos, doc, cu_seqlens=cu, max_seqlen=128).float()
        b = other.hidden(ids, pos, doc, cu_seqlens=cu, max_seqlen=128).float()
        b.sum().backward()  # the backward must run too
    return float((a - b).abs().max())


def pick_attention(device: torch.device, *, dtype: torch.dtype = torch.float32, prefer: str = "auto") -> str:
    """The fastest attention backend that works here and matches sdpa.

    Args:
        device: where the model runs.
        dtype: the autocast dtype of training (varlen needs bf16/fp16).
        prefer: ``auto``, or one backend to try first (``sdpa`` is always the last resort).

    Returns:
        ``varlen``, ``flex`` or ``sdpa``.
    """
    if prefer == "auto":
        order = ["varlen", "flex"] if device.type == "cuda" else []
    else:
        order = [prefer] if prefer != "sdpa" else []
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    for backend in order:
        if backend == "varlen" and dtype == torch.float32:
            log.info("attention: varlen skipped (needs bf16/fp16)")
            continue
        try:
            diff = _probe(device, dtype, backend)
        except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
            log.info("attention: %s unavailable (%s: %s)", backend, type(exc).__name__, str(exc).splitlines()[0][:120])
            continue
        if diff <= tolerance:
            return backend
        log.info("attention: %s disagrees with sdpa by %.2e; not used", backend, diff)
    return "sdpa"


@contextmanager
def attention_backend(model: Transformer, backend: str) -> Iterator[Transformer]:
    """Run ``model`` with another attention backend inside the block (e.g. fp32 proofs on varlen)."""
    before, model.attention = model.attention, backend
    try:
        yield model
    finally:
        model.attention = before
