"""A learner over several hosts: one JAX process per host (`jax.distributed`), the `data` mesh
axis over every process's devices, each process feeding its shard of the global batch.

  distributed.initialize(config.distributed)       # before any other JAX call
  mesh = sharding.make_mesh()                       # all devices of all processes
  state = distributed.replicate(state, mesh)        # the same values in every process
  batch = distributed.global_batch(local_batch, mesh, axis=1)   # [T, B_local] -> [T, B]
  state, metrics = jax.jit(train_step)(state, batch, key)       # every process, in lockstep

Every process must make the same jitted calls in the same order (they are collectives), and
seed their parameters alike. On CPU the collectives run over Gloo (jax's default for CPU
processes). Randomness inside the step does not depend on the sharding (jax's partitionable
threefry), so a step over P processes equals the single-process step on the same global batch.
"""
import jax
import ml_collections
import numpy as np

from jaxwm.runtime import sharding


def distributed_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.coordinator = ""         # 'host:port' of process 0 ('' with num_processes 1)
    c.num_processes = 1        # processes (hosts) of the learner
    c.process_id = 0           # this process, in [0, num_processes)
    return c


def check_distributed_config(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first bad field."""
    if int(c.num_processes) < 1:
        raise ValueError(f"distributed.num_processes={c.num_processes!r} must be an int >= 1")
    if not 0 <= int(c.process_id) < c.num_processes:
        raise ValueError(f"distributed.process_id={c.process_id!r} must be in [0, "
                         f"num_processes={c.num_processes})")
    if c.num_processes > 1 and ":" not in c.coordinator:
        raise ValueError(f"distributed.coordinator={c.coordinator!r} must be 'host:port' of "
                         f"process 0 when num_processes > 1")


def initialize(c: ml_collections.ConfigDict) -> None:
    """Join the processes of `c` (nothing for one process); call before any other JAX call."""
    check_distributed_config(c)
    if c.num_processes > 1:
        jax.distributed.initialize(coordinator_address=c.coordinator,
                                   num_processes=c.num_processes, process_id=c.process_id)


def global_batch(local, mesh, axis: int):
    """Global arrays split on `axis` over the mesh's `data` axis from this process's shard of
    every leaf (shape[axis] = global size / process count; the processes' shards in process
    order make the global batch)."""
    spec = sharding.data_sharding(mesh, axis)

    def make(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[axis] *= jax.process_count()
        return jax.make_array_from_process_local_data(spec, x, tuple(shape))

    return jax.tree.map(make, local)


def replicate(tree, mesh):
    """Every leaf on every device of `mesh`, from values that are equal in all processes
    (numeric arrays: raw uint32 PRNG keys, not typed key arrays)."""
    return jax.device_put(jax.device_get(tree), sharding.replicated(mesh))


def local_value(x) -> np.ndarray:
    """`x` as numpy in this process: a global array spanning other processes (replicated) is
    read from this process's first device; any other array or number is converted whole."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)
