"""Signed distance to obstacle squares, on square and non-square maps."""

import numpy as np
import pytest
import torch

from descentlab.planning.distance_field import DistanceField


def _exact(occ, p):
    """Brute force: distance from p to the nearest obstacle square (outside the map too)."""
    h, w = occ.shape
    best = np.inf
    for i in range(-3, h + 3):
        for j in range(-3, w + 3):
            if 0 <= i < h and 0 <= j < w and not occ[i, j]:
                continue
            q = np.maximum(np.abs(np.asarray(p) - (i, j)) - 0.5, 0.0)
            best = min(best, float(np.hypot(*q)))
    return best


@pytest.mark.parametrize("shape", [(12, 12), (7, 19), (19, 7)])
def test_distance_matches_brute_force_in_free_space(shape):
    rng = np.random.default_rng(sum(shape))
    occ = rng.random(shape) < 0.15
    field = DistanceField(occ, upsample=8)
    free = np.argwhere(~occ)
    pts = free[rng.choice(len(free), 25)] + rng.uniform(-0.4, 0.4, (25, 2))
    got = field(torch.tensor(pts, dtype=torch.float32)).numpy()
    want = np.array([_exact(occ, p) for p in pts])
    np.testing.assert_allclose(got, want, atol=0.13)  # ≈ one sub-cell of the upsampled grid


def test_negative_inside_obstacles_and_gradient_points_out():
    occ = np.zeros((9, 15), bool)
    occ[3:6, 9:12] = True  # a 3x3 block on the wide side of a non-square map
    field = DistanceField(occ, upsample=4)
    p = torch.tensor([[4.0, 10.6]], requires_grad=True)
    d = field(p)
    (g,) = torch.autograd.grad(d.sum(), p)
    assert d.item() < -0.5
    assert g[0, 1] > 0  # nearest boundary is the right edge (column 11.5)
    off = field(torch.tensor([[-4.0, 7.0]]))
    assert off.item() < -3  # beyond the padded field, still pointing back


def test_value_and_grad_is_exact_near_obstacles_and_matches_finite_differences():
    import torch

    occ = np.zeros((9, 9), dtype=bool)
    occ[4, 4] = True  # one square, [3.5, 4.5]²
    field = DistanceField(occ, upsample=2)  # coarse: the exact near field must not care
    pts = torch.tensor([[4.0, 3.2], [2.8, 2.7], [4.0, 4.7], [3.3, 4.8], [4.1, 4.2]],
                       dtype=torch.float64)
    val, grad = field.value_and_grad(pts)
    # [1]: farther than 0.5 (the interpolated field); [4]: inside, 0.3 from the right face
    exact = [0.3, np.hypot(0.7, 0.8), 0.2, np.hypot(0.2, 0.3), -0.3]
    ok = [0, 2, 3, 4]
    np.testing.assert_allclose(val[ok].numpy(), np.array(exact)[ok], atol=1e-12)
    np.testing.assert_allclose(grad[4].numpy(), [0.0, 1.0], atol=1e-12)  # out through it
    eps = 1e-6
    for k in range(2):
        d = torch.zeros_like(pts)
        d[:, k] = eps
        fd = (field.value_and_grad(pts + d)[0] - field.value_and_grad(pts - d)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[ok, k].numpy(), fd[ok].numpy(), atol=1e-5)


def test_value_and_grad_reads_the_interpolated_field_wherever_it_is_not_exact():
    # exact near obstacles (the 9-box distance), the bilinear field everywhere else: inside
    # obstacles, in open space and beyond the padded field
    occ = np.random.default_rng(3).random((14, 11)) < 0.3
    field = DistanceField(occ, upsample=4)
    pts = torch.rand(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pts = pts * torch.tensor([22.0, 19.0], dtype=torch.float64) - 4.0
    val, grad = field.value_and_grad(pts)
    exact = field._exact(pts)[2]
    assert 100 < int(exact.sum()) < 3900
    p = pts[~exact].clone().requires_grad_(True)
    ref = field(p)
    (ref_grad,) = torch.autograd.grad(ref.sum(), p)
    torch.testing.assert_close(val[~exact], ref.detach(), rtol=0, atol=0)
    torch.testing.assert_close(grad[~exact], ref_grad, rtol=0, atol=1e-9)
    assert (val[exact] > -1).all() and (val[exact] < 0.5).all() and (val[exact] < 0).any()
    # the exact values agree with the interpolated field up to its error
    torch.testing.assert_close(val[exact], field(pts[exact]).double(), rtol=0,
                               atol=field.error + 1e-6)


@pytest.mark.parametrize("upsample,margin", [(2, 0.05), (4, 0.05), (4, 0.3)])
def test_clearance_skips_only_points_where_the_hinge_is_zero(upsample, margin):
    # The clearance term evaluates the field only near obstacles; on random maps and paths
    # (inside obstacles and off the map included) it equals the term evaluated everywhere.
    import copy

    from descentlab.planning import objective as obj

    g = torch.Generator().manual_seed(0)
    for seed in range(5):
        occ = np.random.default_rng(seed).random((15, 12)) < 0.3
        field = DistanceField(occ, upsample=upsample)
        everywhere = copy.copy(field)
        everywhere.error = 1.0  # margin + error >= 0.5: the term evaluates every point
        wp = torch.rand(3, 20, 2, generator=g) * torch.tensor([17.0, 14.0]) - 1.0
        value, grad = obj.clearance_term(wp, field, margin, samples=5)
        ref_value, ref_grad = obj.clearance_term(wp, everywhere, margin, samples=5)
        assert (ref_value > 0).all()  # the paths do come close to obstacles
        torch.testing.assert_close(value, ref_value, rtol=0, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-7)


def test_hinge_reads_only_the_band_beside_a_wall():
    # A free cell (2, 2) with a wall at (2, 3): a point nearer than the margin to the wall lies
    # within the margin of the cell's side; the hinge there is margin - d, and points farther
    # in are skipped (near() with a margin), not just found to be zero.
    occ = np.zeros((5, 5), dtype=bool)
    occ[2, 3] = True
    field = DistanceField(occ, upsample=2)
    margin = 0.1
    pts = torch.tensor([[2.0, 2.0 + 0.5 - margin + 0.01],  # d = margin - 0.01
                        [2.0, 2.0 + 0.5 - margin - 0.01],  # d = margin + 0.01
                        [2.0, 2.0],  # the centre: d = 0.5
                        [2.0, 3.0]])  # in the wall
    assert field.near(pts).tolist() == [True, True, True, True]
    assert field.near(pts, margin).tolist() == [True, False, False, True]
    short, grad = field.hinge(pts, margin)
    assert short[0].item() == pytest.approx(0.01, abs=1e-6)
    assert short[1].item() == 0.0 and short[2].item() == 0.0
    assert short[3].item() == pytest.approx(margin + 0.5, abs=1e-6)  # 0.5 deep in the wall
    # d(short²)/dp = 2·short·(+1 towards the wall): descent (−grad) moves it away
    assert grad[0, 1].item() == pytest.approx(0.02, abs=1e-5) and grad[0, 0].item() == 0.0
