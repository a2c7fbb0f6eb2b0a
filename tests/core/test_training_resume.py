"""The loop's resume contract: every setting that changes the result is compared (the first
difference named), ``extend`` continues to a new max_steps, no files without an output
folder, and no process-wide accelerate state."""

import dataclasses
import json

import pytest
import torch

from descentlab.core.errors import InputError
from descentlab.core.training import (
    BOOKKEEPING,
    LocalAccelerator,
    TrainConfig,
    lr_multiplier,
    make_accelerator,
    train,
)
from tests.core.test_training import _model, _problem

BASE = TrainConfig(lr=1e-2, max_steps=6, batch_size=4, log_every=2, warmup_steps=1, seed=3)

# every TrainConfig field that changes the parameters, with another valid value
CHANGES = {"lr": 2e-2, "weight_decay": 0.1, "adam_beta1": 0.8, "adam_beta2": 0.99,
           "adam_eps": 1e-6, "schedule": "linear", "warmup_steps": 2, "min_lr_ratio": 0.1,
           "max_steps": 8, "batch_size": 2, "grad_accum": 2, "max_grad_norm": 0.5,
           "precision": "bf16", "seed": 4}


def test_the_table_covers_every_field_but_the_bookkeeping():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(CHANGES) == fields - set(BOOKKEEPING)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    batch_fn, loss_fn = _problem()
    train(_model(), loss_fn, batch_fn, BASE, out, stop_at_step=3)
    return out


@pytest.mark.parametrize("name", list(CHANGES))
def test_resume_refuses_each_changed_setting_naming_it(stopped, name):
    batch_fn, loss_fn = _problem()
    cfg = dataclasses.replace(BASE, **{name: CHANGES[name]})
    was, now = getattr(BASE, name), CHANGES[name]
    if name == "precision":
        was = "no"          # the resolved precision is compared ("auto" on a CPU is "no")
    with pytest.raises(InputError) as e:
        train(_model(), loss_fn, batch_fn, cfg, stopped, resume=True)
    assert e.value.where == "resume"
    assert e.value.message.startswith(f"{name} differs: checkpoint {was}, now {now}")


def test_resume_refuses_changed_trainer_settings_first(stopped):
    batch_fn, loss_fn = _problem()
    with pytest.raises(InputError, match=r"^resume: loss differs: checkpoint \(not recorded\), now ipo"):
        train(_model(), loss_fn, batch_fn, dataclasses.replace(BASE, lr=5.0), stopped,
              resume=True, settings={"loss": "ipo"})


def test_bookkeeping_may_change_on_resume(tmp_path):
    batch_fn, loss_fn = _problem()
    full = train(_model(), loss_fn, batch_fn, BASE, tmp_path / "a")
    train(_model(), loss_fn, batch_fn, BASE, tmp_path / "b", stop_at_step=3)
    done = train(_model(), loss_fn, batch_fn, dataclasses.replace(BASE, log_every=1,
                                                                  save_every=1),
                 tmp_path / "b", resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, done.model.state_dict()[k])
    assert [r["step"] for r in done.history] == [2, 4, 5, 6]


def test_extend_with_a_constant_schedule_equals_the_longer_run(tmp_path):
    batch_fn, loss_fn = _problem()
    short = dataclasses.replace(BASE, schedule="constant", max_steps=4)
    long = dataclasses.replace(short, max_steps=7)
    ref = train(_model(), loss_fn, batch_fn, long, tmp_path / "long")
    train(_model(), loss_fn, batch_fn, short, tmp_path / "x")               # finished at 4
    with pytest.raises(InputError, match="max_steps differs.*extend"):
        train(_model(), loss_fn, batch_fn, long, tmp_path / "x", resume=True)
    ext = train(_model(), loss_fn, batch_fn, long, tmp_path / "x", resume=True, extend=True)
    assert ext.step == 7
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, ext.model.state_dict()[k]), k
    with pytest.raises(InputError, match="max_steps 5 is below the checkpoint's step 7"):
        train(_model(), loss_fn, batch_fn, dataclasses.replace(long, max_steps=5),
              tmp_path / "x", resume=True, extend=True)


def test_extend_without_resume_is_refused_before_the_run_is_replaced(tmp_path):
    batch_fn, loss_fn = _problem()
    short = dataclasses.replace(BASE, max_steps=4)
    train(_model(), loss_fn, batch_fn, short, tmp_path / "x")
    saved = (tmp_path / "x" / "checkpoint.pt").read_bytes()
    with pytest.raises(InputError, match="resume") as err:
        train(_model(), loss_fn, batch_fn, dataclasses.replace(short, max_steps=6),
              tmp_path / "x", extend=True)
    assert err.value.where == "extend"
    assert (tmp_path / "x" / "checkpoint.pt").read_bytes() == saved


@pytest.mark.parametrize("device", ["mps", "meta", "cuda:0", "gpu"])
def test_a_device_the_loop_cannot_use_is_refused_not_replaced_by_the_cpu(device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is usable here")
    with pytest.raises(InputError) as err:
        make_accelerator("no", device)
    assert err.value.where == "device"
    assert make_accelerator("no", torch.device("cpu")).device.type == "cpu"


def test_extend_with_cosine_follows_the_new_schedule_and_resumes_exactly(tmp_path):
    batch_fn, loss_fn = _problem()
    short = dataclasses.replace(BASE, max_steps=4, log_every=1)
    long = dataclasses.replace(short, max_steps=8)
    train(_model(), loss_fn, batch_fn, short, tmp_path / "a")
    a = train(_model(), loss_fn, batch_fn, long, tmp_path / "a", resume=True, extend=True)
    lrs = {r["step"]: r["lr"] for r in a.history}
    kw = dict(schedule="cosine", warmup=1, min_ratio=0.0)
    for s in range(4):      # steps 1..4 ran on the short schedule, 5..8 on the long one
        assert lrs[s + 1] == pytest.approx(1e-2 * lr_multiplier(s, total=4, **kw))
    for s in range(4, 8):
        assert lrs[s + 1] == pytest.approx(1e-2 * lr_multiplier(s, total=8, **kw))
    # the same extension, interrupted at step 6 and resumed: bitwise the same
    train(_model(), loss_fn, batch_fn, short, tmp_path / "b")
    train(_model(), loss_fn, batch_fn, long, tmp_path / "b", resume=True, extend=True,
          stop_at_step=6)
    b = train(_model(), loss_fn, batch_fn, long, tmp_path / "b", resume=True)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.history == b.history


def test_no_output_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch_fn, loss_fn = _problem()
    res = train(_model(), loss_fn, batch_fn, BASE)
    assert list(tmp_path.iterdir()) == []
    assert res.log_path is None and res.checkpoint_path is None
    assert [r["step"] for r in res.history] == [2, 4, 6]
    on_disk = train(_model(), loss_fn, batch_fn, BASE, tmp_path / "o")
    assert [json.loads(line) for line in (tmp_path / "o" / "train_log.jsonl").open()] \
        == on_disk.history == res.history
    with pytest.raises(InputError, match="out_dir"):
        train(_model(), loss_fn, batch_fn, BASE, resume=True)


def test_runs_with_other_precisions_follow_each_other_without_global_state(tmp_path):
    from accelerate.state import AcceleratorState, PartialState

    batch_fn, loss_fn = _problem()
    before = (dict(AcceleratorState._shared_state), dict(PartialState._shared_state))
    acc = make_accelerator("bf16", "cpu")
    assert isinstance(acc, LocalAccelerator) and acc.mixed_precision == "bf16"
    bf = train(_model(), loss_fn, batch_fn, dataclasses.replace(BASE, precision="bf16"))
    fp = train(_model(), loss_fn, batch_fn, dataclasses.replace(BASE, precision="no"))
    again = train(_model(), loss_fn, batch_fn, dataclasses.replace(BASE, precision="no"))
    assert (dict(AcceleratorState._shared_state), dict(PartialState._shared_state)) == before
    assert bf.accelerator.mixed_precision == "bf16" and fp.accelerator.mixed_precision == "no"
    w_bf, w_fp = bf.model.state_dict()["0.weight"], fp.model.state_dict()["0.weight"]
    assert not torch.equal(w_bf, w_fp)                # bf16 autocast did change the numbers
    assert torch.allclose(w_bf, w_fp, atol=0.05)      # ... by rounding only
    assert torch.equal(w_fp, again.model.state_dict()["0.weight"])
