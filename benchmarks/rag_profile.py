"""Where the time of ``rag experiment --preset small`` goes on a CPU: a shortened run.

Builds the small preset's world, tokenizer and indexes, trains one arm for ``--steps``
optimiser steps and evaluates it, once per thread setting (``--threads``: 0 = leave torch's
default, i.e. every core; N = N threads inside the call), and reports milliseconds per
optimiser step, evaluation seconds, and the training sequence lengths (padding share).
``--profile FILE`` also writes cProfile stats of the last setting.

    python benchmarks/rag_profile.py --steps 40 --threads 0 1 --json /tmp/rag_profile.json
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import time

from descentlab.core.io import write_json
from descentlab.core.seeding import torch_threads
from descentlab.lm.tiny import build_tiny_model, tokenizer_for
from descentlab.rag.api import train_model
from descentlab.rag.experiment import ARMS, build_world, evaluate_arm, preset_configs
from descentlab.rag.objective import RagData
from descentlab.rag.retrieval import build_retriever
from descentlab.rag.scoring import Reader


def padding_share(data: RagData, batch_fn, steps: int, batch_size: int) -> dict[str, float]:
    """Mean sequence length and the fraction of padded positions in ``steps`` batches."""
    from descentlab.core.training import BatchContext

    ctx = BatchContext(rank=0, world_size=1, batch_size=batch_size, grad_accum=1, seed=0,
                       device="cpu", model=None)
    real = total = 0
    for s in range(steps):
        mask = batch_fn(s, 0, ctx)["attention_mask"]
        real, total = real + int(mask.sum()), total + mask.numel()
    return {"tokens_per_example": real / (steps * batch_size), "padding_share": 1 - real / total}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps per setting")
    ap.add_argument("--arm", default="full", choices=list(ARMS), help="arm to train")
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                    help="torch thread settings to compare (0 = torch's default)")
    ap.add_argument("--profile", default=None, help="write cProfile stats of the last setting")
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)

    exp, model_cfg, train_cfg, objective = preset_configs(
        "small", train={"max_steps": args.steps, "log_every": args.steps})
    world = build_world(exp, 0)
    tokenizer = tokenizer_for(model_cfg, world.tokenizer_texts())
    indexes = {name: build_retriever("bm25", c) for name, c in (
        ("train", world.train_corpus), ("eval", world.eval_corpus), ("cf", world.cf_corpus))}
    cfg = dataclasses.replace(objective, **ARMS[args.arm])
    full_steps = preset_configs("small")[2].max_steps  # what the real run trains per arm
    rows = []
    for n, threads in enumerate(args.threads):
        prof = cProfile.Profile() if args.profile and n == len(args.threads) - 1 else None
        with torch_threads("cpu", threads or None):
            model = build_tiny_model(model_cfg, tokenizer, seed=0)
            if prof:
                prof.enable()
            t0 = time.perf_counter()
            res = train_model(model, tokenizer, world.train_corpus, world.trainable,
                              indexes["train"], cfg, train_cfg, seed=0)
            t1 = time.perf_counter()
            reader = Reader(res.model, tokenizer, k=cfg.k, budget=cfg.context_tokens)
            evaluate_arm(reader, world, indexes, 0)
            t2 = time.perf_counter()
            if prof:
                prof.disable()
                prof.dump_stats(args.profile)
        rows.append({"threads": threads or "default", "ms_per_step": 1000 * (t1 - t0) / args.steps,
                     "eval_seconds": t2 - t1})
        print(rows[-1], flush=True)
    data = RagData(world.train_corpus, world.trainable, tokenizer, indexes["train"], cfg)
    pad = padding_share(data, data.batch_fn(), 20, train_cfg.batch_size)
    result = {"arm": args.arm, "steps": args.steps, "batch_size": train_cfg.batch_size,
              "settings": rows, **pad,
              "projected_minutes_per_seed": {
                  str(r["threads"]): (r["ms_per_step"] * full_steps * len(ARMS) / 1000
                                      + r["eval_seconds"] * len(ARMS)) / 60 for r in rows}}
    print({k: v for k, v in result.items() if k != "settings"})
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
