"""Reading and writing the original folk-rnn checkpoints (``folkrnn_v2.pkl``).

The original (Theano + Lasagne, Python 2) saved a pickle holding a dict with keys
``configuration, experiment_id, epoch_since_start, iters_since_start, losses_train,
losses_eval_valid, learning_rate, token2idx, param_values``. ``param_values`` is Lasagne's
``get_all_param_values`` list: [0] the VxV identity (one-hot embedding); then for each LSTM
layer j the 14 arrays at 1+14j..14+14j (``PER_LAYER_NAMES``); then the output W [H, V] and
b [V]. Row-vector convention: pre-activation = x @ W_in + h @ W_hid + b.

A pickle can run code when loaded, so these files are read with a restricted unpickler that
resolves only the numpy globals an array needs; any other global is refused before anything
is called.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import struct
from typing import Any, Mapping

import numpy as np

from folkrnn_jax import files
from folkrnn_jax.errors import InputError, MissingFileError
from folkrnn_jax.music import vocab

PER_LAYER_NAMES = (
    "W_in_to_ingate", "W_hid_to_ingate", "b_ingate",
    "W_in_to_forgetgate", "W_hid_to_forgetgate", "b_forgetgate",
    "W_in_to_cell", "W_hid_to_cell", "b_cell",
    "W_in_to_outgate", "W_hid_to_outgate", "b_outgate",
    "cell_init", "hid_init",
)
GATES = ("ingate", "forgetgate", "cell", "outgate")  # our fused 4H order: i, f, c(g), o
REQUIRED_KEYS = (
    "configuration", "experiment_id", "epoch_since_start", "iters_since_start",
    "losses_train", "losses_eval_valid", "learning_rate", "token2idx", "param_values",
)
METADATA_KEYS = tuple(k for k in REQUIRED_KEYS if k not in ("token2idx", "param_values"))


class LegacyFormatError(InputError):
    """An original folk-rnn checkpoint that cannot be read; the message names the file."""


class UnsafePickleError(LegacyFormatError):
    """A pickle that asks for a global outside the numpy-array allow-list."""


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray  # numpy >= 2 moved it; the name depends on the version
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # numpy 1.x
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 3 writes bytes in protocol 2 as _codecs.encode(text, 'latin1'): allow that one
    # encoding only, through a wrapper (a codec name can import modules).
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS = _numpy_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array/dtype/scalar reconstructors (and latin-1 bytes); plain
    containers and numbers need no globals. Anything else (``os.system``, ``builtins.eval``, ...) is refused."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load: the pickle asks for the global "
                f"{module}.{name}, which is not a numpy array part (only numpy arrays, numbers, "
                "strings, lists, tuples and dicts are accepted; nothing was executed)"
            ) from None


def _read_pickle(path: str) -> Any:
    if not os.path.exists(path):
        raise MissingFileError(f"folk-rnn checkpoint not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), path).load()
    except UnsafePickleError:
        raise
    except EOFError:
        raise LegacyFormatError(f"{path}: truncated or empty pickle ({len(raw)} bytes)") from None
    except Exception as error:  # malformed opcodes, bad array state, ...
        raise LegacyFormatError(
            f"{path}: not a readable folk-rnn pickle ({type(error).__name__}: {error})"
        ) from None


# ---------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass
class LegacyCheckpoint:
    """An original checkpoint mapped into ``FolkRNN(learn_initial_state=True)`` parameters.

    ``params`` are in ``vocab.TOKENS`` order; ``token2idx`` is the file's own order.
    """

    params: dict
    num_layers: int
    hidden_size: int
    vocab_size: int
    token2idx: dict
    metadata: dict  # configuration, experiment_id, epochs, iterations, losses, learning_rate


def _check_array(path: str, index: int, what: str, value: Any, shape: tuple) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise LegacyFormatError(
            f"{path}: param_values[{index}] ({what}) is a {type(value).__name__}, not an array"
        )
    if value.shape != shape:
        raise LegacyFormatError(
            f"{path}: param_values[{index}] ({what}) has shape {value.shape}, expected {shape}"
        )
    return value


def _token_permutation(path: str, token2idx: Any, vocab_size: int) -> np.ndarray:
    """``perm[our_id] = file_index``."""
    if not isinstance(token2idx, Mapping):
        raise LegacyFormatError(f"{path}: token2idx is a {type(token2idx).__name__}, not a dict")
    unknown = sorted(str(t) for t in token2idx if t not in vocab.TOKEN_TO_ID)
    if unknown:
        raise LegacyFormatError(
            f"{path}: token2idx holds {len(unknown)} token(s) not in the 137-token v2 "
            f"vocabulary: {' '.join(repr(t) for t in unknown[:10])}"
        )
    missing = [t for t in vocab.TOKENS if t not in token2idx]
    if missing:
        raise LegacyFormatError(
            f"{path}: token2idx lacks {len(missing)} v2 token(s): "
            f"{' '.join(repr(t) for t in missing[:10])}"
        )
    perm = np.asarray([int(token2idx[t]) for t in vocab.TOKENS])
    if sorted(perm.tolist()) != list(range(vocab_size)) or vocab_size != vocab.VOCAB_SIZE:
        raise LegacyFormatError(
            f"{path}: token2idx indices are not a permutation of 0..{vocab_size - 1}"
        )
    return perm


def load_folkrnn_pickle(path: str) -> LegacyCheckpoint:
    """Read an original folk-rnn checkpoint into our parameter layout, safely."""
    obj = _read_pickle(path)
    if not isinstance(obj, dict):
        raise LegacyFormatError(f"{path}: expected a dict at the top level, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise LegacyFormatError(f"{path}: missing key(s) {', '.join(missing)}")
    values = obj["param_values"]
    if not isinstance(values, (list, tuple)):
        raise LegacyFormatError(f"{path}: param_values is a {type(values).__name__}, not a list")
    n = len(values)
    if n < 17 or (n - 3) % len(PER_LAYER_NAMES):
        raise LegacyFormatError(
            f"{path}: param_values holds {n} arrays; expected 3 + 14 per LSTM layer (45 for v2)"
        )
    num_layers = (n - 3) // len(PER_LAYER_NAMES)
    embedding = values[0]
    if not isinstance(embedding, np.ndarray) or embedding.ndim != 2:
        raise LegacyFormatError(f"{path}: param_values[0] (embedding) is not a 2-D array")
    vocab_size = embedding.shape[0]
    _check_array(path, 0, "embedding", embedding, (vocab_size, vocab_size))
    if vocab_size != vocab.VOCAB_SIZE:
        raise LegacyFormatError(
            f"{path}: vocabulary of {vocab_size} tokens, expected {vocab.VOCAB_SIZE}"
        )
    hidden = values[2].shape[0] if isinstance(values[2], np.ndarray) and values[2].ndim == 2 else None
    if hidden is None:
        raise LegacyFormatError(f"{path}: param_values[2] (W_hid_to_ingate) is not a 2-D array")
    perm = _token_permutation(path, obj["token2idx"], vocab_size)

    params: dict[str, np.ndarray] = {}
    for j in range(num_layers):
        base = 1 + len(PER_LAYER_NAMES) * j
        n_in = embedding.shape[1] if j == 0 else hidden
        arrays = {}
        for k, name in enumerate(PER_LAYER_NAMES):
            if name.startswith("W_in"):
                shape = (n_in, hidden)
            elif name.startswith("W_hid"):
                shape = (hidden, hidden)
            elif name.startswith("b_"):
                shape = (hidden,)
            else:
                shape = (1, hidden)
            arrays[name] = _check_array(path, base + k, f"layer {j} {name}", values[base + k], shape)
        w_in = np.concatenate([arrays[f"W_in_to_{g}"] for g in GATES], axis=1)
        if j == 0:
            if not np.array_equal(embedding, np.eye(vocab_size, dtype=embedding.dtype)):
                # A general embedding folds exactly into the first layer's input weights.
                w_in = (embedding.astype(np.float64) @ w_in.astype(np.float64)).astype(w_in.dtype)
            w_in = w_in[perm]  # rows into our token order
        params[f"lstm_{j}_w_in"] = w_in
        params[f"lstm_{j}_w_hid"] = np.concatenate([arrays[f"W_hid_to_{g}"] for g in GATES], axis=1)
        params[f"lstm_{j}_bias"] = np.concatenate([arrays[f"b_{g}"] for g in GATES])
        params[f"lstm_{j}_cell_init"] = arrays["cell_init"][0]
        params[f"lstm_{j}_hid_init"] = arrays["hid_init"][0]
    w_out = _check_array(path, n - 2, "output W", values[n - 2], (hidden, vocab_size))
    b_out = _check_array(path, n - 1, "output b", values[n - 1], (vocab_size,))
    params["output"] = {"kernel": w_out[:, perm], "bias": b_out[perm]}
    params = {k: (np.asarray(v, np.float32) if not isinstance(v, dict) else
                  {kk: np.asarray(vv, np.float32) for kk, vv in v.items()})
              for k, v in params.items()}
    metadata = {k: obj[k] for k in METADATA_KEYS}
    return LegacyCheckpoint(
        params=params, num_layers=num_layers, hidden_size=hidden, vocab_size=vocab_size,
        token2idx=dict(obj["token2idx"]), metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------
# Saving


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: text and bytes as Python 2 ``str`` (BINSTRING), numpy
    globals under ``numpy.core``, so ``pickle.load(f, encoding='latin1')`` reads it like an
    original checkpoint (and Python 2 could too)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None)
        name = name or getattr(obj, "__qualname__", None) or obj.__name__
        if module == "numpy._core.multiarray":
            module = "numpy.core.multiarray"
        self.write(pickle.GLOBAL + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")
        self.memoize(obj)


def _plain(value: Any) -> Any:
    """Metadata as plain Python values (numbers, strings, lists, dicts) or numpy arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_param_values(params: Mapping, num_layers: int, token2idx: Mapping[str, int]) -> list[np.ndarray]:
    """Our parameters as the original's 45-array ``param_values`` list, in ``token2idx`` order."""
    perm = _token_permutation("<params>", token2idx, vocab.VOCAB_SIZE)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))  # inverse[file_index] = our_id

    def f32(x: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, np.float32))

    values = [np.eye(vocab.VOCAB_SIZE, dtype=np.float32)]
    for j in range(num_layers):
        w_in = f32(params[f"lstm_{j}_w_in"])
        if j == 0:
            w_in = w_in[inverse]
        w_hid = f32(params[f"lstm_{j}_w_hid"])
        bias = f32(params[f"lstm_{j}_bias"])
        hidden = w_hid.shape[0]
        for k in range(4):
            cols = slice(k * hidden, (k + 1) * hidden)
            values += [f32(w_in[:, cols]), f32(w_hid[:, cols]), f32(bias[cols])]
        values.append(f32(params[f"lstm_{j}_cell_init"]).reshape(1, hidden))
        values.append(f32(params[f"lstm_{j}_hid_init"]).reshape(1, hidden))
    values.append(f32(np.asarray(params["output"]["kernel"])[:, inverse]))
    values.append(f32(np.asarray(params["output"]["bias"])[inverse]))
    return values


def save_folkrnn_pickle(
    path: str,
    params: Mapping,
    num_layers: int | None = None,
    token2idx: Mapping[str, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write ``params`` (a ``FolkRNN(learn_initial_state=True)`` tree) as an original folk-rnn
    checkpoint: protocol 2, the original dict keys, 45 arrays for three layers. ``token2idx``
    defaults to ``vocab.TOKENS`` order; ``metadata`` fills the other keys."""
    if num_layers is None:
        num_layers = sum(1 for k in params if k.endswith("_w_hid"))
    token2idx = dict(token2idx) if token2idx is not None else dict(vocab.TOKEN_TO_ID)
    meta = {
        "configuration": "folkrnn_jax", "experiment_id": "folkrnn_jax", "epoch_since_start": 0,
        "iters_since_start": 0, "losses_train": [], "losses_eval_valid": [], "learning_rate": 0.003,
    }
    meta.update(_plain(dict(metadata or {})))
    obj = {k: meta[k] for k in METADATA_KEYS}
    obj["token2idx"] = {str(k): int(v) for k, v in token2idx.items()}
    obj["param_values"] = to_param_values(params, num_layers, token2idx)
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    files.atomic_write_bytes(path, buffer.getvalue())
