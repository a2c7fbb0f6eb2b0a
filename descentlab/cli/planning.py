"""``descentlab plan`` and ``descentlab plan-bench`` (SPEC A), and the planning demo part."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from descentlab.core.config import add_config_args, config_from_args
from descentlab.core.errors import InputError


def _planner_config(args: argparse.Namespace):
    """The preset the planner name implies, with the user's flags on top."""
    from descentlab.planning.planner import PRESETS, PlannerConfig

    if args.planner == "astar":
        return None
    seeded = args.planner == "gradient-astar-init" or getattr(args, "init", None) == "astar"
    name = "astar" if seeded else (args.preset or "default")
    try:
        return config_from_args(PlannerConfig, args, base=PRESETS[name])
    except ValueError as e:
        raise InputError(str(e), where="planner options") from None


def _planner_name(args: argparse.Namespace) -> str:
    if args.planner == "gradient" and getattr(args, "init", None) == "astar":
        return "gradient-astar-init"
    return args.planner


def run_plan(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.table import format_table
    from descentlab.planning.bench import PLANNERS
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START, load_map, parse_cell
    from descentlab.planning.search import astar
    from descentlab.planning.viz import plot_loss_curves, plot_plan

    seed_everything(args.seed)
    device = resolve_device(args.device)
    grid = load_map(args.map)
    is_note = args.map == "note"
    if (args.start is None or args.goal is None) and not is_note:
        raise InputError("--start and --goal are required for this map", where="--start/--goal")
    start = parse_cell(args.start, "--start") if args.start else NOTE_START
    goal = parse_cell(args.goal, "--goal") if args.goal else NOTE_GOAL
    grid.check_cell(start, "--start")
    grid.check_cell(goal, "--goal")
    ref = astar(grid.occ, start, goal)
    if ref is None:
        raise InputError(f"the goal {goal} cannot be reached from {start} on this map",
                         where="--goal")
    cfg = _planner_config(args)
    if cfg is not None and args.out:
        cfg = dataclasses.replace(cfg, record_every=max(1, (cfg.coarse_iters + cfg.fine_iters) // 40))
    name = _planner_name(args)
    res = PLANNERS[name](grid.occ, [start], [goal], cfg, device, args.seed)[0]
    out = {
        "planner": name, "preset": None if cfg is None else (args.preset or "default"),
        "map": grid.name, "start": list(start), "goal": list(goal), "valid": res.valid,
        "reason": res.reason, "length": res.length, "astar_length": ref.length,
        "length_ratio": res.length / ref.length if ref.length > 0 else None,
        "seconds": res.seconds, "starts_valid": res.starts_valid,
        "waypoints": res.waypoints.round(4).tolist(), "cells": res.cells.tolist(),
        "config": None if cfg is None else dataclasses.asdict(cfg), "figures": {},
    }
    if args.out:
        outdir = Path(args.out)
        out["figures"]["plan"] = str(plot_plan(
            grid.occ, start, goal, outdir / "plan.png", waypoints=res.waypoints,
            history=res.history, cells=res.cells, reference_cells=ref.cells,
            title=f"{name} on {grid.name}: {'valid' if res.valid else 'INVALID'}, "
                  f"length {res.length:.1f} (A* {ref.length:.1f})"))
        if res.loss:
            out["figures"]["loss"] = str(plot_loss_curves({"total loss": res.loss},
                                                          outdir / "loss.png"))
    print(format_table([{k: out[k] for k in ("planner", "map", "start", "goal", "valid",
                                             "length", "astar_length", "length_ratio",
                                             "seconds")}]))
    if res.reason:
        print(f"invalid: {res.reason}")
    for fig in out["figures"].values():
        print(f"wrote {fig}")
    return out


def run_plan_bench(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.table import format_table
    from descentlab.planning.bench import plan_bench
    from descentlab.planning.grid import load_map, load_scenarios, sample_scenarios

    seed_everything(args.seed)
    device = resolve_device(args.device)
    grid = load_map(args.map)
    scen_path = args.scen or f"{args.map}.scen"
    scenarios = load_scenarios(scen_path, grid)
    if args.sample:
        if args.sample < 1:
            raise InputError("must be >= 1", where="--sample")
        scenarios = sample_scenarios(scenarios, args.sample)
    scenarios = [s for s in scenarios if s.start != s.goal]
    if not scenarios:
        raise InputError("no scenarios with start != goal", where=scen_path)
    res = plan_bench(grid, scenarios, _planner_name(args), _planner_config(args), device,
                     args.seed, args.batch, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(res["per_bucket"], ["bucket", "optimal_length", "valid", "length_ratio",
                                           "time_s", "astar_time_s"]))
    print()
    print(format_table([{k: res[k] for k in ("planner", "map", "n", "success_rate",
                                             "length_ratio_median", "time_per_plan_s_median",
                                             "astar_time_per_plan_s_median")}]))
    return res


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """Plan on the note's map (note preset and default) and on the embedded MovingAI map."""
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START

    parts = {}
    common = dict(device=args.device, seed=args.seed, json=None, start=None, goal=None,
                  scen=None, batch=0)
    runs = {
        "note_map_default": dict(map="note", planner="gradient", preset="default"),
        "note_map_note_preset": dict(map="note", planner="gradient", preset="note"),
    }
    mai = Path(__file__).resolve().parents[1] / "planning" / "data" / "arena2.map"
    from descentlab.planning.grid import load_scenarios, sample_scenarios

    sc = sample_scenarios(load_scenarios(f"{mai}.scen"), 5)[1]  # a short-to-mid scenario
    for planner in ("gradient", "gradient-astar-init"):
        runs[f"arena2_{planner}"] = dict(map=str(mai), planner=planner, preset=None,
                                         start=f"{sc.start[0]},{sc.start[1]}",
                                         goal=f"{sc.goal[0]},{sc.goal[1]}")
    for key, kw in runs.items():
        ns = argparse.Namespace(**{**common, **kw, "out": str(out_dir / key)})
        if kw["map"] == "note":
            ns.start, ns.goal = ",".join(map(str, NOTE_START)), ",".join(map(str, NOTE_GOAL))
        res = run_plan(ns)
        parts[key] = {k: res[k] for k in ("planner", "map", "valid", "length", "astar_length",
                                          "length_ratio", "seconds", "figures")}
    summary = {f"{k}.valid": v["valid"] for k, v in parts.items()}
    summary.update({f"{k}.length_ratio": v["length_ratio"] for k, v in parts.items()})
    return {"summary": summary, "runs": parts}


def _add_planner_args(p: argparse.ArgumentParser) -> None:
    from descentlab.planning.bench import PLANNERS
    from descentlab.planning.planner import PRESETS, PlannerConfig

    p.add_argument("--planner", choices=list(PLANNERS), default="gradient",
                   help="gradient (pure, no search), gradient-astar-init (refine A*), astar")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="gradient planner preset: default, note (the note's own setup), astar")
    add_config_args(p, PlannerConfig, skip=("record_every",))


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args

    p = sub.add_parser("plan", help="plan one path on a grid map",
                       description="Plan one path by gradient descent (or A*) and draw it.")
    p.add_argument("--map", required=True, help="'note', a MovingAI .map, .npy, .txt or image")
    p.add_argument("--start", default=None, help="ROW,COL (default on the note map: 0,0)")
    p.add_argument("--goal", default=None, help="ROW,COL (default on the note map: 19,10)")
    p.add_argument("--out", default="descentlab-out/plan", help="figure folder ('' = none)")
    _add_planner_args(p)
    add_common_args(p)
    p.set_defaults(run=run_plan)

    b = sub.add_parser("plan-bench", help="benchmark a planner on MovingAI scenarios",
                       description="Success rate, length ratio and time per plan on a .scen.")
    b.add_argument("map", help="MovingAI .map file")
    b.add_argument("--scen", default=None, help="scenario file (default: MAP.scen)")
    b.add_argument("--sample", type=int, default=0,
                   help="N scenarios spread evenly over the buckets (default: all)")
    b.add_argument("--batch", type=int, default=0,
                   help="problems per batched tensor (default 0: all at once)")
    _add_planner_args(b)
    add_common_args(b)
    b.set_defaults(run=run_plan_bench)
