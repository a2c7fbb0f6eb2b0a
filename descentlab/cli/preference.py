"""``descentlab prefopt``: preference optimisation of causal LMs (SPEC parts C–D).

``prefopt train`` trains a model (a local folder, or ``tiny``: a small random-init GPT-2
with a tokenizer trained on the data) on TRL-format preference data with any loss of the
registry (offline), or with ``--onpolicy`` on pairs sampled from the policy and labelled
by a reward (``pdpo``: the proper on-policy loss of note C). Writes ``OUT/train_log.jsonl``,
``OUT/training.png``, ``OUT/checkpoint.pt`` and the final model in ``OUT/model``. With
``--eval-data`` held-out pairs are scored every ``--eval-every`` steps and at the end
(``eval/…`` in the log and the figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

from descentlab.cli.options import add_config_args, config_from_args
from descentlab.core.errors import InputError
from descentlab.core.outputs import folder
from descentlab.core.table import format_table
from descentlab.core.training import save_pretrained
from descentlab.lm.tiny import TinyLMConfig
from descentlab.preference.losses import LossParams
from descentlab.preference.offline import PrefConfig, PrefTrainConfig, train_config_for
from descentlab.preference.onpolicy import OnPolicyConfig

SUMMARY_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen",
                "rewards/rejected", "logps/chosen", "logps/rejected", "lengths/chosen",
                "lengths/rejected", "oracle/reward", "pdpo/objective", "is/ess",
                "dpo_bg/margins", "dpo_bg/accuracies", "pdpo/margins", "eval/loss",
                "eval/rewards/accuracies", "eval/rewards/margins", "eval/logps_delta/chosen",
                "eval/logps_delta/rejected")


def _load(args: argparse.Namespace, rows: list[dict], tiny: TinyLMConfig, accelerator):
    """(model, tokenizer, source): ``tiny`` is built once and kept in OUT/init for --resume
    (its size flags are resume settings: a changed one is refused)."""
    from descentlab.lm.tiny import build_tiny, load_model_and_tokenizer
    from descentlab.preference.data import row_texts

    if args.model != "tiny":
        model, tok = load_model_and_tokenizer(args.model)
        return model, tok, args.model
    init = Path(args.out) / "init"
    if args.resume and (init / "config.json").exists():
        model, tok = load_model_and_tokenizer(init)
        return model, tok, None
    texts = [t for r in rows for t in row_texts(r)]
    model, tok = build_tiny(texts, tiny, seed=args.seed)
    if accelerator.is_main_process:
        save_pretrained(model, tok, init)
    accelerator.wait_for_everyone()
    return model, tok, None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_train(args: argparse.Namespace) -> dict:
    from transformers.utils import logging as hf_logging

    from descentlab.core.seeding import resolve_device, seed_everything
    from descentlab.core.training import make_accelerator
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference import api
    from descentlab.preference.data import load_pairs
    from descentlab.preference.oracles import load_reward
    from descentlab.preference.viz import plot_training

    hf_logging.disable_progress_bar()      # per-shard save/load bars; ours shows the training
    if args.extend and not args.resume:  # before OUT/init is rebuilt for a fresh run
        raise InputError("continues a checkpointed run: add --resume", where="--extend")
    seed_everything(args.seed)
    device = resolve_device(args.device)
    params = config_from_args(LossParams, args)
    pref = config_from_args(PrefConfig, args)
    if args.onpolicy and args.loss is None:
        pref = dataclasses.replace(pref, loss="pdpo")
    tcfg = dataclasses.replace(config_from_args(PrefTrainConfig, args,
                                                base=train_config_for(args.model)),
                               seed=args.seed)
    tiny = config_from_args(TinyLMConfig, args)
    onp = config_from_args(OnPolicyConfig, args)
    rows = load_pairs(args.data, require_responses=not args.onpolicy)
    eval_rows = load_pairs(args.eval_data) if args.eval_data else None
    acc = make_accelerator(tcfg.precision, device)
    reward = load_reward(onp.reward, acc.device) if args.onpolicy else None   # before any work
    if not acc.is_main_process:
        args.json = None
    model, tok, source = _load(args, rows, tiny, acc)
    ref_model = load_model_and_tokenizer(pref.ref_model)[0] if pref.ref_model else None
    out = Path(args.out)
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _one_line_warning
        res = api.train(model, tok, rows, pref=pref, params=params, config=tcfg,
                        onpolicy=onp if args.onpolicy else None, reward=reward,
                        eval_data=eval_rows, ref_model=ref_model, out_dir=out,
                        resume=args.resume, extend=args.extend, accelerator=acc,
                        model_source=source,
                        settings={**({f"tiny_{k}": v for k, v in dataclasses.asdict(tiny).items()}
                                     if args.model == "tiny" else {}),
                                  **({"reward": onp.reward} if args.onpolicy else {})} or None)
    model_dir = save_pretrained(res.model, tok, out / "model", acc)
    summary = _summary(res)
    figure = plot_training(res.history, out / "training.png",
                           title=f"{pref.loss} ({'on-policy' if args.onpolicy else 'offline'})"
                           ) if acc.is_main_process else None
    result = {"loss": pref.loss, "onpolicy": bool(args.onpolicy), "summary": summary,
              "config": {"loss_params": params, "pref": pref, "train": tcfg,
                         "onpolicy": onp if args.onpolicy else None,
                         "tiny": tiny if args.model == "tiny" else None},
              "max_length": res.max_length, "context": res.context,
              "history": res.history, "model": str(model_dir), "out": str(out),
              "figures": [str(figure)] if figure else [], "seconds": round(res.seconds, 2),
              "processes": acc.num_processes,
              "sample_seconds": round(res.sample_seconds, 3), "sample_tokens": res.sample_tokens,
              "truncation": res.truncation.as_dict() if res.truncation else None,
              "eval_truncation": res.eval_truncation.as_dict() if res.eval_truncation else None}
    if acc.is_main_process:
        for what, rep in (("train data", res.truncation), ("eval data", res.eval_truncation)):
            if rep is not None:
                print(f"{what}: {rep.line()}")
        print(format_table([{"metric": k, "value": v} for k, v in summary.items()],
                           ["metric", "value"]))
        print(f"\nlog {res.log_path}; model {model_dir}; figure {figure}")
    return result


def register(sub: argparse._SubParsersAction) -> None:
    from descentlab.cli.main import add_common_args

    p = sub.add_parser("prefopt", help="preference optimisation (DPO family, on-policy PDPO)",
                       description=__doc__.split("\n\n")[0])
    psub = p.add_subparsers(dest="prefopt_command", required=True, metavar="SUBCOMMAND")
    t = psub.add_parser("train", help="train a causal LM on preference data",
                        description=__doc__.split("\n\n")[1])
    t.add_argument("--model", default="tiny",
                   help="local model folder, a local .gguf file (dequantised on load; needs "
                        "descentlab[real]), or 'tiny' (random-init GPT-2 + tokenizer trained "
                        "on the data; trains at lr 5e-4 unless --lr is given) "
                        "(default: %(default)s)")
    t.add_argument("--data", required=True,
                   help="preference data: JSONL with prompt/chosen/rejected (text or chat "
                        "messages) or a datasets save_to_disk folder; with --onpolicy only "
                        "'prompt' is needed")
    t.add_argument("--eval-data", default=None,
                   help="held-out preference pairs (same formats as --data): accuracy, "
                        "margins and log-prob changes every --eval-every steps and at the end")
    t.add_argument("--out", default="prefopt-out", help="output folder (default: %(default)s)")
    t.add_argument("--onpolicy", action="store_true",
                   help="sample pairs from the policy and label them with --reward "
                        "(loss defaults to pdpo)")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt; refused (naming the first "
                        "difference) when a setting that changes the result differs from "
                        "the checkpoint's (loss and its parameters, data, model, optimiser, "
                        "schedule, precision, batch, seed)")
    t.add_argument("--extend", action="store_true",
                   help="with --resume: let --max-steps differ from the checkpoint's (a "
                        "finished run trains on). The learning rate follows the new "
                        "schedule from the checkpoint's step on, so with cosine/linear the "
                        "result is not that of a run started with the larger --max-steps "
                        "(it is with --schedule constant)")
    add_config_args(t, PrefConfig)
    add_config_args(t, LossParams)
    add_config_args(t, PrefTrainConfig)
    add_config_args(t, OnPolicyConfig)
    add_config_args(t, TinyLMConfig)
    add_common_args(t)
    t.set_defaults(run=run_train, outputs=(folder("out", recognise=("init", "model")),))
    register_experiments(psub)


def _summary(res) -> dict:
    """The steps and the last logged :data:`SUMMARY_KEYS` of a training result."""
    final = res.history[-1] if res.history else {}
    return {"steps": res.step, **{k: final[k] for k in SUMMARY_KEYS if k in final}}


def demo_part(out_dir: Path, args: argparse.Namespace) -> dict:
    """Offline DPO and on-policy PDPO on the synthetic separable task, tiny GPT-2 (~1 min)."""
    from descentlab.core.seeding import torch_threads

    with torch_threads():                    # a tiny GPT-2 runs fastest on one thread
        return _demo(Path(out_dir), args)


def _demo(out_dir: Path, args: argparse.Namespace) -> dict:
    from transformers.utils import logging as hf_logging

    from descentlab.core.seeding import resolve_device
    from descentlab.lm import build_tiny
    from descentlab.preference import synthetic_pairs, train
    from descentlab.preference.data import row_texts
    from descentlab.preference.experiments import bandit
    from descentlab.preference.viz import plot_training

    hf_logging.disable_progress_bar()      # save_pretrained's shard bar
    rows = synthetic_pairs(128, seed=args.seed)
    texts = [t for r in rows for t in row_texts(r)]
    device = resolve_device(getattr(args, "device", "cpu"))
    runs = {}
    for name, kw, title in (("dpo", {"max_steps": 40}, "dpo (offline)"),
                            ("pdpo", {"beta": 0.5, "lr": 2e-3, "max_steps": 30},
                             "pdpo (on-policy)")):
        model, tok = build_tiny(texts, seed=args.seed)
        res = train(model, tok, rows, name, preset="tiny", seed=args.seed, device=device,
                    out_dir=out_dir / name, **kw)
        model_dir = save_pretrained(res.model, tok, out_dir / name / "model")
        runs[name] = {"summary": _summary(res),
                      "figures": [str(plot_training(res.history, out_dir / name /
                                                    "training.png", title=title))],
                      "model": str(model_dir), "history": res.history}
    off, on = runs["dpo"], runs["pdpo"]
    first = on["history"][0].get("oracle/reward") if on["history"] else None
    lab = bandit.run(bandit.Config(**bandit.QUICK), out_dir / "bandit", seed=args.seed,
                     device=device)["losses"]          # the exact bandit lab, quick (seconds)
    return {"summary": {"dpo_reward_accuracy": off["summary"].get("rewards/accuracies"),
                        "dpo_reward_margin": off["summary"].get("rewards/margins"),
                        "pdpo_oracle_reward_first": first,
                        "pdpo_oracle_reward_last": on["summary"].get("oracle/reward"),
                        "bandit_dpo_expected_reward": lab["dpo"]["final_expected_reward"],
                        "bandit_dpo_offdata_mass": lab["dpo"]["offdata_mass"],
                        "bandit_pdpo_expected_reward": lab["pdpo"]["final_expected_reward"],
                        "bandit_pdpo_offdata_mass": lab["pdpo"]["offdata_mass"]},
            "dpo": {k: off[k] for k in ("summary", "figures", "model")},
            "pdpo": {k: on[k] for k in ("summary", "figures", "model")},
            "bandit": {name: {k: e[k] for k in ("final_expected_reward", "offdata_mass",
                                                "chosen_logp_delta", "rejected_logp_delta")}
                       for name, e in lab.items()}}


# ---- prefopt experiment bandit|length (issue 5: SPEC C-D measured) ----------------------

def run_experiment(args: argparse.Namespace) -> dict:
    """Run one lab of :mod:`descentlab.preference.experiments`; print its table (mean ± std
    over seeds). The tiny models run on one thread on CPU (fastest, least contention)."""
    import importlib

    from descentlab.core.seeding import resolve_device, seed_everything, torch_threads
    from descentlab.core.table import fmt
    from descentlab.preference.experiments import EXPERIMENTS

    mod = importlib.import_module(EXPERIMENTS[args.lab])
    cfg = config_from_args(mod.Config, args, base=mod.Config(**mod.QUICK) if args.quick else None)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    with torch_threads(device):
        extra = {"resume": args.resume} if getattr(mod, "RESUMABLE", False) else {}
        result = mod.run(cfg, Path(args.out), seed=args.seed, device=device, **extra)
    several = len(result["seeds"]) > 1
    rows = [{"loss": name, **{f: f"{fmt(e[f])} ± {fmt(e[f + '_std'])}" if several else e[f]
                              for f in mod.TABLE_FIELDS}}
            for name, e in result["losses"].items()]
    print(format_table(rows, ["loss", *mod.TABLE_FIELDS]))
    print(f"\nseeds {result['seeds']}; figures: {', '.join(result['figures'])}")
    return result


def register_experiments(psub: argparse._SubParsersAction) -> None:
    """``prefopt experiment LAB [--quick] --out DIR``: one sub-parser per lab, flags from the
    lab's ``Config``."""
    import importlib

    from descentlab.cli.main import add_common_args
    from descentlab.preference.experiments import EXPERIMENTS

    e = psub.add_parser("experiment", help="the preference experiments: bandit and length labs",
                        description="Where does DPO's probability mass go (bandit), and does "
                                    "the proper loss remove the length bias (length)?")
    esub = e.add_subparsers(dest="lab", required=True, metavar="LAB")
    for name, module in EXPERIMENTS.items():
        mod = importlib.import_module(module)
        doc = mod.__doc__ or name
        p = esub.add_parser(name, help=doc.splitlines()[0], description=doc.split("\n\n")[0])
        p.add_argument("--quick", action="store_true",
                       help="the small setting (<= 2 min on CPU; tests and the demo); flags "
                            "given explicitly still override it")
        p.add_argument("--out", default=f"prefopt-{name}",
                       help="output folder for figures and runs (default: %(default)s)")
        if getattr(mod, "RESUMABLE", False):
            p.add_argument("--resume", action="store_true",
                           help="reuse finished runs in OUT and continue unfinished ones")
        add_config_args(p, mod.Config)
        add_common_args(p)
        p.set_defaults(run=run_experiment,
                       outputs=(folder("out", recognise=getattr(mod, "OUTPUTS", ())),))
