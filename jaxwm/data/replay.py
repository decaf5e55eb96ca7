"""Fixed-capacity replay ring buffer kept on device, optionally sharded over the mesh axis `data`.

Storage is time-major per env: every field is `[capacity, num_envs, ...]` and one batched env step
`[num_envs, ...]` is written at slot `pos`. Sampling returns `seq_len` consecutive steps of one env,
`[seq_len, batch_size, ...]`, never touching unwritten slots and never crossing the write head (so a
sequence never jumps from the newest step to the oldest one). Sequences may cross episode
boundaries; `is_first` marks resets and the model handles them.

With a mesh, the env axis is split over `data`, and `sample` runs device-locally under
`jax.shard_map`: each device draws `batch_size / num_devices` sequences from its own envs, so samples
come out split on the batch axis with no cross-device traffic.

Typical host loop::

  add = jax.jit(replay.add, donate_argnums=0)
  state = replay.init(spec, capacity, num_envs, mesh)
  state = add(state, step)                            # step: {name: [num_envs, ...]}
  batch = replay.sample(state, key, batch_size, seq_len)  # {name: [seq_len, batch_size, ...]}

A ReplayState is a pytree, so it checkpoints with `jaxwm.runtime.checkpoint.Checkpointer` as part of
any state tree; `abstract(...)` builds a restore target without allocating the buffer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxwm.runtime import sharding as shd

Spec = Mapping[str, tuple[tuple[int, ...], Any]]  # name -> (per-env step shape, dtype)
_STORAGE_SPEC = P(None, shd.DATA_AXIS)  # [capacity, num_envs, ...] split on num_envs


@flax.struct.dataclass
class ReplayState:
    """Ring buffer state.

    data: name -> [capacity, num_envs, ...] (dtypes as in the spec; uint8 images stay uint8).
    pos: int32 [], next slot to write (shared by all envs: one batched env step per `add`).
    count: int32 [], number of valid steps per env: steps written so far, saturating at capacity.
    mesh: static; when set, `data` is split on num_envs over `data` and pos/count are replicated.
    """

    data: dict[str, jax.Array]
    pos: jax.Array
    count: jax.Array
    mesh: Mesh | None = flax.struct.field(pytree_node=False, default=None)

    @property
    def capacity(self) -> int:
        return next(iter(self.data.values())).shape[0]

    @property
    def num_envs(self) -> int:
        return next(iter(self.data.values())).shape[1]


def env_spec(env, label_keys=()) -> dict:
    """The replay fields of a `jaxwm.envs` env: its observations, the action (int32 [] if
    discrete, else float32 [A]), reward, the episode flags and float32 task labels."""
    spec = {k: (tuple(s.shape), np.dtype(s.dtype)) for k, s in env.obs_space.items()}
    act = env.act_space
    spec["action"] = ((), np.int32) if act.discrete else ((act.size,), np.float32)
    spec["reward"] = ((), np.float32)
    for k in ("is_first", "is_last", "is_terminal"):
        spec[k] = ((), np.bool_)
    for k in label_keys:
        spec[k] = ((), np.float32)
    return spec


def env_row(spec, out: dict, action) -> dict:
    """The replay row of one batched env step for `add`: the fields of `spec` from env output
    `out` (o_t, flags, labels; diagnostic keys like 'agent_pos' are dropped) and the action
    taken after o_t."""
    return {k: (action if k == "action" else out[k]) for k in spec}


def _check_layout(spec: Spec, capacity: int, num_envs: int, mesh: Mesh | None) -> None:
    if not spec:
        raise ValueError("spec must name at least one field: {name: (shape, dtype)}.")
    if capacity < 1:
        raise ValueError(f"capacity={capacity} must be >= 1.")
    if num_envs < 1:
        raise ValueError(f"num_envs={num_envs} must be >= 1.")
    if num_envs % shd.num_shards(mesh):
        raise ValueError(
            f"num_envs={num_envs} must be divisible by the {shd.num_shards(mesh)} devices "
            f"of mesh axis '{shd.DATA_AXIS}'."
        )


def _shardings(mesh: Mesh | None, spec: Spec):
    """Shardings of (data, pos, count): env split on `data`, scalars replicated; one device
    without a mesh."""
    if mesh is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return {k: one for k in spec}, one, one
    rep = shd.replicated(mesh)
    return {k: NamedSharding(mesh, _STORAGE_SPEC) for k in spec}, rep, rep


def abstract(spec: Spec, capacity: int, num_envs: int, mesh: Mesh | None = None) -> ReplayState:
    """ReplayState of `jax.ShapeDtypeStruct`s (with shardings): a restore target that allocates
    nothing."""
    _check_layout(spec, capacity, num_envs, mesh)
    data_sh, pos_sh, count_sh = _shardings(mesh, spec)
    data = {
        k: jax.ShapeDtypeStruct((capacity, num_envs, *shape), jnp.dtype(dtype), sharding=data_sh[k])
        for k, (shape, dtype) in spec.items()
    }
    return ReplayState(
        data=data,
        pos=jax.ShapeDtypeStruct((), jnp.int32, sharding=pos_sh),
        count=jax.ShapeDtypeStruct((), jnp.int32, sharding=count_sh),
        mesh=mesh,
    )


def init(spec: Spec, capacity: int, num_envs: int, mesh: Mesh | None = None) -> ReplayState:
    """Zero-filled buffer: data[name] is [capacity, num_envs, *shape] of `dtype`; pos = count = 0.

    With `mesh`, storage is created directly in its sharded layout (split on num_envs over `data`).
    """
    _check_layout(spec, capacity, num_envs, mesh)
    shapes = {
        k: ((capacity, num_envs, *shape), jnp.dtype(dtype)) for k, (shape, dtype) in spec.items()
    }

    def zeros():
        data = {k: jnp.zeros(s, d) for k, (s, d) in shapes.items()}
        return data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)

    shardings = None if mesh is None else _shardings(mesh, spec)
    data, pos, count = jax.jit(zeros, out_shardings=shardings)()
    return ReplayState(data=data, pos=pos, count=count, mesh=mesh)


def add(state: ReplayState, step: Mapping[str, jax.Array]) -> ReplayState:
    """Writes one batched env step, step[name]: [num_envs, *shape], at slot `pos`; pure and
    jittable.

    Overwrites the oldest step once full. Wrap as `jax.jit(add, donate_argnums=0)` to update in
    place.
    Keys, shapes and dtypes are checked at trace time.
    """
    if not isinstance(step, Mapping) or set(step) != set(state.data):
        got = sorted(step) if isinstance(step, Mapping) else type(step).__name__
        raise ValueError(f"step must be a dict with keys {sorted(state.data)}; got {got}.")
    data = {}
    for k, buf in state.data.items():
        x = jnp.asarray(step[k])
        if x.shape != buf.shape[1:]:
            raise ValueError(
                f"step['{k}'] has shape {x.shape}; expected {buf.shape[1:]} ([num_envs, ...])."
            )
        if x.dtype != buf.dtype:
            raise TypeError(f"step['{k}'] has dtype {x.dtype}; expected {buf.dtype}.")
        new = jax.lax.dynamic_update_index_in_dim(buf, x, state.pos, axis=0)
        if state.mesh is not None:  # keep the env split so donated buffers are reused in place
            new = jax.lax.with_sharding_constraint(new, NamedSharding(state.mesh, _STORAGE_SPEC))
        data[k] = new
    capacity = state.capacity
    return state.replace(
        data=data,
        pos=(state.pos + 1) % capacity,
        count=jnp.minimum(state.count + 1, capacity).astype(jnp.int32),
    )


def size(state: ReplayState) -> jax.Array:
    """int32 []: number of valid steps stored per env (saturates at capacity)."""
    return state.count


def num_valid_starts(state: ReplayState, seq_len: int) -> jax.Array:
    """int32 []: number of (env, start) pairs a sequence of `seq_len` can be sampled from."""
    return state.num_envs * jnp.maximum(state.count - seq_len + 1, 0)


def _sample_local(data, pos, count, key, batch_size: int, seq_len: int):
    """Samples [seq_len, batch_size, ...] from local storage [capacity, envs, ...]."""
    capacity, num_envs = next(iter(data.values())).shape[:2]
    key_env, key_start = jax.random.split(key)
    env = jax.random.randint(key_env, (batch_size,), 0, num_envs)
    # All envs hold `count` valid steps, the oldest at (pos - count) mod capacity; offsets in
    # [0, count - seq_len] keep whole sequences inside the written window.
    offset = jax.random.randint(key_start, (batch_size,), 0, jnp.maximum(count - seq_len + 1, 1))
    oldest = (pos - count) % capacity
    t = (
        oldest + offset[None, :] + jnp.arange(seq_len)[:, None]
    ) % capacity  # [seq_len, batch_size]
    return {k: v[t, env[None, :]] for k, v in data.items()}


@functools.partial(jax.jit, static_argnames=("batch_size", "seq_len"))
def _sample(state: ReplayState, key: jax.Array, batch_size: int, seq_len: int):
    if state.mesh is None:
        return _sample_local(state.data, state.pos, state.count, key, batch_size, seq_len)
    n = shd.num_shards(state.mesh)

    def local(data, pos, count, key):
        key = jax.random.fold_in(
            key, jax.lax.axis_index(shd.DATA_AXIS)
        )  # distinct draws per device
        return _sample_local(data, pos, count, key, batch_size // n, seq_len)

    data_specs = {k: _STORAGE_SPEC for k in state.data}
    return jax.shard_map(
        local,
        mesh=state.mesh,
        in_specs=(data_specs, P(), P(), P()),
        out_specs={k: P(None, shd.DATA_AXIS) for k in state.data},
    )(state.data, state.pos, state.count, key)


def sample(
    state: ReplayState, key: jax.Array, batch_size: int, seq_len: int
) -> dict[str, jax.Array]:
    """Uniform sequences: name -> [seq_len, batch_size, ...]; jittable (batch_size, seq_len static).

    Each sequence is `seq_len` consecutive steps of one env, its (env, start) drawn uniformly among
    the `num_valid_starts`. With a mesh, every device draws batch_size / num_devices sequences from its
    own envs and the result is split on the batch axis (axis 1) over `data`.
    Requires count >= seq_len: checked when `state.count` is concrete; under an outer jit the caller
    must ensure it (otherwise unwritten zero slots may be returned).
    """
    check_sample(state, batch_size, seq_len)
    if state.mesh is not None and not isinstance(key, jax.core.Tracer):
        key = jax.device_put(key, shd.replicated(state.mesh))  # e.g. a key restored onto one device
    return _sample(state, key, batch_size=batch_size, seq_len=seq_len)


def check_sample(state: ReplayState, batch_size: int, seq_len: int) -> None:
    """Raises ValueError unless sequences of seq_len can be drawn batch_size at a time (also for
    `prioritized.sample`)."""
    if not 1 <= seq_len <= state.capacity:
        raise ValueError(f"seq_len={seq_len} must be in [1, capacity={state.capacity}].")
    n = shd.num_shards(state.mesh)
    if batch_size < 1 or batch_size % n:
        raise ValueError(
            f"batch_size={batch_size} must be a positive multiple of the {n} devices of "
            f"mesh axis '{shd.DATA_AXIS}'."
        )
    if not isinstance(state.count, jax.core.Tracer) and int(state.count) < seq_len:
        raise ValueError(
            f"replay holds {int(state.count)} steps per env; sampling seq_len={seq_len} "
            f"needs at least seq_len steps."
        )


def to_numpy(state: ReplayState) -> dict[str, Any]:
    """Host copy {'data': {name: np [capacity, num_envs, ...]}, 'pos': int, 'count': int}."""
    return {
        "data": {k: np.asarray(v) for k, v in state.data.items()},
        "pos": int(state.pos),
        "count": int(state.count),
    }


def from_numpy(arrays: Mapping[str, Any], mesh: Mesh | None = None) -> ReplayState:
    """Inverse of `to_numpy`, placing storage on `mesh` (split on num_envs) when given."""
    data = arrays["data"]
    capacity, num_envs = next(iter(data.values())).shape[:2]
    spec = {k: (v.shape[2:], v.dtype) for k, v in data.items()}
    for k, v in data.items():
        if v.shape[:2] != (capacity, num_envs):
            raise ValueError(
                f"data['{k}'] has shape {v.shape}; expected [{capacity}, {num_envs}, ...]."
            )
    pos, count = int(arrays["pos"]), int(arrays["count"])
    if not (0 <= pos < capacity and 0 <= count <= capacity and (count == capacity or pos == count)):
        raise ValueError(
            f"pos={pos}, count={count}: need 0 <= pos < capacity={capacity}, "
            f"0 <= count <= capacity, and pos == count until the buffer is full."
        )
    target = abstract(spec, capacity, num_envs, mesh)
    put = lambda x, t: jax.device_put(np.asarray(x, t.dtype), t.sharding)
    return ReplayState(
        data={k: put(v, target.data[k]) for k, v in data.items()},
        pos=put(pos, target.pos),
        count=put(count, target.count),
        mesh=mesh,
    )
