"""Data parallelism over a 4-device mesh (forced host devices) reproduces a 1-device run."""

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from experiments.configs import tiny
    from folkrnn_jax.data import batching, v2_format
    from folkrnn_jax.training import parallel, state as state_lib, steps

    assert jax.device_count() == 4, jax.devices()
    config = tiny.get_config()
    config.data_path = sys.argv[1]
    config.hidden_size = 32
    config.batch_size = 8
    config.valid_fraction = 0.0
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(config.data_path))
    batches = [(batching.make_batch(seqs[i * 8:(i + 1) * 8])) for i in range(2)]

    def run(mesh):
        model, state = state_lib.create_train_state(config, jax.random.PRNGKey(0), 10)
        state = parallel.replicate(state, mesh)
        step = steps.make_train_step(model, config.loss_normalization, mesh)
        losses = []
        for i in range(5):
            state, loss = step(state, parallel.shard_batch(batches[i % 2], mesh), jax.random.PRNGKey(i))
            losses.append(float(loss))
        return losses, jax.device_get(state.params), state

    single, p1, _ = run(None)
    mesh = parallel.make_mesh()
    sharded, p4, state4 = run(mesh)
    leaf = jax.tree_util.tree_leaves(state4.params)[0]
    try:
        parallel.check_batch_size(6, mesh)
        error = ""
    except ValueError as e:
        error = str(e)
    print(json.dumps({
        "single": single, "sharded": sharded,
        "param_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p4))),
        "devices": len(leaf.sharding.device_set),
        "error": error,
    }))
    """
)


def test_four_device_data_parallel_matches_one_device(excerpt_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, excerpt_path], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4  # parameters replicated over all four devices
    assert max(abs(a - b) for a, b in zip(out["single"], out["sharded"])) < 1e-5
    assert out["param_diff"] < 1e-5
    assert out["single"][0] != out["single"][-1]  # it trained
    assert "does not divide evenly" in out["error"]
