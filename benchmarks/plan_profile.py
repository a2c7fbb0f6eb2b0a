"""Where a CPU plan's time goes: stage timings and the top torch ops of one batch.

    python benchmarks/plan_profile.py ../shared/benchmarks/movingai/dao/arena2.map --sample 10

Runs the batch twice (the first builds the per-map caches: operator, factorisation, distance
field) and profiles the second with torch.profiler, printing per-stage seconds per plan
(setup, init = potential solve + ascent, descent = the Adam loop, check = discretisation and
validity) for both runs and the ops that take most of the descent.
"""

from __future__ import annotations

import argparse
import json
import time

from torch.profiler import ProfilerActivity, profile

from descentlab.planning import load_map, load_scenarios, plan_many, sample_scenarios
from descentlab.planning.bench import stage_seconds_per_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("map")
    ap.add_argument("--sample", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    grid = load_map(args.map)
    sc = [s for s in sample_scenarios(load_scenarios(f"{args.map}.scen", grid), args.sample)
          if s.start != s.goal]
    starts, goals = [s.start for s in sc], [s.goal for s in sc]
    out = {"map": grid.name, "n": len(sc)}
    for run in ("first", "cached"):
        t0 = time.perf_counter()
        if run == "cached":
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                res = plan_many(grid, starts, goals)
        else:
            res = plan_many(grid, starts, goals)
        out[run] = {"seconds_per_plan": (time.perf_counter() - t0) / len(sc),
                    "stages": stage_seconds_per_plan(res)}
        print(run, json.dumps(out[run], indent=None))
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(table)
    out["top_ops"] = table
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
