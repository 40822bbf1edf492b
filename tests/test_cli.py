"""Every entry point: ``--help`` exits 0 and lists its flags; bad config input is one line."""

import os
import subprocess
import sys

import pytest

from experiments import cli
from folkrnn_jax.errors import InputError
from folkrnn_jax.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = sorted(
    name[:-3] for name in os.listdir(os.path.join(ROOT, "experiments"))
    if name.endswith(".py") and name not in ("__init__.py", "cli.py", "analyze_common.py")
)


def _run(args):
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_help_exits_zero_and_lists_flags_for_every_entry_point():
    procs = {name: _run([f"experiments.{name}", "--help"]) for name in ENTRY_POINTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (name, err[-500:])
        assert "Flags:" in out and "  --" in out, name


@pytest.mark.slow
@pytest.mark.parametrize("flag,expected", [
    ("--config.batch_sise=3", "unknown config field 'batch_sise' (did you mean 'batch_size'?)"),
    ("--config=experiments/configs/nope.py", "config file experiments/configs/nope.py not found"),
    ("--config.batch_size=0", "--config.batch_size must be at least 1, got 0"),
    ("--config.data_path=tests/fixtures/EMPTY", "fewer than the two batches"),
])
def test_bad_config_input_is_one_line(flag, expected, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    flag = flag.replace("tests/fixtures/EMPTY", str(empty))
    proc = _run(["experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={tmp_path}/w", flag])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], err[-500:]


def test_help_text_lists_train_config_fields(monkeypatch):
    from absl import flags
    from ml_collections import config_flags

    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "cfg", flag_values=flag_values)
    monkeypatch.setattr(flags, "FLAGS", flag_values)
    text = cli._config_fields_help(["train", "--config=experiments/configs/tiny.py"])
    assert "--config.batch_size=32" in text and "--config.hidden_size=128" in text


def test_config_error_messages_are_one_line():
    assert cli._one_line(AttributeError("'\\'batch_sise\\'\\nDid you mean \"batch_size\" instead of \"batch_sise\"?'")) == (
        "unknown config field 'batch_sise' (did you mean 'batch_size'?)")
    assert cli._one_line(KeyError("'nolike'")) == "unknown config field 'nolike'"


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("hidden_size", 0), ("dropout_rate", 1.5),
                                         ("learning_rate", 0.0)])
def test_check_config_names_the_field(field, value):
    from experiments.configs import tiny

    config = tiny.get_config()
    config[field] = value
    with pytest.raises(InputError, match=f"--config.{field}"):
        loop.check_config(config)


def test_progress_line_has_bar_and_time_left():
    assert loop.progress_bar(5, 20, width=4) == "step 5/20 [#...] 25%"
    assert loop.time_left(30.0, 10, 30) == ", about 1m30s left"
    assert loop.time_left(3.0, 10, 10) == ", about 3s left"
    assert loop.time_left(3.0, 10, 0) == ""
