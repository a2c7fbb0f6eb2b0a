"""One training loop for every trainer (preference offline / on-policy, RAG): a trainer is a
loss function plus this module.

Contract
========
::

    result = train(model, loss_fn, batch_fn, config, out_dir, resume=False,
                   accelerator=None, eval_fn=None, stop_at_step=None)

``config: TrainConfig``
    optimiser (AdamW), schedule (warmup + cosine/linear/constant), ``max_steps`` optimiser
    steps, ``batch_size`` examples per micro-batch *per process*, ``grad_accum``
    micro-batches per step (global batch = batch_size × grad_accum × processes), clipping,
    precision, log/save/eval intervals, seed.

``loss_fn(model, batch) -> (loss, metrics)``
    ``model`` is the prepared model (DDP-wrapped under ``accelerate launch``: call it, don't
    reach into it; use ``ctx.model`` in ``batch_fn`` for ``generate``). ``loss`` is a scalar,
    the mean over the micro-batch; the loop divides by ``grad_accum`` and DDP averages over
    processes, so equal micro-batches give the gradient of the global-batch mean.
    ``metrics`` maps names (``rewards/margins``) to floats or 0-dim tensors; they are
    detached, averaged over micro-batches, over the steps of a log window and over
    processes, and written to ``out_dir/train_log.jsonl``. Every call must return the same
    keys (processes reduce them in sorted order).

``batch_fn(step, micro, ctx) -> batch``
    ``step`` = optimiser step ``0 … max_steps-1``, ``micro`` = ``0 … grad_accum-1``,
    ``ctx``: :class:`BatchContext` (rank, world size, batch size, seed, device, unwrapped
    model). It MUST be a deterministic function of its arguments (and of the model's current
    parameters, e.g. for on-policy sampling with a generator seeded from ``(seed, step,
    micro, rank)``), never of hidden iterator state: exact resume restarts at ``(step, 0)``
    with nothing replayed. The loop moves the batch (tensors inside dicts / lists / tuples /
    dataclasses) to the device. :class:`EpochSampler` turns ``(step, micro, rank)`` into
    example indices with a fresh shuffle per epoch (and tells the epoch, for per-epoch
    re-splitting); :func:`indexed_batches` wraps it with a collate function.

``on_step(step)`` (optional)
    called after every optimiser step (timing, benchmarks); ``stop_at_step=k`` checkpoints
    and returns after step k (time-boxed jobs, resume tests).

``eval_fn(model, step) -> dict`` (optional)
    called on every process every ``eval_every`` steps and at the end with the unwrapped
    model in eval mode; its values are logged under ``eval/…``.

Files in ``out_dir``: ``train_log.jsonl`` (one record per log step: ``step``, ``lr``,
``loss``, ``grad_norm``, the metrics), ``checkpoint.pt`` (written atomically every
``save_every`` steps and at the end: trainable parameters and buffers, optimiser,
scheduler, grad scaler, every process's RNG states, the unfinished log window, the step).
``resume=True`` restores all of it, truncates the log to the checkpoint's step and
continues: on CPU the parameters are bitwise identical to an uninterrupted run.
``out_dir=None``: no files (no log, no checkpoint; the history is in the result).

Resume is refused (:class:`InputError` naming the first difference, ``where="resume"``:
``loss differs: checkpoint ipo, now simpo``) unless every setting that changes the result
is the checkpoint's: every :class:`TrainConfig` field but the bookkeeping ones
(:data:`BOOKKEEPING`: log/save/eval intervals), the resolved precision, the number of
processes, and the trainer's own ``settings`` (loss and its parameters, data and model
fingerprints…), compared in that order, trainer's first. ``extend=True`` lets
``max_steps`` differ (not below the checkpoint's step): the run continues from the
checkpoint, with the learning rate from the *new* schedule at each step. Guarantee: an
extended run is a deterministic function of (the run to the checkpoint, the new
``max_steps``), bitwise on CPU however often it is interrupted and resumed; it equals a run
started with the larger ``max_steps`` only when the schedule does not depend on
``max_steps`` (``constant``, warmup included). With ``cosine``/``linear`` the earlier steps
followed the shorter schedule, and the learning rate jumps at the checkpoint to the longer
schedule's value there (the schedule is not restarted: a new warmup would be a new run).

Accelerator: in one process the loop uses :class:`LocalAccelerator` (autocast, grad
scaler, device; no global state, so several runs with different precisions or devices can
follow each other in one process). Under ``accelerate launch``/``torchrun``
(``WORLD_SIZE > 1``) :func:`make_accelerator` returns an ``accelerate.Accelerator``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError
from descentlab.core.io import atomic_write
from descentlab.core.progress import progress
from descentlab.core.seeding import resolve_device

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for :func:`train` (AdamW, warmup + decay)."""

    lr: float = option(3e-4, "peak learning rate of AdamW", gt=0)
    weight_decay: float = option(0.0, "AdamW decoupled weight decay", min=0)
    adam_beta1: float = option(0.9, "AdamW beta1 (< 1)", min=0)
    adam_beta2: float = option(0.999, "AdamW beta2 (< 1)", min=0)
    adam_eps: float = option(1e-8, "AdamW epsilon", gt=0)
    schedule: str = option("cosine", "learning-rate decay after warmup",
                           choices=lambda: SCHEDULES)
    warmup_steps: int = option(0, "linear warmup steps from 0 to lr", min=0)
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of lr", min=0, max=1)
    max_steps: int = option(100, "optimiser steps", min=1)
    batch_size: int = option(8, "examples per micro-batch per process", min=1)
    grad_accum: int = option(1, "micro-batches accumulated per optimiser step", min=1)
    max_grad_norm: float = option(1.0, "clip the global gradient norm (0 = no clipping)", min=0)
    precision: str = option("auto", "autocast precision; auto = bf16 on a GPU that has it",
                            choices=("auto", "no", "bf16", "fp16"))
    log_every: int = option(10, "steps per log record", min=1)
    save_every: int = option(0, "steps between checkpoints (0 = only at the end)", min=0)
    eval_every: int = option(0, "steps between evaluations (0 = only at the end)", min=0)
    seed: int = option(0, "seed of the loop's RNGs (dropout, sampling)", flag=False)

    def __post_init__(self) -> None:
        check_config(self)
        for name in ("adam_beta1", "adam_beta2"):
            if not getattr(self, name) < 1:
                raise field_error(self, name, f"must be < 1, got {getattr(self, name)}")


def train_option(name: str, default: Any, help: str | None = None) -> Any:
    """The :class:`TrainConfig` field ``name`` with another default (and optionally another
    help) for a subclass: its bounds, choices and (by default) help stay in one place."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    m = f.metadata
    return option(default, m["help"] if help is None else help, choices=m["choices"],
                  min=m["min"], max=m["max"], gt=m["gt"], flag=m["flag"])


# ---- learning-rate schedules: multiplier of lr at a step, after linear warmup -------------

def _cosine(progress_: float, min_ratio: float) -> float:
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress_))


def _linear(progress_: float, min_ratio: float) -> float:
    return min_ratio + (1 - min_ratio) * (1 - progress_)


def _constant(progress_: float, min_ratio: float) -> float:
    return 1.0


SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "cosine": _cosine, "linear": _linear, "constant": _constant,
}


def lr_multiplier(step: int, *, schedule: str, warmup: int, total: int, min_ratio: float) -> float:
    """lr(step)/lr: ``(step+1)/warmup`` during warmup, then the decay over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return SCHEDULES[schedule](min(1.0, (step - warmup) / span), min_ratio)


# ---- data ---------------------------------------------------------------------------------

@dataclass
class BatchContext:
    """What ``batch_fn`` may use besides ``(step, micro)``."""

    rank: int
    world_size: int
    batch_size: int
    grad_accum: int
    seed: int
    device: torch.device
    model: Any = None  # the unwrapped model (for generation); set by the loop


@dataclass
class EpochSampler:
    """Example indices for ``(step, micro, rank)``: an endless stream of per-epoch shuffles.

    The stream is ``perm_0 ‖ perm_1 ‖ …`` (``perm_e`` a permutation of ``range(n)`` seeded by
    ``(seed, e)``; identity if ``shuffle=False``). Global micro-batch ``g = step·grad_accum +
    micro`` takes stream positions ``[g·B·W, (g+1)·B·W)`` (``B`` per-process batch, ``W``
    processes) and rank ``r`` the slice ``r·B … (r+1)·B``: W processes see exactly the batch
    one process with ``B·W`` would, in the same order. Batches may straddle epochs.
    """

    n: int
    batch_size: int
    grad_accum: int = 1
    world_size: int = 1
    seed: int = 0
    shuffle: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise InputError("no examples to train on", where="data")

    def position(self, step: int, micro: int, rank: int = 0) -> int:
        """Stream position of the first example of this rank's micro-batch."""
        g = step * self.grad_accum + micro
        return (g * self.world_size + rank) * self.batch_size

    def epoch(self, step: int, micro: int = 0, rank: int = 0) -> int:
        """The epoch the micro-batch starts in (``position // n``)."""
        return self.position(step, micro, rank) // self.n

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, epoch])
                self._cache = {epoch: rng.permutation(self.n)}
            else:
                self._cache = {epoch: np.arange(self.n)}
        return self._cache[epoch]

    def indices(self, step: int, micro: int, rank: int = 0) -> list[int]:
        """``batch_size`` example indices in ``range(n)`` for this rank's micro-batch."""
        pos = self.position(step, micro, rank)
        out = [int(self._perm((pos + k) // self.n)[(pos + k) % self.n])
               for k in range(self.batch_size)]
        return out


def indexed_batches(n: int, collate: Callable[..., Any], *, shuffle: bool = True,
                    with_context: bool = False) -> Callable[[int, int, BatchContext], Any]:
    """A ``batch_fn`` that collates the :class:`EpochSampler` indices of each micro-batch:
    ``collate(indices)``, or ``collate(indices, step, micro, ctx)`` with ``with_context``
    (e.g. on-policy sampling seeded from the step)."""
    cache: dict[tuple, EpochSampler] = {}

    def batch_fn(step: int, micro: int, ctx: BatchContext) -> Any:
        key = (ctx.batch_size, ctx.grad_accum, ctx.world_size, ctx.seed)
        if key not in cache:
            cache[key] = EpochSampler(n, ctx.batch_size, ctx.grad_accum, ctx.world_size,
                                      ctx.seed, shuffle)
        idx = cache[key].indices(step, micro, ctx.rank)
        return collate(idx, step, micro, ctx) if with_context else collate(idx)

    return batch_fn


# ---- accelerate ---------------------------------------------------------------------------

def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``no``."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class LocalAccelerator:
    """What the loop needs of ``accelerate.Accelerator``, for one process, with no global
    state: ``autocast()``, a grad scaler for fp16 on CUDA, ``backward``, clipping.

    Numerically what accelerate does in one process: the model's forward runs under
    autocast in ``mixed_precision`` (the loop enters :meth:`autocast` around ``loss_fn``,
    ``batch_fn`` and ``eval_fn``), fp16 gradients are scaled and unscaled before clipping.
    """

    num_processes = 1
    process_index = 0
    is_main_process = True

    def __init__(self, mixed_precision: str = "no", device: str | torch.device = "cpu"):
        if mixed_precision not in ("no", *_AUTOCAST_DTYPES):
            raise InputError(f"unknown precision {mixed_precision!r}", where="precision")
        self.device = torch.device(device)
        self.mixed_precision = mixed_precision
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if mixed_precision == "fp16" and self.device.type == "cuda" else None)
        self._optimizer: torch.optim.Optimizer | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.mixed_precision])

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self._optimizer = optimizer
        return model.to(self.device), optimizer

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        if self.scaler is not None:
            self.scaler.unscale_(self._optimizer)
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:     # skips the step on inf/nan gradients, as accelerate
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def no_sync(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def wait_for_everyone(self) -> None:
        pass

    def reduce(self, tensor: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return tensor


def make_accelerator(precision: str = "auto", device: str | torch.device = "cpu"):
    """The loop's accelerator on ``device``: a :class:`LocalAccelerator` in one process, an
    ``accelerate.Accelerator`` under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE > 1``).

    Distributed on a CPU device the processes form a gloo (MULTI_CPU) group. Note: with
    accelerate 1.x, ``accelerate launch --cpu --num_processes N`` starts ONE process unless
    MPI is configured; on CPU use ``accelerate launch --multi_gpu --num_processes N``
    (torchrun), which this function turns into a CPU group. A device other than the CPU
    or a usable GPU is refused (:func:`~descentlab.core.seeding.resolve_device`).
    Nothing here touches process-wide state in a single process.
    """
    device = resolve_device(device)  # an unusable or unsupported device is refused
    cpu = device.type == "cpu"
    mp = resolve_precision(precision, torch.device("cpu") if cpu else device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return LocalAccelerator(mp, "cpu" if cpu else device)
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mp, cpu=cpu)


def _optimizer_step(acc: Any, optimizer: torch.optim.Optimizer) -> None:
    if isinstance(acc, LocalAccelerator):
        acc.optimizer_step(optimizer)
    else:                                # accelerate's prepared optimizer scales itself
        optimizer.step()


# ---- checkpoint state ---------------------------------------------------------------------

def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with ``requires_grad`` and all buffers (what training can change)."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    keep |= {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in keep}


#: TrainConfig fields that change only the bookkeeping (log, checkpoint and eval records),
#: not the parameters: a resume may change them.
BOOKKEEPING = ("log_every", "save_every", "eval_every")


def run_settings(config: TrainConfig, accelerator: Any,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that changes the result of a run, in the order a resume compares it: the
    trainer's ``settings`` first, then every :class:`TrainConfig` field but
    :data:`BOOKKEEPING`, the resolved ``precision`` and the number of ``processes``."""
    out = dict(settings or {})
    out.update({k: v for k, v in asdict(config).items() if k not in BOOKKEEPING})
    out["precision"] = str(accelerator.mixed_precision)
    out["processes"] = accelerator.num_processes
    return out


def state_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state: every parameter and buffer, by name, as raw bytes. What a
    resume or a cache compares for a model that has no file to point at, or whose folder may
    move (the same weights anywhere give the same fingerprint)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _show(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12]                         # a sha256 fingerprint
    return str(v)


_UNRECORDED = "(not recorded)"


def compare_settings(saved: dict[str, Any], now: dict[str, Any], step: int, *,
                     extend: bool = False, strict: bool = True) -> None:
    """InputError (``where="resume"``) naming the first setting of ``now`` that differs from
    the checkpoint's ``saved`` (``loss differs: checkpoint ipo, now simpo``); with
    ``strict`` a setting the checkpoint does not record differs too. ``extend``:
    ``max_steps`` may differ, not below the checkpoint's ``step``."""
    for k, v in now.items():
        if k not in saved and not strict:
            continue
        was = saved.get(k, _UNRECORDED)
        if k == "max_steps" and extend:
            if v < step:
                raise InputError(f"max_steps {v} is below the checkpoint's step {step}",
                                 where="resume")
            continue
        if was != v and not (isinstance(was, (list, tuple)) and isinstance(v, (list, tuple))
                             and list(was) == list(v)):
            hint = ("; to train on to the new max_steps, resume with extend"
                    if k == "max_steps" else "")
            raise InputError(f"{k} differs: checkpoint {_show(was)}, now {_show(v)}{hint}",
                             where="resume")


def check_resume(out_dir: str | os.PathLike, settings: dict[str, Any], *,
                 extend: bool = False) -> int:
    """Before any work: the step of ``out_dir``'s checkpoint, after :func:`compare_settings`
    against ``settings`` (from :func:`run_settings`). No checkpoint: InputError."""
    state = _load_checkpoint(Path(out_dir) / CHECKPOINT)
    compare_settings(_saved_settings(state), settings, state["step"], extend=extend,
                     strict="settings" in state)
    return int(state["step"])


def _load_checkpoint(path: Path, *, mmap: bool = True) -> dict:
    if not path.exists():
        raise InputError("no checkpoint to resume from", where=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise InputError(f"cannot read the checkpoint: {str(e).splitlines()[0]}",
                         where=path) from None


def _saved_settings(state: dict) -> dict[str, Any]:
    if "settings" in state:
        return state["settings"]
    # checkpoints before settings were recorded: their config, processes as world_size
    return {**{k: v for k, v in state["config"].items() if k not in BOOKKEEPING},
            "processes": state.get("world_size", 1)}


class _Window:
    """Sums and counts of metrics over a log window (one accumulator for every metric)."""

    def __init__(self, sums: dict | None = None, counts: dict | None = None):
        self.sums: dict[str, float] = dict(sums or {})
        self.counts: dict[str, int] = dict(counts or {})

    def add(self, metrics: dict[str, Any]) -> None:
        """Add one value per metric; tensors stay on their device (no sync per step)."""
        for k, v in metrics.items():
            v = v.detach().double().mean() if torch.is_tensor(v) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def plain(self) -> dict[str, dict]:
        """Python floats (for the checkpoint)."""
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "counts": self.counts}

    def means(self) -> dict[str, float]:
        return {k: float(self.sums[k]) / self.counts[k] for k in sorted(self.sums)}


@dataclass
class TrainResult:
    """What :func:`train` leaves: the final step, the log records, the files (None without an
    output folder), the (unwrapped) model and the accelerator."""

    step: int
    history: list[dict]
    log_path: Path | None
    checkpoint_path: Path | None
    model: Any = None  # unwrapped
    accelerator: Any = None
    seconds: float = 0.0


def _read_log(path: Path, upto: int) -> list[dict]:
    """Records of a previous log with ``step <= upto`` (a torn last line is dropped)."""
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("step", 0) <= upto:
                out.append(rec)
    return out


def train(model: torch.nn.Module, loss_fn: Callable, batch_fn: Callable, config: TrainConfig,
          out_dir: str | os.PathLike | None = None, *, resume: bool = False,
          extend: bool = False, settings: dict[str, Any] | None = None,
          accelerator: Any = None, device: str | torch.device = "cpu",
          eval_fn: Callable | None = None, stop_at_step: int | None = None,
          desc: str = "train", on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Run the loop described in the module docstring; returns a :class:`TrainResult`.

    ``out_dir``: where the log and checkpoints go (None: nowhere; no resume).
    ``resume``/``extend``/``settings``: see the module docstring.
    ``stop_at_step``: checkpoint and return after that many steps (resume later).
    ``on_step(step)``: called after every optimiser step (timing, early stopping by raising).
    """
    from accelerate.utils import gather_object, send_to_device

    acc = accelerator or make_accelerator(config.precision, device)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    log_path = out / LOG if out is not None else None
    if resume and out is None:
        raise InputError("resuming needs the output folder of the run", where="out_dir")
    if extend and not resume:  # a fresh run would replace the run it was meant to extend
        raise InputError("extends a checkpointed run: it needs resume", where="extend")
    current = run_settings(config, acc, settings)
    if resume:      # before any work: the checkpoint must be this run's
        state = _load_checkpoint(ckpt_path, mmap=False)
        compare_settings(_saved_settings(state), current, state["step"], extend=extend,
                         strict="settings" in state)
    if out is not None and acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2),
                                  eps=config.adam_eps)
    # The scheduler is stepped by hand once per optimiser step (not prepared: accelerate
    # would step it once per process).
    multiplier = functools.partial(lr_multiplier, schedule=config.schedule,
                                   warmup=config.warmup_steps, total=config.max_steps,
                                   min_ratio=config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    model, optimizer = acc.prepare(model, optimizer)
    unwrapped = acc.unwrap_model(model)

    step, window = 0, _Window()
    history: list[dict] = []
    if resume:
        missing = set(state["model"]) - set(unwrapped.state_dict())
        if missing:
            raise InputError(f"checkpoint does not match the model ({len(missing)} unknown "
                             f"tensors, e.g. {sorted(missing)[0]})", where=ckpt_path)
        unwrapped.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        if extend:   # the new schedule's learning rate from here on
            for g, base in zip(optimizer.param_groups, scheduler.base_lrs):
                g["lr"] = base * multiplier(step)
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        if state.get("scaler") is not None and acc.scaler is not None:
            acc.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][acc.process_index])
        window = _Window(state["window"]["sums"], state["window"]["counts"])
        history = _read_log(log_path, step)
        del state
    else:
        random.seed(config.seed + acc.process_index)
        np.random.seed((config.seed + acc.process_index) % 2**32)
        torch.manual_seed(config.seed + acc.process_index)
    if log_path is not None and acc.is_main_process:
        with atomic_write(log_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)

    ctx = BatchContext(rank=acc.process_index, world_size=acc.num_processes,
                       batch_size=config.batch_size, grad_accum=config.grad_accum,
                       seed=config.seed, device=acc.device, model=unwrapped)
    end = config.max_steps if stop_at_step is None else min(config.max_steps, stop_at_step)

    def save() -> None:
        if ckpt_path is None:
            return
        rngs = gather_object([_rng_state()]) if acc.num_processes > 1 else [_rng_state()]
        if acc.is_main_process:
            state = {"step": step, "config": asdict(config), "settings": current,
                     "world_size": acc.num_processes,
                     "model": trainable_state(unwrapped), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(),
                     "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
                     "rng": rngs, "window": window.plain()}
            with atomic_write(ckpt_path, "wb") as f:
                torch.save(state, f)
        acc.wait_for_everyone()

    def evaluate() -> dict[str, float]:
        unwrapped.eval()
        with torch.no_grad(), acc.autocast():
            res = eval_fn(unwrapped, step) if eval_fn else {}
        unwrapped.train()
        return {f"eval/{k}": float(v) for k, v in res.items()}

    def log(extra: dict[str, float]) -> None:
        nonlocal window
        means = window.means()
        if means and acc.num_processes > 1:
            t = torch.tensor(list(means.values()), dtype=torch.float64, device=acc.device)
            means = dict(zip(means, acc.reduce(t, "mean").tolist()))
        rec = {"step": step, **means, **extra}
        history.append(rec)
        window = _Window()
        if log_path is not None and acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    t0 = time.perf_counter()
    model.train()
    bar = progress(total=end, desc=desc, initial=step,
                   disable=None if acc.is_main_process else True)
    while step < end:
        for micro in range(config.grad_accum):
            with acc.autocast():
                batch = send_to_device(batch_fn(step, micro, ctx), acc.device)
            sync = micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                with acc.autocast():
                    loss, metrics = loss_fn(model, batch)
                acc.backward(loss / config.grad_accum)
            window.add({"loss": loss.detach(), **metrics})
        norm = acc.clip_grad_norm_(model.parameters(), config.max_grad_norm
                                   if config.max_grad_norm > 0 else float("inf"))
        lr = scheduler.get_last_lr()[0]
        _optimizer_step(acc, optimizer)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.add({"grad_norm": norm, "lr": lr})
        step += 1
        bar.update(1)
        if on_step is not None:
            on_step(step)
        do_eval = eval_fn is not None and (step == config.max_steps or (
            config.eval_every and step % config.eval_every == 0))
        extra = evaluate() if do_eval else {}
        if step % config.log_every == 0 or step == config.max_steps or extra:
            log(extra)
            bar.set_postfix(loss=f"{history[-1].get('loss', float('nan')):.4g}")
        if (config.save_every and step % config.save_every == 0) or step == end:
            save()
    bar.close()
    return TrainResult(step=step, history=history, log_path=log_path, checkpoint_path=ckpt_path,
                       model=unwrapped, accelerator=acc, seconds=time.perf_counter() - t0)


def save_pretrained(model: Any, tokenizer: Any, path: str | os.PathLike,
                    accelerator: Any = None) -> Path:
    """``save_pretrained`` a model (and its tokenizer, unless None) into folder ``path``
    (created), on the main process only when an ``accelerator`` is given; returns the
    folder. The one place a trained or initial model is written."""
    path = Path(path)
    if accelerator is None or accelerator.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return path
