import jax
import numpy as np
import pytest

from folkrnn_jax import data, sample, train, tunes, vocab
from tests.conftest import run_module
from tests.test_train import fixture_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    from folkrnn_jax.data import read_v2_file  # noqa: F401
    import os
    excerpt = os.path.join(os.path.dirname(__file__), "fixtures", "data_v2_excerpt.txt")
    config = fixture_config(excerpt, num_train_steps=60, hidden_size=64, log_every_steps=30)
    train.train_and_evaluate(config, str(workdir))
    return str(workdir)


def _sample_cli(workdir, output, *extra):
    return run_module(
        "experiments.sample", f"--workdir={workdir}", "--num_tunes=6", "--seed=3",
        f"--output={output}", *extra,
    )


def test_sample_cli_is_reproducible_with_headers(trained_run, tmp_path):
    a, b, c = tmp_path / "a.abc", tmp_path / "b.abc", tmp_path / "c.abc"
    for out, seed in ((a, "--seed=3"), (b, "--seed=3"), (c, "--seed=4")):
        result = _sample_cli(trained_run, out, seed, "--prefix=M:6/8 K:Cdor", "--max_length=300")
        assert result.returncode == 0, result.stderr[-2000:]
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    blocks = [blk for blk in a.read_text().split("\n\n") if blk.strip()]
    assert len(blocks) == 6
    for i, block in enumerate(blocks, start=1):
        lines = block.splitlines()
        assert lines[0] == f"X:{i}" and lines[1].startswith("T:")
        assert lines[2] == "M:6/8" and lines[3] == "L:1/8" and lines[4] == "K:Cdor"


def test_sampled_tokens_decode_and_stop(trained_run):
    from folkrnn_jax import runs

    model, params, _ = runs.load_run(trained_run)
    result = sample.sample_tunes(model, params, jax.random.PRNGKey(0), 5, "M:4/4 K:Cmaj", 1.0, 200)
    for i in range(5):
        tokens = result.tokens(i)
        assert tokens[:3] == ["<s>", "M:4/4", "K:Cmaj"]
        assert all(t in vocab.TOKEN_TO_ID for t in tokens)
        if not result.truncated[i]:
            assert tokens[-1] == "</s>" and "</s>" not in tokens[:-1]
        else:
            assert len(tokens) == 200
    # Tune i does not depend on how many tunes are sampled with it.
    more = sample.sample_tunes(model, params, jax.random.PRNGKey(0), 7, "M:4/4 K:Cmaj", 1.0, 200)
    np.testing.assert_array_equal(more.ids[:5], result.ids)


def test_unknown_prefix_token_one_line_error(trained_run, tmp_path):
    result = _sample_cli(trained_run, tmp_path / "x.abc", "--prefix=M:6/8 K:Cfoo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: unknown token 'K:Cfoo' in --prefix, token 2: not in the 137-token v2 vocabulary"]


def test_tokens_to_abc_headers():
    abc = tunes.tokens_to_abc(["<s>", "M:3/4", "K:Cmix", "c", "2", "d", "|", "e", "4", ":|", "</s>"], index=7)
    assert abc.splitlines()[:5] == ["X:7", "T:folkrnn_jax tune 7", "M:3/4", "L:1/8", "K:Cmix"]
    assert abc.splitlines()[5] == "c2d | e4 :|"
