"""RSSM scans: resets at is_first, imagination shapes, both latent types."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import rssm

T, B, E, A = 6, 3, 5, 2


@pytest.fixture(scope="module", params=["discrete", "gaussian"])
def cell_and_params(request):
    cell = rssm.RSSMCell(deter=8, stoch=4, classes=3, hidden=8, latent=request.param)
    state = rssm.initial_state(cell, (B,))
    params = cell.init(jax.random.PRNGKey(0), state, jnp.zeros((B, A)), jnp.zeros((B, E)),
                       jax.random.PRNGKey(1))
    return cell, params


def _observe(cell, params, embeds, actions, is_first):
    return jax.jit(lambda *a: rssm.observe(cell, params, *a))(
        embeds, actions, is_first, rssm.initial_state(cell, (B,)), jax.random.PRNGKey(2))


def test_observe_resets_state_at_is_first(cell_and_params):
    cell, params = cell_and_params
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(3), 4)
    embeds, actions = jax.random.normal(k1, (T, B, E)), jax.random.normal(k2, (T, B, A))
    # Same data from step 3 on, different history before it.
    other_embeds = embeds.at[:3].set(jax.random.normal(k3, (3, B, E)))
    other_actions = actions.at[:3].set(jax.random.normal(k4, (3, B, A)))
    is_first = jnp.zeros((T, B), bool).at[3].set(True)
    posts, priors = _observe(cell, params, embeds, actions, is_first)
    other_posts, _ = _observe(cell, params, other_embeds, other_actions, is_first)
    for k in posts:
        np.testing.assert_allclose(posts[k][3:], other_posts[k][3:], atol=1e-6, err_msg=k)
        assert not np.allclose(posts[k][:3], other_posts[k][:3])
    # Without the reset the history leaks into step 3.
    no_reset = jnp.zeros((T, B), bool)
    a, _ = _observe(cell, params, embeds, actions, no_reset)
    b, _ = _observe(cell, params, other_embeds, other_actions, no_reset)
    assert not np.allclose(a["deter"][3], b["deter"][3])
    assert posts["deter"].shape == (T, B, 8) and priors["deter"].shape == (T, B, 8)


def test_observe_posterior_keeps_prior_deter(cell_and_params):
    cell, params = cell_and_params
    embeds = jax.random.normal(jax.random.PRNGKey(4), (T, B, E))
    posts, priors = _observe(cell, params, embeds, jnp.zeros((T, B, A)), jnp.zeros((T, B), bool))
    np.testing.assert_array_equal(posts["deter"], priors["deter"])


def test_imagine_and_rollout_shapes(cell_and_params):
    cell, params = cell_and_params
    start = jax.tree.map(lambda x: x + 0.1, rssm.initial_state(cell, (B,)))
    policy = lambda s, k: jnp.tanh(s["deter"][..., :A])  # noqa: E731
    states, actions = rssm.imagine(cell, params, policy, start, 4, jax.random.PRNGKey(5))
    assert states["deter"].shape == (5, B, 8) and actions.shape == (4, B, A)
    np.testing.assert_array_equal(states["deter"][0], start["deter"])
    # Replaying the imagined actions open-loop gives the same first deterministic state (h_1
    # depends only on the start state and a_0, not on sampling keys).
    replayed = rssm.rollout(cell, params, start, actions, jax.random.PRNGKey(0))
    assert replayed["deter"].shape == (4, B, 8)
    np.testing.assert_allclose(replayed["deter"][0], states["deter"][1], atol=1e-6)
    feat = rssm.features(states)
    stoch_size = 4 * 3 if cell.latent == "discrete" else 4
    assert feat.shape == (5, B, 8 + stoch_size)


def test_bad_latent_names_field_and_allowed():
    cell = rssm.RSSMCell(latent="bernoulli")
    with pytest.raises(ValueError, match=r"rssm.latent='bernoulli'.*discrete.*gaussian"):
        cell.init(jax.random.PRNGKey(0), {"deter": jnp.zeros((1, 600)),
                                          "stoch": jnp.zeros((1, 32, 32))},
                  jnp.zeros((1, 2)), jnp.zeros((1, 3)), jax.random.PRNGKey(1))


def test_overshooting_two_steps_matches_hand_rollout(cell_and_params):
    # d = 2 at time t: the prior of img_step(priors[t-1], a_{t-1}), i.e. two open-loop steps
    # from posts[t-2]. Its distribution depends on priors[t-1]'s sampled stoch only (the new
    # sample does not enter the KL), so the hand rollout below needs no shared keys. Valid (t, b):
    # t >= 2 and no episode start at t-1 or t. With is_first[0] (always) and is_first[4, 1]:
    # batch 1 loses t = 4 and t = 5, the others keep t = 2..5.
    cell, params = cell_and_params
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    embeds, actions = jax.random.normal(k1, (T, B, E)), jax.random.normal(k2, (T, B, A))
    is_first = jnp.zeros((T, B), bool).at[0].set(True).at[4, 1].set(True)
    posts, priors = _observe(cell, params, embeds, actions, is_first)
    loss, by_distance = rssm.overshooting_kl(cell, params, posts, priors, actions, is_first, 2,
                                             jax.random.PRNGKey(8), free=0.0)
    terms = []
    for t in range(2, T):
        for b in range(B):
            if is_first[t, b] or is_first[t - 1, b]:
                continue
            start = jax.tree.map(lambda x: x[t - 1, b][None], priors)
            pred = cell.apply(params, start, actions[t - 1, b][None], jax.random.PRNGKey(9),
                              method=rssm.RSSMCell.img_step)
            post = jax.tree.map(lambda x: x[t, b][None], posts)
            terms.append(float(rssm.kl(cell, rssm.distribution(cell, post),
                                       rssm.distribution(cell, pred))[0]))
    assert len(terms) == 4 * B - 2
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-5)
    np.testing.assert_allclose(float(by_distance[1]), np.mean(terms), rtol=1e-5)
    # d = 1 entry: the one-step KL over t >= 1 and not an episode start.
    valid = (~is_first) & (jnp.arange(T)[:, None] >= 1)
    one = rssm.kl(cell, rssm.distribution(cell, posts), rssm.distribution(cell, priors))
    np.testing.assert_allclose(float(by_distance[0]), float(one[valid].mean()), rtol=1e-5)
    # Distance 1 adds nothing beyond the one-step term.
    loss1, by1 = rssm.overshooting_kl(cell, params, posts, priors, actions, is_first, 1,
                                      jax.random.PRNGKey(8), free=0.0)
    assert float(loss1) == 0.0 and by1.shape == (1,)


def test_plain_kl_gradient_is_both_halves_of_balancing(cell_and_params):
    # KL balancing splits d KL = d_prior KL + d_post KL into alpha and 1 - alpha shares; the
    # plain KL (PlaNet / DreamerV1) takes both at full weight: its gradient equals the sum of the
    # balanced gradients with (dyn, rep) = (beta, 0) and (0, beta), and its value beta * KL.
    cell, params = cell_and_params
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    posts, priors = _observe(cell, params, jax.random.normal(k1, (T, B, E)),
                             jax.random.normal(k2, (T, B, A)), jnp.zeros((T, B), bool))
    beta, free = 0.7, 0.0
    dist = lambda s: rssm.distribution(cell, s)  # noqa: E731
    plain = jax.grad(lambda q, p: rssm.plain_kl_loss(cell, q, p, beta, free)[0], (0, 1))(
        dist(posts), dist(priors))
    dyn = jax.grad(lambda q, p: rssm.kl_loss(cell, q, p, beta, 0.0, free)[0], (0, 1))(
        dist(posts), dist(priors))
    rep = jax.grad(lambda q, p: rssm.kl_loss(cell, q, p, 0.0, beta, free)[0], (0, 1))(
        dist(posts), dist(priors))
    summed = jax.tree.map(lambda a, b: a + b, dyn, rep)
    for got, want in zip(jax.tree.leaves(plain), jax.tree.leaves(summed)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    value = rssm.plain_kl_loss(cell, posts, priors, beta, free)[0]
    np.testing.assert_allclose(float(value), beta * float(
        rssm.kl(cell, dist(posts), dist(priors)).mean()), rtol=1e-6)
