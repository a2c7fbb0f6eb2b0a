"""nav-bench on maps of other kinds than the four MovingAI maps: a check that no navigation
setting is tuned to those maps (issue 10).

    python benchmarks/nav_other_maps.py --json nav_other_maps.json

Three generated families, one map per problem, every planner of ``NAVIGATORS`` with the
nav-bench defaults (ray sensor, radius 5, logodds mapper, NavConfig(), the ``nav`` planner
preset; ``--risk`` / ``--unknown`` change the gradient's state cost and the probability
given to unseen cells):

- random: 96×96, obstacle density 0.3 (``grid.random_map``), 20 problems;
- maze: perfect mazes 81×81 with 1-wide corridors (``grid.maze_map(40, seed)``), 10;
- rooms: 121×121, rooms of side 12 with one door per wall (``grid.rooms_map``), 10.

Start and goal are two free cells drawn at random (seeded) from the map's largest
4-connected component with an optimal (A*) length of at least ``--min-length``. Prints the
nav-bench table per family and ``gradient_vs_<baseline>_length`` for each baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from descentlab.planning.grid import GridMap, maze_map, random_map, rooms_map
from descentlab.planning.mapping import MAPPERS
from descentlab.planning.nav_bench import BenchSetup, Problem, run_groups
from descentlab.planning.navigation import NAVIGATORS, NavConfig
from descentlab.planning.planner import PRESETS
from descentlab.planning.search import astar
from descentlab.planning.sensors import SENSORS

FAMILIES = {  # name -> (map of a seed, problems)
    "random96_d0.3": (lambda seed: random_map(96, 96, 0.3, seed), 20),
    "maze81": (lambda seed: maze_map(40, seed), 10),
    "rooms121_r12": (lambda seed: rooms_map(121, 12, seed), 10),
}


def problem(grid: GridMap, seed: int, min_length: float) -> Problem:
    """Two seeded free cells of the largest component at least ``min_length`` apart (A*)."""
    from scipy.ndimage import label

    labels, n = label(~grid.occ)  # 4-connected components, (H, W)
    biggest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    cells = np.argwhere(labels == biggest)  # (F, 2)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        a, b = (tuple(int(v) for v in cells[i]) for i in rng.choice(len(cells), 2, replace=False))
        found = astar(grid.occ, a, b)
        if found is not None and found.length >= min_length:
            return Problem(grid, a, b, found.length, f"{grid.name}-{a[0]},{a[1]}-{b[0]},{b[1]}")
    raise RuntimeError(f"no pair at least {min_length} apart on {grid.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-length", type=float, default=30.0)
    ap.add_argument("--radius", type=float, default=5.0)
    ap.add_argument("--risk", type=float, default=None,
                    help="the gradient planner's PlannerConfig.risk (default: the nav preset's)")
    ap.add_argument("--unknown", type=float, default=None,
                    help="NavConfig.unknown (default: NavConfig's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    groups = {name: [problem(make(seed), seed, args.min_length) for seed in range(n)]
              for name, (make, n) in FAMILIES.items()}
    sensor_cfg = SENSORS["ray"][0](radius=args.radius)
    nav = NavConfig() if args.unknown is None else NavConfig(unknown=args.unknown)
    planner_cfg = (None if args.risk is None
                   else dataclasses.replace(PRESETS["nav"], risk=args.risk))
    setup = BenchSetup("ray", sensor_cfg, "logodds", MAPPERS["logodds"][0](), nav, planner_cfg)
    out = run_groups(groups, list(NAVIGATORS), setup,
                     on_run=lambda name, p, i, r: print(
                         f"{name} #{i} {p}: {r.reason}, ratio {r.length_ratio:.3f}", flush=True))
    print()
    for name, res in out["per_map"].items():
        for p, s in res["summary"].items():
            print(f"{name:14s} {p:11s} success {s['success_rate']:.2f}  length / optimal "
                  f"{s['length_ratio_mean']:.3f}  ms per replan "
                  f"{s['time_per_replan_ms_median']:.1f}")
        for key, value in res.items():
            if key.startswith("gradient_vs_"):
                print(f"{name:14s} {key}: {value:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


if __name__ == "__main__":
    main()
