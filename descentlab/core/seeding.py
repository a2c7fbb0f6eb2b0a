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


#: The device types the project runs on (the planners' and trainers' kernels are CPU or CUDA).
DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(name: Any = None):
    """``cpu``, ``cuda``, ``cuda:N``, ``auto`` (or a torch.device) -> torch.device.

    Refused (InputError, ``where="device"``): unusable CUDA, a name torch does not know, and
    a device type torch knows but this project does not run on (``mps``, ``meta``…), which
    would otherwise fall back to the CPU without a word."""
    import torch

    name = str(name) if name is not None else "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}", where="device") from None
    if device.type not in DEVICE_TYPES:
        raise InputError(f"device {name!r} is not supported (cpu, cuda, cuda:N or auto)",
                         where="device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no GPU", where="device")
    return device


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
