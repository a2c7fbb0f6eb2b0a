"""Signed distance to obstacles, precomputed once per map, looked up with gradients.

The expected obstacle score (soft_map.py) has no gradient deep inside an obstacle and
vanishes in open space (SPEC A, known weaknesses). CHOMP and GPMP2 use a signed distance
field instead; so does the default planner, beside the score. The field is computed once
with an exact Euclidean distance transform (scipy) on the map upsampled ``s`` times, so the
distance is to obstacle *squares* (not centres) to within ``0.5/s`` cells, and is read at
any real position by bilinear interpolation (differentiable). Cells outside the map are
obstacles; a point beyond the padded field gets the border value minus its distance to it,
so the gradient still points back onto the map.
"""

from __future__ import annotations

import numpy as np
import torch


def signed_distance_grid(occ: np.ndarray, upsample: int = 4, pad: int = 2) -> np.ndarray:
    """Signed distance (in cells) at the centres of an ``upsample``× finer grid.

    occ (H, W) bool -> (s·(H+2p), s·(W+2p)) float32; positive in free space, negative
    inside obstacles, ≈0 on obstacle boundaries. ``pad`` rings of obstacles surround the map.
    """
    from scipy.ndimage import distance_transform_edt

    blocked = np.pad(np.asarray(occ, dtype=bool), pad, constant_values=True)
    fine = np.repeat(np.repeat(blocked, upsample, axis=0), upsample, axis=1)  # (sHp, sWp)
    if fine.all():
        return np.full(fine.shape, -1e3, dtype=np.float32)
    outside = distance_transform_edt(~fine)  # free fine cells: distance to nearest blocked centre
    inside = distance_transform_edt(fine) if (~fine).any() else np.zeros(fine.shape)
    sdf = np.where(fine, -(inside - 0.5), outside - 0.5) / upsample
    return sdf.astype(np.float32)


class DistanceField:
    """Bilinear lookup of :func:`signed_distance_grid`. Call with points (..., 2) -> (...)."""

    def __init__(self, occ: np.ndarray, upsample: int = 4, pad: int = 2, device=None):
        self.upsample = upsample
        self.pad = pad
        self.height, self.width = occ.shape
        self.grid = torch.from_numpy(signed_distance_grid(occ, upsample, pad)).to(device)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        s, p = self.upsample, self.pad
        hf, wf = self.grid.shape
        flat = points.reshape(-1, 2)  # (N, 2)
        u = (flat + p + 0.5) * s - 0.5  # continuous index on the fine grid (centre = integer)
        lo = torch.zeros(2, device=u.device, dtype=u.dtype)
        hi = torch.tensor([hf - 1.0, wf - 1.0], device=u.device, dtype=u.dtype)
        uc = torch.maximum(torch.minimum(u, hi), lo)
        beyond = (u - uc).norm(dim=1) / s  # distance past the padded field, in cells
        i0 = torch.minimum(uc.detach().floor(), hi - 1).long()  # (N, 2), per-axis upper bound
        f = uc - i0.to(uc.dtype)  # (N, 2) fractional part, in [0, 1]
        g = self.grid.reshape(-1)
        base = i0[:, 0] * wf + i0[:, 1]
        v00, v01 = g[base], g[base + 1]
        v10, v11 = g[base + wf], g[base + wf + 1]
        fx, fy = f[:, 0], f[:, 1]
        val = (v00 * (1 - fx) * (1 - fy) + v01 * (1 - fx) * fy
               + v10 * fx * (1 - fy) + v11 * fx * fy)
        return (val - beyond).reshape(points.shape[:-1])
