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
import math
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


def _multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2 moved it; the name depends on the version
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # numpy 1.x
    return multiarray


_MULTIARRAY = _multiarray()
# Plain numbers only: an object, void, string or datetime dtype lets raw bytes from the file be
# read as pointers or structured fields.
_NUMERIC_KINDS = "biufc"
_MAX_NDIM = 8


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` in the pickle: only ``_reconstruct`` may use it (calling
    ``numpy.ndarray`` itself would allocate any shape the file asks for)."""


_NDARRAY = _NdarrayMarker()


class _DtypeSpec:
    """A dtype the pickle asks for, held until its state is checked.

    A real ``numpy.dtype`` here would let BUILD run ``dtype.__setstate__`` with the file's
    fields and flags (an object field without the object flag, read later as a pointer)."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False):
        if not isinstance(name, str) or len(name) > 8:
            raise UnsafePickleError(f"refusing a dtype named {str(name)[:40]!r}")
        try:
            base = np.dtype(name)
        except TypeError:
            raise UnsafePickleError(f"refusing the unknown dtype {name!r}") from None
        if base.kind not in _NUMERIC_KINDS or base.fields is not None or base.subdtype is not None:
            raise UnsafePickleError(f"refusing the dtype {name!r}: only plain numbers are read")
        self.base = base
        self.dtype = base

    def set_state(self, state: Any) -> None:
        """Checks BUILD's state against a fresh dtype's and applies only its byte order."""
        fresh = self.base.__reduce__()[2]  # (3, endian, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise UnsafePickleError("refusing a dtype state that is not numpy's version 3 or 4")
        endian = state[1]
        if endian not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"refusing the dtype byte order {str(endian)[:10]!r}")
        if tuple(state[2:8]) != tuple(fresh[2:8]) or (len(state) == 9 and state[8] is not None):
            raise UnsafePickleError(
                f"refusing a {self.base.name} dtype whose state sets fields, sizes or flags "
                "that a plain dtype does not have"
            )
        self.dtype = self.base if endian in ("|", "=") else self.base.newbyteorder(endian)


def _dtype_spec(name: Any, align: Any = False, copy: Any = False) -> _DtypeSpec:
    return _DtypeSpec(name, align, copy)


def _resolve_dtype(spec: Any) -> np.dtype:
    if not isinstance(spec, _DtypeSpec):
        raise UnsafePickleError(f"refusing an array or scalar whose dtype is a {type(spec).__name__}")
    return spec.dtype


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refusing _reconstruct of a {type(subtype).__name__}")
    return _MULTIARRAY._reconstruct(np.ndarray, (0,), b"b")  # its state comes by BUILD, checked


def _scalar(spec: Any, data: Any = None) -> Any:
    dtype = _resolve_dtype(spec)
    if not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f"refusing a {dtype.name} scalar whose data is not {dtype.itemsize} bytes")
    return _MULTIARRAY.scalar(dtype, data)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = _scalar
    allowed[("numpy", "ndarray")] = _NDARRAY
    allowed[("numpy", "dtype")] = _dtype_spec
    # Python 3 writes bytes in protocol 2 as _codecs.encode(text, 'latin1'): allow that one
    # encoding only, through a wrapper (a codec name can import modules).
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS = _numpy_globals()


def _array_state(state: Any) -> tuple:
    """ndarray's BUILD state with the dtype checked and resolved (numpy checks the rest:
    the data's length against shape and itemsize)."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise UnsafePickleError("refusing an array state that is not numpy's (version, shape, dtype, order, data)")
    version, shape, spec, is_fortran, data = state if len(state) == 5 else (1, *state)
    dtype = _resolve_dtype(spec)
    if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise UnsafePickleError(f"refusing an array of shape {str(shape)[:60]}")
    if not isinstance(data, (bytes, str)) or not isinstance(is_fortran, (bool, int)):
        raise UnsafePickleError("refusing an array whose data is not a byte string")
    if len(data) != int(np.prod(shape, dtype=np.float64)) * dtype.itemsize:
        raise UnsafePickleError(
            f"refusing an array of shape {shape} with {len(data)} bytes of {dtype.name} data"
        )
    return (version, shape, dtype, bool(is_fortran), data)


class _RestrictedUnpickler(pickle._Unpickler):
    """Resolves only numpy's array/dtype/scalar reconstructors, through checking wrappers
    (and latin-1 bytes); plain containers and numbers need no globals. Anything else
    (``os.system``, ``builtins.eval``, ...) is refused. The pure-Python unpickler, so that
    BUILD can be checked: only arrays and dtypes take a state, and only after its check."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._built: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load: the pickle asks for the global "
                f"{module}.{name}, which is not a numpy array part (only numpy arrays, numbers, "
                "strings, lists, tuples and dicts are accepted; nothing was executed)"
            ) from None

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, _DtypeSpec):
            inst.set_state(state)
        elif type(inst) is np.ndarray and id(inst) not in self._built:
            inst.__setstate__(_array_state(state))
            self._built.add(id(inst))
        else:
            raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build


def _read_pickle(path: str) -> Any:
    if not os.path.exists(path):
        raise MissingFileError(f"folk-rnn checkpoint not found: {path}")
    if os.path.isdir(path):
        raise LegacyFormatError(f"{path}: is a directory, not a folk-rnn pickle")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), path).load()
    except UnsafePickleError as error:
        message = str(error)
        if not message.startswith(path):
            message = f"{path}: {message} (nothing was executed)"
        raise UnsafePickleError(message) from None
    except EOFError:
        raise LegacyFormatError(f"{path}: truncated or empty pickle ({len(raw)} bytes)") from None
    except Exception as error:  # malformed opcodes, bad array state, RecursionError, ...
        raise LegacyFormatError(
            f"{path}: not a readable folk-rnn pickle ({type(error).__name__}: {str(error)[:200]})"
        ) from None


# Bounds on the metadata (configuration, losses, ...) checked before anything formats it:
# a few shared lists nested in each other print as gigabytes.
_MAX_METADATA_ITEMS = 2_000_000
_MAX_METADATA_DEPTH = 20
_MAX_METADATA_CHARS = 10_000_000
_PLAIN_SCALARS = (str, bytes, int, float, bool, type(None), np.generic)


def _check_metadata(path: str, obj: Mapping) -> None:
    """Walks every metadata value without recursion, counting shared values each time they
    are reached, and refuses anything too big, too deep or not plain data."""
    stack: list[tuple[str, Any, int]] = [(k, obj[k], 0) for k in METADATA_KEYS]
    items = chars = 0
    while stack:
        where, value, depth = stack.pop()
        items += 1
        if items > _MAX_METADATA_ITEMS or depth > _MAX_METADATA_DEPTH:
            raise LegacyFormatError(
                f"{path}: metadata {where} is too large or too deeply nested to be a folk-rnn "
                f"checkpoint's (more than {_MAX_METADATA_ITEMS} items or {_MAX_METADATA_DEPTH} levels)"
            )
        if isinstance(value, (str, bytes)):
            chars += len(value)
            if chars > _MAX_METADATA_CHARS:
                raise LegacyFormatError(f"{path}: metadata {where} holds more than {_MAX_METADATA_CHARS} characters")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int)):
                    raise LegacyFormatError(f"{path}: metadata {where} has a {type(key).__name__} key")
                stack.append((where, key, depth + 1))
                stack.append((where, item, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((where, item, depth + 1) for item in value)
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in _NUMERIC_KINDS:
                raise LegacyFormatError(f"{path}: metadata {where} holds a {value.dtype} array")
            items += value.size
        elif not isinstance(value, _PLAIN_SCALARS):
            raise LegacyFormatError(f"{path}: metadata {where} holds a {type(value).__name__}, not plain data")

    def count(key: str, integral: bool) -> None:
        value = obj[key]
        if value is None:
            return
        ok = isinstance(value, (int, np.integer)) if integral else isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, (bool, np.bool_)) or not ok or not math.isfinite(value) or not 0 <= value < 2**31:
            raise LegacyFormatError(
                f"{path}: {key} is {str(value)[:40]!r}; expected a "
                f"{'whole' if integral else 'finite'} number from 0 to 2**31"
            )

    count("iters_since_start", integral=True)
    count("epoch_since_start", integral=False)
    count("learning_rate", integral=False)


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
    _check_weights(path, index, what, value)
    return value


def _check_weights(path: str, index: int, what: str, value: np.ndarray) -> None:
    # float16 would lose the trained values, complex and bool are not weights, and a NaN or
    # inf weight samples one token forever.
    if value.dtype.kind != "f" or value.dtype.itemsize not in (4, 8) or value.dtype.fields is not None:
        raise LegacyFormatError(
            f"{path}: param_values[{index}] ({what}) is {value.dtype}, expected float32 or float64"
        )
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    if bad:
        raise LegacyFormatError(
            f"{path}: param_values[{index}] ({what}) holds {bad} NaN or infinite value(s)"
        )


def _token_permutation(path: str, token2idx: Any, vocab_size: int) -> np.ndarray:
    """``perm[our_id] = file_index``."""
    if not isinstance(token2idx, Mapping):
        raise LegacyFormatError(f"{path}: token2idx is a {type(token2idx).__name__}, not a dict")
    if len(token2idx) > 10 * vocab.VOCAB_SIZE or not all(isinstance(t, str) for t in token2idx):
        raise LegacyFormatError(
            f"{path}: token2idx must map at most {10 * vocab.VOCAB_SIZE} token strings to indices"
        )
    for token, index in token2idx.items():
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise LegacyFormatError(
                f"{path}: token2idx[{token[:20]!r}] is {str(index)[:40]!r}, not a whole number"
            )
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
    indices = [int(token2idx[t]) for t in vocab.TOKENS]
    if sorted(indices) != list(range(vocab_size)) or vocab_size != vocab.VOCAB_SIZE:
        raise LegacyFormatError(
            f"{path}: token2idx indices are not a permutation of 0..{vocab_size - 1}"
        )
    return np.asarray(indices)


def load_folkrnn_pickle(path: str) -> LegacyCheckpoint:
    """Read an original folk-rnn checkpoint into our parameter layout, safely."""
    obj = _read_pickle(path)
    if not isinstance(obj, dict):
        raise LegacyFormatError(f"{path}: expected a dict at the top level, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise LegacyFormatError(f"{path}: missing key(s) {', '.join(missing)}")
    if not all(isinstance(k, str) for k in obj) or len(obj) > 100:
        raise LegacyFormatError(f"{path}: the top-level dict's keys are not the checkpoint's names")
    _check_metadata(path, obj)
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
    if vocab_size != vocab.VOCAB_SIZE:
        raise LegacyFormatError(
            f"{path}: vocabulary of {vocab_size} tokens, expected {vocab.VOCAB_SIZE}"
        )
    _check_array(path, 0, "embedding", embedding, (vocab_size, vocab_size))
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
