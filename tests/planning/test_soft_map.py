"""Dense (the note's) and fast (windowed) expected obstacle scores agree in value and gradient."""

import math

import numpy as np
import pytest
import torch

from descentlab.planning.soft_map import (
    PaddedMap,
    obstacle_score,
    obstacle_score_dense,
    soft_position_map_dense,
    window_radius,
)


def _random_case(seed, h=30, w=41, t=64, margin=2.0):
    g = torch.Generator().manual_seed(seed)
    occ = (torch.rand(h, w, generator=g) < 0.2).double()
    lo = torch.tensor([-margin, -margin], dtype=torch.float64)
    hi = torch.tensor([h - 1 + margin, w - 1 + margin], dtype=torch.float64)
    pts = lo + torch.rand(t, 2, generator=g, dtype=torch.float64) * (hi - lo)
    return occ, pts


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5, 6.0])
def test_fast_equals_dense_value_and_gradient(beta):
    occ, pts = _random_case(int(beta * 10))
    pm = PaddedMap(occ, window_radius(beta), dtype=torch.float64)
    p1 = pts.clone().requires_grad_(True)
    fast = obstacle_score(p1, pm, beta)
    (g_fast,) = torch.autograd.grad(fast.sum(), p1)
    p2 = pts.clone().requires_grad_(True)
    dense = obstacle_score_dense(p2, occ, beta)
    (g_dense,) = torch.autograd.grad(dense.sum(), p2)
    assert torch.allclose(fast, dense, atol=1e-6, rtol=0)
    assert torch.allclose(g_fast, g_dense, atol=1e-6, rtol=0)
    assert dense.min() >= 0 and dense.max() <= 1 + 1e-9
    assert g_dense.abs().max() > 1e-3  # the comparison is not between two zeros


def test_fast_form_gradient_matches_autograd_of_its_own_value():
    """The closed-form gradient of the windowed score equals finite differences."""
    occ, pts = _random_case(7, t=8)
    beta = 1.3
    pm = PaddedMap(occ, window_radius(beta), dtype=torch.float64)
    p = pts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: obstacle_score(x, pm, beta), (p,), eps=1e-6,
                                    atol=1e-6)


def test_soft_map_is_normalised_gaussian_with_beta_as_squared_width():
    pts = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    m = soft_position_map_dense(pts, 6, 7, beta=2.0, pad=0)[0]
    assert m.sum().item() == pytest.approx(1.0)
    # exp(-d²/β): neighbour at distance 1 has weight e^{-1/2} relative to the centre
    assert (m[2, 4] / m[2, 3]).item() == pytest.approx(math.exp(-0.5))
    assert (m[3, 4] / m[2, 3]).item() == pytest.approx(math.exp(-1.0))


def test_outside_the_map_counts_as_obstacle():
    occ = torch.zeros(10, 10, dtype=torch.float64)  # an empty map
    beta = 1.0
    pm = PaddedMap(occ, window_radius(beta), dtype=torch.float64)
    centre = obstacle_score(torch.tensor([[5.0, 5.0]], dtype=torch.float64), pm, beta)
    edge = obstacle_score(torch.tensor([[0.0, 5.0]], dtype=torch.float64), pm, beta)
    far = obstacle_score(torch.tensor([[-40.0, 5.0]], dtype=torch.float64), pm, beta)
    assert centre.item() < 1e-6
    # at the border row, the row above (outside) holds weight e^{-1}/Σ_k e^{-k²}
    z = sum(math.exp(-k * k) for k in range(-8, 9))
    expected = sum(math.exp(-k * k) for k in range(1, 9)) / z
    assert edge.item() == pytest.approx(expected, rel=1e-6)
    assert far.item() == pytest.approx(1.0)
    assert np.isclose(obstacle_score_dense(torch.tensor([[0.0, 5.0]], dtype=torch.float64), occ,
                                           beta).item(), expected, rtol=1e-6)


def test_batched_maps_score_each_problem_on_its_own_map():
    beta = 1.0
    a = torch.zeros(8, 8)
    b = torch.ones(8, 8)
    pm = PaddedMap(torch.stack([a, b]), window_radius(beta))
    pts = torch.full((2, 3, 2), 4.0)  # (B, T, 2)
    s = obstacle_score(pts, pm, beta)
    assert s.shape == (2, 3)
    assert torch.allclose(s[0], torch.zeros(3), atol=1e-6)
    assert torch.allclose(s[1], torch.ones(3), atol=1e-6)


def test_window_radius_bounds_the_truncated_mass():
    for beta in (0.5, 1.0, 4.0):
        r = window_radius(beta, 1e-7)
        assert math.exp(-(r * r) / beta) <= 1e-7
        assert math.exp(-((r - 1) ** 2) / beta) > 1e-7


def test_closed_form_loss_gradients_match_autograd():
    """Every planner term's closed-form gradient (the Adam loop runs without autograd)."""
    from descentlab.planning import objective as obj
    from descentlab.planning.distance_field import DistanceField

    torch.manual_seed(0)
    occ = np.zeros((12, 12), dtype=bool)
    occ[5:7, 5:8] = True
    wp = (torch.rand(3, 9, 2, dtype=torch.float64) * 10 + 1)
    field = DistanceField(occ, upsample=4)
    pm = PaddedMap(occ, window_radius(2.0), dtype=torch.float64)
    goal = torch.tensor([[11.0, 11.0]] * 3, dtype=torch.float64)

    def check(term, value_fn):
        v, g = term
        x = wp.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(value_fn(x).sum(), x)
        np.testing.assert_allclose(v.detach().numpy(), value_fn(wp).detach().numpy(), rtol=1e-9)
        np.testing.assert_allclose(g.numpy(), ref.numpy(), atol=1e-8)

    check(obj.smoothness_term(wp), lambda x: (torch.diff(x, dim=1) ** 2).sum((-1, -2)))
    check(obj.spacing_term(wp, 1.2),
          lambda x: (torch.relu(torch.diff(x, dim=1).norm(dim=-1) - 1.2) ** 2).sum(-1))
    check(obj.goal_term(wp, goal), lambda x: ((x[:, -1] - goal) ** 2).sum(-1))
    check(obj.collision_term(wp, pm, 2.0), lambda x: obstacle_score(x, pm, 2.0).sum(-1))

    def clearance(x, samples=3, margin=0.4):
        a, b = x[:, :-1], x[:, 1:]
        fr = [(k + 1) / (samples + 1) for k in range(samples)]
        pts = torch.cat([x] + [(1 - f) * a + f * b for f in fr], dim=1)
        d = field.value_and_grad(pts.detach())[0]
        # differentiate through the field's own closed-form gradient (a linearisation)
        dg = field.value_and_grad(pts.detach())[1]
        d = d + ((pts - pts.detach()) * dg).sum(-1)
        return (torch.relu(margin - d) ** 2).sum(-1)

    check(obj.clearance_term(wp, field, 0.4), clearance)


def test_window_radii_take_few_distinct_values_over_an_annealed_beta():
    """A compiled kernel is specialised per window shape: an annealing from β = 6 to 0.5
    over 300 steps must see only a handful (torch.compile's default limit is 8)."""
    from descentlab.planning.soft_map import _radius_step

    betas = 6.0 * (0.5 / 6.0) ** np.linspace(0, 1, 300)
    radii = {_radius_step(window_radius(b)) for b in betas}
    assert len(radii) <= 5 < len({window_radius(b) for b in betas})
    assert all(_radius_step(window_radius(b)) >= window_radius(b) for b in betas)
