"""``descentlab demo``: every part that exists, on embedded defaults.

Each part is a function ``(out_dir: Path, args) -> dict`` registered in :data:`PARTS`
(as ``"module:function"`` so nothing heavy is imported until the part runs). A part's
result has a ``summary`` dict of scalars, printed as the table; the whole result goes to
``--json`` as ``{"parts": {name: result}}``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from descentlab.core.outputs import folder
from descentlab.core.table import format_table

PARTS: dict[str, str] = {
    "planning": "descentlab.cli.planning:demo_part",
    "navigation": "descentlab.cli.navigation:demo_part",
    "rag": "descentlab.cli.rag:demo_part",
    "preference": "descentlab.cli.preference:demo_part",
}


def _load(spec: str):
    module, fn = spec.split(":")
    return getattr(importlib.import_module(module), fn)


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

    p = sub.add_parser("demo", help="run every part on embedded defaults",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="descentlab-out", help="output folder (default: %(default)s)")
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=None,
                   help="run only these parts (default: all)")
    add_common_args(p)
    # an earlier demo's part folders, or `plan`/`navigate` outputs at their defaults under it
    p.set_defaults(run=run_demo, outputs=(folder("out", recognise=(*PARTS, "plan", "navigate")),))
