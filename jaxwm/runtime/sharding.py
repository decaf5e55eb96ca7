"""Device mesh and shardings: one mesh axis `data`; batches and replay split on it, params replicated.

Meshes use `AxisType.Auto` (GSPMD propagation under `jax.jit`), so code written for one device runs
unchanged on a mesh; `jax.make_mesh` alone defaults to `Explicit` axes in jax 0.12. Per-device code
uses `jax.shard_map` (top-level in jax 0.12). `jax.pmap` is never used.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis `data` over the first `num_devices` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(
            f"num_devices={num_devices} must be in [1, {len(devices)}] (available devices)."
        )
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def num_shards(mesh: Mesh | None) -> int:
    """Number of devices along `data` (1 without a mesh)."""
    return 1 if mesh is None else mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device."""
    return NamedSharding(mesh, P())


def data_spec(axis: int) -> P:
    """PartitionSpec splitting array axis `axis` (>= 0) over `data`; other axes replicated."""
    if axis < 0:
        raise ValueError(f"axis={axis} must be >= 0 (the array rank is not known here).")
    return P(*([None] * axis), DATA_AXIS)


def data_sharding(mesh: Mesh, axis: int) -> NamedSharding:
    """NamedSharding splitting array axis `axis` over `data`, e.g. axis=1 for time-major [T, B, ...]."""
    return NamedSharding(mesh, data_spec(axis))


def shard_batch(tree: Any, mesh: Mesh, axis: int = 0) -> Any:
    """device_put every leaf split on `axis` over `data`; each leaf's shape[axis] must divide evenly."""
    n = num_shards(mesh)

    def put(path, x):
        shape = np.shape(x)
        if len(shape) <= axis or shape[axis] % n:
            raise ValueError(
                f"leaf {jax.tree_util.keystr(path)} with shape {shape}: axis {axis} must exist "
                f"and be divisible by the {n} devices of mesh axis '{DATA_AXIS}'."
            )
        return jax.device_put(x, data_sharding(mesh, axis))

    return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """device_put every leaf fully replicated on `mesh` (parameters, optimizer states, keys)."""
    return jax.device_put(tree, replicated(mesh))
