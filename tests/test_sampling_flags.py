"""Sampling values that used to pass their checks (issue 13 item 10): NaN or infinite
temperature, a negative number of tunes, a max_length that aborts inside XLA."""

import jax
import pytest

from folkrnn_jax.errors import InputError
from folkrnn_jax.generate import options, sampler


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_temperature_is_refused(temperature):
    with pytest.raises(InputError, match="temperature must be a finite number > 0"):
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
