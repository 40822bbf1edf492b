"""The LSTM layer of folk-rnn v2: a pure cell, and a whole-layer scan with a hand-written
backward pass.

The cell is a pure function of its parameters and state (the blog's equations, no
peepholes), scanned over time with ``jax.lax.scan``. Gate order inside the fused
``4*hidden`` axis is (input, forget, cell, output), as in Lasagne; ``GATES`` names it and
``lstm_gates`` is the one place the gate arithmetic is written (the cell, the fused layer
scan and the wavefront all go through it). How a scan runs (gradient clipping, matmul dtype,
unroll, remat, fused backward) travels as one hashable ``ScanOptions``, passed by keyword.

Every scan takes an optional ``resets`` [time, batch]: where it is 1 the state returns to the
scan's initial carry before that step, so tunes packed end to end in one row are each computed
exactly as alone (forward and backward; the initial carry's gradient gathers what reaches it
at every reset).
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class ScanOptions:
    """How an LSTM scan runs. Hashable, so it can be a static (non-differentiated) argument.

    Attributes:
        gate_grad_clip: >0 clips the gradient into each gate pre-activation to
            [-gate_grad_clip, gate_grad_clip] (Lasagne's ``grad_clipping``).
        matmul_dtype: float32, or bfloat16 for bf16 matmul inputs with float32 accumulation.
        unroll: ``lax.scan`` unroll.
        remat: checkpoint each step of the layerwise autodiff scan (keeps only the carry per
            step, so tunes of thousands of tokens fit in memory).
        fused_backward: the layerwise scan is one ``custom_vjp`` with a hand-written backward
            pass; False: plain autodiff through the scan.
    """

    gate_grad_clip: float = 0.0
    matmul_dtype: Any = jnp.float32
    unroll: int = 1
    remat: bool = False
    fused_backward: bool = True

    def __post_init__(self):
        # Normalised so that equal settings hash equal (jit caches on them).
        object.__setattr__(self, "gate_grad_clip", float(self.gate_grad_clip))
        object.__setattr__(self, "matmul_dtype", jnp.dtype(self.matmul_dtype))
        object.__setattr__(self, "unroll", int(self.unroll))
        object.__setattr__(self, "remat", bool(self.remat))
        object.__setattr__(self, "fused_backward", bool(self.fused_backward))


class Gates(NamedTuple):
    """One step's activated gates, each [..., hidden], in the fused order ``GATES``."""

    i: Array  # input gate
    f: Array  # forget gate
    g: Array  # cell input
    o: Array  # output gate


def lstm_gates(z: Array, c: Array) -> tuple[Array, Array, Gates, Array]:
    """The LSTM step's arithmetic after the matmuls.

    Args:
        z: [..., 4H] gate pre-activations in the order ``GATES`` (i, f, g, o).
        c: [..., H] the previous cell state.

    Returns:
        The new cell state c [..., H], the new hidden state h [..., H] (before any mask), the
        activated gates and tanh of the new cell state (both kept for the backward pass).
    """
    H = c.shape[-1]
    # One sigmoid over the three sigmoid gates together.
    ifo = jax.nn.sigmoid(jnp.concatenate([z[..., : 2 * H], z[..., 3 * H :]], axis=-1))
    i, f, o = ifo[..., :H], ifo[..., H : 2 * H], ifo[..., 2 * H :]
    g = jnp.tanh(z[..., 2 * H : 3 * H])
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    return c_new, o * tc, Gates(i, f, g, o), tc


def _gate_cotangents(gates: Array, tc: Array, c_prev: Array, dh_new: Array, dc_new: Array,
                     gate_grad_clip: float) -> tuple[Array, Array, Array]:
    """The backward pass of ``lstm_gates``: one step's cotangents of the pre-activations
    [..., 4H] (order ``GATES``), given the activated gates (concatenated, [..., 4H]), tanh(c),
    the previous cell state and the cotangents reaching h and c; also the new cell state's
    cotangent and the forget gate, which carry it to the previous step."""
    H = gates.shape[-1] // 4
    i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
    dcn = dc_new + dh_new * o * (1.0 - tc * tc)
    dz = jnp.concatenate(
        [dcn * g * i * (1.0 - i), dcn * c_prev * f * (1.0 - f), dcn * i * (1.0 - g * g), dh_new * tc * o * (1.0 - o)],
        axis=-1,
    )
    if gate_grad_clip:
        dz = jnp.clip(dz, -gate_grad_clip, gate_grad_clip)
    return dz, dcn, f


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
    *,
    options: ScanOptions = ScanOptions(),
) -> tuple[LayerCarry, Gates]:
    """One LSTM step, differentiated by autodiff (``options.gate_grad_clip`` clips the
    gradient into the pre-activations).

    Args:
        w_hid: [hidden, 4*hidden] recurrent weights.
        carry: (c, h), each [batch, hidden].
        x_proj: [batch, 4*hidden] the input projection plus bias.
        options: matmul dtype and gradient clipping (the other fields do not apply).

    Returns:
        The new (c, h) and the activated gates (for recording).
    """
    c, h = carry
    z = x_proj + matmul(h, w_hid, options.matmul_dtype)  # [batch, 4*hidden]
    if options.gate_grad_clip:
        z = clip_gradient(z, options.gate_grad_clip)
    c, h, gates, _ = lstm_gates(z, c)
    return (c, h), gates


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


def _reset(c, h, r, c0, h0):
    """(c, h) with the rows where ``r`` [batch] is 1 back at (c0, h0)."""
    if r is None:
        return c, h
    start = r[:, None] > 0
    return jnp.where(start, c0, c), jnp.where(start, h0, h)


def _fused_step(w_hid, c, h, xp, m, unit_mask, matmul_dtype):
    """One step from the (already reset) state (c, h)."""
    z = xp + matmul(h, w_hid, matmul_dtype)  # [batch, 4H]
    c_new, h_new, gates, tc = lstm_gates(z, c)
    if unit_mask is not None:
        h_new = h_new * unit_mask
    if m is not None:
        keep = m[:, None] > 0
        c_new = jnp.where(keep, c_new, c)
        h_new = jnp.where(keep, h_new, h)
    return c_new, h_new, gates, tc


def _fused_layer_scan(w_hid, x_proj, c0, h0, mask, resets, unit_mask, options, save):
    """The forward scan; with ``save``, every step's h, c, gates and tanh(c) as well."""

    def step(carry, inputs):
        xp, m, r = inputs
        c, h = _reset(*carry, r, c0, h0)
        c, h, gates, tc = _fused_step(w_hid, c, h, xp, m, unit_mask, options.matmul_dtype)
        # The gates are saved concatenated, [batch, 4H] per step.
        return (c, h), ((h, c, jnp.concatenate(gates, axis=-1), tc) if save else h)

    return jax.lax.scan(step, (c0, h0), (x_proj, mask, resets), unroll=options.unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _fused_layer(w_hid, x_proj, c0, h0, mask, resets, unit_mask, options):
    """(hs [time, batch, hidden], c_T, h_T); see the section comment above."""
    (c, h), hs = _fused_layer_scan(w_hid, x_proj, c0, h0, mask, resets, unit_mask, options, False)
    return hs, c, h


def _fused_layer_fwd(w_hid, x_proj, c0, h0, mask, resets, unit_mask, options):
    (c, h), (hs, cs, gates, tcs) = _fused_layer_scan(w_hid, x_proj, c0, h0, mask, resets, unit_mask, options, True)
    residuals = (w_hid, c0, h0, mask, resets, unit_mask, hs, cs, gates, tcs)
    return (hs, c, h), residuals


def _previous_states(c0, h0, cs, hs, resets):
    """The state each step started from, [time, ...]: the carry after the step before, or
    (c0, h0) at the first step and wherever ``resets`` [time, batch] is 1."""
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    if resets is None:
        return c_prev, h_prev
    start = (resets > 0)[..., None]
    return jnp.where(start, c0[None], c_prev), jnp.where(start, h0[None], h_prev)


def _split_at_resets(d_state, r):
    """A cotangent of the state a step started from, split into the part for the step before
    and the part for the initial carry (the rows where ``r`` is 1)."""
    start = (r > 0)[..., None].astype(d_state.dtype)
    return d_state * (1.0 - start), d_state * start


def _fused_layer_bwd(options, residuals, cotangents):
    matmul_dtype = options.matmul_dtype
    w_hid, c0, h0, mask, resets, unit_mask, hs, cs, gates, tcs = residuals
    d_hs, d_cT, d_hT = cotangents
    H = c0.shape[-1]
    c_prev_all, h_prev_all = _previous_states(c0, h0, cs, hs, resets)
    w_t = w_hid.T

    def step(carry, inputs):
        dh, dc, dh_init, dc_init = carry
        dh_out, gate, tc, c_prev, m, r = inputs
        dh = dh + dh_out
        if m is not None:
            keep = (m > 0)[:, None].astype(dh.dtype)
            dh_new, dc_new = dh * keep, dc * keep
            dh_pass, dc_pass = dh - dh_new, dc - dc_new
        else:
            dh_new, dc_new = dh, dc
        if unit_mask is not None:
            dh_new = dh_new * unit_mask
        dz, dcn, f = _gate_cotangents(gate, tc, c_prev, dh_new, dc_new, options.gate_grad_clip)
        dh_prev = matmul(dz, w_t, matmul_dtype)
        dc_prev = dcn * f
        if m is not None:
            dh_prev = dh_prev + dh_pass
            dc_prev = dc_prev + dc_pass
        if r is not None:
            dh_prev, to_h0 = _split_at_resets(dh_prev, r)
            dc_prev, to_c0 = _split_at_resets(dc_prev, r)
            dh_init, dc_init = dh_init + to_h0, dc_init + to_c0
        return (dh_prev, dc_prev, dh_init, dc_init), dz

    zeros = jnp.zeros_like(h0)
    (dh0, dc0, dh_init, dc_init), dz = jax.lax.scan(
        step, (d_hT, d_cT, zeros, zeros), (d_hs, gates, tcs, c_prev_all, mask, resets), reverse=True,
        unroll=options.unroll,
    )
    rows = h_prev_all.shape[0] * h_prev_all.shape[1]
    dw_hid = matmul(h_prev_all.reshape(rows, H).T, dz.reshape(rows, 4 * H), matmul_dtype)
    d_mask = None if mask is None else jnp.zeros_like(mask)
    d_resets = None if resets is None else jnp.zeros_like(resets)
    d_unit = None if unit_mask is None else jnp.zeros_like(unit_mask)
    return dw_hid.astype(w_hid.dtype), dz, dc0 + dc_init, dh0 + dh_init, d_mask, d_resets, d_unit


_fused_layer.defvjp(_fused_layer_fwd, _fused_layer_bwd)


def lstm_scan(
    w_hid: Array,
    x_proj: Array,
    carry: LayerCarry,
    mask: Array | None = None,
    unit_mask: Array | None = None,
    *,
    resets: Array | None = None,
    options: ScanOptions = ScanOptions(),
    record: bool = False,
) -> tuple[LayerCarry, Any]:
    """Run one LSTM layer over time.

    With ``options.fused_backward`` (the default) the layer is one ``custom_vjp`` with a
    hand-written backward scan (see ``_fused_layer``); ``record`` and ``options.remat`` use
    the plain autodiff scan below.

    Args:
        w_hid: [hidden, 4*hidden] recurrent weights.
        x_proj: [time, batch, 4*hidden] the input projection plus bias.
        carry: (c, h), each [batch, hidden].
        mask: [time, batch] 0 keeps the previous state (padding), or None.
        unit_mask: [hidden] multiplier on h (ablation), or None.
        resets: [time, batch] 1 where a packed tune starts: the state returns to ``carry``
            before that step; or None.
        options: how the scan runs.
        record: return every step's gates and states instead of h alone.

    Returns:
        The final carry and either h over time [time, batch, hidden] or, with ``record``, a
        dict of the gates ``i, f, g, o`` and the states ``c, h``, each [time, batch, hidden].
    """
    if options.fused_backward and not record and not options.remat:
        m = None if mask is None else (mask > 0).astype(x_proj.dtype)
        um = None if unit_mask is None else jnp.asarray(unit_mask, x_proj.dtype)
        r = None if resets is None else (resets > 0).astype(x_proj.dtype)
        hs, c, h = _fused_layer(w_hid, x_proj, carry[0], carry[1], m, r, um, options)
        return (c, h), hs
    initial = carry  # where a reset returns the state to

    def step(carry, inputs):
        xp, m, r = inputs
        carry = _reset(*carry, r, *initial)
        (c, h), gates = lstm_cell(w_hid, carry, xp, options=options)
        if unit_mask is not None:
            h = h * unit_mask
        if m is not None:
            keep = m[:, None] > 0
            c = jnp.where(keep, c, carry[0])
            h = jnp.where(keep, h, carry[1])
        if record:
            return (c, h), {**gates._asdict(), "c": c, "h": h}
        return (c, h), h

    if options.remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, carry, (x_proj, mask, resets), unroll=options.unroll)


# ---------------------------------------------------------------------------------------------
# Wavefront schedule: every layer in one scan.
#
# Step s advances layer l at time t = s - l (T + L - 1 steps), so layer l reads layer l-1's
# output of the previous step from the carry. Per step, layers 1.. do one batched matmul
# [h_below * dropout, h_own] @ [w_in; w_hid] (an einsum over the stacked layers) and layer 0
# one h @ w_hid (its one-hot input projection stays hoisted out of the loop, as in the
# layerwise path). The gate arithmetic runs once on [L, batch, 4H]. A layer outside its time
# range (the first and last L - 1 steps) is masked exactly like a padded position: it keeps
# its state. The dropout between layers (masks drawn outside, as the layerwise path draws
# them) is applied inside the loop. The backward pass is a reverse wavefront scan carrying
# (dh, dc) per layer and emitting dz per step; the weight gradients are then one matmul per
# layer over all (step, batch) rows, as in ``_fused_layer``.


def _skew(x: Array, layers: int, first: int = 0) -> Array:
    """[L', T, ...] -> [T + layers - 1, L', ...]: row l (layer first + l) shifted down by
    first + l steps, zeros elsewhere."""
    steps = x.shape[1] + layers - 1
    rows = []
    for l in range(x.shape[0]):
        shift = first + l
        pad = [(shift, steps - x.shape[1] - shift)] + [(0, 0)] * (x.ndim - 2)
        rows.append(jnp.pad(x[l], pad))
    return jnp.stack(rows, axis=1)


def _unskew(x: Array, time: int, first: int = 0) -> Array:
    """Inverse of ``_skew``: [S, L', ...] -> [L', T, ...]."""
    return jnp.stack([x[first + l : first + l + time, l] for l in range(x.shape[1])], axis=0)


def _wave_masks(mask: Array | None, time: int, batch: int, layers: int) -> Array:
    """[S, L, batch] 1 where layer l runs a real position at step s."""
    m = jnp.ones((time, batch), jnp.float32) if mask is None else mask
    return _skew(jnp.broadcast_to(m[None], (layers, time, batch)), layers)


def _wave_cast(w_hid, w_stack, matmul_dtype):
    if matmul_dtype == jnp.float32:
        return w_hid, w_stack
    return w_hid.astype(matmul_dtype), w_stack.astype(matmul_dtype)


def _bmatmul(spec: str, x: Array, w: Array, matmul_dtype: Any) -> Array:
    if matmul_dtype == jnp.float32:
        return jnp.einsum(spec, x, w, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum(spec, x.astype(matmul_dtype), w, preferred_element_type=jnp.float32)


def _wave_reset(c, h, r, c0, h0):
    """(c, h) [L, B, H] with the layers and rows where ``r`` [L, B] is 1 back at (c0, h0)."""
    if r is None:
        return c, h
    start = r[..., None] > 0
    return jnp.where(start, c0, c), jnp.where(start, h0, h)


def _wave_forward(w_hid0, w_stack, b_rest, x_proj, c0, h0, wmask, wresets, drop, unit_mask, options, save):
    """The forward wavefront scan. w_stack: [L-1, 2H, 4H] ([w_in; w_hid] of layers 1..);
    x_proj: [S, B, 4H] (layer 0, zero-padded); wmask: [S, L, B]; wresets: [S, L, B] or None;
    drop: [S, L-1, B, H] or None. With ``save``, the carry each step starts from (after its
    resets) is returned as well."""
    matmul_dtype = options.matmul_dtype
    w0, ws = _wave_cast(w_hid0, w_stack, matmul_dtype)

    def step(carry, inputs):
        xp, m, r, d = inputs
        # A layer reads the layer below's newest output as it is; only the layer's own
        # recurrent state goes back to the initial one where its tune starts.
        below = carry[1][:-1] if d is None else carry[1][:-1] * d  # [L-1, B, H]
        c, h = _wave_reset(*carry, r, c0, h0)  # [L, B, H]
        z0 = xp + matmul(h[0], w0, matmul_dtype)
        zr = _bmatmul("lbk,lkn->lbn", jnp.concatenate([below, h[1:]], axis=-1), ws, matmul_dtype)
        z = jnp.concatenate([z0[None], zr + b_rest[:, None, :]], axis=0)  # [L, B, 4H]
        c_new, h_new, gates, tc = lstm_gates(z, c)
        if unit_mask is not None:
            h_new = h_new * unit_mask[:, None, :]
        keep = m[..., None] > 0
        c_new = jnp.where(keep, c_new, c)
        h_new = jnp.where(keep, h_new, h)
        out = (h_new, c_new, jnp.concatenate(gates, axis=-1), tc) if save else (h_new[-1],)
        return (c_new, h_new), out

    return jax.lax.scan(step, (c0, h0), (x_proj, wmask, wresets, drop), unroll=options.unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(10,))
def _wavefront(w_hid0, w_stack, b_rest, x_proj, c0, h0, wmask, wresets, drop, unit_mask, options):
    """(h of the top layer per step [S, B, H], c_T [L, B, H], h_T [L, B, H])."""
    (c, h), (top,) = _wave_forward(w_hid0, w_stack, b_rest, x_proj, c0, h0, wmask, wresets, drop, unit_mask,
                                   options, False)
    return top, c, h


def _wavefront_fwd(w_hid0, w_stack, b_rest, x_proj, c0, h0, wmask, wresets, drop, unit_mask, options):
    (c, h), (hs, cs, gates, tcs) = _wave_forward(w_hid0, w_stack, b_rest, x_proj, c0, h0, wmask, wresets, drop,
                                                 unit_mask, options, True)
    residuals = (w_hid0, w_stack, b_rest, c0, h0, wmask, wresets, drop, unit_mask, hs, cs, gates, tcs)
    return (hs[:, -1], c, h), residuals


def _wavefront_bwd(options, residuals, cotangents):
    matmul_dtype = options.matmul_dtype
    w_hid0, w_stack, b_rest, c0, h0, wmask, wresets, drop, unit_mask, hs, cs, gates, tcs = residuals
    d_top, d_cT, d_hT = cotangents
    H = c0.shape[-1]
    L = c0.shape[0]
    # The carry each step read as the layer below's output (as it was), and the state each
    # layer's own recurrence started from (back at (c0, h0) where its tune starts).
    h_below_all = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # [S, L, B, H]
    c_prev_all, h_prev_all = _previous_states(c0, h0, cs, hs, wresets)
    w0, ws = _wave_cast(w_hid0, w_stack, matmul_dtype)
    w0_t = w0.T

    def step(carry, inputs):
        dh, dc, dh_init, dc_init = carry  # [L, B, H]: cotangents of the carry after this step
        dtop, gate, tc, c_prev, m, r, d = inputs
        dh = dh.at[-1].add(dtop)
        keep = (m > 0)[..., None].astype(dh.dtype)
        dh_new, dc_new = dh * keep, dc * keep
        dh_pass, dc_pass = dh - dh_new, dc - dc_new
        if unit_mask is not None:
            dh_new = dh_new * unit_mask[:, None, :]
        dz, dcn, f = _gate_cotangents(gate, tc, c_prev, dh_new, dc_new, options.gate_grad_clip)
        dh0 = matmul(dz[0], w0_t, matmul_dtype)  # [B, H]
        dx = _bmatmul("lbn,lkn->lbk", dz[1:], ws, matmul_dtype)  # [L-1, B, 2H]
        d_below = dx[..., :H] if d is None else dx[..., :H] * d  # to h of layers 0..L-2
        dh_prev = jnp.concatenate([dh0[None], dx[..., H:]], axis=0) + dh_pass  # to the reset state
        dc_prev = dcn * f + dc_pass
        if r is not None:
            dh_prev, to_h0 = _split_at_resets(dh_prev, r)
            dc_prev, to_c0 = _split_at_resets(dc_prev, r)
            dh_init, dc_init = dh_init + to_h0, dc_init + to_c0
        dh_prev = dh_prev + jnp.concatenate([d_below, jnp.zeros_like(dh0)[None]], axis=0)
        return (dh_prev, dc_prev, dh_init, dc_init), dz

    zeros = jnp.zeros_like(h0)
    (dh0, dc0, dh_init, dc_init), dz = jax.lax.scan(
        step, (d_hT, d_cT, zeros, zeros), (d_top, gates, tcs, c_prev_all, wmask, wresets, drop), reverse=True,
        unroll=options.unroll,
    )
    S, _, B, _ = dz.shape
    rows = S * B
    below = h_below_all[:, :-1] if drop is None else h_below_all[:, :-1] * drop
    x_rest = jnp.concatenate([below, h_prev_all[:, 1:]], axis=-1)  # [S, L-1, B, 2H]
    dz_rest = dz[:, 1:]
    dw_stack = jnp.stack(
        [matmul(x_rest[:, l].reshape(rows, 2 * H).T, dz_rest[:, l].reshape(rows, 4 * H), matmul_dtype)
         for l in range(L - 1)]
    )
    dw_hid0 = matmul(h_prev_all[:, 0].reshape(rows, H).T, dz[:, 0].reshape(rows, 4 * H), matmul_dtype)
    db_rest = dz_rest.sum(axis=(0, 2))
    d_drop = None if drop is None else jnp.zeros_like(drop)
    d_unit = None if unit_mask is None else jnp.zeros_like(unit_mask)
    d_resets = None if wresets is None else jnp.zeros_like(wresets)
    return (dw_hid0.astype(w_hid0.dtype), dw_stack.astype(w_stack.dtype), db_rest, dz[:, 0], dc0 + dc_init,
            dh0 + dh_init, jnp.zeros_like(wmask), d_resets, d_drop, d_unit)


_wavefront.defvjp(_wavefront_fwd, _wavefront_bwd)


def wavefront_scan(
    layers: list[LSTMParams],
    x_proj: Array,
    carry: Carry,
    mask: Array | None = None,
    drop: Array | None = None,
    unit_mask: Array | None = None,
    *,
    resets: Array | None = None,
    options: ScanOptions = ScanOptions(),
) -> tuple[Carry, Array]:
    """Run all LSTM layers over time in one wavefront scan (see the section comment above).

    Args:
        layers: per layer (w_in, w_hid, bias); every layer has the same hidden size H and at
            least two layers are needed. Layer 0's ``w_in`` and bias are already in ``x_proj``.
        x_proj: [time, batch, 4H] layer 0's input projection plus bias.
        carry: per layer (c, h), each [batch, H].
        mask: [time, batch] 0 keeps the previous state (padding), or None.
        drop: [L-1, time, batch, H] multipliers on each layer's output before the next layer
            reads it (dropout, already scaled), or None.
        unit_mask: [L, H] multipliers on h (ablation), or None.
        resets: [time, batch] 1 where a packed tune starts: every layer's state returns to
            ``carry`` before that time step; or None.
        options: gradient clipping, matmul dtype and unroll (``remat`` and the autodiff
            backward are layerwise only: the model picks the layerwise scan for them).

    Returns:
        The final carry (per layer (c, h)) and the top layer's h over time [time, batch, H].
    """
    L = len(layers)
    T, B = x_proj.shape[:2]
    w_hid0 = layers[0].w_hid
    w_stack = jnp.stack([jnp.concatenate([p.w_in, p.w_hid], axis=0) for p in layers[1:]])
    b_rest = jnp.stack([p.bias for p in layers[1:]])
    xp = jnp.pad(x_proj, [(0, L - 1), (0, 0), (0, 0)])
    m = None if mask is None else (mask > 0).astype(x_proj.dtype)
    wmask = _wave_masks(m, T, B, L)
    wresets = None
    if resets is not None:
        r = (resets > 0).astype(x_proj.dtype)
        wresets = _skew(jnp.broadcast_to(r[None], (L, T, B)), L)  # [S, L, B]
    d = None if drop is None else _skew(drop.astype(x_proj.dtype), L, first=1)
    um = None if unit_mask is None else jnp.asarray(unit_mask, x_proj.dtype)
    c0 = jnp.stack([c for c, _ in carry])
    h0 = jnp.stack([h for _, h in carry])
    top, c, h = _wavefront(w_hid0, w_stack, b_rest, xp, c0, h0, wmask, wresets, d, um, options)
    return tuple((c[l], h[l]) for l in range(L)), top[L - 1 :]


SCHEDULES = ("auto", "layerwise", "wavefront")
# What "auto" picks per platform. CPU: the layerwise scan, measured no slower than the
# wavefront (benchmarks/RESULTS.md, issue 16): the step is GEMM-bound and the wavefront saves
# loop bookkeeping only. GPU/TPU: not yet measured; the wavefront's T + L - 1 sequential steps
# instead of L x T are what bound a small-batch recurrent loop there.
AUTO_SCHEDULE = {"cpu": "layerwise", "gpu": "wavefront", "tpu": "wavefront"}


def resolve_schedule(schedule: str, platform: str | None = None) -> str:
    """The concrete schedule ("layerwise" or "wavefront") for ``schedule`` on ``platform``
    (default: JAX's default backend)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lstm_schedule must be one of {SCHEDULES}, not {schedule!r}")
    if schedule != "auto":
        return schedule
    return AUTO_SCHEDULE.get(platform or jax.default_backend(), "layerwise")
