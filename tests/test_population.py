"""K models trained together in one vmapped jit match K separate ordinary runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tiny
from folkrnn_jax.data import batching, v2_format
from folkrnn_jax.training import population
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training import steps as steps_lib


# About 70 s on 2 cores: the default suite must stay near 10 minutes (run with -m slow).
@pytest.mark.slow
def test_population_matches_separate_runs(excerpt_path):
    config = tiny.get_config()
    config.hidden_size = 16
    config.dropout_rate = 0.2
    seqs = v2_format.encode_tunes(v2_format.read_v2_file(excerpt_path))
    batches = [jax.device_put(steps_lib.batch_to_dict(batching.make_batch(seqs[i * 4:(i + 1) * 4]))) for i in range(3)]
    seeds = [0, 1, 2, 3]
    lrs = [0.001, 0.003, 0.01, 0.003]
    steps = 4

    def keys_at(step):
        return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(100 + s), step) for s in seeds])

    model, pop = population.create_population(config, seeds=seeds, learning_rates=lrs)
    pop_step = population.make_population_train_step(model, config.loss_normalization)
    pop_losses = []
    for i in range(steps):
        pop, losses = pop_step(pop, batches[i % 3], keys_at(i))
        pop_losses.append(np.asarray(losses))

    for k, (seed, lr) in enumerate(zip(seeds, lrs)):
        member_config = config.copy_and_resolve_references()
        member_config.learning_rate = lr
        model_k, state = state_lib.create_train_state(member_config, jax.random.PRNGKey(seed), 10)
        step = steps_lib.make_train_step(model_k, member_config.loss_normalization)
        for i in range(steps):
            state, loss = step(state, batches[i % 3], keys_at(i)[k])
            assert abs(float(loss) - pop_losses[i][k]) < 1e-5
        got = population.member(pop.params, k)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(state.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
    # The members really differ.
    assert len({round(float(x), 6) for x in pop_losses[-1]}) == 4
