"""A fused Triton kernel for the windowed expected obstacle score (CUDA only).

Same closed form as :func:`descentlab.planning.soft_map._score_and_grad` — value and
gradient in one pass — but one kernel launch for the whole batch: each program takes a
block of waypoints, builds the 1-D Gaussian weights in registers, reads the (K×K)
occupancy window (the padded map stays in L2) and writes ``s`` and ``∂s/∂(x, y)``. The
eager PyTorch version launches ~30 kernels per evaluation and is bound by launches on a
GPU; this is what makes batched planning on CUDA cheap.

Imported lazily (``PaddedMap(..., backend="triton")``); Triton is not a dependency.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _score_kernel(pts_ptr, grid_ptr, bidx_ptr, s_ptr, g_ptr, n, hp, wp, pad, inv_beta,
                  R: tl.constexpr, K: tl.constexpr, KP: tl.constexpr, BLOCK: tl.constexpr,
                  BATCHED: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    m = offs < n
    x = tl.load(pts_ptr + offs * 2, mask=m, other=0.0)
    y = tl.load(pts_ptr + offs * 2 + 1, mask=m, other=0.0)
    bx = tl.floor(x)
    by = tl.floor(y)
    kk = tl.arange(0, KP)  # (KP,)
    kvalid = kk < K
    ci = bx[:, None] + (kk[None, :] - R).to(tl.float32)  # (BLOCK, KP) window rows
    cj = by[:, None] + (kk[None, :] - R).to(tl.float32)
    dx = x[:, None] - ci
    dy = y[:, None] - cj
    wx = tl.where(kvalid[None, :], tl.exp(-dx * dx * inv_beta), 0.0)  # (BLOCK, KP)
    wy = tl.where(kvalid[None, :], tl.exp(-dy * dy * inv_beta), 0.0)
    gi = tl.minimum(tl.maximum(ci.to(tl.int32) + pad, 0), hp - 1)
    gj = tl.minimum(tl.maximum(cj.to(tl.int32) + pad, 0), wp - 1)
    flat = gi[:, :, None] * wp + gj[:, None, :]  # (BLOCK, KP, KP)
    if BATCHED:
        b = tl.load(bidx_ptr + offs, mask=m, other=0)
        flat += (b * (hp * wp))[:, None, None]
    lm = m[:, None, None] & kvalid[None, :, None] & kvalid[None, None, :]
    o = tl.load(grid_ptr + flat, mask=lm, other=0.0)  # (BLOCK, KP, KP)
    a = tl.sum(o * wy[:, None, :], axis=2)  # (BLOCK, KP): Σ_l o_kl wy_l
    bb = tl.sum(o * wx[:, :, None], axis=1)  # (BLOCK, KP): Σ_k wx_k o_kl
    sx = tl.sum(wx, axis=1)
    sy = tl.sum(wy, axis=1)
    z = sx * sy
    s = tl.sum(wx * a, axis=1) / z
    wxa = wx * (-2.0 * dx * inv_beta)
    wya = wy * (-2.0 * dy * inv_beta)
    gx = tl.sum(wxa * a, axis=1) / z - s * tl.sum(wxa, axis=1) / sx
    gy = tl.sum(wya * bb, axis=1) / z - s * tl.sum(wya, axis=1) / sy
    tl.store(s_ptr + offs, s, mask=m)
    tl.store(g_ptr + offs * 2, gx, mask=m)
    tl.store(g_ptr + offs * 2 + 1, gy, mask=m)


def score_and_grad(points: torch.Tensor, grid: torch.Tensor, beta: float, radius: int, pad: int,
                   batch_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton twin of ``soft_map._score_and_grad``. points (N, 2) -> s (N,), grad (N, 2)."""
    pts = points.contiguous().to(torch.float32)
    g32 = grid.to(torch.float32)
    n = pts.shape[0]
    s = torch.empty(n, device=pts.device, dtype=torch.float32)
    g = torch.empty(n, 2, device=pts.device, dtype=torch.float32)
    k = 2 * radius + 2
    kp = triton.next_power_of_2(k)
    block = max(1, min(64, 8192 // (kp * kp)))
    bidx = batch_index.to(torch.int32).contiguous() if batch_index is not None else pts
    grid_fn = (triton.cdiv(n, block),)
    _score_kernel[grid_fn](pts, g32, bidx, s, g, n, grid.shape[-2], grid.shape[-1], pad,
                           1.0 / float(beta), R=radius, K=k, KP=kp, BLOCK=block,
                           BATCHED=batch_index is not None)
    return s.to(points.dtype), g.to(points.dtype)
