"""Loss terms of the gradient planner. Waypoints are (B, T, 2) tensors (row, column).

The note's four terms (SPEC A): goal, collision (expected obstacle score), smoothness,
start anchor. The default planner adds a signed-distance clearance hinge (CHOMP-style) and
a spacing bound; each term is a pure function returning one value per trajectory, (B,).
"""

from __future__ import annotations

import torch

from descentlab.planning.distance_field import DistanceField
from descentlab.planning.soft_map import PaddedMap, obstacle_score, obstacle_score_dense


def goal_term(wp: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Squared distance of the last waypoint to the goal. wp (B, T, 2), goal (B, 2) -> (B,)."""
    return ((wp[:, -1] - goal) ** 2).sum(-1)


def start_term(wp: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Squared distance of the first waypoint to the start. (B, T, 2), (B, 2) -> (B,)."""
    return ((wp[:, 0] - start) ** 2).sum(-1)


def smoothness_term(wp: torch.Tensor) -> torch.Tensor:
    """Σ_t ‖p_{t+1} - p_t‖²: short paths with even spacing. (B, T, 2) -> (B,)."""
    return (torch.diff(wp, dim=1) ** 2).sum((-1, -2))


def collision_term(wp: torch.Tensor, pm: PaddedMap, beta: float) -> torch.Tensor:
    """Σ_t s(m_c^(t)), the expected obstacle score, fast windowed form. (B, T, 2) -> (B,)."""
    return obstacle_score(wp, pm, beta).sum(-1)


def collision_term_dense(wp: torch.Tensor, occ: torch.Tensor, beta: float) -> torch.Tensor:
    """The same with the note's dense O(T·H·W) soft maps. (B, T, 2) -> (B,)."""
    return torch.stack([obstacle_score_dense(w, occ, beta).sum() for w in wp])


def clearance_term(wp: torch.Tensor, field: DistanceField, margin: float) -> torch.Tensor:
    """Σ relu(margin - d)² at waypoints and at 1/4, 1/2, 3/4 of every segment.

    d is the signed distance to obstacle squares; it has a gradient inside obstacles (where
    the expected score is flat). Sampling inside segments keeps a segment from slipping
    between two diagonal obstacles through their shared corner. (B, T, 2) -> (B,).
    """
    a, b = wp[:, :-1], wp[:, 1:]  # (B, T-1, 2)
    pts = torch.cat([wp, 0.75 * a + 0.25 * b, 0.5 * (a + b), 0.25 * a + 0.75 * b], dim=1)
    return (torch.relu(margin - field(pts)) ** 2).sum(-1)


def spacing_term(wp: torch.Tensor, max_step: float) -> torch.Tensor:
    """Σ relu(‖p_{t+1} - p_t‖ - max_step)²: keeps waypoints dense enough to check. -> (B,)."""
    step = torch.diff(wp, dim=1).norm(dim=-1)  # (B, T-1)
    return (torch.relu(step - max_step) ** 2).sum(-1)
