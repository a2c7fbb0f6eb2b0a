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
"""

from __future__ import annotations

import contextlib
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

from descentlab.core.config import option
from descentlab.core.errors import InputError
from descentlab.core.io import atomic_write
from descentlab.core.progress import progress

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for :func:`train` (AdamW, warmup + decay)."""

    lr: float = option(3e-4, "peak learning rate of AdamW")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    schedule: str = option("cosine", "learning-rate decay after warmup",
                           choices=("cosine", "linear", "constant"))
    warmup_steps: int = option(0, "linear warmup steps from 0 to lr")
    min_lr_ratio: float = option(0.0, "final learning rate as a fraction of lr")
    max_steps: int = option(100, "optimiser steps")
    batch_size: int = option(8, "examples per micro-batch per process")
    grad_accum: int = option(1, "micro-batches accumulated per optimiser step")
    max_grad_norm: float = option(1.0, "clip the global gradient norm (0 = no clipping)")
    precision: str = option("auto", "autocast precision; auto = bf16 on a GPU that has it",
                            choices=("auto", "no", "bf16", "fp16"))
    log_every: int = option(10, "steps per log record")
    save_every: int = option(0, "steps between checkpoints (0 = only at the end)")
    eval_every: int = option(0, "steps between evaluations (0 = only at the end)")
    seed: int = option(0, "seed of the loop's RNGs (dropout, sampling)", flag=False)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}",
                                 where=f"--{name.replace('_', '-')}")
        for name in ("warmup_steps", "save_every", "eval_every"):
            if getattr(self, name) < 0:
                raise InputError("must be >= 0", where=f"--{name.replace('_', '-')}")
        if not self.lr > 0:
            raise InputError(f"must be > 0, got {self.lr}", where="--lr")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; choose from "
                             f"{', '.join(SCHEDULES)}", where="--schedule")


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


def indexed_batches(n: int, collate: Callable[[list[int]], Any], *,
                    shuffle: bool = True) -> Callable[[int, int, BatchContext], Any]:
    """A ``batch_fn`` that collates the :class:`EpochSampler` indices of each micro-batch."""
    cache: dict[tuple, EpochSampler] = {}

    def batch_fn(step: int, micro: int, ctx: BatchContext) -> Any:
        key = (ctx.batch_size, ctx.grad_accum, ctx.world_size, ctx.seed)
        if key not in cache:
            cache[key] = EpochSampler(n, ctx.batch_size, ctx.grad_accum, ctx.world_size,
                                      ctx.seed, shuffle)
        return collate(cache[key].indices(step, micro, ctx.rank))

    return batch_fn


# ---- accelerate ---------------------------------------------------------------------------

def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``no``."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_accelerator(precision: str = "auto", device: str | torch.device = "cpu"):
    """An ``accelerate.Accelerator`` on ``device``'s type (cuda: one GPU per process).

    Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE > 1``) with a CPU device, or on a
    machine without CUDA, the processes form a gloo (MULTI_CPU) group. Note: with accelerate
    1.x, ``accelerate launch --cpu --num_processes N`` starts ONE process unless MPI is
    configured; on CPU use ``accelerate launch --multi_gpu --num_processes N`` (torchrun),
    which this function turns into a CPU group. In a single process, state left by an earlier
    Accelerator with other settings (tests, notebooks) is reset first.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    device = torch.device(device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = device.type == "cpu" or not torch.cuda.is_available()
    mp = resolve_precision(precision, torch.device("cpu") if cpu else device)
    if AcceleratorState._shared_state and not distributed:
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mp, cpu=cpu)


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


_RESUME_KEYS = ("batch_size", "grad_accum", "max_steps", "seed", "lr", "schedule",
                "warmup_steps")


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
    """What :func:`train` leaves: the final step, the log records, the files, the model."""

    step: int
    history: list[dict]
    log_path: Path
    checkpoint_path: Path
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
            if rec.get("step", 0) <= upto:
                out.append(rec)
    return out


def train(model: torch.nn.Module, loss_fn: Callable, batch_fn: Callable, config: TrainConfig,
          out_dir: str | os.PathLike, *, resume: bool = False, accelerator: Any = None,
          device: str | torch.device = "cpu", eval_fn: Callable | None = None,
          stop_at_step: int | None = None, desc: str = "train",
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Run the loop described in the module docstring; returns a :class:`TrainResult`.

    ``stop_at_step``: checkpoint and return after that many steps (resume later).
    ``on_step(step)``: called after every optimiser step (timing, early stopping by raising).
    """
    from accelerate.utils import gather_object, send_to_device

    out = Path(out_dir)
    acc = accelerator or make_accelerator(config.precision, device)
    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2),
                                  eps=config.adam_eps)
    # The scheduler is stepped by hand once per optimiser step (not prepared: accelerate
    # would step it once per process).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
        lr_multiplier, schedule=config.schedule, warmup=config.warmup_steps,
        total=config.max_steps, min_ratio=config.min_lr_ratio))
    model, optimizer = acc.prepare(model, optimizer)
    unwrapped = acc.unwrap_model(model)

    step, window = 0, _Window()
    history: list[dict] = []
    if resume:
        if not ckpt_path.exists():
            raise InputError("no checkpoint to resume from", where=ckpt_path)
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = state["config"]
        for k in _RESUME_KEYS:
            if saved.get(k) != getattr(config, k):
                raise InputError(f"checkpoint has {k}={saved.get(k)!r} but this run has "
                                 f"{getattr(config, k)!r}", where=ckpt_path)
        if state["world_size"] != acc.num_processes:
            raise InputError(f"checkpoint was made with {state['world_size']} processes, "
                             f"this run has {acc.num_processes}", where=ckpt_path)
        missing = set(state["model"]) - set(unwrapped.state_dict())
        if missing:
            raise InputError(f"checkpoint does not match the model ({len(missing)} unknown "
                             f"tensors, e.g. {sorted(missing)[0]})", where=ckpt_path)
        unwrapped.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and acc.scaler is not None:
            acc.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][acc.process_index])
        step = state["step"]
        window = _Window(state["window"]["sums"], state["window"]["counts"])
        history = _read_log(log_path, step)
    else:
        random.seed(config.seed + acc.process_index)
        np.random.seed((config.seed + acc.process_index) % 2**32)
        torch.manual_seed(config.seed + acc.process_index)
    if acc.is_main_process:
        with atomic_write(log_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)

    ctx = BatchContext(rank=acc.process_index, world_size=acc.num_processes,
                       batch_size=config.batch_size, grad_accum=config.grad_accum,
                       seed=config.seed, device=acc.device, model=unwrapped)
    end = config.max_steps if stop_at_step is None else min(config.max_steps, stop_at_step)

    def save() -> None:
        rngs = gather_object([_rng_state()]) if acc.num_processes > 1 else [_rng_state()]
        if acc.is_main_process:
            state = {"step": step, "config": asdict(config), "world_size": acc.num_processes,
                     "model": trainable_state(unwrapped), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(),
                     "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
                     "rng": rngs, "window": window.plain()}
            with atomic_write(ckpt_path, "wb") as f:
                torch.save(state, f)
        acc.wait_for_everyone()

    def evaluate() -> dict[str, float]:
        unwrapped.eval()
        with torch.no_grad():
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
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    t0 = time.perf_counter()
    model.train()
    bar = progress(total=end, desc=desc, initial=step,
                   disable=None if acc.is_main_process else True)
    while step < end:
        for micro in range(config.grad_accum):
            batch = send_to_device(batch_fn(step, micro, ctx), acc.device)
            sync = micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                loss, metrics = loss_fn(model, batch)
                acc.backward(loss / config.grad_accum)
            window.add({"loss": loss.detach(), **metrics})
        norm = acc.clip_grad_norm_(model.parameters(), config.max_grad_norm
                                   if config.max_grad_norm > 0 else float("inf"))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
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


def save_pretrained(result: TrainResult, path: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Main process: ``save_pretrained`` the trained model (and tokenizer) into ``path``."""
    path = Path(path)
    acc = result.accelerator
    if acc is None or acc.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        result.model.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    if acc is not None:
        acc.wait_for_everyone()
    return path
