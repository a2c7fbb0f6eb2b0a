"""Seeds, devices and torch threads."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

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


@contextlib.contextmanager
def torch_threads(device: Any = "cpu", n: int | None = 1) -> Iterator[None]:
    """``n`` torch threads while on the CPU, the previous setting restored on exit
    (``n=None``: leave it as is). The planners' and tiny models' tensors are small and
    overhead-bound: extra threads only contend (a tiny-GPT-2 training step ran 13x slower on
    2 threads than on 1 on a busy 2-core machine; the navigator about 3x)."""
    import torch

    old = torch.get_num_threads()
    if n is not None and torch.device(device).type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
