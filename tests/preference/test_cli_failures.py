"""Issue 12's cases for ``prefopt``: one line and exit 2, nothing left behind, resume refuses
changed settings and extends when asked, sequences fit the model, kill -9 then --resume is
bitwise the uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from descentlab.cli.main import main
from descentlab.preference.data import synthetic_pairs


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("DESCENTLAB_PROGRESS", "0")


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip().splitlines()


@pytest.fixture
def data(tmp_path):
    return write_rows(tmp_path / "d.jsonl", synthetic_pairs(16))


def train_args(data, out, *extra):
    return ["prefopt", "train", "--data", str(data), "--out", str(out), "--max-steps", "2",
            "--log-every", "1", "--batch-size", "4", "--n-embd", "16", *extra]


@pytest.mark.parametrize("extra, message", [
    (["--onpolicy", "--reward", "nosuchmod:fn"],                     # case 5
     "--reward: cannot import 'nosuchmod:fn': No module named 'nosuchmod'"),
    (["--onpolicy", "--reward", "json:loads"],                       # case 4
     "--reward: 'json:loads' cannot be called as fn(prompts, responses)"),
    (["--onpolicy", "--reward", "descentlab.preference.oracles:LABELERS"],
     "--reward: 'descentlab.preference.oracles:LABELERS' is not callable"),
    (["--resume"], "checkpoint.pt: no checkpoint to resume from"),  # case 5
])
@pytest.mark.parametrize("out_exists", [False, True])
def test_failed_start_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, data, extra,
                                                            message, out_exists):
    out = tmp_path / "o"
    if out_exists:
        out.mkdir()
    before = snapshot(tmp_path)
    rc, _, err = run(train_args(data, out, *extra), capsys)
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert snapshot(tmp_path) == before                 # no init/, ref_cache/, marker


def test_reward_that_fails_when_called_is_one_line_before_training(tmp_path, capsys, data):
    rc, _, err = run(train_args(data, tmp_path / "o", "--onpolicy", "--reward",
                                "operator:truediv"), capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith(
        "descentlab prefopt train: error: --reward: the reward failed on 1 responses: TypeError")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_empty_response_is_refused_naming_file_and_row(tmp_path, capsys, field):
    rows = synthetic_pairs(4)
    rows[2][field] = "  "
    data = write_rows(tmp_path / "d.jsonl", rows)
    rc, _, err = run(train_args(data, tmp_path / "o"), capsys)
    assert rc == 2 and err == [f"descentlab prefopt train: error: {data} row 3: field "
                               f"'{field}' is empty"]
    conv = [{"prompt": [{"role": "user", "content": "hi"}],
             "chosen": [{"role": "assistant", "content": "fine"}],
             "rejected": [{"role": "assistant", "content": ""}]}]
    data = write_rows(tmp_path / "c.jsonl", conv)
    rc, _, err = run(train_args(data, tmp_path / "o"), capsys)
    assert rc == 2 and err[-1].endswith(f"{data} row 1: field 'rejected' is empty")


def test_not_utf8_data_is_one_line(tmp_path, capsys):
    data = tmp_path / "b.jsonl"
    data.write_bytes(b'\xff\xfe{"prompt"}\n')
    rc, _, err = run(train_args(data, tmp_path / "o"), capsys)
    assert rc == 2 and len(err) == 1 and f"{data}:1: not UTF-8" in err[0]


def test_truncation_is_warned_with_count_and_share(tmp_path, capsys, data):
    rc, out, err = run(train_args(data, tmp_path / "o", "--max-length", "6"), capsys)
    assert rc == 0
    warned = [line for line in err if line.startswith("warning: ")]
    assert len(warned) == 1 and "16/16 rows (100%) dropped or cut" in warned[0], err
    assert "train data: max_length 6 (drop): 0/16 rows dropped (0%)" in out


def test_long_conversational_rows_fit_the_tiny_models_context(tmp_path, capsys):
    """Case 7: one response longer than the tiny model's 256 positions (max_length 512 by
    default before) gave IndexError; now max_length is the context and the rows are cut."""
    long = " ".join(["bright"] * 300)
    conv = [{"prompt": [{"role": "user", "content": f"describe the {w} :"}],
             "chosen": [{"role": "assistant", "content": long if i == 0 else "kind warm"}],
             "rejected": [{"role": "assistant", "content": "dull"}]}
            for i, w in enumerate(["sun", "river", "road", "lamp"])]
    data = write_rows(tmp_path / "c.jsonl", conv)
    argv = train_args(data, tmp_path / "o", "--max-steps", "1", "--batch-size", "2",
                      "--json", str(tmp_path / "r.json"))
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["context"] == 256 and res["max_length"] == 256
    assert res["truncation"]["chosen_cut"] == 1
    rc, _, err = run(argv + ["--max-length", "512", "--out", str(tmp_path / "o2")], capsys)
    assert rc == 0
    assert ("warning: max_length 512 exceeds the model's context (256 positions): using "
            "max_length 256") in err



@pytest.mark.parametrize("truncation", ["drop", "keep_end"])
def test_max_prompt_length_above_the_context_trains_within_it(tmp_path, capsys, truncation):
    """keep_end with --max-prompt-length 100 in a 16-position model gave IndexError (the
    prompt kept 100 tokens); now a prompt keeps at most max_length - 1 tokens, every sequence
    fits, and the counts say what was cut."""
    rows = [{"prompt": "describe " + " ".join(["sun"] * n), "chosen": " warm" * 20,
             "rejected": " cold"} for n in (30, 12, 3, 2)]
    data = write_rows(tmp_path / "long.jsonl", rows)
    argv = train_args(data, tmp_path / "o", "--max-steps", "1", "--truncation", truncation,
                      "--max-prompt-length", "100", "--n-positions", "16",
                      "--json", str(tmp_path / "r.json"))
    rc, _, err = run(argv, capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["max_length"] == 16
    want = ({"dropped": 0, "prompts_cut": 1, "chosen_cut": 4} if truncation == "keep_end"
            else {"dropped": 1, "prompts_cut": 0, "chosen_cut": 3})
    assert {k: res["truncation"][k] for k in want} == want

def test_resume_refuses_a_changed_loss_in_one_line_and_touches_nothing(tmp_path, capsys,
                                                                         data):
    out = tmp_path / "o"
    assert run(train_args(data, out, "--loss", "ipo"), capsys)[0] == 0
    before = snapshot(out)
    rc, _, err = run(train_args(data, out, "--loss", "simpo", "--beta", "2", "--resume"),
                     capsys)
    assert rc == 2 and err == ["descentlab prefopt train: error: --resume: loss differs: "
                               "checkpoint ipo, now simpo"]
    rc, _, err = run(train_args(data, out, "--loss", "ipo", "--n-embd", "32", "--resume"),
                     capsys)
    assert rc == 2 and err[0].endswith("--resume: tiny_n_embd differs: checkpoint 16, now 32")
    rc, _, err = run(train_args(data, out, "--loss", "ipo", "--resume", "--max-steps", "3"),
                     capsys)
    assert rc == 2 and "max_steps differs: checkpoint 2, now 3" in err[0]
    # --extend without --resume would start afresh over the run it was meant to extend
    rc, _, err = run(train_args(data, out, "--loss", "ipo", "--extend", "--max-steps", "3"),
                     capsys)
    assert rc == 2 and err == ["descentlab prefopt train: error: --extend: continues a "
                               "checkpointed run: add --resume"]
    assert snapshot(out) == before


def test_extend_trains_a_finished_run_on(tmp_path, capsys, data):
    out = tmp_path / "o"
    assert run(train_args(data, out, "--json", str(tmp_path / "a.json")), capsys)[0] == 0
    rc, _, err = run(train_args(data, out, "--resume", "--extend", "--max-steps", "4",
                                "--json", str(tmp_path / "b.json")), capsys)
    assert rc == 0, err
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert [r["step"] for r in b["history"]] == [1, 2, 3, 4]
    assert b["history"][:2] == a["history"]
    capsys.readouterr()
    assert main(["prefopt", "train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--extend with --resume: let --max-steps differ" in help_text
    assert "(it is with --schedule constant)" in help_text


@pytest.mark.parametrize("command", [["prefopt", "train", "--data", "d.jsonl"],
                                     ["prefopt", "experiment", "bandit", "--quick"]])
@pytest.mark.parametrize("kind", ["existing_file", "non_empty_folder"])
def test_bad_out_location_is_refused_before_any_work(tmp_path, capsys, command, kind):
    if kind == "existing_file":
        (tmp_path / "f.txt").write_text("mine")
        out, message = tmp_path / "f.txt", "is not a folder"
    else:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "keep.txt").write_text("keep")
        out, message = tmp_path / "d", "not empty"
    before = snapshot(tmp_path)
    rc, _, err = run([*command, "--out", str(out)], capsys)
    assert rc == 2 and len(err) == 1 and str(out) in err[0] and message in err[0]
    assert snapshot(tmp_path) == before


SLOW_STEPS = """
import sys, time, torch
step = torch.optim.AdamW.step
def slow(self, *a, **k):
    time.sleep(0.15)
    return step(self, *a, **k)
torch.optim.AdamW.step = slow
from descentlab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_then_resume_is_bitwise_the_uninterrupted_run(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    data = write_rows(tmp_path / "d.jsonl", synthetic_pairs(24))
    args = lambda out: ["prefopt", "train", "--data", str(data), "--out", str(out),  # noqa: E731
                        "--max-steps", "12", "--save-every", "2", "--log-every", "2",
                        "--batch-size", "4", "--n-embd", "16", "--lr", "3e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DESCENTLAB_PROGRESS": "0",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_STEPS, *args(tmp_path / "k")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "k" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)                                     # mid-run, between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 2 <= killed_at < 12
    assert main(args(tmp_path / "k") + ["--resume"]) == 0
    assert main(args(tmp_path / "full")) == 0
    a = load_file(tmp_path / "k" / "model" / "model.safetensors")
    b = load_file(tmp_path / "full" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "k" / "train_log.jsonl").read_text() == \
        (tmp_path / "full" / "train_log.jsonl").read_text()
    first = load_file(tmp_path / "k" / "init" / "model.safetensors")
    assert not torch.equal(first["transformer.h.0.attn.c_attn.weight"],
                           a["transformer.h.0.attn.c_attn.weight"])     # it did train
