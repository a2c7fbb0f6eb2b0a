"""Sensors: ray casting respects occlusion; the soft observation is the note's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descentlab.core.errors import InputError
from descentlab.planning.sensors import (
    RaySensor,
    RaySensorConfig,
    SoftSensor,
    SoftSensorConfig,
    make_sensor,
    ray_cells,
    soft_position_map,
    visible_cells,
)


def test_ray_cells_exact_walks():
    # (0,0) -> (2,1): crosses row boundary 0.5 at t=1/4 (col 0.25), then column 0.5 at t=1/2
    assert ray_cells(2, 1) == ([(1, 0), (1, 1)], [])
    # a pure diagonal passes exactly through lattice corners only
    assert ray_cells(2, 2) == ([(1, 1)], [((1, 0), (0, 1)), ((2, 1), (1, 2))])
    assert ray_cells(0, -3) == ([(0, -1), (0, -2)], [])
    assert ray_cells(1, 0) == ([], [])
    # to the middle of the face of (1, -3) turned to the bot, (0.5, -3): along row 0 only
    assert ray_cells(1, -3, "row") == ([(0, -1), (0, -2), (0, -3)], [])
    # to the face of (2, 2) between columns 1 and 2, at (2, 1.5): row 0.5 is crossed at
    # column 0.375, column 0.5 at row 0.67, row 1.5 at column 1.125; column 1.5 is the end
    assert ray_cells(2, 2, "col") == ([(1, 0), (1, 1), (2, 1)], [])


def test_a_straight_wall_is_seen_along_its_length():
    occ = np.zeros((12, 21), dtype=bool)
    occ[5, :] = True  # a one-cell wall, the bot one row above it
    vis = visible_cells(occ, (4, 10), radius=6.0)
    # every wall cell within the radius shows its top face (1 + 5² ≤ 36: columns 5..15)
    assert np.array_equal(np.flatnonzero(vis[5]), np.arange(5, 16))
    assert not vis[6:].any()  # nothing behind it


def test_wall_hides_the_cells_behind_it():
    occ = np.zeros((11, 11), dtype=bool)
    occ[3:8, 6] = True  # a wall segment in column 6, rows 3..7
    vis = visible_cells(occ, (5, 3), radius=6.0)
    # the wall's face is seen, the cells right behind it are not
    assert vis[5, 6] and vis[3, 6] and vis[7, 6]
    assert not vis[5, 7] and not vis[5, 8] and not vis[4, 7] and not vis[6, 8]
    # past the wall's ends: visible (the rays graze its end corners)
    assert vis[9, 7] and vis[1, 7]
    # the radius is Euclidean, centre to centre: sqrt(34) = 5.83 in, sqrt(61) = 7.8 out
    assert vis[0, 0] and vis[0, 3]
    assert vis[10, 0] and not vis[10, 9] and not vis[0, 8]


def test_radius_disk_in_open_space():
    occ = np.zeros((21, 21), dtype=bool)
    vis = visible_cells(occ, (10, 10), radius=5.0)
    rr, cc = np.mgrid[:21, :21]
    disk = (rr - 10) ** 2 + (cc - 10) ** 2 <= 25
    assert np.array_equal(vis, disk)
    assert vis.sum() == 81  # lattice points in a radius-5 disk


def test_corner_rules():
    occ = np.zeros((5, 5), dtype=bool)
    occ[0, 1] = True  # touches the diagonal from (0, 0) only at the corner (0.5, 0.5)
    vis = visible_cells(occ, (0, 0), 4.0)
    assert vis[1, 1] and vis[2, 2]  # a ray grazing one corner passes
    occ[1, 0] = True  # two walls meeting at that corner: a zero-width gap
    vis = visible_cells(occ, (0, 0), 4.0)
    assert not vis[1, 1] and not vis[2, 2] and not vis[3, 3]
    assert vis[0, 1] and vis[1, 0] and not vis[0, 2]


def test_visibility_is_symmetric_on_random_maps():
    rng = np.random.default_rng(0)
    occ = rng.random((16, 16)) < 0.25
    free = np.argwhere(~occ)
    for a in free[::7]:
        va = visible_cells(occ, tuple(a), 6.0)
        for b in free[::5]:
            if va[tuple(b)]:
                assert visible_cells(occ, tuple(b), 6.0)[tuple(a)], (a, b)


def test_ray_sensor_reads_the_true_map_in_its_window():
    occ = np.zeros((8, 8), dtype=bool)
    occ[3, 4] = True
    obs = RaySensor(RaySensorConfig(radius=2)).observe(occ, (3, 2), np.random.default_rng(0))
    assert obs.origin == (1, 0) and obs.weight.shape == (5, 5)
    rows, cols = obs.window
    assert np.array_equal(obs.seen, visible_cells(occ, (3, 2), 2)[rows, cols])
    reading = obs.reading()
    assert reading[3 - 1, 4] == 1.0 and obs.seen[3 - 1, 4]
    assert reading[obs.seen].sum() == 1.0  # only the one wall
    assert obs.seen[0, 2] and not obs.seen[0, 0]  # (1, 2) at distance 2; (1, 0) at 2.83


def test_ray_sensor_flip_noise_rate():
    occ = np.zeros((41, 41), dtype=bool)
    sensor = RaySensor(RaySensorConfig(radius=20, flip_prob=0.2))
    obs = sensor.observe(occ, (20, 20), np.random.default_rng(1))
    rate = obs.reading()[obs.seen].mean()
    n = obs.seen.sum()
    assert abs(rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)


def test_soft_observation_is_the_note_formula():
    occ = np.zeros((20, 20), dtype=bool)
    occ[1:6, 5] = True
    beta = 4.0
    m_c = soft_position_map((2, 3), occ.shape, beta)
    i, j = np.mgrid[:20, :20]
    ref = np.exp(-((2 - i) ** 2 + (3 - j) ** 2) / beta)
    np.testing.assert_allclose(m_c, ref / ref.sum(), rtol=1e-12)
    quiet = SoftSensor(SoftSensorConfig(beta=beta, noise_std=0.0)).observe(
        occ, (2, 3), np.random.default_rng(0))
    np.testing.assert_allclose(quiet.value, m_c * occ)
    np.testing.assert_allclose(quiet.weight, m_c)
    assert np.array_equal(quiet.seen, m_c >= 0.005)
    np.testing.assert_allclose(quiet.reading()[occ], 1.0)
    noisy = SoftSensor(SoftSensorConfig(beta=beta, noise_std=0.001)).observe(
        occ, (2, 3), np.random.default_rng(0))
    eps = np.random.default_rng(0).normal(0.0, 0.001, size=occ.shape)
    np.testing.assert_allclose(noisy.value, np.clip(m_c * occ + eps, 0.0, 1.0))


def test_bad_sensor_settings_are_input_errors():
    with pytest.raises(InputError, match="radius"):
        RaySensorConfig(radius=0)
    with pytest.raises(InputError, match="radius"):
        RaySensorConfig(radius=-2.5)
    with pytest.raises(InputError, match="sensor"):
        make_sensor("sonar")
