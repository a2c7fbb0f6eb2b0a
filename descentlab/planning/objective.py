"""Loss terms of the gradient planner, each with its gradient in closed form.

Waypoints are (B, T, 2) tensors (row, column). The note's four terms (SPEC A): goal,
collision (expected obstacle score), smoothness, start anchor. The default planner adds a
signed-distance clearance hinge (CHOMP-style) and a spacing bound.

Every term returns ``(value (B,), gradient (B, T, 2))``. The planner's Adam loop runs under
``torch.no_grad`` on these closed forms — no autograd graph, a handful of fused tensor ops per
term — and the tests check each gradient against autograd of the value.
"""

from __future__ import annotations

import torch

from descentlab.planning.distance_field import DistanceField
from descentlab.planning.soft_map import PaddedMap, obstacle_score_and_grad, obstacle_score_dense

Term = tuple[torch.Tensor, torch.Tensor]


def goal_term(wp: torch.Tensor, goal: torch.Tensor) -> Term:
    """‖p_T − goal‖² of the last waypoint. wp (B, T, 2), goal (B, 2)."""
    d = wp[:, -1] - goal  # (B, 2)
    grad = torch.zeros_like(wp)
    grad[:, -1] = 2 * d
    return (d * d).sum(-1), grad


def start_term(wp: torch.Tensor, start: torch.Tensor) -> Term:
    """‖p_1 − start‖² of the first waypoint. wp (B, T, 2), start (B, 2)."""
    d = wp[:, 0] - start
    grad = torch.zeros_like(wp)
    grad[:, 0] = 2 * d
    return (d * d).sum(-1), grad


def _segment_grad(g_seg: torch.Tensor) -> torch.Tensor:
    """Gradient on points from a gradient on segment vectors d_t = p_{t+1} − p_t.

    g_seg (B, T-1, 2) -> (B, T, 2): p_{t+1} gets +g_t, p_t gets −g_t."""
    out = torch.zeros(g_seg.shape[0], g_seg.shape[1] + 1, 2, dtype=g_seg.dtype,
                      device=g_seg.device)
    out[:, 1:] += g_seg
    out[:, :-1] -= g_seg
    return out


def smoothness_term(wp: torch.Tensor) -> Term:
    """Σ_t ‖p_{t+1} − p_t‖²: short paths with even spacing. (B, T, 2)."""
    d = torch.diff(wp, dim=1)  # (B, T-1, 2)
    return (d * d).sum((-1, -2)), _segment_grad(2 * d)


def spacing_term(wp: torch.Tensor, max_step: float) -> Term:
    """Σ relu(‖p_{t+1} − p_t‖ − max_step)²: keeps waypoints dense enough to check."""
    d = torch.diff(wp, dim=1)  # (B, T-1, 2)
    step = d.norm(dim=-1)  # (B, T-1)
    over = torch.relu(step - max_step)
    g = (2 * over / step.clamp_min(1e-12))[..., None] * d
    return (over * over).sum(-1), _segment_grad(g)


def clearance_term(wp: torch.Tensor, field: DistanceField, margin: float,
                   samples: int = 3) -> Term:
    """Σ relu(margin − d)² at waypoints and at ``samples`` evenly spaced points inside every
    segment (3: at 1/4, 1/2, 3/4).

    d is the signed distance to obstacle squares; it has a gradient inside obstacles (where
    the expected score is flat). Sampling inside segments keeps a segment from slipping
    between two diagonal obstacles through their shared corner, or clipping a corner between
    two samples (the gap between samples must stay below about the margin). (B, T, 2).
    """
    bsz, t = wp.shape[0], wp.shape[1]
    f = torch.arange(1, samples + 1, dtype=wp.dtype, device=wp.device) / (samples + 1)  # (S,)
    a, b = wp[:, :-1, None], wp[:, 1:, None]  # (B, T-1, 1, 2)
    inner = a * (1 - f)[:, None] + b * f[:, None]  # (B, T-1, S, 2)
    flat = torch.cat([wp.reshape(-1, 2), inner.reshape(-1, 2)])  # (B·T + B·(T-1)·S, 2)
    short, gq = field.hinge(flat, margin)  # (P,), (P, 2)
    n = bsz * t
    sq = short * short
    value = sq[:n].reshape(bsz, t).sum(1) + sq[n:].reshape(bsz, -1).sum(1)  # (B,)
    grad = gq[:n].reshape(bsz, t, 2).clone()
    g_in = gq[n:].reshape(bsz, t - 1, samples, 2)
    grad[:, :-1] += (g_in * (1 - f)[:, None]).sum(2)
    grad[:, 1:] += (g_in * f[:, None]).sum(2)
    return value, grad


def collision_term(wp: torch.Tensor, pm: PaddedMap, beta: float) -> Term:
    """Σ_t s(m_c^(t)), the expected obstacle score, fast windowed form. (B, T, 2)."""
    s, g = obstacle_score_and_grad(wp, pm, beta)  # (B, T), (B, T, 2)
    return s.sum(-1), g


def collision_term_dense(wp: torch.Tensor, occ: torch.Tensor, beta: float) -> Term:
    """The same with the note's dense O(T·H·W) soft maps (reference; gradient by autograd)."""
    with torch.enable_grad():
        x = wp.detach().requires_grad_(True)
        val = torch.stack([obstacle_score_dense(w, occ, beta).sum() for w in x])
        (grad,) = torch.autograd.grad(val.sum(), x)
    return val.detach(), grad
