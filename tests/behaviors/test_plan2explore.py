"""Plan2Explore disagreement: exact values, zero when members agree, vmapped == loop, training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import ensemble
from jaxwm.agents.plan2explore.config import disag_config
from jaxwm.behaviors import plan2explore as p2e

F, A, D, E = 6, 3, 8, 4


def make(**overrides):
    c = disag_config()
    c.members, c.layers, c.units, c.log_reward, c.lr = E, 1, 16, False, 1e-2
    c.update(overrides)
    return p2e.Disagreement(c, F, A, D)


@pytest.fixture(scope="module")
def model():
    disag = make()
    return disag, jax.jit(disag.init)(jax.random.PRNGKey(0))


def inputs(key, lead=(5, 2)):
    k1, k2, k3 = jax.random.split(key, 3)
    return (jax.random.normal(k1, lead + (F,)), jax.nn.one_hot(
        jax.random.randint(k2, lead, 0, A), A), jax.random.normal(k3, lead + (D,)))


def test_disagreement_exact_value():
    # Two members, dims d0, d1: predictions (0, 1) and (2, 5). Std over members (ddof 0):
    # d0: |0 - 2| / 2 = 1, d1: |1 - 5| / 2 = 2; mean over dims = 1.5.
    np.testing.assert_allclose(p2e.disagreement(jnp.array([[0.0, 1.0], [2.0, 5.0]])), 1.5)


def test_zero_when_members_share_params_positive_otherwise(model):
    disag, params = model
    feat, action, _ = inputs(jax.random.PRNGKey(1))
    reward = jax.jit(disag.intrinsic_reward)
    same = ensemble.broadcast(ensemble.member(params, 0), E)
    np.testing.assert_allclose(reward(same, feat, action), 0.0, atol=1e-6)
    r = reward(params, feat, action)
    assert r.shape == (5, 2) and bool((r > 0).all())


def test_vmapped_ensemble_equals_loop_over_members(model):
    disag, params = model
    feat, action, _ = inputs(jax.random.PRNGKey(2))
    preds = disag.predict(params, feat, action)
    x = jnp.concatenate([feat, action], -1)
    loop = jnp.stack([disag.net.apply(ensemble.member(params, i), x) for i in range(E)])
    np.testing.assert_allclose(preds, loop, rtol=1e-5, atol=1e-6)
    expected = jnp.std(loop, axis=0).mean(-1)
    np.testing.assert_allclose(disag.intrinsic_reward(params, feat, action), expected,
                               rtol=1e-5, atol=1e-6)
    # The loss is the sum of the members' own losses.
    feat, action, target = inputs(jax.random.PRNGKey(3))
    loss, _ = disag.loss(params, feat, action, target)
    per = [0.5 * jnp.square(disag.net.apply(ensemble.member(params, i), jnp.concatenate(
        [feat, action], -1)) - target).sum(-1).mean() for i in range(E)]
    np.testing.assert_allclose(loss, sum(per), rtol=1e-5)


def test_log_reward_and_scale(model):
    _, params = model
    scaled = make(log_reward=True, intr_scale=2.0)
    plain = make()
    feat, action, _ = inputs(jax.random.PRNGKey(4))
    np.testing.assert_allclose(scaled.intrinsic_reward(params, feat, action),
                               2.0 * jnp.log(plain.intrinsic_reward(params, feat, action) + 1e-8),
                               rtol=1e-5)


def test_training_fits_targets_and_mask(model):
    disag, params = model
    state = disag.init_state(jax.random.PRNGKey(5))
    feat, action, target = inputs(jax.random.PRNGKey(6), (4, 8))
    mask = jnp.ones((4, 8)).at[0].set(0.0)
    step, loss = jax.jit(disag.train_step), jax.jit(disag.loss)
    loss0, _ = loss(state.params, feat, action, target, mask)
    for _ in range(30):
        state, metrics = step(state, feat, action, target, mask)
    loss1, _ = loss(state.params, feat, action, target, mask)
    assert float(loss1) < 0.5 * float(loss0)
    # Masked pairs do not influence the loss.
    other = target.at[0].set(100.0)
    np.testing.assert_allclose(loss(state.params, feat, action, other, mask)[0], loss1,
                               rtol=1e-6)


def test_one_step_pairs_alignment():
    posts = {"deter": jnp.arange(4.0)[:, None, None] * jnp.ones((4, 2, 3)),
             "stoch": jnp.arange(4.0)[:, None, None, None] * jnp.ones((4, 2, 2, 2))}
    actions = jnp.arange(4.0)[:, None, None] * jnp.ones((4, 2, 1))
    is_first = jnp.zeros((4, 2), bool).at[2, 1].set(True)
    feat, act, nxt, mask = p2e.one_step_pairs(posts, actions, is_first)
    # (feat_t, a_t) -> z_{t+1}; the pair into a new episode (t + 1 = 2, env 1) is masked out.
    np.testing.assert_array_equal(feat[:, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(act[:, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(nxt[:, 0, 0], [1, 2, 3])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 0], [1, 1]])


def test_needs_two_members():
    with pytest.raises(ValueError, match="disag.members"):
        make(members=1)
