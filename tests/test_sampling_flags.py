"""Sampling values that used to pass their checks (issue 13 item 10, issue 26): NaN or
infinite temperature, a negative number of tunes (in the library and at the command line), a
max_length that aborts inside XLA; and the one definition of the settings (issue 24)."""

import dataclasses

import jax
import pytest

from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import options, sampler
from tests.conftest import run_module


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_temperature_is_refused(temperature):
    with pytest.raises(InputError, match=r"temperature: must be (a finite number )?in \(0, 10\]"):
        options.make_options(temperature=temperature)


def test_good_temperature_passes():
    assert float(options.make_options(temperature=0.5).temperature) == 0.5


@pytest.mark.parametrize("num_tunes, max_length, fragment", [
    (-3, 100, "number of tunes"), (0, 100, "number of tunes"),
    (2, 1_000_000_000, "max_length"), (2, 1, "max_length"),
])
def test_bad_counts_are_refused_before_any_work(num_tunes, max_length, fragment):
    with pytest.raises(InputError, match=fragment):
        sampler.prepare_request(None, None, jax.random.PRNGKey(0), num_tunes, max_length=max_length)


@pytest.mark.parametrize("module, count", [("experiments.sample", "-3"), ("experiments.book", "0")])
def test_command_line_refuses_fewer_than_one_tune(tmp_path, module, count):
    output = tmp_path / "out.abc"
    process = run_module(module, f"--num_tunes={count}", f"--output={output}", timeout=120)
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_tunes" in lines[0], process.stderr
    assert not output.exists()


def test_one_set_of_defaults():
    settings = options.SamplingSettings()
    assert settings.constrain is True  # a musician's first tune should be well formed
    assert settings.check() is settings
    for spec in dataclasses.fields(options.SamplingSettings):
        assert spec.metadata["help"], spec.name
    for bad in (dict(top_k=2**70), dict(seed=-1), dict(top_p=0.0), dict(max_length=1), dict(meter="5/4"),
                dict(constrain="yes"), dict(temperature=float("nan"))):
        field = next(iter(bad))
        with pytest.raises(options.FieldError, match=f"^{field}: "):
            options.SamplingSettings(**bad).check()
