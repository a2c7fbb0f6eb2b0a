"""``descentlab demo``: every part that exists, on embedded defaults.

Each part is the function ``demo_part(out_dir: Path, args) -> dict`` of a wing's CLI
module (:data:`PARTS`, derived from the command table; nothing heavy is imported until it
runs). A part's result has a ``summary`` dict of scalars, printed as the table; the whole
result goes to ``--json`` as ``{"parts": {name: result}}``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from descentlab.core.outputs import folder
from descentlab.core.table import format_table


def _parts() -> dict[str, str]:
    """Part name -> module: every wing's CLI module (each has a ``demo_part``), in the
    order of :data:`descentlab.cli.main.COMMANDS`."""
    from descentlab.cli.main import COMMANDS

    modules = dict.fromkeys(module for module, _ in COMMANDS.values() if module != __name__)
    return {module.rsplit(".", 1)[1]: module for module in modules}


PARTS = _parts()


def _load(module: str):
    return importlib.import_module(module).demo_part


def run_demo(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    parts = args.parts or list(PARTS)
    results: dict[str, dict] = {}
    rows = []
    for name in parts:
        t0 = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        res = _load(PARTS[name])(out / name, args)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        results[name] = res
        for key, value in res.get("summary", {}).items():
            rows.append({"part": name, "metric": key, "value": value})
        rows.append({"part": name, "metric": "seconds", "value": res["seconds"]})
    print()
    print(format_table(rows, ["part", "metric", "value"]))
    print(f"\nfigures under {out}/")
    return {"parts": results}


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args

    p = sub.add_parser("demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="descentlab-out", help="output folder (default: %(default)s)")
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=None,
                   help="run only these parts (default: all)")
    add_common_args(p)
    # an earlier demo's part folders, or `plan`/`navigate` outputs at their defaults under it
    p.set_defaults(run=run_demo, outputs=(folder("out", recognise=(*PARTS, "plan", "navigate")),))
