"""PPO and DQN losses on hand-worked values."""
import jax.numpy as jnp
import numpy as np

from jaxwm.behaviors import model_free


def test_gae_hand_values():
    # lambda = 0.5, values v0..v2 = 0.5, 1, 2, rewards 1, 0, discounts 0.5, 0 (the episode ends
    # after step 1): R_1 = 0 + 0 = 0; R_0 = 1 + 0.5 * (0.5 * v1 + 0.5 * R_1) = 1.25;
    # advantages R - v = 0.75, -1.
    adv, target = model_free.gae(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.0]),
                                 jnp.array([0.5, 1.0, 2.0]), 0.5)
    np.testing.assert_allclose(target, [1.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(adv, [0.75, -1.0], atol=1e-6)


def test_ppo_loss_at_the_behaviour_policy():
    # Uniform logits over 4 actions; ratio 1, so the surrogate is the mean normalized advantage
    # (0); value loss 0.5 * mean((1 - 0)^2, (2 - 0)^2) = 1.25; entropy log 4.
    logits = jnp.zeros((2, 4))
    batch = dict(action=jnp.array([0, 3]), logp=jnp.full(2, -np.log(4.0)),
                 advantage=jnp.array([1.0, -1.0]), target=jnp.zeros(2))
    loss, m = model_free.ppo_loss(logits, jnp.array([1.0, 2.0]), batch, 0.2, 0.5, 0.01)
    np.testing.assert_allclose(m["policy_loss"], 0.0, atol=1e-6)
    np.testing.assert_allclose(m["value_loss"], 1.25, rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(loss, 0.5 * 1.25 - 0.01 * np.log(4.0), rtol=1e-6)
    assert float(m["clip_fraction"]) == 0.0


def test_dqn_loss_hand_values():
    # target = 1 + 0.5 * max(3, 5) = 3.5; TD error 1 - 3.5 = -2.5; Huber (delta 1) = 2.5 - 0.5
    # = 2; the second sample has weight 0.
    loss = model_free.dqn_loss(jnp.array([[1.0, 2.0], [0.0, 0.0]]),
                               jnp.array([[3.0, 5.0], [9.0, 9.0]]), jnp.array([0, 1]),
                               jnp.array([1.0, 7.0]), jnp.array([0.5, 0.5]),
                               jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(loss, 2.0, rtol=1e-6)
