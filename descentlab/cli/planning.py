"""``descentlab plan`` and ``descentlab plan-bench`` (SPEC A), and the planning demo part."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from descentlab.cli.options import add_config_args, flag_for, registry_help, user_fields
from descentlab.core.config import ConfigError, field_default
from descentlab.core.errors import EXIT_FAILED, InputError
from descentlab.core.outputs import folder


def preset_config(build, overrides: dict, base, preset: str, args: argparse.Namespace):
    """``build(overrides)``: a config from a preset (``base``, named ``preset``) and the
    user's field values. A field error caused by the preset's value of a field the user did
    not set says so, and how to fix it (the field's default where that makes the config
    valid), e.g. the nav preset's risk with the harmonic potential."""
    try:
        return build(overrides)
    except ConfigError as e:
        if e.field in overrides or not hasattr(base, e.field):
            raise  # the user's own value
        flag = flag_for(args, e.where) or e.where
        default = field_default(next(f for f in dataclasses.fields(base) if f.name == e.field))
        try:
            build({**overrides, e.field: default})
            fix = f"pass {flag} {default} (its default)"
        except InputError:
            fix = f"set {flag}"
        raise ConfigError(f"{e.message}; {e.field} {getattr(base, e.field)} comes from the "
                          f"planner preset {preset!r}: {fix}", e.config, e.field) from None


def _planner_config(args: argparse.Namespace):
    """(config, preset) the planner name implies, with the user's flags on top, as the
    library builds it (api.planner_config): a planner that takes no config refuses every
    planner flag, --preset included."""
    from descentlab.planning import PRESETS, PlannerConfig
    from descentlab.planning.api import PLANNER_PRESETS, planner_config, resolve_preset

    overrides = user_fields(PlannerConfig, args)
    name = resolve_preset(args.planner, args.preset, overrides.get("init"))
    if name is None:
        try:
            planner_config(args.planner, args.preset, **overrides)
        except InputError as e:  # the library's refusal: say which flags
            flags = args.config_flags
            given = ", ".join(flags[f"PlannerConfig.{k}"] for k in overrides)
            raise InputError(f"{e.message}, got {given}", where=e.where) from None
        if args.preset is not None:  # the library ignores a preset here; the CLI refuses it
            takes = ", ".join(k for k, v in PLANNER_PRESETS.items() if v)
            raise InputError(f"planner {args.planner!r} takes no preset (only {takes} do)",
                             where="--preset")
        return None, None
    return preset_config(lambda ov: planner_config(args.planner, args.preset, **ov),
                         overrides, PRESETS[name], name, args)


def run_plan(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.table import format_table
    from descentlab.planning import load_map, plan
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START, parse_cell
    from descentlab.planning.search import astar
    from descentlab.planning.viz import plot_loss_curves, plot_plan

    seed_everything(args.seed)
    device = resolve_device(args.device)
    grid = load_map(args.map)
    if (args.start is None or args.goal is None) and args.map != "note":
        raise InputError("--start and --goal are required for this map", where="--start/--goal")
    start = parse_cell(args.start, "--start") if args.start else NOTE_START
    goal = parse_cell(args.goal, "--goal") if args.goal else NOTE_GOAL
    grid.check_cell(start, "--start")
    grid.check_cell(goal, "--goal")
    cfg, preset = _planner_config(args)
    if cfg is not None and args.out:
        cfg = dataclasses.replace(cfg, record_every=max(1, (cfg.coarse_iters + cfg.fine_iters) // 40))
    res = plan(grid, start, goal, planner=args.planner, config=cfg, device=str(device),
               seed=args.seed)
    res.preset = preset
    out = {"map": grid.name, "start": list(start), "goal": list(goal), **res.to_dict(),
           "figures": {}}
    if args.out:
        ref = astar(grid.occ, start, goal)
        outdir = Path(args.out)
        out["figures"]["plan"] = str(plot_plan(
            grid.occ, start, goal, outdir / "plan.png", waypoints=res.waypoints,
            history=res.history, cells=res.cells, reference_cells=ref.cells,
            title=f"{args.planner} on {grid.name}: {'valid' if res.valid else 'INVALID'}, "
                  f"length {res.length:.1f} (A* {res.astar_length:.1f}, "
                  f"any-angle {res.anyangle_length:.1f})"))
        if res.loss:
            out["figures"]["loss"] = str(plot_loss_curves({"total loss": res.loss},
                                                          outdir / "loss.png"))
    print(format_table([{k: out[k] for k in ("planner", "map", "start", "goal", "valid",
                                             "length", "astar_length", "anyangle_length",
                                             "length_ratio", "seconds")}]))
    if res.reason:
        print(f"invalid: {res.reason}")
    for fig in out["figures"].values():
        print(f"wrote {fig}")
    if not res.valid:
        args.exit_code = EXIT_FAILED  # ran, but the plan is invalid
    return out


def run_plan_bench(args: argparse.Namespace) -> dict:
    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.table import format_table
    from descentlab.planning import load_map, load_scenarios, plan_bench, sample_scenarios

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
    cfg, preset = _planner_config(args)
    res = plan_bench(grid, scenarios, args.planner, cfg, device, args.seed, args.batch,
                     log=lambda m: print(m, file=sys.stderr, flush=True),
                     references=not args.no_anyangle)
    res["preset"] = preset
    print(format_table(res["per_bucket"], ["bucket", "optimal_length", "valid", "length_ratio",
                                           "length_ratio_anyangle", "fallback", "time_s",
                                           "astar_time_s"]))
    print()
    print(format_table([{k: res[k] for k in ("planner", "map", "n", "success_rate",
                                             "length_ratio_median",
                                             "length_ratio_anyangle_median", "fallbacks",
                                             "time_per_plan_s_median",
                                             "astar_time_per_plan_s_median",
                                             "time_ratio_vs_astar")}]))
    return res


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """Plan on the note's map (default and the note's own preset) and on the embedded
    MovingAI arena2 map (gradient and gradient-astar-init), through the library API."""
    from descentlab.planning import load_map, load_scenarios, plan, sample_scenarios
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START
    from descentlab.planning.search import astar
    from descentlab.planning.viz import plot_plan

    mai = Path(__file__).resolve().parents[1] / "planning" / "data" / "arena2.map"
    arena = load_map(mai)
    sc = sample_scenarios(load_scenarios(f"{mai}.scen"), 5)[1]  # a short-to-mid scenario
    runs = {
        "note_map_default": (load_map("note"), NOTE_START, NOTE_GOAL, "gradient", "default"),
        "note_map_note_preset": (load_map("note"), NOTE_START, NOTE_GOAL, "gradient", "note"),
        "arena2_gradient": (arena, sc.start, sc.goal, "gradient", None),
        "arena2_gradient-astar-init": (arena, sc.start, sc.goal, "gradient-astar-init", None),
    }
    parts = {}
    for key, (grid, s, g, planner, preset) in runs.items():
        res = plan(grid, s, g, planner=planner, preset=preset, device=args.device,
                   seed=args.seed, record_every=10)
        fig = plot_plan(grid.occ, s, g, out_dir / key / "plan.png", waypoints=res.waypoints,
                        history=res.history, cells=res.cells,
                        reference_cells=astar(grid.occ, s, g).cells,
                        title=f"{planner} ({res.preset}) on {grid.name}: "
                              f"{'valid' if res.valid else 'INVALID'}, length {res.length:.1f} "
                              f"(A* {res.astar_length:.1f}, any-angle {res.anyangle_length:.1f})")
        parts[key] = {"planner": planner, "preset": res.preset, "map": grid.name,
                      "valid": res.valid, "length": res.length,
                      "astar_length": res.astar_length, "length_ratio": res.length_ratio,
                      "length_ratio_anyangle": res.length_ratio_anyangle,
                      "seconds": res.seconds, "figures": {"plan": str(fig)}}
        print(f"{key}: valid {res.valid}, length / A* {res.length_ratio:.3f}, "
              f"/ any-angle {res.length_ratio_anyangle:.3f}, {res.seconds:.2f} s", flush=True)
    summary = {f"{k}.valid": v["valid"] for k, v in parts.items()}
    summary.update({f"{k}.length_ratio": v["length_ratio"] for k, v in parts.items()})
    return {"summary": summary, "runs": parts}


def _add_planner_args(p: argparse.ArgumentParser) -> None:
    from descentlab.planning.api import PLANNER_PRESETS
    from descentlab.planning.bench import PLANNERS
    from descentlab.planning.planner import PRESETS, PlannerConfig

    own = ", ".join(f"{k}: {v}" for k, v in PLANNER_PRESETS.items() if v)
    none = ", ".join(k for k, v in PLANNER_PRESETS.items() if not v)
    p.add_argument("--planner", choices=list(PLANNERS), default="gradient",
                   help=f"{registry_help(PLANNERS)} (default: gradient)")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help=f"gradient planner preset, one of {', '.join(PRESETS)} (see "
                        f"descentlab.planning.planner) (default: the planner's own, {own}, "
                        f"or the one --init implies; {none} take no preset or planner "
                        f"options)")
    add_config_args(p, PlannerConfig, skip=("record_every",))


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args

    p = sub.add_parser("plan",
                       description="Plan one path by gradient descent (or A*) and draw it.")
    p.add_argument("--map", required=True, help="'note', a MovingAI .map, .npy, .txt or image")
    p.add_argument("--start", default=None, help="ROW,COL (default on the note map: 0,0)")
    p.add_argument("--goal", default=None, help="ROW,COL (default on the note map: 19,10)")
    p.add_argument("--out", default="descentlab-out/plan", help="figure folder ('' = none)")
    _add_planner_args(p)
    add_common_args(p)
    p.set_defaults(run=run_plan, outputs=(folder("out", recognise=("plan.png", "loss.png")),))

    b = sub.add_parser("plan-bench",
                       description="Success rate, length ratio and time per plan on a .scen.")
    b.add_argument("map", help="MovingAI .map file")
    b.add_argument("--scen", default=None, help="scenario file (default: MAP.scen)")
    b.add_argument("--sample", type=int, default=0,
                   help="N scenarios spread evenly over the buckets (default: all)")
    b.add_argument("--batch", type=int, default=0,
                   help="problems per batched tensor (default 0: all at once)")
    b.add_argument("--no-anyangle", action="store_true",
                   help="skip the exact any-angle reference lengths")
    _add_planner_args(b)
    add_common_args(b)
    b.set_defaults(run=run_plan_bench)
