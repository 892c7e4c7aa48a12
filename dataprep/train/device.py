"""Where training runs: the device, its training precision, and moving batches onto it."""

from __future__ import annotations

from typing import Any

import torch

from dataprep.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees it, else CPU), ``cpu`` or ``cuda``.

    Raises:
        ConfigError: ``cuda`` asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device", fix="--device cpu (or auto)")
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 autocast on CUDA (fp32 master weights, bf16 matmuls); CPU stays fp32 (bf16 is slower there)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so a clock read afterwards counts it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
