"""Population training: K models (different seeds and/or learning rates) in one jit.

Parameters, optimiser states and the learning rate are stacked along a leading member axis
and the ordinary train step is ``jax.vmap``-ed over it, so K small models share one compiled
program and one accelerator (each member sees the same batch; dropout keys differ per
member). The learning rate is an ``optax.inject_hyperparams`` hyperparameter held in each
member's optimiser state, so it is a vmapped array. Learning rates are constant within a
population run (``lr_decay`` must be 1.0).

    model, pop = create_population(config, seeds=[0, 1, 2, 3], learning_rates=[1e-3, 3e-3, 1e-2, 3e-3])
    step = make_population_train_step(model, config.loss_normalization)
    pop, losses = step(pop, batch, dropout_keys)   # losses: [K]
    member_params = member(pop.params, k)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from folkrnn_jax.errors import InputError
from folkrnn_jax.model import folkrnn
from folkrnn_jax.training import state as state_lib
from folkrnn_jax.training.loss import loss_and_grads

Array = jax.Array


def make_population_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """``state.make_optimizer`` with the learning rate as a plain injected hyperparameter."""
    if config.lr_decay != 1.0:
        raise InputError("population training uses constant learning rates: set lr_decay=1.0")
    # A plain float (not a schedule) so that each member's injected rate stays as set.
    return state_lib.rmsprop(config, config.learning_rate)


def create_population(
    config: ml_collections.ConfigDict,
    seeds: Sequence[int] | None = None,
    learning_rates: Sequence[float] | None = None,
    init_keys: Array | None = None,
) -> tuple[folkrnn.FolkRNN, state_lib.TrainState]:
    """A TrainState whose params and opt_state carry a leading member axis of size K.
    Member k is initialised from ``init_keys[k]`` (default ``PRNGKey(seeds[k])``) and trains
    with ``learning_rates[k]`` (default ``config.learning_rate``)."""
    if init_keys is None:
        if seeds is None:
            raise ValueError("give seeds or init_keys")
        init_keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    k = init_keys.shape[0]
    if learning_rates is None:
        learning_rates = [config.learning_rate] * k
    if len(learning_rates) != k:
        raise ValueError(f"{len(learning_rates)} learning rates for {k} members")
    model = folkrnn.model_from_config(config)
    tx = make_population_optimizer(config)
    params = jax.vmap(functools.partial(folkrnn.init_params, model))(init_keys)
    opt_state = jax.vmap(tx.init)(params)
    opt_state = state_lib.with_learning_rate(opt_state, jnp.asarray(learning_rates, jnp.float32))
    return model, state_lib.TrainState(step=jnp.asarray(0, jnp.int32), params=params, opt_state=opt_state, tx=tx)


def make_population_train_step(model: folkrnn.FolkRNN, normalization: str) -> Callable:
    """jit(vmap(train step)) over members: (state, batch, dropout_keys [K]) -> (state, losses [K]).
    The batch is shared by every member."""

    grad_fn = loss_and_grads(model, normalization)

    def step(state: state_lib.TrainState, batch: dict, dropout_keys: Array):
        def member_step(params, opt_state, key):
            loss, grads = grad_fn(params, batch, key)
            member_state = state.replace(params=params, opt_state=opt_state).apply_gradients(grads=grads)
            return member_state.params, member_state.opt_state, loss

        params, opt_state, losses = jax.vmap(member_step)(state.params, state.opt_state, dropout_keys)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), losses

    return jax.jit(step, donate_argnums=(0,))


def member(tree: Any, k: int) -> Any:
    """Member k's slice of a stacked tree (params or opt_state)."""
    return jax.tree_util.tree_map(lambda x: x[k], tree)
