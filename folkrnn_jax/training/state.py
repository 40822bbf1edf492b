"""The train state and the v2 optimiser (RMSprop behind global-norm clipping)."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from folkrnn_jax.model import folkrnn

Array = jax.Array


class TrainState(flax.struct.PyTreeNode):
    """Step, parameters and optimiser state; ``apply_gradients`` as in flax's ``TrainState``."""

    step: Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    def apply_gradients(self, *, grads: Any) -> "TrainState":
        """One optimiser update of ``params`` with ``grads``; the step counts up by one."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state)


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """The v2 schedule: constant, then x``lr_decay`` per epoch after ``lr_decay_after_epochs``."""
    if config.lr_decay == 1.0:
        return optax.constant_schedule(config.learning_rate)
    return optax.exponential_decay(
        config.learning_rate,
        transition_steps=steps_per_epoch,
        decay_rate=config.lr_decay,
        transition_begin=config.lr_decay_after_epochs * steps_per_epoch,
        staircase=True,
    )


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """RMSprop (epsilon inside the square root, as Lasagne) behind optional global-norm
    clipping, on the v2 learning-rate schedule."""
    return rmsprop(config, learning_rate_schedule(config, steps_per_epoch))


def rmsprop(
    config: ml_collections.ConfigDict, learning_rate: float | optax.Schedule
) -> optax.GradientTransformation:
    """RMSprop with ``learning_rate`` as an injected hyperparameter (read back by
    ``current_learning_rate``), behind global-norm clipping when ``config.grad_clip_norm`` > 0."""
    optimizer = optax.inject_hyperparams(optax.rmsprop)(
        learning_rate=learning_rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps
    )
    if config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
    return optimizer


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _is_injected(node: Any) -> bool:
    return isinstance(node, _INJECTED)


def map_injected(fn: Callable[[Any], Any], opt_state: Any) -> Any:
    """``opt_state`` with every ``optax.inject_hyperparams`` state in it replaced by
    ``fn(state)``: the one walk that reaches the injected learning rate and step count."""
    return jax.tree_util.tree_map(lambda s: fn(s) if _is_injected(s) else s, opt_state, is_leaf=_is_injected)


def current_learning_rate(opt_state: Any) -> Array:
    """The rate the last update used, read from the inject_hyperparams state."""
    found = []
    map_injected(lambda s: found.append(s.hyperparams["learning_rate"]), opt_state)
    if not found:
        raise ValueError("optimizer state has no injected learning rate")
    return found[0]


def optimizer_state_at(config: ml_collections.ConfigDict, params: Any, step: int) -> Any:
    """An optimiser state for ``params`` trained elsewhere (an imported checkpoint): zero
    RMSprop statistics, as a fresh Lasagne run has, and the learning-rate schedule at ``step``,
    so that training resumes at the rate of that point of the recipe."""
    tx = make_optimizer(config, steps_per_epoch=1)  # the schedule's shape does not enter the state
    state = tx.init(jax.tree_util.tree_map(jnp.asarray, params))
    return map_injected(lambda s: s._replace(count=jnp.asarray(step, s.count.dtype)), state)


def create_train_state(
    config: ml_collections.ConfigDict, rng: Array, steps_per_epoch: int
) -> tuple[folkrnn.FolkRNN, TrainState]:
    model = folkrnn.model_from_config(config)
    params = folkrnn.init_params(model, rng)
    tx = make_optimizer(config, steps_per_epoch)
    return model, TrainState(step=jnp.asarray(0, jnp.int32), params=params, opt_state=tx.init(params), tx=tx)
