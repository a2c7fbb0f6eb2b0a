"""``descentlab navigate`` and ``descentlab nav-bench`` (SPEC B), and the navigation demo part."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from descentlab.cli.options import (
    add_config_args,
    config_from_args,
    registry_help,
    summary,
    user_fields,
)
from descentlab.core.errors import EXIT_FAILED, InputError
from descentlab.core.outputs import folder


def _prefix(name: str, default: str) -> str:
    """Flags of the default sensor/mapper are bare (``--radius``); the others' carry the
    name (``--soft-beta``)."""
    return "" if name == default else f"{name}_"


def _registered(registry: dict, default: str):
    """``(name, config class, flag prefix)`` per entry of a sensor/mapper registry."""
    return [(name, cfg_cls, _prefix(name, default)) for name, (cfg_cls, _) in registry.items()]


def _sensor_config(args):
    from descentlab.planning.sensors import DEFAULT_SENSOR, SENSORS

    return config_from_args(SENSORS[args.sensor][0], args,
                            prefix=_prefix(args.sensor, DEFAULT_SENSOR))


def _mapper_config(args):
    from descentlab.planning.mapping import DEFAULT_MAPPER, MAPPERS

    return config_from_args(MAPPERS[args.mapper][0], args,
                            prefix=_prefix(args.mapper, DEFAULT_MAPPER))


def _nav_config(args):
    from descentlab.planning.navigation import NAV_PRESETS, NavConfig

    preset = getattr(args, "preset", None)
    base = NavConfig(**NAV_PRESETS[preset]["nav"]) if preset else None
    return config_from_args(NavConfig, args, base=base)


def _default_planner_preset() -> str:
    """The name of the navigator's default planner preset (navigation.default_planner_config)."""
    from descentlab.planning.navigation import default_planner_config
    from descentlab.planning.planner import PRESETS

    base = default_planner_config()
    return next((k for k, v in PRESETS.items() if v == base), "the navigator's default")


def _planner_config(args):
    """The gradient planner's config: --planner-preset (default: the navigator's), with the
    user's --planner-* flags on top; a preset value that clashes with them is named."""
    from descentlab.cli.planning import preset_config
    from descentlab.planning.navigation import default_planner_config
    from descentlab.planning.planner import PRESETS, PlannerConfig

    name = args.planner_preset
    base = PRESETS[name] if name else default_planner_config()
    return preset_config(lambda ov: dataclasses.replace(base, **ov),
                         user_fields(PlannerConfig, args, prefix="planner_"), base,
                         name or _default_planner_preset(), args)


def _apply_preset(args) -> None:
    """Fill --map/--sensor/--mapper from --preset where the user did not set them."""
    from descentlab.planning.mapping import DEFAULT_MAPPER
    from descentlab.planning.navigation import NAV_PRESETS
    from descentlab.planning.sensors import DEFAULT_SENSOR

    defaults = {"map": "note", "sensor": DEFAULT_SENSOR, "mapper": DEFAULT_MAPPER}
    preset = NAV_PRESETS.get(args.preset or "", {})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, value))


def _problem(args):
    """(GridMap, start, goal, optimal length) from --map/--start/--goal; InputError if bad."""
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START, load_map, parse_cell
    from descentlab.planning.nav_bench import random_problem
    from descentlab.planning.navigation import validate_problem

    if args.map == "random":
        prob = random_problem(args.seed, args.size, args.density)  # errors name size, density
        grid, start, goal = prob.grid, prob.start, prob.goal
    else:
        grid = load_map(args.map)
        start, goal = (NOTE_START, NOTE_GOAL) if args.map == "note" else (None, None)
    if args.start is not None:
        start = parse_cell(args.start, "--start")
    if args.goal is not None:
        goal = parse_cell(args.goal, "--goal")
    if start is None or goal is None:
        raise InputError("--start and --goal are required for a map file",
                         where="--start/--goal")
    optimal = validate_problem(grid, start, goal)
    return grid, tuple(start), tuple(goal), optimal


def run_navigate(args: argparse.Namespace) -> dict:
    from descentlab.core.progress import progress
    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.table import format_table
    from descentlab.planning import navigate
    from descentlab.planning.navigation import step_limit

    _apply_preset(args)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    grid, start, goal, optimal = _problem(args)
    sensor_cfg, mapper_cfg, nav = _sensor_config(args), _mapper_config(args), _nav_config(args)
    planner_cfg = _planner_config(args) if args.planner == "gradient" else None
    if planner_cfg is None:  # a baseline plans without the gradient planner's options
        from descentlab.planning.planner import PlannerConfig

        given = [args.config_flags[f"PlannerConfig.{k}"] for k in
                 user_fields(PlannerConfig, args, prefix="planner_")]
        given += ["--planner-preset"] * (args.planner_preset is not None)
        if given:
            raise InputError(f"planner {args.planner!r} takes no planner options, got "
                             f"{', '.join(given)}", where="--planner")
    record = bool(args.out)
    with progress(total=step_limit(nav, optimal), desc=f"navigate {grid.name}") as bar:
        res = navigate(grid, start, goal, sensor=args.sensor, mapper=args.mapper,
                       planner=args.planner, nav=nav, sensor_config=sensor_cfg,
                       mapper_config=mapper_cfg, planner_config=planner_cfg,
                       device=str(device), seed=args.seed, record=record,
                       on_step=lambda step, pos: bar.update(1))
    summary = res.summary()
    out = {"map": grid.name, "start": list(start), "goal": list(goal), "sensor": args.sensor,
           "mapper": args.mapper, "planner": args.planner, "preset": args.preset,
           "summary": summary, "path": res.path.tolist(),
           "config": {"sensor": dataclasses.asdict(sensor_cfg),
                      "mapper": dataclasses.asdict(mapper_cfg), "nav": dataclasses.asdict(nav),
                      "planner": None if planner_cfg is None else dataclasses.asdict(planner_cfg)},
           "figures": {}}
    if record:
        from descentlab.planning.viz_nav import plot_final, save_gif

        outdir = Path(args.out)
        out["figures"]["gif"] = str(save_gif(grid.occ, res, start, goal, outdir / "navigation.gif"))
        out["figures"]["final"] = str(plot_final(grid.occ, res, start, goal,
                                                 outdir / "navigation_final.png",
                                                 prob=res.estimate, seen=res.seen))
    print(format_table([{"map": grid.name, "planner": args.planner, "sensor": args.sensor,
                         "mapper": args.mapper, **{k: summary[k] for k in (
                             "success", "steps", "length_ratio", "replans", "bumps",
                             "time_per_step_ms_median", "map_accuracy_seen")}}]))
    if not res.success:
        print(f"did not reach the goal: {res.reason}")
        args.exit_code = EXIT_FAILED
    for fig in out["figures"].values():
        print(f"wrote {fig}")
    return out


def _bench_problems(args):
    from descentlab.planning.nav_bench import PROBLEM_SETS, movingai_problems

    groups = {}
    for spec in args.maps:
        if spec in PROBLEM_SETS:
            groups[spec] = PROBLEM_SETS[spec][1](args.n, args.seed, args.min_length)
        else:
            if not spec.endswith(".map"):
                raise InputError(f"expected one of {', '.join(PROBLEM_SETS)} or a MovingAI "
                                 f".map file, got {spec!r}", where="--maps")
            groups[Path(spec).stem] = movingai_problems(spec, args.n, min_length=args.min_length,
                                                        max_length=args.max_length)
    return groups


def run_nav_bench(args: argparse.Namespace) -> dict:
    from descentlab.core.progress import progress
    from descentlab.core.seeding import resolve_device, seed_everything, torch_threads
    from descentlab.core.table import format_table
    from descentlab.planning.nav_bench import BenchSetup, run_groups

    if args.n < 1:
        raise InputError(f"must be >= 1, got {args.n}", where="--n")
    seed_everything(args.seed)
    device = resolve_device(args.device)
    setup = BenchSetup(args.sensor, _sensor_config(args), args.mapper, _mapper_config(args),
                       _nav_config(args), _planner_config(args), str(device), args.seed)
    groups = _bench_problems(args)
    total = sum(len(p) for p in groups.values()) * len(args.planners)
    with progress(total=total, desc="nav-bench") as bar, torch_threads(device):
        def log(name, planner, i, res):
            bar.update(1)
            print(f"{name} #{i} {planner}: {res.reason}, steps {res.steps}, "
                  f"ratio {res.length_ratio:.3f}, bumps {res.bumps}, replans {res.replans}",
                  file=sys.stderr, flush=True)

        out = run_groups(groups, args.planners, setup, on_run=log)
    per_map = out.get("per_map", {})
    out["config"] = {"maps": args.maps, "n": args.n, "sensor": args.sensor,
                     "mapper": args.mapper, "planners": args.planners,
                     "sensor_config": dataclasses.asdict(setup.sensor_config),
                     "mapper_config": dataclasses.asdict(setup.mapper_config),
                     "nav": dataclasses.asdict(setup.nav),
                     "planner_config": dataclasses.asdict(setup.planner_config)}
    rows = []
    groups_out = {**per_map, "all": out} if per_map else {next(iter(groups)): out}
    for name, res in groups_out.items():
        for planner, s in res["summary"].items():
            rows.append({"maps": name, "planner": planner, **{k: s[k] for k in (
                "success_rate", "length_ratio_mean", "bumps_mean", "replans_mean",
                "time_per_step_ms_median", "time_per_replan_ms_median",
                "map_accuracy_seen")}})
    print(format_table(rows))
    for name, res in groups_out.items():
        for key, value in res.items():
            if key.startswith("gradient_vs_") and not key.endswith("_ci95"):
                lo, hi = res[f"{key}_ci95"]
                print(f"{name} {key}: {value:.4f} (95% bootstrap interval {lo:.3f}-{hi:.3f})")
    return out


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """The note preset with the gradient planner, and A* vs gradient on one random 64x64 map,
    through the library API (:func:`descentlab.planning.navigate`)."""
    from descentlab.planning import load_map, navigate
    from descentlab.planning.grid import NOTE_GOAL, NOTE_START
    from descentlab.planning.nav_bench import random_problem
    from descentlab.planning.viz_nav import plot_final, save_gif

    rnd = random_problem(args.seed, 64, 0.2)
    note = (load_map("note"), NOTE_START, NOTE_GOAL)
    runs = {
        "note_preset_gradient": (note, dict(preset="note", planner="gradient")),
        "random64_ray_gradient": ((rnd.grid, rnd.start, rnd.goal), dict(planner="gradient")),
        "random64_ray_astar": ((rnd.grid, rnd.start, rnd.goal), dict(planner="astar")),
    }
    parts = {}
    for key, ((grid, start, goal), kw) in runs.items():
        res = navigate(grid, start, goal, **kw, device=args.device, seed=args.seed, record=True)
        occ = grid.occ
        figures = {"gif": str(save_gif(occ, res, start, goal, out_dir / key / "navigation.gif")),
                   "final": str(plot_final(occ, res, start, goal,
                                           out_dir / key / "navigation_final.png",
                                           prob=res.estimate, seen=res.seen))}
        summary = res.summary()
        print(f"{key}: success {summary['success']}, length / optimal "
              f"{summary['length_ratio']:.3f}, {summary['time_per_step_ms_median']:.1f} ms/step",
              flush=True)
        parts[key] = {"planner": kw["planner"], "summary": summary, "figures": figures}
    summary = {}
    for key, res in parts.items():
        for m in ("success", "length_ratio", "bumps", "time_per_step_ms_median"):
            summary[f"{key}.{m}"] = res["summary"][m]
    return {"summary": summary, "runs": parts}


def _preset_says(key: str) -> str:
    """What each navigation preset sets ``key`` to, for a flag's help ('' if none sets it)."""
    from descentlab.planning.navigation import NAV_PRESETS

    said = [f"preset {name}: {p[key]}" for name, p in NAV_PRESETS.items() if key in p]
    return f"; {', '.join(said)}" if said else ""


def _add_shared_args(p: argparse.ArgumentParser, *, bench: bool) -> None:
    from descentlab.planning.mapping import DEFAULT_MAPPER, MAPPERS
    from descentlab.planning.navigation import NavConfig
    from descentlab.planning.planner import PRESETS, PlannerConfig
    from descentlab.planning.sensors import DEFAULT_SENSOR, SENSORS

    def config_doc(entry) -> str:  # a SENSORS/MAPPERS entry is (config class, class)
        return summary(entry[0])

    p.add_argument("--sensor", choices=list(SENSORS), default=DEFAULT_SENSOR if bench else None,
                   help=f"{registry_help(SENSORS, config_doc)} (default: {DEFAULT_SENSOR}"
                        f"{'' if bench else _preset_says('sensor')})")
    p.add_argument("--mapper", choices=list(MAPPERS), default=DEFAULT_MAPPER if bench else None,
                   help=f"{registry_help(MAPPERS, config_doc)} (default: {DEFAULT_MAPPER}"
                        f"{'' if bench else _preset_says('mapper')})")
    p.add_argument("--planner-preset", choices=list(PRESETS), default=None,
                   help="gradient planner preset, one of `descentlab plan --preset` (default: "
                        f"{_default_planner_preset()}, the navigator's, for replanning)")
    add_config_args(p, NavConfig)
    for _, cfg_cls, prefix in [*_registered(SENSORS, DEFAULT_SENSOR),
                               *_registered(MAPPERS, DEFAULT_MAPPER)]:
        add_config_args(p, cfg_cls, prefix=prefix)
    add_config_args(p, PlannerConfig, prefix="planner_", skip=("record_every",))


def build_navigate_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``navigate`` flags."""
    from descentlab.cli.main import ArgumentParser, add_common_args
    from descentlab.planning.navigation import NAVIGATORS

    p = parser or ArgumentParser(prog="descentlab navigate")
    from descentlab.planning.navigation import NAV_PRESETS

    def preset_doc(p: dict) -> str:  # what a NAV_PRESETS entry sets
        return ", ".join([*(f"{k} {v}" for k, v in p.items() if k != "nav"),
                          *(f"{k} {v}" for k, v in p.get("nav", {}).items())])

    p.add_argument("--preset", choices=list(NAV_PRESETS), default=None,
                   help=f"{registry_help(NAV_PRESETS, preset_doc)}; flags override it")
    p.add_argument("--map", default=None,
                   help="'note', 'random' (seeded by --seed) or a map file: MovingAI .map, "
                        ".npy, .txt or image (default: note)")
    p.add_argument("--start", default=None, help="ROW,COL (default: the note's 0,0; random "
                   "maps: a cell near a corner)")
    p.add_argument("--goal", default=None, help="ROW,COL (default: the note's 19,10; random "
                   "maps: near the opposite corner)")
    p.add_argument("--size", type=int, default=64, help="random map: side (default: 64)")
    p.add_argument("--density", type=float, default=0.2,
                   help="random map: obstacle density (default: 0.2)")
    p.add_argument("--planner", choices=list(NAVIGATORS), default="gradient",
                   help=f"{registry_help(NAVIGATORS)} (default: gradient)")
    p.add_argument("--out", default="descentlab-out/navigate",
                   help="folder for the GIF and the final figure ('' = none)")
    _add_shared_args(p, bench=False)
    add_common_args(p)
    p.set_defaults(run=run_navigate, outputs=(folder(
        "out", recognise=("navigation.gif", "navigation_final.png")),))
    return p


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args
    from descentlab.planning.nav_bench import PROBLEM_SETS
    from descentlab.planning.navigation import NAVIGATORS

    p = sub.add_parser("navigate",
                       description="Observe, update the map estimate, replan, move; repeat "
                                   "until the goal. Writes an animated GIF and a final figure.")
    build_navigate_parser(p)

    b = sub.add_parser("nav-bench",
                       description="Every planner on the same generated maps or MovingAI "
                                   "scenarios; success, length ratio, bumps, replans, time per "
                                   "step, map accuracy.")
    b.add_argument("--maps", nargs="+", default=["random64"],
                   help="generated problem sets ("
                        + "; ".join(f"{k}: {d}" for k, (d, _) in PROBLEM_SETS.items())
                        + ") and/or MovingAI .map files (scenarios from MAP.scen) "
                        "(default: random64)")
    b.add_argument("--n", type=int, default=20,
                   help="problems per generated set (one map each), or scenarios per "
                        "MovingAI map (default: 20)")
    b.add_argument("--planners", nargs="+", choices=list(NAVIGATORS), default=list(NAVIGATORS),
                   help=f"planners to compare, each once: {registry_help(NAVIGATORS)} "
                        "(default: all)")
    b.add_argument("--min-length", type=float, default=30.0,
                   help="shortest optimal length of a MovingAI scenario, or of the random ends "
                        "of a generated set that has them (default: 30)")
    b.add_argument("--max-length", type=float, default=90.0,
                   help="MovingAI: longest optimal length of a scenario (default: 90)")
    _add_shared_args(b, bench=True)
    add_common_args(b)
    b.set_defaults(run=run_nav_bench)
