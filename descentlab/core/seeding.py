"""Seeds and devices."""

from __future__ import annotations

import random

import numpy as np

from descentlab.core.errors import InputError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | None):
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` -> torch.device; unusable CUDA is an InputError."""
    import torch

    name = name or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no GPU", where="device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}", where="device") from None
