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
        self._occ, self._grid = np.asarray(occ, dtype=bool), None
        blocked = np.pad(self._occ, pad + 1, constant_values=True)
        self.blocked = torch.from_numpy(blocked).to(device).reshape(-1)  # padded, flat
        self.blocked_width = blocked.shape[1]
        # per cell (padded, flat): 0 = no blocked cell among its 3x3 (every point of the cell
        # is at least 0.5 from any obstacle square), 1 = free with a blocked neighbour,
        # 2 = blocked
        near = blocked.copy()
        near[1:] |= blocked[:-1]
        near[:-1] |= blocked[1:]
        near[:, 1:] |= near[:, :-1].copy()
        near[:, :-1] |= near[:, 1:].copy()
        code = near.astype(np.uint8) + blocked
        self._code = torch.from_numpy(code).to(device).reshape(-1)
        # the interpolated field's error is below half a fine cell
        self.error = 0.5 / upsample
        off = torch.arange(-1, 2, device=self.blocked.device)
        self._off3 = off  # (3,) the rows (columns) of the 3x3 around a cell
        steps = torch.cartesian_prod(off, off)  # (9, 2) the 3x3 cells, row-major
        self._offsets = steps[:, 0] * self.blocked_width + steps[:, 1]  # flat (9,)

    @property
    def grid(self) -> torch.Tensor:
        """The interpolated field (:func:`signed_distance_grid`), computed on first use: the
        clearance hinge reads it only at points deep inside obstacles or off the map."""
        if self._grid is None:
            self._grid = torch.from_numpy(signed_distance_grid(
                self._occ, self.upsample, self.pad)).to(self.blocked.device)
        return self._grid

    def near(self, points: torch.Tensor, within: float | None = None) -> torch.Tensor:
        """(N, 2) -> (N,) bool: the point's cell has a blocked cell among its 3x3. Where not,
        the point is at least 0.5 from every obstacle square (and the field says so up to
        :attr:`error`).

        With ``within`` < 0.5: only the points that can be closer than ``within`` to an
        obstacle square, or are in one. A free point at offset o from its cell's centre
        (|o_i| ≤ 0.5) is at least 0.5 − |o_i| from the boxes across side i, so one nearer
        than ``within`` to a blocked neighbour lies in the band max|o_i| > 0.5 − within.
        """
        q = self.pad + 1
        h, w = self.height + 2 * q, self.blocked_width
        cell = torch.floor(points + 0.5)
        ci = (cell[:, 0].long() + q).clamp(0, h - 1)
        cj = (cell[:, 1].long() + q).clamp(0, w - 1)
        code = self._code[ci * w + cj]  # (N,) 0 open, 1 free beside an obstacle, 2 blocked
        if within is None:
            return code > 0
        if not 0 <= within < 0.5:
            raise ValueError(f"within must be in [0, 0.5) (the 3x3 reach), got {within}")
        band = (points - cell).abs().amax(1) > 0.5 - within  # (N,)
        return (code == 2) | ((code == 1) & band)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance at points (..., 2) -> (...), differentiable (bilinear)."""
        return self._lookup(points, need_grad=False)[0]

    def value_and_grad(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance and its gradient in closed form. (..., 2) -> (...), (..., 2).

        Near obstacles it is exact: a point in a free cell within 0.5 of a blocked square has
        that square among its cell's 8 neighbours, so the distance there is the smallest
        point-to-box distance over those 9 cells (no upsampling error, which matters for
        margins below 0.5/upsample); inside obstacles likewise within 1.0 of a free square
        (:meth:`_exact`). Elsewhere (farther out, deeper in, off the map) the interpolated
        field is used, read only at those points."""
        flat = points.reshape(-1, 2)  # (N, 2)
        val, grad, exact, _ = self._exact(flat)
        rest = (~exact).nonzero()[:, 0]
        if len(rest):
            val[rest], grad[rest] = self._lookup(flat[rest], need_grad=True)
        return val.reshape(points.shape[:-1]), grad.reshape(points.shape)

    def hinge(self, points: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """relu(margin − d) and the gradient of its square at points (N, 2) -> (N,), (N, 2).

        The same values as from :meth:`value_and_grad`, computed only where they can be
        nonzero when ``margin + error < 0.5``: at points in obstacle cells or within
        ``margin`` of a side of their free cell that has a blocked cell among its 3x3
        (:meth:`near`), and of those the interpolated field is read only inside obstacles
        and on their faces; a free point's exact distance ≥ 0.5 gives 0. In 1-wide maze
        corridors, where every cell is beside a wall, this leaves the points near cell
        sides (plan-bench maze512-1-0: 0.662 → 0.351 s per plan).
        """
        if margin + self.error >= 0.5:
            d, g = self.value_and_grad(points)
            short = torch.relu(margin - d)
            return short, (-2 * short)[:, None] * g
        short = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
        grad = torch.zeros_like(points)
        idx = self.near(points, margin).nonzero()[:, 0]
        sub = points[idx]  # (M, 2)
        d, g, exact, inside = self._exact(sub)
        rest = (~exact & inside).nonzero()[:, 0]  # in an obstacle cell or on its face
        if len(rest):
            d[rest], g[rest] = self._lookup(sub[rest], need_grad=True)
        hit = torch.relu(margin - d).masked_fill_(~(exact | inside), 0.0)  # (M,)
        short[idx] = hit
        grad[idx] = (-2 * hit)[:, None] * g
        return short, grad

    def _exact(self, flat: torch.Tensor):
        """The distance from the 3x3 boxes around each point (N, 2).

        A free point within 0.5 of a blocked square has it among its cell's 8 neighbours; a
        point in a blocked cell within 1.0 of a free square likewise (every square outside
        the 3x3 is at least 1.0 away). There the signed distance is exact: the smallest
        point-to-box distance over those boxes (negated inside obstacles). Returns (d (N,),
        its gradient (N, 2), exact (N,), inside (N,): in an obstacle cell or on an obstacle
        face). Where neither ``exact`` nor ``inside`` holds the point is free and d ≥ 0.5.
        """
        q = self.pad + 1
        h, w = self.height + 2 * q, self.blocked_width
        cell = torch.floor(flat + 0.5).long()  # (N, 2) the cell containing each point
        ci, cj = cell[:, 0].add(q).clamp_(1, h - 2), cell[:, 1].add(q).clamp_(1, w - 2)
        blocked = self.blocked[(ci * w + cj)[:, None] + self._offsets]  # (N, 9) of the 3x3
        # per axis, the offset of the point from the three rows (columns) of boxes
        delta = (flat - (torch.stack([ci, cj], 1) - q).to(flat.dtype))[:, :, None] \
            - self._off3.to(flat.dtype)  # (N, 2, 3)
        e = torch.relu(delta.abs() - 0.5)  # per-axis distance to each row (column) of boxes
        e_sq = e * e
        e2 = (e_sq[:, 0, :, None] + e_sq[:, 1, None, :]).reshape(-1, 9)  # (N, 9) squared
        in_obstacle = blocked[:, 4]
        # free points: distance to the blocked boxes; points in obstacles: to the free ones
        d2, k = e2.masked_fill_(blocked == in_obstacle[:, None], float("inf")).min(1)  # (N,)
        d = d2.sqrt()
        inside = in_obstacle | (d == 0)
        exact = (d > 0) & torch.where(in_obstacle, d <= 1.0, d < 0.5)
        signed = e * torch.sign(delta)  # (N, 2, 3) from the box towards the point, per axis
        toward = torch.stack([signed[:, 0].gather(1, (k // 3)[:, None])[:, 0],
                              signed[:, 1].gather(1, (k % 3)[:, None])[:, 0]], 1)  # (N, 2)
        sign = 1.0 - 2.0 * in_obstacle.to(flat.dtype)  # (N,) +1 free, −1 in an obstacle
        grad = toward * (sign / d.clamp_min(1e-12))[:, None]
        return d * sign, grad, exact, inside

    def _lookup(self, points: torch.Tensor, need_grad: bool):
        s, p = self.upsample, self.pad
        hf, wf = self.grid.shape
        flat = points.reshape(-1, 2)  # (N, 2)
        u = (flat + p + 0.5) * s - 0.5  # continuous index on the fine grid (centre = integer)
        lo = torch.zeros(2, device=u.device, dtype=u.dtype)
        hi = torch.tensor([hf - 1.0, wf - 1.0], device=u.device, dtype=u.dtype)
        uc = torch.maximum(torch.minimum(u, hi), lo)
        out_vec = u - uc  # (N, 2), nonzero past the padded field
        beyond = out_vec.norm(dim=1) / s  # distance past the padded field, in cells
        i0 = torch.minimum(uc.detach().floor(), hi - 1).long()  # (N, 2), per-axis upper bound
        f = uc - i0.to(uc.dtype)  # (N, 2) fractional part, in [0, 1]
        g = self.grid.reshape(-1)
        base = i0[:, 0] * wf + i0[:, 1]
        v00, v01 = g[base], g[base + 1]
        v10, v11 = g[base + wf], g[base + wf + 1]
        fx, fy = f[:, 0], f[:, 1]
        val = (v00 * (1 - fx) * (1 - fy) + v01 * (1 - fx) * fy
               + v10 * fx * (1 - fy) + v11 * fx * fy) - beyond
        if not need_grad:
            return val.reshape(points.shape[:-1]), None
        inside = (out_vec == 0).to(u.dtype)  # (N, 2): the clamp passes the gradient
        dfx = (v10 - v00) * (1 - fy) + (v11 - v01) * fy
        dfy = (v01 - v00) * (1 - fx) + (v11 - v10) * fx
        grad = torch.stack([dfx, dfy], 1) * inside * s  # ∂/∂p through u = (p + ...)·s
        grad = grad - out_vec / (beyond[:, None] * s).clamp_min(1e-12)
        return val.reshape(points.shape[:-1]), grad.reshape(points.shape)
