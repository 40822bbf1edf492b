"""The LSTM layer of folk-rnn v2: a pure cell, and a whole-layer scan with a hand-written
backward pass.

The cell is a pure function of its parameters and state (the blog's equations, no
peepholes), scanned over time with ``jax.lax.scan``. Gate order inside the fused
``4*hidden`` axis is (input, forget, cell, output), as in Lasagne; ``GATES`` names it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
LayerCarry = tuple[Array, Array]  # (c, h), each [batch, hidden]
Carry = tuple[LayerCarry, ...]
GATES = ("input", "forget", "cell", "output")  # order along the fused 4*hidden axis


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


def matmul(x: Array, w: Array, matmul_dtype: Any) -> Array:
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
    z = x_proj + matmul(h, w_hid, matmul_dtype)  # [batch, 4*hidden]
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
    z = xp + matmul(h, w_hid, matmul_dtype)
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
        dh_prev = matmul(dz, w_t, matmul_dtype)
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
    dw_hid = matmul(h_prev_all.reshape(rows, H).T, dz.reshape(rows, 4 * H), matmul_dtype)
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
