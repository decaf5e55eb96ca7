"""Stacked-parameter helpers: vmapped application equals a loop over members."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import ensemble
from jaxwm.nn import MLP

NET = MLP((8,), out=3)


def init(key):
    return NET.init(key, jnp.zeros((1, 4)))


def test_vmapped_apply_equals_loop_over_members():
    params = ensemble.init(init, jax.random.PRNGKey(0), 5)
    assert ensemble.size(params) == 5
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    out = ensemble.apply(NET.apply, params, x)                      # shared inputs
    assert out.shape == (5, 7, 3)
    loop = jnp.stack([NET.apply(p, x) for p in ensemble.unstack(params)])
    np.testing.assert_allclose(out, loop, rtol=1e-6, atol=1e-6)
    xs = jax.random.normal(jax.random.PRNGKey(2), (5, 7, 4))       # one input per member
    out = ensemble.apply(NET.apply, params, xs, shared=False)
    loop = jnp.stack([NET.apply(ensemble.member(params, i), xs[i]) for i in range(5)])
    np.testing.assert_allclose(out, loop, rtol=1e-6, atol=1e-6)


def test_members_use_split_keys_and_stack_roundtrips():
    params = ensemble.init(init, jax.random.PRNGKey(0), 3)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    jax.tree.map(np.testing.assert_array_equal, ensemble.member(params, 2), init(keys[2]))
    jax.tree.map(np.testing.assert_array_equal, ensemble.stack(ensemble.unstack(params)), params)
    same = ensemble.broadcast(init(keys[0]), 4)
    out = ensemble.apply(NET.apply, same, jnp.ones((2, 4)))
    np.testing.assert_array_equal(out, jnp.broadcast_to(out[:1], out.shape))


def test_bad_size():
    with pytest.raises(ValueError, match="size"):
        ensemble.init(init, jax.random.PRNGKey(0), 0)
