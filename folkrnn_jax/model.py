"""The folk-rnn v2 model: one-hot input, stacked LSTM layers, softmax output.

The LSTM cell is a pure function of its parameters and state (the blog's equations, no
peepholes), scanned over time with ``jax.lax.scan``. Each layer's input projection for all
time steps is computed before the scan (a row gather for the one-hot first layer), so the
scan body holds one fused ``[hidden, 4*hidden]`` matmul per step.

Gate order inside the fused ``4*hidden`` axis is (input, forget, cell, output), as in Lasagne.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from folkrnn_jax import vocab

Array = jax.Array
LayerCarry = tuple[Array, Array]  # (c, h), each [batch, hidden]
Carry = tuple[LayerCarry, ...]


class LSTMParams(NamedTuple):
    w_in: Array  # [input, 4*hidden]
    w_hid: Array  # [hidden, 4*hidden]
    bias: Array  # [4*hidden]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def clip_gradient(x: Array, bound: float) -> Array:
    """Identity on the way forward; clips the cotangent elementwise to [-bound, bound]."""
    return x


def _clip_gradient_fwd(x, bound):
    return x, None


def _clip_gradient_bwd(bound, _, g):
    return (jnp.clip(g, -bound, bound),)


clip_gradient.defvjp(_clip_gradient_fwd, _clip_gradient_bwd)


def _matmul(x: Array, w: Array, matmul_dtype: Any) -> Array:
    if matmul_dtype == jnp.float32:
        return jnp.dot(x, w, precision=jax.lax.Precision.HIGHEST)
    return jnp.dot(x.astype(matmul_dtype), w.astype(matmul_dtype), preferred_element_type=jnp.float32)


def lstm_cell(
    w_hid: Array,
    carry: LayerCarry,
    x_proj: Array,
    gate_grad_clip: float = 0.0,
    matmul_dtype: Any = jnp.float32,
) -> tuple[LayerCarry, tuple[Array, Array, Array, Array]]:
    """One LSTM step. ``x_proj`` is the input projection plus bias, [batch, 4*hidden].

    Returns the new (c, h) and the activated gates (i, f, o, g) for recording.
    """
    c, h = carry
    z = x_proj + _matmul(h, w_hid, matmul_dtype)  # [batch, 4*hidden]
    if gate_grad_clip:
        z = clip_gradient(z, gate_grad_clip)
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    i = jax.nn.sigmoid(zi)
    f = jax.nn.sigmoid(zf)
    g = jnp.tanh(zg)
    o = jax.nn.sigmoid(zo)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), (i, f, o, g)


def lstm_scan(
    w_hid: Array,
    x_proj: Array,
    carry: LayerCarry,
    mask: Array | None = None,
    unit_mask: Array | None = None,
    gate_grad_clip: float = 0.0,
    matmul_dtype: Any = jnp.float32,
    unroll: int = 1,
    record: bool = False,
    remat: bool = False,
) -> tuple[LayerCarry, Any]:
    """Run one LSTM layer over time.

    x_proj: [time, batch, 4*hidden]; mask: [time, batch] (0 keeps the previous state);
    unit_mask: [hidden] multiplier on h (ablation). Returns the final carry and either
    h over time [time, batch, hidden] or, with ``record``, a dict of gates and states.
    """

    def step(carry, inputs):
        xp, m = inputs
        new_carry, gates = lstm_cell(w_hid, carry, xp, gate_grad_clip, matmul_dtype)
        c, h = new_carry
        if unit_mask is not None:
            h = h * unit_mask
        if m is not None:
            keep = m[:, None] > 0
            c = jnp.where(keep, c, carry[0])
            h = jnp.where(keep, h, carry[1])
        if record:
            i, f, o, g = gates
            return (c, h), {"i": i, "f": f, "o": o, "g": g, "c": c, "h": h}
        return (c, h), h

    if remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, carry, (x_proj, mask), unroll=unroll)


def _orthogonal_row(key, shape, dtype=jnp.float32):
    # Lasagne's Orthogonal on a (1, hidden) matrix: a random unit vector.
    v = jax.random.normal(key, shape, dtype)
    return v / jnp.linalg.norm(v)


class FolkRNN(nn.Module):
    """folk-rnn v2: one-hot tokens -> ``num_layers`` LSTM layers -> softmax over the vocabulary.

    ``inputs`` are int tokens [batch, time] or, for input forcing, float vectors
    [batch, time, vocab] that replace the one-hot encoding.
    """

    num_layers: int = 3
    hidden_size: int = 512
    vocab_size: int = vocab.VOCAB_SIZE
    dropout_rate: float = 0.5
    init_scale: float = 0.1  # Lasagne's Normal(0.1) gate weights
    learn_initial_state: bool = False  # each layer's (cell_init, hid_init) are parameters
    gate_grad_clip: float = 0.0  # >0: clip the gradient into each gate pre-activation
    matmul_dtype: str = "float32"  # "bfloat16" for bf16 matmuls with float32 state
    unroll: int = 1
    remat: bool = False

    def setup(self):
        normal = nn.initializers.normal(self.init_scale)
        H = self.hidden_size
        self.lstm = [
            LSTMParams(
                self.param(f"lstm_{j}_w_in", normal, (self.vocab_size if j == 0 else H, 4 * H)),
                self.param(f"lstm_{j}_w_hid", normal, (H, 4 * H)),
                self.param(f"lstm_{j}_bias", nn.initializers.zeros, (4 * H,)),
            )
            for j in range(self.num_layers)
        ]
        if self.learn_initial_state:
            self.cell_init = [
                self.param(f"lstm_{j}_cell_init", nn.initializers.zeros, (H,))
                for j in range(self.num_layers)
            ]
            self.hid_init = [
                self.param(f"lstm_{j}_hid_init", _orthogonal_row, (H,))
                for j in range(self.num_layers)
            ]
        self.output = nn.Dense(
            self.vocab_size, kernel_init=nn.initializers.orthogonal(), name="output"
        )
        self.dropout = nn.Dropout(self.dropout_rate)

    def initial_carry(self, batch_size: int) -> Carry:
        """The state every sequence starts from: zeros, or the learned initial states."""
        H = self.hidden_size
        carry = []
        for j in range(self.num_layers):
            if self.learn_initial_state:
                c = jnp.broadcast_to(self.cell_init[j], (batch_size, H))
                h = jnp.broadcast_to(self.hid_init[j], (batch_size, H))
            else:
                c = h = jnp.zeros((batch_size, H), jnp.float32)
            carry.append((c, h))
        return tuple(carry)

    def _forward(
        self,
        inputs: Array,
        carry: Carry | None,
        train: bool,
        mask: Array | None,
        unit_mask: Array | None,
        logit_bias: Array | None,
        record: bool,
    ):
        dtype = jnp.dtype(self.matmul_dtype)
        batch = inputs.shape[0]
        if carry is None:
            carry = self.initial_carry(batch)
        mask_t = None if mask is None else jnp.swapaxes(mask, 0, 1)  # [time, batch]
        first = self.lstm[0]
        if jnp.issubdtype(inputs.dtype, jnp.integer):
            # One-hot input: the projection is a gather of weight rows.
            x_proj = jnp.take(first.w_in, inputs.T, axis=0) + first.bias  # [time, batch, 4H]
        else:
            x = jnp.swapaxes(inputs, 0, 1)  # [time, batch, vocab]
            x_proj = _matmul(x, first.w_in, dtype) + first.bias
        new_carry = []
        internals = {}
        for j, layer in enumerate(self.lstm):
            if j > 0:
                x_proj = _matmul(hs, layer.w_in, dtype) + layer.bias  # [time, batch, 4H]
            layer_carry, out = lstm_scan(
                layer.w_hid,
                x_proj,
                carry[j],
                mask_t,
                None if unit_mask is None else unit_mask[j],
                self.gate_grad_clip,
                dtype,
                self.unroll,
                record,
                self.remat,
            )
            new_carry.append(layer_carry)
            if record:
                internals[f"layer_{j}"] = {k: jnp.swapaxes(v, 0, 1) for k, v in out.items()}
                out = out["h"]
            hs = self.dropout(out, deterministic=not train)  # [time, batch, hidden]
        logits = jnp.swapaxes(self.output(hs), 0, 1)  # [batch, time, vocab]
        if logit_bias is not None:
            logits = logits + logit_bias
        if record:
            internals["probs"] = jax.nn.softmax(logits, axis=-1)
        return logits, tuple(new_carry), internals

    def __call__(
        self,
        inputs: Array,
        train: bool = False,
        mask: Array | None = None,
        unit_mask: Array | None = None,
        logit_bias: Array | None = None,
    ) -> Array:
        """Logits [batch, time, vocab] for inputs [batch, time] from the initial state."""
        logits, _, _ = self._forward(inputs, None, train, mask, unit_mask, logit_bias, False)
        return logits

    def decode(
        self,
        inputs: Array,
        carry: Carry,
        mask: Array | None = None,
        unit_mask: Array | None = None,
        logit_bias: Array | None = None,
    ) -> tuple[Array, Carry]:
        """Continue from ``carry``: logits [batch, time, vocab] and the new carry (for sampling)."""
        logits, carry, _ = self._forward(inputs, carry, False, mask, unit_mask, logit_bias, False)
        return logits, carry

    def record(
        self,
        inputs: Array,
        carry: Carry | None = None,
        unit_mask: Array | None = None,
        logit_bias: Array | None = None,
    ) -> tuple[Array, Carry, dict]:
        """Forward pass that also returns every internal signal: per layer the gates i, f, o,
        the cell input g, the cell c and hidden h [batch, time, hidden], and the softmax."""
        return self._forward(inputs, carry, False, None, unit_mask, logit_bias, True)


def model_from_config(config) -> FolkRNN:
    """Build the model from a (flat) experiment config."""
    return FolkRNN(
        num_layers=config.num_layers,
        hidden_size=config.hidden_size,
        vocab_size=vocab.VOCAB_SIZE,
        dropout_rate=config.dropout_rate,
        init_scale=config.get("init_scale", 0.1),
        learn_initial_state=config.get("learn_initial_state", False),
        gate_grad_clip=config.get("gate_grad_clip", 0.0),
        matmul_dtype=config.get("matmul_dtype", "float32"),
        unroll=config.get("unroll", 1),
        remat=config.get("remat", False),
    )


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def split_layer_params(params: dict, num_layers: int) -> Sequence[LSTMParams]:
    """The per-layer LSTM weights of a params tree, for analysis and legacy import."""
    return [
        LSTMParams(params[f"lstm_{j}_w_in"], params[f"lstm_{j}_w_hid"], params[f"lstm_{j}_bias"])
        for j in range(num_layers)
    ]
