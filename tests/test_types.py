import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.types import adam


@pytest.mark.parametrize("lr", [0.5, 0.1])
def test_weight_decay_is_decoupled_from_the_learning_rate(lr):
    """DreamerV2 decays w <- (1 - wd) w each step. With w = 2, wd = 0.01, eps = 1e-8 and no clip:
    grad 0 -> Adam's step is 0 / (0 + eps) = 0 and w' = 0.99 * 2 = 1.98 whatever the lr (adamw: 2 - lr * 0.02);
    grad 1 -> Adam's first step is -lr * m_hat / sqrt(v_hat) = -lr, so w' = 1.98 - lr."""
    w = {"w": jnp.array([2.0, 2.0])}
    tx = adam(lr, eps=1e-8, clip=0.0, weight_decay=0.01)
    grads = {"w": jnp.array([0.0, 1.0])}
    updates, _ = tx.update(grads, tx.init(w), w)
    np.testing.assert_allclose(optax.apply_updates(w, updates)["w"], [1.98, 1.98 - lr],
                               rtol=1e-5)


def test_clip_then_adam_without_decay():
    """Global-norm clip 1 of grad [3, 4] -> [0.6, 0.8]; Adam's first step is -lr * sign(g)."""
    w = {"w": jnp.zeros(2)}
    tx = adam(0.1, eps=0.0, clip=1.0, weight_decay=0.0)
    updates, _ = tx.update({"w": jnp.array([3.0, -4.0])}, tx.init(w), w)
    np.testing.assert_allclose(updates["w"], [-0.1, 0.1], rtol=1e-5)
