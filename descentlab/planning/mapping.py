"""Map estimates from successive observations (SPEC B).

Both mappers keep an (H, W) estimate of the obstacle probability, the ``seen`` mask of cells
some observation has informed, and take :class:`~descentlab.planning.sensors.Observation`
windows one at a time.

* ``note`` — the note's gradient mapper (Cho 2024, "Gradient-based planning, mapping and
  execution"): logits ``m̂_o`` and, per observation, a few optimiser steps on

      l_map = Σ_ij | m_c(i,j) · sigmoid(m̂_o(i,j)) − m̃_o(i,j) |

  with ``m_c`` the observation's visibility weight (the soft map of the bot for the note's
  sensor, 1 on visible cells for the ray sensor). The estimate is ``sigmoid(m̂_o)``. L1 makes
  each cell's target the median of ``m̃_o / m_c``; with plain SGD (the default; Adam would
  normalise every cell's step and let the noise in barely-seen cells random-walk them into
  phantom walls) a cell moves in proportion to its visibility, so cells the bot barely sees
  barely move. The loss is divided by the observation's peak visibility ``max m_c`` (a
  per-observation step size), so one learning rate suits the soft sensor (max m_c ≈ 0.08
  at β = 4) and the ray sensor (1). Initial logit −2 (p = 0.12).
* ``logodds`` — Bayesian occupancy in log-odds (Moravec & Elfes 1985; Thrun, Burgard & Fox,
  "Probabilistic Robotics", 2005, Table 9.1):

      L ← clamp(L + logit p(occ | z) − L₀, L_min, L_max),   L₀ = logit(prior)

  for every seen cell, with the inverse sensor model ``p(occ | z)`` the Bayes posterior of a
  single binary reading ``z`` (occupied when ``z/w > 0.5``) from the prior and the sensor
  model ``P(z=occ | occ) = p_hit``, ``P(z=occ | free) = p_false``; so the increment is the
  reading's log-likelihood ratio. The prior of unseen cells is a choice: ``free`` (an
  optimistic ``free_prior``) or ``0.5``. Clamping keeps the map able to change its mind.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from descentlab.core.config import check_config, field_error, option
from descentlab.core.errors import InputError
from descentlab.planning.sensors import Observation


def logit(p: float) -> float:
    """log(p / (1 − p))."""
    return math.log(p / (1.0 - p))


class _SeenMixin:
    """The ``seen`` mask shared by the mappers."""

    seen: np.ndarray

    def _mark_seen(self, obs: Observation) -> None:
        self.seen[obs.window] |= obs.seen


# ---------------------------------------------------------------- the note's gradient mapper

@dataclasses.dataclass
class NoteMapperConfig:
    """The note's gradient mapper: logits, L1 loss, a few optimiser steps per observation."""

    steps: int = option(5, "optimiser steps per observation", min=1)
    lr: float = option(10.0, "learning rate; the loss is divided by the observation's peak "
                            "visibility max m_c, so one value suits every sensor", gt=0)
    optimizer: str = option("sgd", "optimiser over the logits", choices=("sgd", "adam"))
    init_logit: float = option(-2.0, "initial logit of every cell (−2: p = 0.12)")
    bump_logit: float = option(4.0, "logit set on a cell the bot bumped into")

    def __post_init__(self):
        check_config(self)


class NoteMapper(_SeenMixin):
    """Gradient mapper over an (H, W) logit tensor (torch, CPU: the maps are small)."""

    def __init__(self, config: NoteMapperConfig, shape: tuple[int, int]):
        import torch

        self.config = config
        self.logits = torch.full(shape, float(config.init_logit), dtype=torch.float32,
                                 requires_grad=True)
        opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[config.optimizer]
        self.opt = opt_cls([self.logits], lr=config.lr)
        self.seen = np.zeros(shape, dtype=bool)

    @staticmethod
    def loss(logits, weight, value):
        """The note's ``l_map``: Σ |w · sigmoid(logits) − value|. All (h, w) tensors -> scalar."""
        import torch

        return (weight * torch.sigmoid(logits) - value).abs().sum()

    def update(self, obs: Observation) -> float:
        """A few optimiser steps on this observation's window; returns the last loss."""
        import torch

        self._mark_seen(obs)
        rows, cols = obs.window
        w = torch.as_tensor(obs.weight, dtype=torch.float32)
        z = torch.as_tensor(obs.value, dtype=torch.float32)
        scale = 1.0 / max(float(obs.weight.max()), 1e-12)  # peak visibility -> 1
        loss = torch.zeros(())
        for _ in range(self.config.steps):
            self.opt.zero_grad(set_to_none=False)
            loss = self.loss(self.logits[rows, cols], w, z)
            (scale * loss).backward()
            self.opt.step()
        return float(loss.detach())

    def mark_occupied(self, cell: tuple[int, int]) -> None:
        """A bump: the bot felt a wall at ``cell``."""
        import torch

        with torch.no_grad():
            self.logits[cell] = max(float(self.logits[cell]), self.config.bump_logit)
        self.seen[cell] = True

    @property
    def prob(self) -> np.ndarray:
        """sigmoid(m̂_o). (H, W) float."""
        import torch

        with torch.no_grad():
            return torch.sigmoid(self.logits).numpy().astype(np.float64)


# ---------------------------------------------------------------- log-odds occupancy

PRIORS = ("free", "0.5")


@dataclasses.dataclass
class LogOddsConfig:
    """Bayesian occupancy grid in log-odds with clamping."""

    prior: str = option("free", "prior of unseen cells: 'free' (optimistic, free_prior) or 0.5",
                        choices=PRIORS)
    free_prior: float = option(0.2, "obstacle probability of an unseen cell under prior 'free'",
                               gt=0, lt=1)
    p_hit: float = option(0.97, "P(reading 'occupied' | occupied cell)", gt=0, lt=1)
    p_false: float = option(0.03, "P(reading 'occupied' | free cell)", gt=0, lt=1)
    clamp: float = option(4.0, "log-odds are clamped to [−clamp, clamp]", gt=0)

    def __post_init__(self):
        check_config(self)
        if not self.p_hit > self.p_false:
            raise field_error(self, "p_hit", "must exceed p_false (else a hit is not evidence)")

    @property
    def prior_p(self) -> float:
        """The prior obstacle probability of an unseen cell."""
        return self.free_prior if self.prior == "free" else 0.5

    def inverse_sensor_model(self, occupied_reading: bool) -> float:
        """``p(occ | z)``: Bayes posterior of one reading from the prior."""
        p0 = self.prior_p
        like_occ = self.p_hit if occupied_reading else 1.0 - self.p_hit
        like_free = self.p_false if occupied_reading else 1.0 - self.p_false
        return like_occ * p0 / (like_occ * p0 + like_free * (1.0 - p0))


class LogOddsMapper(_SeenMixin):
    """Occupancy grid in log-odds, ``L`` (H, W) float64."""

    def __init__(self, config: LogOddsConfig, shape: tuple[int, int]):
        self.config = config
        self.l0 = logit(config.prior_p)
        self.l_hit = logit(config.inverse_sensor_model(True)) - self.l0
        self.l_miss = logit(config.inverse_sensor_model(False)) - self.l0
        self.L = np.full(shape, self.l0, dtype=np.float64)
        self.seen = np.zeros(shape, dtype=bool)

    def update(self, obs: Observation) -> float:
        """``L ← clamp(L + logit p(occ|z) − L₀)`` on the seen cells; returns #cells updated."""
        self._mark_seen(obs)
        rows, cols = obs.window
        hit = obs.reading() > 0.5  # (h, w) binary reading
        delta = np.where(hit, self.l_hit, self.l_miss) * obs.seen
        c = self.config.clamp
        self.L[rows, cols] = np.clip(self.L[rows, cols] + delta, -c, c)
        return float(obs.seen.sum())

    def mark_occupied(self, cell: tuple[int, int]) -> None:
        """A bump is certain: the cell goes to the upper clamp."""
        self.L[cell] = self.config.clamp
        self.seen[cell] = True

    @property
    def prob(self) -> np.ndarray:
        """p = sigmoid(L). (H, W) float."""
        return 1.0 / (1.0 + np.exp(-self.L))


# ---------------------------------------------------------------- registry

MAPPERS: dict[str, tuple[type, type]] = {
    "note": (NoteMapperConfig, NoteMapper),
    "logodds": (LogOddsConfig, LogOddsMapper),
}
DEFAULT_MAPPER = "logodds"


def make_mapper(name: str, shape: tuple[int, int], config=None):
    """Build mapper ``name`` for a map of ``shape`` (default config when None)."""
    if name not in MAPPERS:
        raise InputError(f"unknown mapper {name!r}; choose from {', '.join(MAPPERS)}",
                         where="mapper")
    cfg_cls, cls = MAPPERS[name]
    return cls(config if config is not None else cfg_cls(), shape)


def map_accuracy(prob: np.ndarray, occ: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of cells in ``mask`` where ``prob > 0.5`` matches the true map (nan if none)."""
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    return float(((prob > 0.5) == occ)[mask].mean())
