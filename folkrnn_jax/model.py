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


# ---------------------------------------------------------------------------------------------
# Fast path: one custom_vjp over a whole layer's scan.
#
# The forward scan saves the activated gates, tanh(c_new) and the carried (c, h) of each step;
# the backward scan carries only (dh, dc) and emits the gate pre-activation gradient dz of
# each step. The recurrent-weight gradient is then ONE matmul after the loop,
# dW_hid = h_prev^T @ dz over all (time, batch) rows, and dx_proj = dz. Per-gate gradient
# clipping (``gate_grad_clip``) is applied to dz inside the backward loop, exactly where the
# autodiff path's ``clip_gradient`` acts. Masks (0 keeps the previous state) and the unit mask
# (h multiplied by a fixed vector, no gradient) are handled in both directions.


def _fused_step(w_hid, c, h, xp, m, unit_mask, matmul_dtype):
    z = xp + _matmul(h, w_hid, matmul_dtype)
    H = c.shape[-1]
    ifo = jax.nn.sigmoid(jnp.concatenate([z[:, : 2 * H], z[:, 3 * H :]], axis=-1))
    i, f, o = ifo[:, :H], ifo[:, H : 2 * H], ifo[:, 2 * H :]
    g = jnp.tanh(z[:, 2 * H : 3 * H])
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    h_new = o * tc
    if unit_mask is not None:
        h_new = h_new * unit_mask
    if m is not None:
        keep = m[:, None] > 0
        c_new = jnp.where(keep, c_new, c)
        h_new = jnp.where(keep, h_new, h)
    return c_new, h_new, (i, f, g, o, tc)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _fused_layer(w_hid, x_proj, c0, h0, mask, unit_mask, gate_grad_clip, matmul_dtype, unroll):
    """(hs [time, batch, hidden], c_T, h_T); see the section comment above."""

    def step(carry, inputs):
        c, h = carry
        xp, m = inputs
        c, h, _ = _fused_step(w_hid, c, h, xp, m, unit_mask, matmul_dtype)
        return (c, h), h

    (c, h), hs = jax.lax.scan(step, (c0, h0), (x_proj, mask), unroll=unroll)
    return hs, c, h


def _fused_layer_fwd(w_hid, x_proj, c0, h0, mask, unit_mask, gate_grad_clip, matmul_dtype, unroll):
    def step(carry, inputs):
        c, h = carry
        xp, m = inputs
        c, h, (i, f, g, o, tc) = _fused_step(w_hid, c, h, xp, m, unit_mask, matmul_dtype)
        return (c, h), (h, c, jnp.concatenate([i, f, g, o], axis=-1), tc)

    (c, h), (hs, cs, gates, tcs) = jax.lax.scan(step, (c0, h0), (x_proj, mask), unroll=unroll)
    residuals = (w_hid, c0, h0, mask, unit_mask, hs, cs, gates, tcs)
    return (hs, c, h), residuals


def _fused_layer_bwd(gate_grad_clip, matmul_dtype, unroll, residuals, cotangents):
    w_hid, c0, h0, mask, unit_mask, hs, cs, gates, tcs = residuals
    d_hs, d_cT, d_hT = cotangents
    H = c0.shape[-1]
    c_prev_all = jnp.concatenate([c0[None], cs[:-1]], axis=0)
    w_t = w_hid.T

    def step(carry, inputs):
        dh, dc = carry
        dh_out, gate, tc, c_prev, m = inputs
        dh = dh + dh_out
        if m is not None:
            keep = (m > 0)[:, None].astype(dh.dtype)
            dh_new, dc_new = dh * keep, dc * keep
            dh_pass, dc_pass = dh - dh_new, dc - dc_new
        else:
            dh_new, dc_new = dh, dc
        if unit_mask is not None:
            dh_new = dh_new * unit_mask
        i, f, g, o = gate[:, :H], gate[:, H : 2 * H], gate[:, 2 * H : 3 * H], gate[:, 3 * H :]
        dcn = dc_new + dh_new * o * (1.0 - tc * tc)
        dz = jnp.concatenate(
            [
                dcn * g * i * (1.0 - i),
                dcn * c_prev * f * (1.0 - f),
                dcn * i * (1.0 - g * g),
                dh_new * tc * o * (1.0 - o),
            ],
            axis=-1,
        )
        if gate_grad_clip:
            dz = jnp.clip(dz, -gate_grad_clip, gate_grad_clip)
        dh_prev = _matmul(dz, w_t, matmul_dtype)
        dc_prev = dcn * f
        if m is not None:
            dh_prev = dh_prev + dh_pass
            dc_prev = dc_prev + dc_pass
        return (dh_prev, dc_prev), dz

    (dh0, dc0), dz = jax.lax.scan(
        step, (d_hT, d_cT), (d_hs, gates, tcs, c_prev_all, mask), reverse=True, unroll=unroll
    )
    h_prev_all = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    rows = h_prev_all.shape[0] * h_prev_all.shape[1]
    dw_hid = _matmul(h_prev_all.reshape(rows, H).T, dz.reshape(rows, 4 * H), matmul_dtype)
    d_mask = None if mask is None else jnp.zeros_like(mask)
    d_unit = None if unit_mask is None else jnp.zeros_like(unit_mask)
    return dw_hid.astype(w_hid.dtype), dz, dc0, dh0, d_mask, d_unit


_fused_layer.defvjp(_fused_layer_fwd, _fused_layer_bwd)


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
    fused_backward: bool = True,
) -> tuple[LayerCarry, Any]:
    """Run one LSTM layer over time.

    x_proj: [time, batch, 4*hidden]; mask: [time, batch] (0 keeps the previous state);
    unit_mask: [hidden] multiplier on h (ablation). Returns the final carry and either
    h over time [time, batch, hidden] or, with ``record``, a dict of gates and states.

    With ``fused_backward`` (the default) the layer is one ``custom_vjp`` with a hand-written
    backward scan (see ``_fused_layer``); ``record`` and ``remat`` use the plain autodiff
    scan below (``remat`` checkpoints each step, keeping only the carry per step, so tunes of
    thousands of tokens fit in memory).
    """
    if fused_backward and not record and not remat:
        m = None if mask is None else (mask > 0).astype(x_proj.dtype)
        um = None if unit_mask is None else jnp.asarray(unit_mask, x_proj.dtype)
        hs, c, h = _fused_layer(
            w_hid, x_proj, carry[0], carry[1], m, um, float(gate_grad_clip), matmul_dtype, int(unroll)
        )
        return (c, h), hs

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
    fused_backward: bool = True  # hand-written backward pass (custom_vjp); False: autodiff

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

    def _dropout(self, x: Array, train: bool) -> Array:
        """Dropout after an LSTM layer. At rate 0.5 (v2) the keep mask is one random bit per
        unit, unpacked from 32-bit words: 32x fewer threefry draws than ``nn.Dropout``, which
        took ~15% of a CPU training step; the same Bernoulli(0.5) distribution and scaling."""
        if not train or self.dropout_rate == 0.0:
            return x
        if self.dropout_rate == 0.5 and x.shape[-1] % 32 == 0:
            words = jax.random.bits(self.make_rng("dropout"), x.shape[:-1] + (x.shape[-1] // 32,), jnp.uint32)
            bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
            return jnp.where(bits.reshape(x.shape) > 0, x * 2.0, 0.0)
        return self.dropout(x, deterministic=False)

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
        hs = None  # the layer below's output [time, batch, hidden], from layer 1 on
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
                self.fused_backward,
            )
            new_carry.append(layer_carry)
            if record:
                internals[f"layer_{j}"] = {k: jnp.swapaxes(v, 0, 1) for k, v in out.items()}
                out = out["h"]
            hs = self._dropout(out, train)  # [time, batch, hidden]
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
        fused_backward=config.get("fused_backward", True),
    )


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def split_layer_params(params: dict, num_layers: int) -> Sequence[LSTMParams]:
    """The per-layer LSTM weights of a params tree, for analysis and legacy import."""
    return [
        LSTMParams(params[f"lstm_{j}_w_in"], params[f"lstm_{j}_w_hid"], params[f"lstm_{j}_bias"])
        for j in range(num_layers)
    ]
