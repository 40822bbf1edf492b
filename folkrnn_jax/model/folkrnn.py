"""The folk-rnn v2 model: one-hot input, stacked LSTM layers, softmax output.

Each layer's input projection for all time steps is computed before the scan (a row gather
for the one-hot first layer), so the scan body holds one fused ``[hidden, 4*hidden]`` matmul
per step (``folkrnn_jax.model.lstm``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from folkrnn_jax.model.lstm import (
    Array,
    Carry,
    LSTMParams,
    ScanOptions,
    lstm_scan,
    matmul,
    resolve_schedule,
    wavefront_scan,
)
from folkrnn_jax.music import vocab


def _orthogonal_row(key, shape, dtype=jnp.float32):
    # Lasagne's Orthogonal on a (1, hidden) matrix: a random unit vector.
    v = jax.random.normal(key, shape, dtype)
    return v / jnp.linalg.norm(v)


class FolkRNN(nn.Module):
    """folk-rnn v2: one-hot tokens -> ``num_layers`` LSTM layers -> softmax over the vocabulary.

    ``inputs`` are int tokens [batch, time] or, for input forcing, float vectors
    [batch, time, vocab] that replace the one-hot encoding.
    """

    # These defaults are folk-rnn v2's and the one source of an experiment config's model
    # fields (``model_defaults``, ``experiments/configs/v2.py``).
    num_layers: int = 3
    hidden_size: int = 512
    vocab_size: int = vocab.VOCAB_SIZE
    dropout_rate: float = 0.5  # after each LSTM layer, in training
    init_scale: float = 0.1  # Lasagne's Normal(0.1) gate weights
    learn_initial_state: bool = False  # each layer's (cell_init, hid_init) are parameters
    gate_grad_clip: float = 0.0  # >0: clip the gradient into each gate pre-activation
    matmul_dtype: str = "float32"  # "bfloat16" for bf16 matmuls with float32 state
    unroll: int = 1  # lax.scan unroll of the time loop
    remat: bool = False  # rematerialise each time step in the backward pass (long tunes)
    fused_backward: bool = True  # hand-written backward pass (custom_vjp); False: autodiff
    # "layerwise" (one scan per layer), "wavefront" (all layers in one scan) or "auto" (the
    # faster one measured for the device, ``lstm.resolve_schedule``). Single-step decoding
    # (sampling) and ``record``/``remat``/autodiff runs always use the layerwise scan.
    lstm_schedule: str = "auto"

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

    @property
    def scan_options(self) -> ScanOptions:
        """The LSTM scans' options: this model's fields of the same names."""
        return ScanOptions(**{field.name: getattr(self, field.name) for field in dataclasses.fields(ScanOptions)})

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
        unit, unpacked from 32-bit words: 32x fewer threefry draws than ``nn.Dropout`` (whose
        draws were a visible share of a CPU training step); the same Bernoulli(0.5)
        distribution and scaling."""
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
        resets: Array | None = None,
    ):
        dtype = jnp.dtype(self.matmul_dtype)
        batch = inputs.shape[0]
        if carry is None:
            carry = self.initial_carry(batch)
        mask_t = None if mask is None else jnp.swapaxes(mask, 0, 1)  # [time, batch]
        resets_t = None if resets is None else jnp.swapaxes(resets, 0, 1)  # [time, batch]
        first = self.lstm[0]
        if jnp.issubdtype(inputs.dtype, jnp.integer):
            # One-hot input: the projection is a gather of weight rows.
            x_proj = jnp.take(first.w_in, inputs.T, axis=0) + first.bias  # [time, batch, 4H]
        else:
            x = jnp.swapaxes(inputs, 0, 1)  # [time, batch, vocab]
            x_proj = matmul(x, first.w_in, dtype) + first.bias
        if self._use_wavefront(inputs.shape[1], record):
            return self._wavefront_forward(x_proj, carry, train, mask_t, unit_mask, logit_bias, resets_t)
        new_carry = []
        internals = {}
        hs = None  # the layer below's output [time, batch, hidden], from layer 1 on
        for j, layer in enumerate(self.lstm):
            if j > 0:
                x_proj = matmul(hs, layer.w_in, dtype) + layer.bias  # [time, batch, 4H]
            layer_carry, out = lstm_scan(
                layer.w_hid,
                x_proj,
                carry[j],
                mask_t,
                None if unit_mask is None else unit_mask[j],
                resets=resets_t,
                options=self.scan_options,
                record=record,
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

    def _use_wavefront(self, time: int, record: bool) -> bool:
        schedule = resolve_schedule(self.lstm_schedule)
        return (schedule == "wavefront" and time > 1 and self.num_layers > 1 and not record
                and not self.remat and self.fused_backward)

    def _wavefront_forward(self, x_proj, carry, train, mask_t, unit_mask, logit_bias, resets_t):
        """``_forward`` on the wavefront schedule (``lstm.wavefront_scan``): the dropout masks
        between layers are drawn first, in the layerwise path's order, so both schedules
        drop the same units for the same key."""
        T, B = x_proj.shape[:2]
        drop = None
        if train and self.dropout_rate > 0.0:
            ones = jnp.ones((T, B, self.hidden_size), jnp.float32)
            drop = jnp.stack([self._dropout(ones, train) for _ in range(self.num_layers - 1)])
        new_carry, top = wavefront_scan(self.lstm, x_proj, carry, mask_t, drop, unit_mask, resets=resets_t,
                                        options=self.scan_options)
        logits = jnp.swapaxes(self.output(self._dropout(top, train)), 0, 1)  # [batch, time, vocab]
        if logit_bias is not None:
            logits = logits + logit_bias
        return logits, new_carry, {}

    def __call__(
        self,
        inputs: Array,
        train: bool = False,
        mask: Array | None = None,
        unit_mask: Array | None = None,
        logit_bias: Array | None = None,
        resets: Array | None = None,
    ) -> Array:
        """Logits [batch, time, vocab] for inputs [batch, time] from the initial state.

        ``resets`` [batch, time] (packed rows, ``data.batching``) is 1 where a tune starts:
        every layer's state returns to the initial state before that step."""
        logits, _, _ = self._forward(inputs, None, train, mask, unit_mask, logit_bias, False, resets)
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


# The experiment-config fields that build a FolkRNN: every field but the vocabulary, which is
# fixed by ``music.vocab``. The defaults are the FolkRNN fields' own (folk-rnn v2).
MODEL_FIELDS = tuple(
    field.name for field in dataclasses.fields(FolkRNN) if field.init and field.name not in ("vocab_size", "parent", "name")
)


def model_defaults() -> dict[str, Any]:
    """The model fields of an experiment config at their defaults: folk-rnn v2 (3 x 512 LSTM,
    dropout 0.5)."""
    return {field.name: field.default for field in dataclasses.fields(FolkRNN) if field.name in MODEL_FIELDS}


def model_from_config(config) -> FolkRNN:
    """Build the model from a (flat) experiment config; a model field the config lacks (an
    older run's ``config.json``) takes the FolkRNN default. The LSTM schedule is resolved
    here, before any tracing: the model's ``lstm_schedule`` is never "auto"."""
    fields = {**model_defaults(), **{name: config[name] for name in MODEL_FIELDS if name in config}}
    fields["lstm_schedule"] = resolve_schedule(fields["lstm_schedule"])
    return FolkRNN(vocab_size=vocab.VOCAB_SIZE, **fields)


def with_resolved_schedule(config):
    """A copy of ``config`` whose ``lstm_schedule`` names the schedule that runs on this
    machine ("layerwise" or "wavefront", never "auto"), so that a run's ``config.json``
    records which one trained it."""
    resolved = config.copy_and_resolve_references()
    with resolved.unlocked():
        resolved.lstm_schedule = model_from_config(config).lstm_schedule
    return resolved


def init_params(model: FolkRNN, rng: Array) -> Any:
    """Fresh parameters of ``model`` from ``rng`` (their shapes do not depend on the input's)."""
    return model.init(rng, jnp.zeros((1, 2), jnp.int32))["params"]


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
