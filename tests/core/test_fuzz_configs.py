"""Property-based fuzzing of every config dataclass: any values either build a config or
raise one InputError line naming the field; never another exception.

Examples per test: ``DESCENTLAB_FUZZ_EXAMPLES`` (default 200); see tests/fuzzing.py.
"""

import dataclasses
import importlib

import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from descentlab.core.config import field_choices, field_default  # noqa: E402
from descentlab.core.errors import InputError  # noqa: E402
from tests.fuzzing import FUZZ  # noqa: E402

CONFIGS = [
    "descentlab.planning.planner:PlannerConfig", "descentlab.planning.navigation:NavConfig",
    "descentlab.planning.sensors:RaySensorConfig", "descentlab.planning.sensors:SoftSensorConfig",
    "descentlab.planning.mapping:LogOddsConfig", "descentlab.planning.mapping:NoteMapperConfig",
    "descentlab.core.training:TrainConfig", "descentlab.lm.tiny:TinyLMConfig",
    "descentlab.preference.losses:LossParams", "descentlab.preference.offline:PrefConfig",
    "descentlab.preference.offline:PrefTrainConfig",
    "descentlab.preference.onpolicy:OnPolicyConfig",
    "descentlab.preference.experiments.bandit:Config",
    "descentlab.preference.experiments.length:Config",
    "descentlab.rag.objective:RagObjectiveConfig", "descentlab.rag.experiment:RagExperimentConfig",
]


def _cls(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _values(f: dataclasses.Field) -> st.SearchStrategy:
    """Right-typed values near and beyond the bounds, the choices and a few wrong ones."""
    default = field_default(f)
    choices = field_choices(f)
    numbers = st.one_of(st.integers(-3, 10), st.floats(-5, 1e3),
                        st.sampled_from([0, 1, -1, 0.5, float("inf"), float("nan")]))
    options = [st.just(default)]
    if choices:
        options.append(st.sampled_from(choices))
        options.append(st.text(max_size=6))
    elif isinstance(default, bool):
        options.append(st.booleans())
    elif isinstance(default, int):
        options.append(st.integers(-3, 10))
    elif isinstance(default, float):
        options.append(numbers)
    elif isinstance(default, tuple):
        options.append(st.lists(numbers if not default or not isinstance(default[0], str)
                                else st.text(max_size=6), max_size=4).map(tuple))
    elif isinstance(default, str):
        options.append(st.text(max_size=6))
    return st.one_of(options)


@pytest.mark.parametrize("spec", CONFIGS)
def test_config_builds_or_names_the_field(spec):
    cls = _cls(spec)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    strategy = st.fixed_dictionaries({f.name: _values(f) for f in fields})

    @FUZZ
    @given(values=strategy)
    def run(values):
        try:
            cls(**values)
        except InputError as e:
            line = e.line()
            assert "\n" not in line, line
            # the place is the config's field, never a CLI flag
            assert e.where is not None and not e.where.startswith("-"), line
            assert any(name in e.where for name in values), line

    run()


def test_defaults_build():
    for spec in CONFIGS:
        _cls(spec)()


@pytest.mark.parametrize("spec", CONFIGS)
def test_nan_is_refused_in_every_float_field_bounded_or_not(spec):
    cls = _cls(spec)
    floats = [f for f in dataclasses.fields(cls)
              if f.init and isinstance(field_default(f), float)]
    for f in floats:
        with pytest.raises(InputError, match="must be a number, got nan") as err:
            cls(**{f.name: float("nan")})
        assert err.value.where == f"{cls.__name__}.{f.name}"
