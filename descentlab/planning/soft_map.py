"""Soft position maps and the expected obstacle score (SPEC A).

A real position ``p = (x, y)`` becomes a distribution over cells

    m_c(i, j) ∝ exp(-((x - i)^2 + (y - j)^2) / β),   Σ_ij m_c(i, j) = 1,

(β is the squared width: large β = blurry), and the expected obstacle score of a waypoint is
``s(p) = Σ_ij m_c(i, j) m_o(i, j)``. Cells outside the map count as obstacles: the lattice
is the map surrounded by obstacle cells.

Two forms with the same value and gradient:

* :func:`obstacle_score_dense` — the note's formulation: a full soft map per waypoint over
  the (padded) grid, O(T·H·W). Kept as the reference (tests, benchmark).
* :func:`obstacle_score` — O(T·r²). The Gaussian is separable,
  ``exp(-(dx² + dy²)/β) = exp(-dx²/β)·exp(-dy²/β)``, so the normaliser is the product of
  two 1-D sums, and every cell further than ``r = ⌈√(β·ln(1/ε))⌉`` from ``p`` along an axis
  has relative weight below ε. Summing over a (2r+2)² window around ``p`` therefore gives
  the dense value (and, by the same bound on the derivative terms, its gradient) up to
  O(ε) relative error, independent of the map size. Value and gradient are computed in
  one pass in closed form (:class:`_WindowedScore`):

      s = Σ_kl wx_k o_kl wy_l / (Sx Sy),   wx_k = exp(-(x - i_k)²/β),  Sx = Σ_k wx_k
      ∂s/∂x = (Σ_kl wx_k ax_k o_kl wy_l) / (Sx Sy) - s · (Σ_k wx_k ax_k) / Sx,
      ax_k = -2 (x - i_k) / β      (and symmetrically in y).
"""

from __future__ import annotations

import math

import numpy as np
import torch

DEFAULT_EPS = 1e-7


def window_radius(beta: float, eps: float = DEFAULT_EPS) -> int:
    """Half-width r = ⌈√(β·ln(1/ε))⌉ beyond which a cell's weight is below ε (relative)."""
    return max(1, math.ceil(math.sqrt(beta * math.log(1.0 / eps))))


def pad_occupancy(occ: torch.Tensor | np.ndarray, pad: int) -> torch.Tensor:
    """Surround the map with ``pad`` rings of obstacle cells. (..., H, W) -> (..., H+2p, W+2p) float."""
    occ_t = torch.as_tensor(np.asarray(occ) if not torch.is_tensor(occ) else occ)
    occ_t = occ_t.to(torch.float32) if not occ_t.is_floating_point() else occ_t
    return torch.nn.functional.pad(occ_t, (pad, pad, pad, pad), value=1.0)


class PaddedMap:
    """An obstacle map (H, W), values in [0, 1], padded for windowed lookups at one radius.

    Build once per map and β range (``radius`` = the largest window used); pass to
    :func:`obstacle_score`. ``occ`` may also be batched (B, H, W): then points must be
    (B, ..., 2), one map per problem. ``backend`` picks the window kernel (``BACKENDS``):
    ``torch`` (eager), ``compile`` (torch.compile), ``triton`` (one fused CUDA kernel), or
    ``auto`` (triton on CUDA when importable, else torch).
    """

    def __init__(self, occ: torch.Tensor | np.ndarray, radius: int, device=None,
                 dtype: torch.dtype = torch.float32, backend: str = "torch"):
        self.radius = radius
        self.pad = radius + 1
        self.height, self.width = occ.shape[-2], occ.shape[-1]
        self.grid = pad_occupancy(occ, self.pad).to(device=device, dtype=dtype).contiguous()
        self.batched = self.grid.dim() == 3
        if backend == "auto":
            backend = "triton" if self.grid.is_cuda and _triton_available() else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {sorted(BACKENDS)}")
        self.backend = backend
        self.kernel = BACKENDS[backend]()


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_kernel():
    from descentlab.planning.soft_map_triton import score_and_grad

    return score_and_grad


def _score_and_grad(points: torch.Tensor, grid: torch.Tensor, beta: float, radius: int, pad: int,
                    batch_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed score and its gradient in closed form. points (N, 2) -> s (N,), grad (N, 2)."""
    k = torch.arange(-radius, radius + 2, device=points.device)  # (K,)
    base = torch.floor(points).long()  # (N, 2)
    ci = base[:, :1] + k  # (N, K) window rows, map coordinates
    cj = base[:, 1:] + k  # (N, K) window columns
    dx = points[:, :1] - ci.to(points.dtype)  # (N, K)
    dy = points[:, 1:] - cj.to(points.dtype)
    wx = torch.exp(-dx * dx / beta)  # (N, K)
    wy = torch.exp(-dy * dy / beta)
    hp, wp = grid.shape[-2], grid.shape[-1]
    gi = (ci + pad).clamp(0, hp - 1)  # padded-grid indices; far outside -> border (obstacle)
    gj = (cj + pad).clamp(0, wp - 1)
    flat = gi[:, :, None] * wp + gj[:, None, :]  # (N, K, K)
    if batch_index is not None:
        flat = flat + (batch_index * (hp * wp))[:, None, None]
    o = grid.reshape(-1)[flat]  # (N, K, K) occupancy window
    a = torch.bmm(o, wy[:, :, None])[..., 0]  # (N, K): Σ_l o_kl wy_l
    b = torch.bmm(wx[:, None, :], o)[:, 0]  # (N, K): Σ_k wx_k o_kl
    sx = wx.sum(1)
    sy = wy.sum(1)
    s = (wx * a).sum(1) / (sx * sy)  # (N,)
    wxa = wx * (-2.0 * dx / beta)  # ∂wx/∂x
    wya = wy * (-2.0 * dy / beta)
    gx = (wxa * a).sum(1) / (sx * sy) - s * wxa.sum(1) / sx
    gy = (wya * b).sum(1) / (sx * sy) - s * wya.sum(1) / sy
    return s, torch.stack([gx, gy], dim=1)


BACKENDS = {
    "torch": lambda: _score_and_grad,
    "compile": lambda: torch.compile(_score_and_grad, dynamic=False),
    "triton": _triton_kernel,
}


class _WindowedScore(torch.autograd.Function):
    """Expected obstacle score over a (2r+2)² window; value and gradient in one pass."""

    @staticmethod
    def forward(ctx, points, pm, beta, radius, batch_index):  # points (N, 2)
        with torch.no_grad():
            s, g = pm.kernel(points.detach(), pm.grid, beta, radius, pm.pad, batch_index)
        ctx.save_for_backward(g)
        return s

    @staticmethod
    def backward(ctx, grad_out):
        (g,) = ctx.saved_tensors
        return grad_out[:, None] * g, None, None, None, None


def _radius_step(radius: int) -> int:
    """The window radius rounded up to 1, 2, 3, 4, 6, 8, 12, 16, ... (few distinct shapes,
    so a compiled kernel is built a handful of times over an annealed β, not once per β;
    a larger window only adds cells of relative weight below ε)."""
    k = 1
    while True:
        for r in (k, k + k // 2):
            if r >= radius:
                return r
        k *= 2


def _window(points: torch.Tensor, pm: PaddedMap, beta: float, eps: float):
    radius = window_radius(beta, eps)
    if radius > pm.radius:
        raise ValueError(f"β={beta} needs a window radius {radius} > the map's padding "
                         f"radius {pm.radius}; build the PaddedMap with a larger radius")
    radius = min(_radius_step(radius), pm.radius)
    shape = points.shape[:-1]
    flat = points.reshape(-1, 2)  # (N, 2)
    batch_index = None
    if pm.batched:
        b = pm.grid.shape[0]
        per = flat.shape[0] // b
        batch_index = torch.arange(b, device=points.device).repeat_interleave(per)  # (N,)
    return flat, radius, batch_index, shape


def obstacle_score(points: torch.Tensor, pm: PaddedMap, beta: float,
                   eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Fast expected obstacle score, O(r²) per point, differentiable. points (..., 2) -> (...).

    With a batched map (B, H, W), ``points`` must be (B, ..., 2).
    """
    flat, radius, batch_index, shape = _window(points, pm, beta, eps)
    s = _WindowedScore.apply(flat, pm, _beta(beta, points), radius, batch_index)
    return s.reshape(shape)


def obstacle_score_and_grad(points: torch.Tensor, pm: PaddedMap, beta: float,
                            eps: float = DEFAULT_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The same score and its gradient, no autograd. points (..., 2) -> (...), (..., 2)."""
    flat, radius, batch_index, shape = _window(points, pm, beta, eps)
    s, g = pm.kernel(flat.detach(), pm.grid, _beta(beta, points), radius, pm.pad, batch_index)
    return s.reshape(shape), g.reshape(points.shape)


def _beta(beta: float, like: torch.Tensor) -> torch.Tensor:
    """β as a 0-dim CPU tensor (a scalar to every device): a compiled kernel then sees one
    input, not a new constant per β, and reading it back never waits for a device."""
    return torch.tensor(float(beta), dtype=like.dtype)


def soft_position_map_dense(points: torch.Tensor, height: int, width: int, beta: float,
                            pad: int) -> torch.Tensor:
    """The note's soft map of each point over the padded grid. (T, 2) -> (T, H+2p, W+2p).

    Cell (i, j) of the returned grid is map cell (i - pad, j - pad); each slice sums to 1.
    """
    i = torch.arange(-pad, height + pad, device=points.device, dtype=points.dtype)  # (Hp,)
    j = torch.arange(-pad, width + pad, device=points.device, dtype=points.dtype)  # (Wp,)
    dx2 = (points[:, 0, None] - i) ** 2  # (T, Hp)
    dy2 = (points[:, 1, None] - j) ** 2  # (T, Wp)
    logits = -(dx2[:, :, None] + dy2[:, None, :]) / beta  # (T, Hp, Wp)
    return torch.softmax(logits.reshape(len(points), -1), dim=1).reshape(logits.shape)


def obstacle_score_dense(points: torch.Tensor, occ: torch.Tensor | np.ndarray, beta: float,
                         pad: int | None = None) -> torch.Tensor:
    """Reference O(T·H·W) expected obstacle score, vectorised over waypoints. (T, 2) -> (T,).

    ``pad`` rings of obstacle cells surround the map (default: the fast form's window
    radius + 1, so both forms agree to ε for points on the map).
    """
    if pad is None:
        pad = window_radius(beta) + 1
    grid = pad_occupancy(occ, pad).to(device=points.device, dtype=points.dtype)  # (Hp, Wp)
    m = soft_position_map_dense(points, grid.shape[0] - 2 * pad, grid.shape[1] - 2 * pad,
                                beta, pad)  # (T, Hp, Wp)
    return torch.einsum("thw,hw->t", m, grid)
