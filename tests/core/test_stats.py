import math

import pytest

from descentlab.core.stats import aggregate, mean_std


def test_mean_std_is_the_sample_std():
    m, s = mean_std([1.0, 2.0, 4.0])
    assert m == pytest.approx(7 / 3)
    assert s == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_missing_is_skipped_but_a_failure_poisons_the_mean():
    assert mean_std([1.0, None, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert all(math.isnan(x) for x in mean_std([1.0, float("nan")]))
    assert all(math.isnan(x) for x in mean_std([1.0, float("inf")]))
    assert all(math.isnan(x) for x in mean_std([None]))


def test_aggregate_names_fields_and_skips_non_numbers():
    out = aggregate([{"em": 0.5, "arm": "full", "ok": True}, {"em": 0.7, "arm": "full", "ok": True}])
    assert set(out) == {"em", "em_std"} and out["em"] == pytest.approx(0.6)
    assert aggregate([{"a": 1.0, "b": 2.0}], fields=["b"]) == {"b": 2.0, "b_std": 0.0}
