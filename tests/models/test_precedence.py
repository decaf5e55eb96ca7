"""Precedence estimator psi, RAE shaping, phi distillation and RAC's action choice."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings, strategies as st

from jaxwm.models import precedence


def _psi(hidden=(16,), embed=8, dim=3, seed=0):
    net = precedence.Precedence(hidden, embed)
    x = jnp.zeros((1, dim))
    return net, net.init(jax.random.PRNGKey(seed), x, x)


def test_psi_is_antisymmetric_before_training():
    net, params = _psi()
    a, b = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 3))
    forward = jax.nn.sigmoid(net.apply(params, a, b))
    backward = jax.nn.sigmoid(net.apply(params, b, a))
    np.testing.assert_allclose(forward + backward, 1.0, atol=1e-6)
    np.testing.assert_allclose(net.apply(params, a, a), 0.0, atol=1e-6)   # psi(s, s) = 1/2


def test_precedence_loss_hand_values():
    # BCE(logit 0, label 1) = log 2; BCE(logit log 3, label 0) = -log(1 - 3/4) = log 4.
    logits, labels = jnp.array([0.0, np.log(3.0)]), jnp.array([1.0, 0.0])
    both = precedence.precedence_loss(logits, labels, jnp.ones(2))
    first = precedence.precedence_loss(logits, labels, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(both, (np.log(2) + np.log(4)) / 2, rtol=1e-6)
    np.testing.assert_allclose(first, np.log(2), rtol=1e-6)
    # No valid pair at all: the loss is 0, not NaN.
    assert float(precedence.precedence_loss(logits, labels, jnp.zeros(2))) == 0.0


def test_sample_pairs_labels_windows_and_episode_boundaries():
    # states encode (time, column): value = t + 100 * column. Column 1 has an episode boundary
    # at t = 3 and column 2 is empty (-1) until t = 4.
    t, b, window = 8, 3, 2
    states = (jnp.arange(t)[:, None] + 100 * jnp.arange(b)[None, :]).astype(jnp.float32)[..., None]
    episode = np.zeros((t, b), np.int32)
    episode[3:, 1] = 1
    episode[:4, 2] = -1
    a, b_, label, weight = precedence.sample_pairs(
        jax.random.PRNGKey(0), states, jnp.asarray(episode), window, 4000)
    a, b_, label, weight = map(np.asarray, (a[:, 0], b_[:, 0], label, weight))
    ok = weight > 0
    assert 0.3 < label[ok].mean() < 0.7                        # both orders drawn
    np.testing.assert_array_equal(label[ok], (b_[ok] > a[ok]).astype(np.float32))
    gap = np.abs(b_[ok] - a[ok])
    assert gap.min() >= 1 and gap.max() <= window
    col, time_a, time_b = a[ok] // 100, a[ok] % 100, b_[ok] % 100
    crossing = (col == 1) & ((time_a < 3) != (time_b < 3))
    assert not crossing.any()
    assert not ((col == 2) & ((time_a < 4) | (time_b < 4))).any()
    assert ok.mean() > 0.5


def _walk_with_one_way_switch(key, steps=4000, cells=5, switch=2):
    """A random walk on `cells` positions (moves -1, +1, or 0 = press) whose state also holds a
    flag that pressing at `switch` sets for good: that press is the one irreversible transition
    (every move keeps the flag, so it can be undone). Trajectories restart (flag cleared) every
    40 steps. Returns states [T, 1, cells + 1], episode [T, 1]."""
    rng = np.random.default_rng(key)
    pos, flag, states, episode = 0, 0, [], []
    for t in range(steps):
        if t % 40 == 0:
            pos, flag = rng.integers(cells), 0
        states.append(np.concatenate([np.eye(cells)[pos], [flag]]))
        episode.append(t // 40)
        move = rng.choice([-1, 0, 1])
        if pos == switch and move == 0:
            flag = 1
        pos = int(np.clip(pos + move, 0, cells - 1))
    return (np.asarray(states, np.float32)[:, None], np.asarray(episode, np.int32)[:, None])


def test_psi_ranks_the_irreversible_transition_above_the_reversible_ones():
    states, episode = _walk_with_one_way_switch(0)
    net, params = _psi(hidden=(32,), embed=16, dim=states.shape[-1])
    tx = optax.adam(1e-2)

    def step(carry, key):
        params, opt = carry
        a, b, label, weight = precedence.sample_pairs(key, states, episode, 10, 256)
        grads = jax.grad(lambda p: precedence.precedence_loss(
            net.apply(p, a, b), label, weight))(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), None

    (params, _), _ = jax.jit(lambda c, k: jax.lax.scan(step, c, k))(
        (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(1), 400))
    eye = np.eye(5, dtype=np.float32)
    state = lambda pos, flag: np.concatenate([eye[pos], [flag]]).astype(np.float32)  # noqa: E731
    irreversible = [(state(2, 0), state(2, 1))]
    reversible = [(state(p, f), state(p + d, f)) for f in (0, 1) for p in range(5)
                  for d in (-1, 1) if 0 <= p + d < 5]
    score = lambda pairs: np.asarray(jax.nn.sigmoid(net.apply(  # noqa: E731
        params, jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs]))))
    assert score(irreversible).min() > 0.7 > score(reversible).max()


def test_rae_reward_hand_values():
    # r - w * max(p - beta, 0) with w = 2, beta = 0.7: [1 - 2 * 0.2, 0 - 0, 0.5 - 0] .
    shaped = precedence.rae_reward(jnp.array([1.0, 0.0, 0.5]), jnp.array([0.9, 0.5, 0.7]),
                                   2.0, 0.7)
    np.testing.assert_allclose(shaped, [0.6, 0.0, 0.5], atol=1e-6)


def test_phi_loss_is_minimal_at_the_target():
    target = jnp.array([0.2, 0.9])
    action = jnp.array([1, 0])
    logits = jnp.array([[0.0, np.log(0.2 / 0.8)], [np.log(0.9 / 0.1), 5.0]])
    grad = jax.grad(precedence.phi_loss)(logits, action, target)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)   # the untaken actions get no gradient
    entropy = -np.mean([0.2 * np.log(0.2) + 0.8 * np.log(0.8),
                        0.9 * np.log(0.9) + 0.1 * np.log(0.1)])
    np.testing.assert_allclose(precedence.phi_loss(logits, action, target), entropy, rtol=1e-5)


def test_rac_action_hand_cases():
    pref = jnp.array([3.0, 2.0, 1.0])
    assert int(precedence.rac_action(pref, jnp.array([0.9, 0.5, 0.6]), 0.7)) == 1
    assert int(precedence.rac_action(pref, jnp.array([0.1, 0.5, 0.6]), 0.7)) == 0
    # nothing is safe: the least irreversible action
    assert int(precedence.rac_action(pref, jnp.array([0.9, 0.8, 0.95]), 0.7)) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(  # float32 without subnormals: XLA flushes them to zero
    st.floats(-5, 5, width=32, allow_subnormal=False),
    st.floats(0, 1, width=32, allow_subnormal=False)), min_size=1, max_size=6),
       st.floats(0.05, 0.95))
def test_rac_never_picks_an_unsafe_action_when_a_safe_one_exists(rows, beta):
    pref, phi = (np.asarray(x, np.float32) for x in zip(*rows))
    chosen = int(precedence.rac_action(jnp.asarray(pref), jnp.asarray(phi), beta))
    safe = phi <= np.float32(beta)
    if safe.any():
        assert safe[chosen]
        assert pref[chosen] == pref[safe].max()
    else:
        assert phi[chosen] == phi.min()
