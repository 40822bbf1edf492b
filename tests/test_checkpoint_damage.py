"""Damaged checkpoints (issue 13): the newest one truncated or bit-flipped is named in a
warning and the previous intact one is used, by training's restore and by sampling's load."""

import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

from folkrnn_jax.training import checkpoints


class _State(dict):
    """The slice of a train state that ``restore_latest`` uses."""

    @property
    def step(self):
        return self["step"]

    @property
    def params(self):
        return self["params"]

    @property
    def opt_state(self):
        return self["opt_state"]

    def replace(self, **kwargs):
        return _State({**self, **kwargs})


def _state(value):
    return _State(step=jnp.asarray(0), params={"w": jnp.full((64, 64), value, jnp.float32)},
                  opt_state={"m": jnp.zeros((8,), jnp.float32)})


def _two_checkpoints(workdir):
    manager = checkpoints.make_manager(workdir)
    for step, value in ((1, 1.0), (2, 2.0)):
        checkpoints.save(manager, step, _state(value).replace(step=jnp.asarray(step)))
    manager.wait_until_finished()
    manager.close()


def _data_files(workdir, step):
    root = os.path.join(workdir, checkpoints.CHECKPOINT_DIR, str(step))
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names if "/d/" in os.path.join(folder, n) + "/"]
    return [f for f in found if os.path.getsize(f) > 0] or found


def _restore(workdir):
    manager = checkpoints.make_manager(workdir)
    try:
        return checkpoints.restore_latest(manager, _state(0.0))
    finally:
        manager.close()


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "checksum"])
def test_damaged_newest_falls_back_with_a_warning(tmp_path, caplog, damage):
    workdir = str(tmp_path)
    _two_checkpoints(workdir)
    assert int(_restore(workdir).step) == 2
    if damage == "checksum":
        # The arrays themselves rewritten consistently but not as saved: only the checksum tells.
        path = checkpoints._checksum_path(workdir, 2)
        open(path, "w").write('{"params": "0"}')
    else:
        files = _data_files(workdir, 2)
        assert files
        for path in files:
            blob = bytearray(open(path, "rb").read())
            if damage == "truncate":
                blob = blob[: len(blob) // 2]
            else:
                for k in range(len(blob) // 2, min(len(blob), len(blob) // 2 + 64)):
                    blob[k] ^= 0xFF
            open(path, "wb").write(bytes(blob))
    with caplog.at_level(logging.WARNING):
        restored = _restore(workdir)
        params, step = checkpoints.load_params(workdir)
    assert int(restored.step) == 1 and step == 1
    np.testing.assert_array_equal(np.asarray(params["w"]), 1.0)
    assert any("step 2" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_every_checkpoint_damaged_is_one_error(tmp_path):
    workdir = str(tmp_path)
    _two_checkpoints(workdir)
    for step in (1, 2):
        open(checkpoints._checksum_path(workdir, step), "w").write("{}")
    with pytest.raises(checkpoints.DamagedCheckpointError, match="step 2.*step 1"):
        _restore(workdir)


@pytest.mark.parametrize("where", ["orbax", "checksums"])
def test_disk_full_is_one_error_at_its_step(tmp_path, monkeypatch, where):
    import errno

    workdir = str(tmp_path)
    manager = checkpoints.make_manager(workdir)
    checkpoints.save(manager, 1, _state(1.0).replace(step=jnp.asarray(1)))

    def full(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("background write failed") from error  # as orbax wraps it

    if where == "orbax":
        monkeypatch.setattr(manager, "save", full)
    else:
        monkeypatch.setattr(checkpoints.files, "atomic_write_text", full)
    with pytest.raises(checkpoints.DiskFullError, match="step 2 was not saved") as info:
        checkpoints.save(manager, 2, _state(2.0).replace(step=jnp.asarray(2)))
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    manager.close()
    assert int(_restore(workdir).step) in (1, 2)  # step 2 only if orbax finished it before


def test_train_and_sample_commands_go_on_from_the_previous_checkpoint(tmp_path):
    """Issue 13: the newest checkpoint's data truncated, ``experiments.sample`` and a resumed
    ``experiments.train`` both use the one before it and warn naming the damaged step."""
    from tests.conftest import fixture_path, run_module

    workdir = str(tmp_path / "run")
    common = [f"--workdir={workdir}", "--config=experiments/configs/tiny.py",
              f"--config.data_path={fixture_path('data_v2_excerpt.txt')}", "--config.batch_size=4",
              "--config.valid_fraction=0.2", "--config.checkpoint_every_steps=2"]
    first = run_module("experiments.train", *common, "--config.num_train_steps=4")
    assert first.returncode == 0, first.stderr[-2000:]
    files = _data_files(workdir, 4)
    assert files
    for path in files:
        blob = open(path, "rb").read()
        open(path, "wb").write(blob[: len(blob) // 2])

    sample = run_module("experiments.sample", f"--workdir={workdir}", "--num_tunes=2", "--max_length=40",
                        f"--output={tmp_path / 'tunes.abc'}")
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert "Traceback" not in sample.stderr
    assert "step 4" in sample.stderr and "damaged" in sample.stderr
    assert (tmp_path / "tunes.abc").read_text().count("X:") == 2

    resumed = run_module("experiments.train", *common, "--config.num_train_steps=6")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "step 4" in resumed.stderr and "damaged" in resumed.stderr
    assert "using the checkpoint at step 2" in resumed.stderr
    steps = sorted(int(name) for name in os.listdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR))
                   if name.isdigit())
    assert steps[-1] == 6
