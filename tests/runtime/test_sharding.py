"""Mesh and sharding helpers on 8 simulated CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from jaxwm.runtime import sharding as shd


def test_make_mesh():
    mesh = shd.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == len(jax.devices()) == 8
    assert mesh.axis_types == (AxisType.Auto,)
    assert shd.make_mesh(2).size == 2 and shd.num_shards(shd.make_mesh(2)) == 2
    assert shd.num_shards(None) == 1
    with pytest.raises(ValueError, match="num_devices=9"):
        shd.make_mesh(9)


def test_shard_batch_and_replicate():
    mesh = shd.make_mesh()
    assert shd.data_sharding(mesh, 1).spec == P(None, "data") and shd.replicated(mesh).spec == P()
    batch = {"obs": np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2), "r": np.ones((3, 8))}
    sharded = shd.shard_batch(batch, mesh, axis=1)
    assert sharded["obs"].sharding.spec == P(None, "data")
    assert {s.data.shape for s in sharded["obs"].addressable_shards} == {(3, 2, 2)}
    np.testing.assert_array_equal(sharded["obs"], batch["obs"])
    params = shd.replicate({"w": jnp.ones((4, 4))}, mesh)
    assert params["w"].sharding.is_fully_replicated and len(params["w"].addressable_shards) == 8
    with pytest.raises(ValueError, match=r"\['r'\].*divisible by the 8 devices"):
        shd.shard_batch({"r": np.ones((3, 4))}, mesh, axis=1)
    with pytest.raises(ValueError, match="axis=-1"):
        shd.data_sharding(mesh, -1)


def test_sharded_jit_matches_single_device():
    mesh = shd.make_mesh()
    x = np.random.default_rng(0).normal(size=(5, 16, 3)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    f = jax.jit(lambda w, x: jnp.tanh(x @ w).mean(axis=(0, 2)))
    out = f(shd.replicate(w, mesh), shd.shard_batch(x, mesh, axis=1))
    assert out.sharding.spec == P("data")  # GSPMD keeps the batch split
    np.testing.assert_allclose(out, f(w, x), rtol=1e-5, atol=1e-6)
