"""Dense (the note's O(T·H·W)) vs fast (windowed O(T·r²)) expected obstacle score.

Forward + backward on a 512×512 map at 10% obstacles, 64 waypoints, β = 1, both forms in
the same process, side by side. With ``--device cuda`` also a batched case: 1024 problems ×
256 waypoints, milliseconds per iteration (forward + backward) for each kernel backend:
eager torch, torch.compile, and the fused Triton kernel.

    python benchmarks/collision_cost.py --json out.json [--device cuda]

JSON: ``ratio`` (dense time / fast time, each the fastest of its repeats;
``ratio_of_medians`` beside it), ``max_rel_err_value``, ``max_rel_err_grad``
(max |fast - dense| / max |dense|, over waypoints and coordinates), times in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descentlab.core.io import write_json
from descentlab.planning.soft_map import (
    PaddedMap,
    obstacle_score,
    obstacle_score_dense,
    window_radius,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(min, median) wall time of ``fn()`` in ms over ``repeats`` runs.

    The minimum is the least-disturbed run (what timeit reports): on a shared machine the
    median of a millisecond-scale call mostly measures the scheduler.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times)


def value_and_grad(score_fn, pts):
    p = pts.clone().requires_grad_(True)
    s = score_fn(p)
    (g,) = torch.autograd.grad(s.sum(), p)
    return s.detach(), g


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def single_case(device, size, density, n_waypoints, beta, repeats, seed) -> dict:
    g = torch.Generator().manual_seed(seed)
    occ = (torch.rand(size, size, generator=g) < density).float().to(device)
    pts = (torch.rand(n_waypoints, 2, generator=g) * (size - 1)).to(device)
    pm = PaddedMap(occ, window_radius(beta), device=device)
    dense = lambda p: obstacle_score_dense(p, occ, beta)  # noqa: E731
    fast = lambda p: obstacle_score(p, pm, beta)  # noqa: E731
    sd, gd = value_and_grad(dense, pts)
    sf, gf = value_and_grad(fast, pts)
    t_dense, med_dense = time_fn(lambda: value_and_grad(dense, pts), device, repeats)
    t_fast, med_fast = time_fn(lambda: value_and_grad(fast, pts), device, max(repeats, 50))
    return {"map": f"{size}x{size} at {density:.0%}", "waypoints": n_waypoints, "beta": beta,
            "window_radius": window_radius(beta), "dense_ms": t_dense, "fast_ms": t_fast,
            "ratio": t_dense / t_fast, "ratio_of_medians": med_dense / med_fast,
            "max_rel_err_value": rel_err(sf, sd),
            "max_rel_err_grad": rel_err(gf, gd)}


def batched_case(device, size, density, problems, n_waypoints, beta, seed) -> dict:
    g = torch.Generator().manual_seed(seed)
    occ = (torch.rand(size, size, generator=g) < density).float()
    pts = (torch.rand(problems, n_waypoints, 2, generator=g) * (size - 1)).to(device)
    out = {"problems": problems, "waypoints": n_waypoints, "beta": beta}
    ref = None
    for mode in ("torch", "compile", "triton"):
        try:
            pm = PaddedMap(occ, window_radius(beta), device=device, backend=mode)
            s, gr = value_and_grad(lambda p: obstacle_score(p, pm, beta), pts[:4])
            if ref is None:
                ref = (s, gr)
            out[f"{mode}_max_abs_err_vs_torch"] = max((s - ref[0]).abs().max().item(),
                                                     (gr - ref[1]).abs().max().item())
        except Exception as e:  # backend unavailable: report, don't hide
            out[f"{mode}_error"] = f"{type(e).__name__}: {e}"[:300]
            continue
        fn = lambda: value_and_grad(lambda p: obstacle_score(p, pm, beta), pts)  # noqa: E731
        try:
            out[f"{mode}_ms_per_iter"] = time_fn(fn, device, 100, warmup=10)[1]
        except Exception as e:  # compilation unavailable: report, don't hide
            out[f"{mode}_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--waypoints", type=int, default=64)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    res = single_case(device, args.size, 0.10, args.waypoints, args.beta, args.repeats, args.seed)
    res["device"] = str(device)
    res["torch"] = torch.__version__
    if device.type == "cuda":
        res["device_name"] = torch.cuda.get_device_name(device)
        res["batched"] = batched_case(device, args.size, 0.10, 1024, 256, args.beta, args.seed)
    for k, v in res.items():
        print(f"{k:>20}: {v}")
    if args.json:
        write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
