"""``merge_results``: only results that differ in their seeds merge; NaN seeds poison means."""

import math

import pytest

from descentlab.core.errors import InputError
from descentlab.rag.experiment import merge_results


def _result(seed: int, qa: float | None = 0.5, **parts) -> dict:
    row = {"qa_em_train": qa, "ppl_retrieval": 3.0 + seed}
    config = {"experiment": {"n_train_people": 4, "seeds": [seed]}, "model": {"n_layer": 1},
              "train": {"lr": 0.001, "seed": 0}, "objective": {"k": 1}}
    for part, fields in parts.items():
        config[part] = {**config[part], **fields}
    return {"preset": "tiny", "seeds": [seed], "config": config,
            "variants": {"full": {**row, "per_seed": [row]}},
            "retrieval": {"recall_at_k": 1.0, "per_seed": [{"recall_at_k": 1.0}]},
            "loss_curves": {"full": [3.0, 2.0]}, "log_every": 1, "seconds": 1.5}


def test_results_of_other_seeds_merge_with_their_seeds_in_the_config():
    # the TrainConfig seed is replaced per run by run_experiment: it may differ too
    m = merge_results([_result(0), _result(1), _result(2, train={"seed": 2})])
    assert m["seeds"] == m["config"]["experiment"]["seeds"] == [0, 1, 2]
    assert m["variants"]["full"]["ppl_retrieval"] == 4.0
    assert m["variants"]["full"]["ppl_retrieval_std"] == 1.0


@pytest.mark.parametrize("other, message", [
    (_result(1, model={"n_layer": 2}), "config.model.n_layer differs from r0.json"),
    (_result(1, experiment={"n_train_people": 8}),
     "config.experiment.n_train_people differs from r0.json"),
    (_result(1, objective={"k": 2}), "config.objective.k differs from r0.json"),
    (_result(1, train={"lr": 0.01}), "config.train.lr differs from r0.json"),
    (_result(1, objective={"exclude": "doc"}), "config.objective.exclude differs"),
    (_result(0), "seed 0 is already in r0.json"),
])
def test_merge_refuses_another_config_or_a_repeated_seed(other, message):
    with pytest.raises(InputError) as e:
        merge_results([_result(0), other], names=["r0.json", "r1.json"])
    assert e.value.where == "r1.json" and e.value.message.startswith(message)


def test_a_diverged_seed_poisons_the_mean_and_an_unmeasured_one_is_skipped():
    v = merge_results([_result(0), _result(1, qa=math.nan)])["variants"]["full"]
    assert math.isnan(v["qa_em_train"]) and math.isnan(v["qa_em_train_std"])
    v = merge_results([_result(0), _result(1, qa=None), _result(2, qa=0.7)])["variants"]["full"]
    assert v["qa_em_train"] == pytest.approx(0.6)
