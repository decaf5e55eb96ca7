"""Replay ring buffer: validity of sampled sequences (hypothesis), dtypes, errors, sharded sampling."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.sharding import PartitionSpec as P

from jaxwm.data import replay
from jaxwm.runtime import sharding as shd

# One jitted add for every test: jit caches by shapes, so compiles are shared across examples.
add = jax.jit(replay.add, donate_argnums=0)


def spec(obs_shape=(2,)):
    return {"t": ((), jnp.int32), "env": ((), jnp.int32), "obs": (obs_shape, jnp.uint8)}


def fill(state, num_adds, obs_shape=(2,)):
    """Adds steps t = 1..num_adds (0 marks an unwritten slot); env ids are written alongside."""
    n = state.num_envs
    for t in range(1, num_adds + 1):
        state = add(
            state,
            {
                "t": jnp.full((n,), t, jnp.int32),
                "env": jnp.arange(n, dtype=jnp.int32),
                "obs": jnp.full((n, *obs_shape), t % 256, jnp.uint8),
            },
        )
    return state


def check_sequences(batch, num_adds, capacity, seq_len, batch_size):
    """Every sequence: consecutive written steps of one env, inside the retained window."""
    t, env, obs = (np.asarray(batch[k]) for k in ("t", "env", "obs"))
    assert t.shape == env.shape == (seq_len, batch_size) and obs.shape[:2] == (seq_len, batch_size)
    assert obs.dtype == np.uint8
    oldest = max(1, num_adds - capacity + 1)
    assert (t >= oldest).all() and (t <= num_adds).all()  # written, not overwritten, never 0
    np.testing.assert_array_equal(
        np.diff(t, axis=0), 1
    )  # consecutive: never crosses the write head
    assert (env == env[:1]).all()  # one env per sequence
    np.testing.assert_array_equal(obs, (t % 256)[..., None].astype(np.uint8).repeat(2, -1))


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.sampled_from([1, 2, 3, 5, 8]),
    num_envs=st.sampled_from([1, 3]),
    extra=st.integers(0, 20),
    seq_frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_sampled_sequences_are_valid(capacity, num_envs, extra, seq_frac, seed):
    seq_len = 1 + int(seq_frac * (capacity - 1))
    num_adds = seq_len + extra  # covers partly filled, exactly full and wrapped (several times)
    state = fill(replay.init(spec(), capacity, num_envs), num_adds)
    assert int(state.count) == min(num_adds, capacity) and int(state.pos) == num_adds % capacity
    assert int(replay.num_valid_starts(state, seq_len)) == num_envs * (
        min(num_adds, capacity) - seq_len + 1
    )
    batch = replay.sample(state, jax.random.key(seed), 32, seq_len)
    check_sequences(batch, num_adds, capacity, seq_len, 32)


def test_sampling_covers_all_valid_starts_uniformly():
    capacity, num_envs, num_adds, seq_len = 6, 2, 9, 3
    state = fill(replay.init(spec(), capacity, num_envs), num_adds)
    batch = replay.sample(state, jax.random.key(0), 4000, seq_len)
    check_sequences(batch, num_adds, capacity, seq_len, 4000)
    counts = collections.Counter(zip(np.asarray(batch["env"][0]), np.asarray(batch["t"][0])))
    # Retained steps 4..9 per env, so starts 4..7: 8 (env, start) pairs, 500 draws expected each.
    assert set(counts) == {(e, s) for e in range(num_envs) for s in range(4, 8)}
    assert all(350 < c < 650 for c in counts.values()), counts


def test_dtypes_shapes_and_init():
    state = replay.init({"image": ((4, 4, 3), np.uint8), "is_first": ((), bool)}, 5, 2)
    assert state.data["image"].shape == (5, 2, 4, 4, 3) and state.data["image"].dtype == jnp.uint8
    assert state.data["is_first"].dtype == jnp.bool_
    assert int(state.pos) == int(state.count) == 0 and state.capacity == 5 and state.num_envs == 2
    state = add(state, {"image": np.ones((2, 4, 4, 3), np.uint8), "is_first": np.ones(2, bool)})
    batch = replay.sample(state, jax.random.key(0), 3, 1)
    assert batch["image"].dtype == jnp.uint8 and batch["image"].shape == (1, 3, 4, 4, 3)
    assert bool(batch["is_first"].all())


def test_sample_inside_jit_and_raw_key():
    state = fill(replay.init(spec(), 4, 2), 6)
    batch = jax.jit(lambda s, k: replay.sample(s, k, 8, 3))(state, jax.random.PRNGKey(1))
    check_sequences(batch, 6, 4, 3, 8)


def test_add_errors_name_the_field():
    state = replay.init(spec(), 4, 2)
    good = {
        "t": jnp.zeros(2, jnp.int32),
        "env": jnp.zeros(2, jnp.int32),
        "obs": jnp.zeros((2, 2), jnp.uint8),
    }
    with pytest.raises(ValueError, match="keys"):
        replay.add(state, {k: v for k, v in good.items() if k != "obs"})
    with pytest.raises(ValueError, match="keys"):
        replay.add(state, {**good, "reward": jnp.zeros(2)})
    with pytest.raises(TypeError, match=r"step\['obs'\].*float32.*uint8"):
        jax.jit(replay.add)(state, {**good, "obs": jnp.zeros((2, 2), jnp.float32)})
    with pytest.raises(ValueError, match=r"step\['t'\].*shape"):
        jax.jit(replay.add)(state, {**good, "t": jnp.zeros(3, jnp.int32)})


def test_layout_and_sample_errors():
    with pytest.raises(ValueError, match="capacity"):
        replay.init(spec(), 0, 2)
    with pytest.raises(ValueError, match="num_envs=4 must be divisible by the 8 devices"):
        replay.init(spec(), 4, 4, shd.make_mesh())
    state = fill(replay.init(spec(), 4, 2), 2)
    with pytest.raises(ValueError, match=r"seq_len=5 must be in \[1, capacity=4\]"):
        replay.sample(state, jax.random.key(0), 4, 5)
    with pytest.raises(ValueError, match="holds 2 steps"):
        replay.sample(state, jax.random.key(0), 4, 3)
    with pytest.raises(ValueError, match="batch_size=0"):
        replay.sample(state, jax.random.key(0), 0, 2)


def test_sharded_storage_and_device_local_sampling():
    mesh = shd.make_mesh()
    assert mesh.size == 8
    capacity, num_envs, num_adds, seq_len, batch_size = 5, 16, 12, 3, 32
    state = fill(replay.init(spec(), capacity, num_envs, mesh), num_adds)
    for v in state.data.values():  # the donated add keeps the env split
        assert v.sharding.spec == P(None, "data") and v.sharding.mesh == mesh
    with pytest.raises(
        ValueError, match="batch_size=12 must be a positive multiple of the 8 devices"
    ):
        replay.sample(state, jax.random.key(0), 12, seq_len)
    batch = replay.sample(state, jax.random.key(0), batch_size, seq_len)
    for v in batch.values():
        assert v.sharding.spec == P(None, "data") and v.sharding.mesh == mesh
    check_sequences(batch, num_adds, capacity, seq_len, batch_size)
    # Device-local: each device's sequences come from the envs stored on that device.
    local_envs = {
        s.device: set(np.asarray(s.data).ravel()) for s in state.data["env"].addressable_shards
    }
    for s in batch["env"].addressable_shards:
        assert s.data.shape == (seq_len, batch_size // 8)
        assert set(np.asarray(s.data).ravel()) <= local_envs[s.device]
    assert len(set(np.asarray(batch["env"][0]))) > 8  # devices draw different envs, not copies


def test_numpy_round_trip_on_mesh():
    state = fill(replay.init(spec(), 4, 8), 6)
    arrays = replay.to_numpy(state)
    assert arrays["pos"] == 2 and arrays["count"] == 4 and arrays["data"]["obs"].dtype == np.uint8
    mesh = shd.make_mesh()
    restored = replay.from_numpy(arrays, mesh)
    assert restored.mesh == mesh and restored.data["t"].sharding.spec == P(None, "data")
    for k in arrays["data"]:
        np.testing.assert_array_equal(restored.data[k], arrays["data"][k])
    check_sequences(replay.sample(restored, jax.random.key(3), 16, 4), 6, 4, 4, 16)
    with pytest.raises(ValueError, match="pos == count"):
        replay.from_numpy({**arrays, "pos": 1, "count": 2})
