"""Exact values of the latent-distribution maths on hand-worked inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import distributions as dists


def test_straight_through_forward_is_onehot_and_gradient_is_softmax_jacobian():
    logits = jnp.zeros((1, 2))
    sample = dists.straight_through_onehot(jax.random.PRNGKey(0), logits)
    np.testing.assert_allclose(sample.sum(), 1.0)
    assert set(np.asarray(sample).ravel().tolist()) <= {0.0, 1.0}
    # d/dlogits [w . sample] = J^T w with J = diag(p) - p p^T; p = (.5, .5), w = (1, 0)
    # -> (0.25, -0.25).
    grad = jax.grad(lambda l: (dists.straight_through_onehot(jax.random.PRNGKey(0), l)
                               * jnp.array([1.0, 0.0])).sum())(logits)
    np.testing.assert_allclose(grad, [[0.25, -0.25]], atol=1e-6)


def _kl_case():
    # q = (1/2, 1/2), p = (1/4, 3/4): KL(q||p) = .5 ln 2 + .5 ln(2/3) = .5 ln(4/3) = 0.1438410.
    post = {"logits": jnp.log(jnp.array([[0.5, 0.5]]))}
    prior = {"logits": jnp.log(jnp.array([[0.25, 0.75]]))}
    kl_fn = lambda q, p: dists.categorical_kl(q["logits"], p["logits"])  # noqa: E731
    return kl_fn, post, prior


def test_kl_balancing_value_and_gradient_split():
    kl_fn, post, prior = _kl_case()
    loss_fn = lambda q, p: dists.balanced_kl(kl_fn, q, p, 0.8, 0.2, free=0.0)[0]  # noqa: E731
    np.testing.assert_allclose(loss_fn(post, prior), 0.5 * np.log(4 / 3), rtol=1e-6)
    g_post, g_prior = jax.grad(loss_fn, argnums=(0, 1))(post, prior)
    # Prior logits get alpha * dKL/dl_p = 0.8 * (p - q) = 0.8 * (-.25, .25) = (-.2, .2).
    np.testing.assert_allclose(g_prior["logits"], [[-0.2, 0.2]], atol=1e-6)
    # Posterior logits get (1 - alpha) * q * (g - E_q g), g = ln q - ln p = (ln 2, ln 2/3):
    # 0.2 * 0.5 * (ln 2 - .5 ln 4/3) = 0.0549306, and its negative.
    expected = 0.2 * 0.5 * (np.log(2) - 0.5 * np.log(4 / 3))
    np.testing.assert_allclose(g_post["logits"], [[expected, -expected]], atol=1e-6)


def test_free_nats_clip_value_and_zero_gradient():
    kl_fn, post, prior = _kl_case()
    loss_fn = lambda q, p: dists.balanced_kl(kl_fn, q, p, 0.8, 0.2, free=1.0)[0]  # noqa: E731
    np.testing.assert_allclose(loss_fn(post, prior), 1.0)   # 0.8 * 1 + 0.2 * 1
    g_post, g_prior = jax.grad(loss_fn, argnums=(0, 1))(post, prior)
    assert not np.any(g_post["logits"]) and not np.any(g_prior["logits"])


def test_unimix_mixes_probabilities():
    # softmax(log(1, 0)) = (1, 0) -> 0.99 * (1, 0) + 0.01 / 2 = (0.995, 0.005).
    probs = jax.nn.softmax(dists.unimix_logits(jnp.log(jnp.array([1.0, 1e-30])), 0.01))
    np.testing.assert_allclose(probs, [0.995, 0.005], atol=1e-6)


def test_two_hot_and_symlog():
    bins = jnp.array([0.0, 1.0, 2.0])
    # 0.25 sits a quarter of the way from bin 0 to bin 1: weights (0.75, 0.25, 0).
    np.testing.assert_allclose(dists.two_hot(jnp.array(0.25), bins), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(dists.two_hot(jnp.array(5.0), bins), [0.0, 0.0, 1.0])  # clipped
    x = jnp.array([-100.0, -1.5, 0.0, 2.0, 300.0])
    np.testing.assert_allclose(dists.symexp(dists.symlog(x)), x, rtol=1e-5)
    # symlog(e - 1) = 1.
    np.testing.assert_allclose(dists.symlog(jnp.e - 1.0), 1.0, rtol=1e-6)
    # softmax(log w) = w, so the decoded mean is symexp(E_w[bins]) = symexp(symlog(3.7)) = 3.7.
    big = dists.symlog_bins(255)
    logits = jnp.log(dists.two_hot(dists.symlog(jnp.array(3.7)), big) + 1e-30)
    np.testing.assert_allclose(dists.two_hot_mean(logits, big), 3.7, rtol=1e-3)


@pytest.mark.parametrize("name", ["nope", "ELU"])
def test_bad_activation_names_allowed(name):
    from jaxwm.nn import get_activation
    with pytest.raises(ValueError, match="act=.*elu"):
        get_activation(name)
