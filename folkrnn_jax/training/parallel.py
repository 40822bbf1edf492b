"""Data parallelism: a device mesh with a 'data' axis, batch sharding, multi-host start-up.

The train step runs over a ``jax.sharding.Mesh`` of all devices (of every process, on a
multi-host run): each batch is split along its first axis over the 'data' axis, parameters
and optimiser state are replicated, and XLA inserts the gradient all-reduce. Every process
computes the same global batch (batches are a pure function of seed and epoch) and
contributes the rows that belong to its own devices.

Multi-host start-up: set ``config.coordinator_address`` (``host:port`` of process 0),
``config.num_processes`` and ``config.process_id`` (or leave the latter two at -1 where the
cluster environment, e.g. SLURM or Cloud TPU, lets ``jax.distributed.initialize`` detect
them) before any other JAX call.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from folkrnn_jax.errors import InputError

DATA_AXIS = "data"


def maybe_initialize_distributed(config: Any) -> bool:
    """Call ``jax.distributed.initialize`` when the config names a coordinator; returns whether
    it did. Must run before anything else touches the JAX backend."""
    address = config.get("coordinator_address", "") if hasattr(config, "get") else ""
    if not address:
        return False
    num_processes = config.get("num_processes", -1)
    process_id = config.get("process_id", -1)
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=None if num_processes < 0 else num_processes,
        process_id=None if process_id < 0 else process_id,
    )
    return True


def make_mesh(mesh_shape: int | Sequence[int] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis 'data' over ``mesh_shape`` devices (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    if mesh_shape in (None, 0, (), []):
        size = len(devices)
    else:
        shape = (mesh_shape,) if isinstance(mesh_shape, int) else tuple(mesh_shape)
        if len(shape) != 1:
            raise InputError(f"mesh_shape {tuple(shape)}: only a 1-D data-parallel mesh is supported")
        size = int(shape[0])
        if size < 1 or size > len(devices):
            raise InputError(f"mesh_shape {size} needs 1 to {len(devices)} devices; {len(devices)} available")
    return Mesh(np.asarray(devices[:size]), (DATA_AXIS,))


def mesh_from_config(config: Any) -> Mesh | None:
    """The mesh to train over: ``config.mesh_shape`` devices if set (>0), else all devices when
    there are several, else None (plain single-device jit)."""
    shape = config.get("mesh_shape", 0) if hasattr(config, "get") else 0
    if shape:
        return make_mesh(shape)
    if jax.device_count() > 1:
        return make_mesh()
    return None


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
    if mesh is None:
        return
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        raise InputError(
            f"batch_size {batch_size} does not divide evenly over the {n} devices of the 'data' "
            f"mesh axis; use a multiple of {n} (or set --config.mesh_shape)"
        )


def shard_batch(batch: Any, mesh: Mesh | None) -> Any:
    """Place a global host batch (a pytree of numpy arrays, batch axis first, e.g. a
    ``Batch``) on the mesh, split along 'data'. On a multi-host run each process supplies only
    its own devices' rows."""
    if mesh is None:
        return batch
    sharding = data_sharding(mesh)

    def place(value):
        value = np.asarray(value)
        check_batch_size(value.shape[0], mesh)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree_util.tree_map(place, batch)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Copy every array of ``tree`` onto all devices of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, replicated(mesh))
