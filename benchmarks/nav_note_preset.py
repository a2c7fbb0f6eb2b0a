"""``navigate --preset note`` over many seeds: the note's setup, gradient vs A*, side by side.

The note's 20×20 map, its soft sensor (σ = 0.001) and gradient mapper; the seed changes the
observation noise (and the planner's seed). Every seed runs both planners in this process.

    python benchmarks/nav_note_preset.py --seeds 20 --json out.json

JSON: per planner ``success_rate``, ``length_ratio_mean``, ``bumps_mean``,
``time_per_step_ms_median``, ``map_accuracy_seen``, and ``runs`` (one row per seed).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from descentlab.core.io import write_json
from descentlab.core.table import format_table
from descentlab.planning import navigate


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default: 20)")
    ap.add_argument("--planners", nargs="+", default=["gradient", "astar"])
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {p: [] for p in args.planners}
    for seed in range(args.seeds):
        for planner in args.planners:
            t0 = time.perf_counter()
            s = navigate(preset="note", planner=planner, seed=seed).summary()
            runs[planner].append({"seed": seed, **s, "wall_s": time.perf_counter() - t0})
    summary = {}
    for planner, rows in runs.items():
        ok = [r for r in rows if r["success"]]
        summary[planner] = {
            "n": len(rows), "success_rate": len(ok) / len(rows),
            "length_ratio_mean": float(np.mean([r["length_ratio"] for r in ok])) if ok else math.nan,
            "bumps_mean": float(np.mean([r["bumps"] for r in rows])),
            "steps_mean": float(np.mean([r["steps"] for r in rows])),
            "time_per_step_ms_median": float(np.median([r["time_per_step_ms_median"]
                                                        for r in rows])),
            "map_accuracy_seen": float(np.mean([r["map_accuracy_seen"] for r in rows])),
            "failures": sorted({r["reason"] for r in rows if not r["success"]}),
        }
    print()
    print(format_table([{"planner": p, **{k: v for k, v in s.items() if k != "failures"}}
                        for p, s in summary.items()]))
    out = {"summary": summary, "runs": runs}
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
