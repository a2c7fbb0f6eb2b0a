"""descentlab's offline DPO trainer vs TRL's DPOTrainer, side by side in one run.

Same GPT-2 config and weights, same tokenizer and data (synthetic pairs, TRL's
tokenization), same batch size, steps, optimiser (AdamW, cosine), clipping and precision,
in two configurations: a live reference model, and reference log-probs precomputed.

* ``loss_abs_diff``: our ``dpo`` loss vs TRL's ``sigmoid`` loss on the same first batch,
  policy ≠ reference (two different random inits), float32.
* per configuration: ``throughput_ratio`` = our tokens/s ÷ TRL's (non-pad tokens of chosen
  and rejected sequences, from the end of step 1 to the end of the last step: set-up,
  precompute and the first step are excluded) and ``peak_mem_ratio`` = our peak ÷ TRL's.
  Peak memory: on CPU the growth of peak RSS (``VmHWM``, reset through
  ``/proc/self/clear_refs``) from the moment the model and data are loaded (weights paged
  in: safetensors are memory-mapped, so untouched weights are not yet resident) to the end
  of the last step (trainer set-up, reference copy or precompute, training); on CUDA
  ``torch.cuda.max_memory_allocated``.

Every (framework, configuration) run is its own subprocess, so peaks do not mix. Runs
alternate ours/TRL and ``--repeats`` > 1 takes the median. Usage::

    python benchmarks/prefopt_vs_trl.py --json /tmp/prefopt.json            # CPU, small
    python benchmarks/prefopt_vs_trl.py --device cuda --config large --json out.json
    python benchmarks/prefopt_vs_trl.py --model SmolLM2-135M-Instruct.Q4_1.gguf --json r.json

``--model PATH`` (a local folder or ``.gguf``; config ``real``) benchmarks a pretrained
model: the policy is the model (dequantised and saved once), the reference for the loss
check is the model with seeded noise (σ = 1e-3) on every weight, the data are synthetic
plain-text pairs tokenized by the model's tokenizer (TRL's tokenization: the check says
whether both sides see the same ids). ``--gradient-checkpointing`` turns it on in both;
``--no-selective-recompute`` runs ours without its default selective recomputation
(``PrefConfig.selective_recompute``). ``--memory-breakdown`` measures only where one
training step of ours goes (RSS per phase), with nothing recomputed, selective
recomputation and gradient checkpointing.

Needs ``pip install 'descentlab[bench]'`` (trl).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    # tiny GPT-2, vocabulary padded to 8192 rows so the LM head costs what it does in an LM
    "small": dict(n_layer=2, n_head=4, n_embd=128, vocab=8192, prompt_words=24, max_words=12,
                  batch=8, steps=24, precision="no"),
    # GPT-2 small (124M) shapes, for a GPU
    "large": dict(n_layer=12, n_head=12, n_embd=768, vocab=50257, prompt_words=160,
                  max_words=60, batch=16, steps=40, precision="bf16"),
    # a pretrained model given by --model (SmolLM2-135M: ~190-token sequences)
    "real": dict(prompt_words=80, max_words=24, batch=4, steps=5, precision="no"),
}
BETA, LR = 0.1, 1e-5


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Meter:
    """Peak memory since :meth:`start` and step-end timestamps."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.times: list[float] = []
        self.peak_mb = 0.0

    def start(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")    # reset VmHWM to VmRSS
            self.base_kb = _rss_kb("VmRSS")

    def step(self, last: bool) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        if last:
            self.peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if self.cuda
                            else (_rss_kb("VmHWM") - self.base_kb) / 1024)


def build(cfg: dict, folder: Path, seed: int) -> Path:
    """Tokenizer + two GPT-2 inits (policy seed, reference seed+1) + data, saved to ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from descentlab.lm.tiny import train_tokenizer
    from descentlab.preference.data import row_texts, synthetic_pairs

    n_pairs = cfg["batch"] * cfg["steps"]
    rows = synthetic_pairs(n_pairs, seed=seed, prompt_words=cfg["prompt_words"],
                           max_words=cfg["max_words"])
    tok = train_tokenizer([t for r in rows for t in row_texts(r)], kind="bpe", vocab_size=1000)
    for name, s in (("policy", seed), ("other", seed + 1)):
        import torch

        torch.manual_seed(s)
        gcfg = GPT2Config(vocab_size=max(cfg["vocab"], len(tok)), n_embd=cfg["n_embd"],
                          n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_positions=1024,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        GPT2LMHeadModel(gcfg).save_pretrained(folder / name)
        tok.save_pretrained(folder / name)
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def build_real(model_path: str, cfg: dict, folder: Path, seed: int) -> Path:
    """The pretrained model (dequantised if GGUF) as ``policy``, a seeded-noise copy as
    ``other``, synthetic pairs as data, saved to ``folder``."""
    import torch

    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference.data import synthetic_pairs

    model, tok = load_model_and_tokenizer(model_path)
    model.save_pretrained(folder / "policy")
    tok.save_pretrained(folder / "policy")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 1e-3)
    model.save_pretrained(folder / "other")
    tok.save_pretrained(folder / "other")
    rows = synthetic_pairs(cfg["batch"] * cfg["steps"], seed=seed,
                           prompt_words=cfg["prompt_words"], max_words=cfg["max_words"])
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _load(folder: Path, device: str):
    import torch

    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference.data import load_pairs

    model, tok = load_model_and_tokenizer(folder / "policy")
    with torch.no_grad():        # safetensors are memory-mapped: page the weights in now, so
        for p in model.parameters():    # that no run counts them as growth
            p.add_(0)
    return model, tok, load_pairs(folder / "data.jsonl")


def worker_ours(folder: Path, mode: str, cfg: dict, device: str, out: Path) -> dict:
    from descentlab.core.training import make_accelerator
    from descentlab.preference.losses import LossParams
    from descentlab.preference.offline import PrefConfig, PrefTrainConfig, train_offline

    model, tok, rows = _load(folder, device)
    meter = Meter(device)
    meter.start()
    acc = make_accelerator(cfg["precision"], device)
    tcfg = PrefTrainConfig(lr=LR, warmup_steps=0, max_steps=cfg["steps"], batch_size=cfg["batch"],
                           log_every=1, max_grad_norm=1.0, precision=cfg["precision"])
    res = train_offline(model, tok, rows, pref=PrefConfig(loss="dpo", ref=mode,
                        cache_dir=str(out / "cache"),
                        gradient_checkpointing=cfg.get("gradient_checkpointing", False),
                        selective_recompute=cfg.get("selective_recompute", "auto")),
                        params=LossParams(beta=BETA),
                        train_cfg=tcfg, out_dir=out, accelerator=acc,
                        on_step=lambda s: meter.step(s == cfg["steps"]))
    tokens = [r["tokens"] for r in res.history]
    return {"tokens": sum(tokens[1:]), "seconds": meter.times[-1] - meter.times[0],
            "peak_mb": meter.peak_mb, "final_loss": res.history[-1]["loss"]}


def worker_trl(folder: Path, mode: str, cfg: dict, device: str, out: Path) -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tok, rows = _load(folder, device)
    meter = Meter(device)
    meter.start()
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=cfg["batch"],
                     max_steps=cfg["steps"], learning_rate=LR, lr_scheduler_type="cosine",
                     warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=BETA,
                     loss_type=["sigmoid"], precompute_ref_log_probs=(mode == "precomputed"),
                     precompute_ref_batch_size=2 * cfg["batch"], max_length=512,
                     bf16=cfg["precision"] == "bf16", fp16=False,
                     gradient_checkpointing=cfg.get("gradient_checkpointing", False),
                     logging_steps=cfg["steps"], save_strategy="no", report_to="none",
                     use_cpu=device == "cpu", dataloader_num_workers=0, seed=0,
                     disable_tqdm=True)
    steps: list[int] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            steps.append(trainer._total_train_tokens)
            meter.step(state.global_step == cfg["steps"])

    trainer = DPOTrainer(model=model, ref_model=None, args=args, processing_class=tok,
                         train_dataset=datasets.Dataset.from_list(rows), callbacks=[Timer()])
    trainer.train()
    return {"tokens": steps[-1] - steps[0], "seconds": meter.times[-1] - meter.times[0],
            "peak_mb": meter.peak_mb, "final_loss": None}


def loss_diff(folder: Path, cfg: dict) -> dict:
    """Our dpo vs TRL's sigmoid loss on the first batch, policy ≠ reference, float32, CPU."""
    import datasets
    import torch
    from trl import DPOConfig, DPOTrainer

    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.lm.tiny import load_model_and_tokenizer
    from descentlab.preference.data import collate_pairs, load_pairs, tokenize_pairs
    from descentlab.preference.losses import LossParams, preference_loss
    from descentlab.preference.offline import split_logps

    policy, tok = load_model_and_tokenizer(folder / "policy")
    ref, _ = load_model_and_tokenizer(folder / "other")
    rows = load_pairs(folder / "data.jsonl")[: cfg["batch"]]
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, per_device_train_batch_size=cfg["batch"], beta=BETA,
                         bf16=False, gradient_checkpointing=False, report_to="none",
                         use_cpu=True, max_length=512)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(rows))
        ex = [trainer.train_dataset[i] for i in range(len(rows))]
        with torch.no_grad():
            trl_loss = float(trainer.compute_loss(trainer.model, trainer.data_collator(ex)))
    pairs = tokenize_pairs(rows, tok)
    same = all(e["prompt_ids"] == p and e["chosen_ids"] == c and e["rejected_ids"] == r
               for e, p, c, r in zip(ex, pairs.prompt, pairs.chosen, pairs.rejected))
    b = collate_pairs(pairs, list(range(len(rows))), tok.pad_token_id)
    with torch.no_grad():
        x = (b["input_ids"], b["attention_mask"], b["response_mask"])
        out = SequenceScorer(policy.float().eval())(*x)
        r = SequenceScorer(ref.float().eval())(*x).sum
        ours = float(preference_loss("dpo", split_logps(out, r, len(rows)),
                                     LossParams(beta=BETA))[0].mean())
    return {"ours": ours, "trl": trl_loss, "loss_abs_diff": abs(ours - trl_loss),
            "tokens_identical": same}


def _mb() -> float:
    return _rss_kb("VmRSS") / 1024


def _reset_peak() -> float:
    Path("/proc/self/clear_refs").write_text("5")
    return _mb()


def _peak_mb() -> float:
    return _rss_kb("VmHWM") / 1024


def worker_memory(folder: Path, mode: str, cfg: dict, device: str, out: Path) -> dict:
    """Where one training step's memory goes (ours, CPU, RSS): per phase the peak above the
    memory held before it, and what the phase leaves held (MB)."""
    import torch

    from descentlab.lm.logprobs import SequenceScorer
    from descentlab.preference.data import collate_pairs, tokenize_pairs
    from descentlab.preference.offline import PrefConfig, prepare_model

    model, tok, rows = _load(folder, device)
    pairs = tokenize_pairs(rows, tok, max_length=512, warn=False)
    b = collate_pairs(pairs, list(range(cfg["batch"])), tok.pad_token_id)
    model = prepare_model(model, tok, PrefConfig(
        gradient_checkpointing=cfg.get("gradient_checkpointing", False),
        selective_recompute=cfg.get("selective_recompute", "auto")), device).train()
    scorer = SequenceScorer(model)
    n_params = sum(p.numel() for p in model.parameters())
    res = {"params_mb": n_params * 4 / 2**20, "shape": list(b["input_ids"].shape),
           "attn_implementation": getattr(model.config, "_attn_implementation", None),
           "n_layers": getattr(model.config, "num_hidden_layers", None)}
    start = _reset_peak()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    for step in range(1):                      # one step: Adam allocates its state in it
        before = _reset_peak()
        lp = scorer(b["input_ids"], b["attention_mask"], b["response_mask"])
        loss = -lp.sum.mean()
        res[f"step{step}_forward_peak_mb"] = _peak_mb() - before
        res[f"step{step}_activations_held_mb"] = _mb() - before
        before_bw = _reset_peak()
        loss.backward()
        res[f"step{step}_backward_peak_mb"] = _peak_mb() - before_bw
        res[f"step{step}_grads_held_mb"] = _mb() - before
        before_opt = _reset_peak()
        opt.step()
        opt.zero_grad(set_to_none=True)
        res[f"step{step}_optimizer_peak_mb"] = _peak_mb() - before_opt
        res[f"step{step}_after_step_held_mb"] = _mb() - start
    return res


WORKERS = {"ours": worker_ours, "trl": worker_trl, "memory": worker_memory}


def run_worker(args, fw: str, mode: str, folder: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DESCENTLAB_PROGRESS": "0",
           "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--worker", fw, "--mode", mode, "--folder", str(folder),
               "--config", args.config, "--device", args.device, "--threads", str(args.threads),
               "--worker-out", out]
        cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}"
                for k in ("steps", "batch", "prompt_words") if getattr(args, k)]
        cmd += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
        cmd += [f"--selective={_selective(args)}"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{fw}/{mode} failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


# --memory-breakdown's modes -> (gradient checkpointing, PrefConfig.selective_recompute);
# "selective" is "on", not "auto" (which is off on CUDA)
MEMORY_MODES = {"plain": (False, "off"), "selective": (False, "on"), "checkpointing": (True, "off")}


def _selective(args) -> str:
    """The PrefConfig.selective_recompute value this run (or worker) uses."""
    return args.selective or ("off" if args.no_selective_recompute else "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=list(CONFIGS), default="small")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--repeats", type=int, default=1, help="runs per (framework, mode); median")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="override the config's steps")
    ap.add_argument("--batch", type=int, default=None, help="override the config's batch")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--model", default=None,
                    help="a pretrained model (local folder or .gguf): config 'real'")
    ap.add_argument("--prompt-words", type=int, default=None,
                    help="override the config's prompt filler words (sequence length)")
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="activation checkpointing in both trainers")
    ap.add_argument("--no-selective-recompute", action="store_true",
                    help="ours without selective recomputation (on by default on CPU; before "
                         "it, nothing was recomputed)")
    ap.add_argument("--modes", default="live,precomputed",
                    help="reference modes to time (comma-separated)")
    ap.add_argument("--memory-breakdown", action="store_true",
                    help="only measure where one training step's memory goes (ours): nothing "
                         "recomputed, selective recomputation, gradient checkpointing")
    ap.add_argument("--memory-modes", default=",".join(MEMORY_MODES),
                    help="with --memory-breakdown: comma-separated, any of "
                         f"{', '.join(MEMORY_MODES)} (nothing recomputed, selective "
                         "recomputation, gradient checkpointing)")
    ap.add_argument("--selective", choices=("auto", "on", "off"), help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("live", "precomputed"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    bad = sorted(set(args.memory_modes.split(",")) - set(MEMORY_MODES))
    if bad:
        ap.error(f"--memory-modes: unknown {', '.join(bad)}; choose from {', '.join(MEMORY_MODES)}")
    if args.model:
        args.config = "real"
    cfg = dict(CONFIGS[args.config])
    if args.device == "cpu":
        cfg["precision"] = "no"
    cfg.update({k: v for k, v in (("steps", args.steps), ("batch", args.batch),
                                  ("prompt_words", args.prompt_words)) if v})
    cfg["gradient_checkpointing"] = args.gradient_checkpointing
    cfg["selective_recompute"] = _selective(args)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        res = WORKERS[args.worker](Path(args.folder), args.mode, cfg, args.device,
                                   Path(args.worker_out))
        print(json.dumps(res))
        return
    import torch
    import trl

    result = {"config": args.config, "device": args.device, "threads": args.threads,
              "torch": torch.__version__, "trl": trl.__version__, "shape": cfg, "configs": {}}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(0)
    if args.model:
        result["model"] = str(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = (build_real(args.model, cfg, Path(tmp), args.seed) if args.model
                  else build(cfg, Path(tmp), args.seed))
        torch.set_num_threads(args.threads)
        if args.memory_breakdown:
            result["memory"] = {}
            for name in args.memory_modes.split(","):
                args.gradient_checkpointing, args.selective = MEMORY_MODES[name]
                r = run_worker(args, "memory", "precomputed", folder)
                r["gradient_checkpointing"], r["selective_recompute"] = MEMORY_MODES[name]
                result["memory"][name] = r
                print(f"{name:14s}" + " ".join(
                    f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            return
        diff = loss_diff(folder, cfg)
        result.update(loss_abs_diff=diff["loss_abs_diff"], loss_first_batch=diff)
        print(f"first-batch DPO loss: ours {diff['ours']:.8f}  TRL {diff['trl']:.8f}  "
              f"|diff| {diff['loss_abs_diff']:.2e}  same tokens: {diff['tokens_identical']}")
        for mode, key in (("live", "live_ref"), ("precomputed", "precomputed_ref")):
            if mode not in args.modes.split(","):
                continue
            runs: dict[str, list[dict]] = {"ours": [], "trl": []}
            for _ in range(args.repeats):
                for fw in ("ours", "trl"):
                    runs[fw].append(run_worker(args, fw, mode, folder))
            med = {fw: {"tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in rs),
                        "peak_mem_mb": statistics.median(r["peak_mb"] for r in rs),
                        "runs": rs} for fw, rs in runs.items()}
            entry = {"ours": med["ours"], "trl": med["trl"],
                     "throughput_ratio": med["ours"]["tokens_per_s"] / med["trl"]["tokens_per_s"],
                     "peak_mem_ratio": med["ours"]["peak_mem_mb"] / max(1e-9, med["trl"]["peak_mem_mb"])}
            result["configs"][key] = entry
            print(f"{key:16s} tokens/s ours {med['ours']['tokens_per_s']:9.0f}  TRL "
                  f"{med['trl']['tokens_per_s']:9.0f}  ratio {entry['throughput_ratio']:.2f}x | "
                  f"peak MB ours {med['ours']['peak_mem_mb']:8.1f}  TRL "
                  f"{med['trl']['peak_mem_mb']:8.1f}  ratio {entry['peak_mem_ratio']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
