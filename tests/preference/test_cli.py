"""``descentlab prefopt train``: bad input -> one line and exit 2; a tiny run end to end;
the same two steps under ``accelerate launch`` with 2 processes as in one process."""

import json
import os
import subprocess
import sys

import pytest

from descentlab.cli.main import main
from descentlab.preference.data import synthetic_pairs


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_row_is_one_line_and_exit_code_2(tmp_path, capsys):
    rows = synthetic_pairs(3)
    rows[1] = {"prompt": "p", "chosen": "c", "rejected": ["not", "text"]}
    data = write_rows(tmp_path / "d.jsonl", rows)
    code = main(["prefopt", "train", "--data", str(data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{data} row 2" in err[0] and "'rejected'" in err[0]
    assert not (tmp_path / "o").exists()
    assert main(["prefopt", "train", "--data", str(tmp_path / "none.jsonl")]) == 2
    assert main(["prefopt", "train", "--data", str(data), "--model", str(tmp_path)]) == 2


def test_tiny_run_writes_model_log_figure_and_json(tmp_path):
    data = write_rows(tmp_path / "d.jsonl", synthetic_pairs(24))
    out = tmp_path / "o"
    args = ["prefopt", "train", "--data", str(data), "--out", str(out), "--max-steps", "4",
            "--log-every", "2", "--loss", "dpo_bg", "--gamma", "0.05", "--json",
            str(tmp_path / "r.json")]
    assert main(args) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["summary"]["steps"] == 4 and res["loss"] == "dpo_bg"
    assert [r["step"] for r in res["history"]] == [2, 4]
    assert (out / "training.png").stat().st_size > 0
    from descentlab.lm.tiny import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(out / "model")
    assert model.config.vocab_size == len(tok)
    # resuming a finished run does no more steps and changes nothing
    assert main(args + ["--resume"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["history"] == res["history"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:  # a port no other run holds (torchrun's default is fixed)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, env, processes):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "descentlab", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    """accelerate 1.x starts a single process for ``--cpu --num_processes 2`` (it needs MPI
    for that); ``--multi_gpu`` uses torchrun, and on a CPU device the processes form a
    gloo group (see ``core.training.make_accelerator``)."""
    data = write_rows(tmp_path / "d.jsonl", synthetic_pairs(32))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DESCENTLAB_PROGRESS": "0",
           "CUDA_VISIBLE_DEVICES": ""}
    common = ["prefopt", "train", "--data", str(data), "--max-steps", "2", "--log-every", "1",
              "--warmup-steps", "0", "--lr", "1e-2", "--beta", "0.5"]
    assert main(common + ["--batch-size", "8", "--out", str(tmp_path / "one"), "--json",
                          str(tmp_path / "one.json")]) == 0
    _launch(common + ["--batch-size", "4", "--out", str(tmp_path / "two"), "--json",
                      str(tmp_path / "two.json")], env, 2)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], abs=1e-5)
    assert one["history"][1]["rewards/margins"] != 0.0    # step 2 moved the policy
