"""Map estimates: the log-odds update is its formula; the note's mapper minimises its loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.planning.mapping import (
    LogOddsConfig,
    LogOddsMapper,
    NoteMapper,
    NoteMapperConfig,
    make_mapper,
    map_accuracy,
)
from descentlab.planning.sensors import (
    Observation,
    RaySensor,
    RaySensorConfig,
    SoftSensor,
    SoftSensorConfig,
)


def _obs(origin, occupied, seen):
    """A ray-style observation (weight 1 on seen cells) with the given readings."""
    occupied = np.asarray(occupied, dtype=float)
    seen = np.asarray(seen, dtype=bool)
    return Observation(origin, seen.astype(float), occupied * seen, seen)


def test_logodds_update_matches_the_formula():
    cfg = LogOddsConfig(prior="0.5", p_hit=0.9, p_false=0.1, clamp=3.5)
    m = LogOddsMapper(cfg, (3, 3))
    # prior 0.5: L0 = 0, p(occ | hit) = 0.9, so one hit adds logit(0.9) = ln 9 = 2.1972
    assert m.l_hit == pytest.approx(math.log(9.0))
    assert m.l_miss == pytest.approx(-math.log(9.0))
    m.update(_obs((1, 1), [[1, 0], [1, 1]], [[1, 1], [1, 0]]))
    expect = np.zeros((3, 3))
    expect[1, 1] = math.log(9.0)
    expect[1, 2] = -math.log(9.0)
    expect[2, 1] = math.log(9.0)
    np.testing.assert_allclose(m.L, expect)
    # a second hit: 2 ln 9 = 4.39 is clamped to 3.5; then a miss: 3.5 - ln 9 = 1.3028
    m.update(_obs((1, 1), [[1, 0], [0, 0]], [[1, 0], [0, 0]]))
    assert m.L[1, 1] == pytest.approx(3.5)
    m.update(_obs((1, 1), [[0, 0], [0, 0]], [[1, 0], [0, 0]]))
    assert m.L[1, 1] == pytest.approx(3.5 - math.log(9.0))
    assert m.prob[1, 1] == pytest.approx(1 / (1 + math.exp(-(3.5 - math.log(9.0)))))
    assert m.seen.sum() == 3 and m.seen[1, 1] and not m.seen[2, 2]
    assert m.prob[0, 0] == 0.5  # unseen keeps the prior


def test_logodds_free_prior_is_consistent():
    cfg = LogOddsConfig(prior="free", free_prior=0.2, p_hit=0.9, p_false=0.1, clamp=10.0)
    m = LogOddsMapper(cfg, (2, 2))
    l0 = math.log(0.2 / 0.8)
    # inverse sensor model from Bayes: p(occ|hit) = 0.9*0.2 / (0.9*0.2 + 0.1*0.8) = 0.6923
    p_occ_hit = 0.9 * 0.2 / (0.9 * 0.2 + 0.1 * 0.8)
    assert cfg.inverse_sensor_model(True) == pytest.approx(p_occ_hit)
    assert m.L[0, 0] == pytest.approx(l0)
    m.update(_obs((0, 0), [[1, 0], [0, 0]], [[1, 1], [0, 0]]))
    # L <- L + logit p(occ|z) - L0: after one hit the posterior is exactly p(occ|hit)
    assert m.prob[0, 0] == pytest.approx(p_occ_hit)
    assert m.L[0, 1] == pytest.approx(l0 - math.log(9.0))
    assert m.prob[1, 1] == pytest.approx(0.2)


def test_logodds_bump_goes_to_the_upper_clamp():
    m = LogOddsMapper(LogOddsConfig(clamp=4.0), (4, 4))
    m.mark_occupied((2, 3))
    assert m.L[2, 3] == 4.0 and m.seen[2, 3]


def test_note_loss_is_the_l1_of_the_note():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    w = torch.tensor([[0.5, 0.1], [0.2, 0.0]])
    z = torch.tensor([[0.3, 0.0], [0.1, 0.05]])
    s = torch.sigmoid(logits)
    expect = float((w * s - z).abs().sum())
    # by hand: |0.25-0.3| + |0.1*0.8808-0| + |0.2*0.2689-0.1| + |0-0.05|
    by_hand = 0.05 + 0.1 * 0.8807971 + abs(0.2 * 0.2689414 - 0.1) + 0.05
    assert float(NoteMapper.loss(logits, w, z)) == pytest.approx(expect)
    assert expect == pytest.approx(by_hand, abs=1e-6)


def test_note_mapper_steps_lower_its_loss_and_learn_the_walls():
    occ = np.zeros((9, 9), dtype=bool)
    occ[2, 3:6] = True
    m = NoteMapper(NoteMapperConfig(steps=1, lr=2.0), occ.shape)
    obs = RaySensor(RaySensorConfig(radius=4)).observe(occ, (4, 4), np.random.default_rng(0))
    rows, cols = obs.window
    before = float(NoteMapper.loss(m.logits.detach()[rows, cols], torch.tensor(obs.weight),
                                   torch.tensor(obs.value)))
    losses = [m.update(obs) for _ in range(8)]
    after = float(NoteMapper.loss(m.logits.detach()[rows, cols], torch.tensor(obs.weight),
                                  torch.tensor(obs.value)))
    assert after < 0.5 * before
    assert losses[-1] < losses[0]
    assert map_accuracy(m.prob, occ, m.seen) == 1.0
    assert m.seen.sum() == obs.seen.sum()
    # unseen cells never moved from the initial logit
    assert np.allclose(m.prob[~m.seen], 1 / (1 + math.exp(2.0)))


def test_note_mapper_with_the_soft_sensor_finds_the_note_walls():
    occ = np.zeros((20, 20), dtype=bool)
    occ[1:6, 5] = True
    occ[10, 5:11] = True
    mapper = make_mapper("note", occ.shape)
    sensor = SoftSensor(SoftSensorConfig())  # the note's noise: sigma = 0.001
    rng = np.random.default_rng(0)
    for r in range(0, 12):  # walk down column 4, beside the first wall
        mapper.update(sensor.observe(occ, (r, 4), rng))
    prob = mapper.prob
    assert (prob[1:6, 5] > 0.5).all()  # the first wall, passed at distance 1
    assert (prob[~occ] < 0.5).all()  # no phantom walls anywhere
    assert map_accuracy(prob, occ, mapper.seen) == 1.0


def test_map_accuracy_counts_the_mask_only():
    occ = np.array([[True, False], [False, False]])
    prob = np.array([[0.9, 0.7], [0.1, 0.6]])
    assert map_accuracy(prob, occ, np.array([[True, True], [True, False]])) == pytest.approx(2 / 3)
    assert math.isnan(map_accuracy(prob, occ, np.zeros((2, 2), dtype=bool)))


def test_bad_mapper_settings_are_input_errors():
    with pytest.raises(InputError, match="p_hit"):
        LogOddsConfig(p_hit=0.1, p_false=0.2)
    with pytest.raises(InputError, match="free_prior"):
        LogOddsConfig(free_prior=1.0)
    with pytest.raises(InputError, match="mapper"):
        make_mapper("slam", (3, 3))
