"""Returns: hand-worked lambda-returns, a slow Python reference, lambda = 1 / 0 limits, weights
and the running normalizers; core functions run with and without jit (chex.variants)."""
import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import returns


def reference_lambda_returns(r, d, v, lam):
    """Slow Python reference: R_t = r_t + d_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H."""
    out, acc = [], v[-1]
    for t in reversed(range(len(r))):
        acc = r[t] + d[t] * ((1 - lam) * v[t + 1] + lam * acc)
        out.append(acc)
    return np.array(out[::-1])


class LambdaReturnsTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_worked_four_steps(self):
        # lambda = 0.5, gamma_t = 0.5, v = [0, 2, 4, 6, 8], r = [1, 2, 3, 4]:
        # R_4 = v_4 = 8
        # R_3 = 4 + 0.5 (0.5 * 8 + 0.5 * 8)      = 8
        # R_2 = 3 + 0.5 (0.5 * 6 + 0.5 * 8)      = 6.5
        # R_1 = 2 + 0.5 (0.5 * 4 + 0.5 * 6.5)    = 4.625
        # R_0 = 1 + 0.5 (0.5 * 2 + 0.5 * 4.625) = 2.65625
        fn = self.variant(lambda r, d, v: returns.lambda_returns(r, d, v, 0.5))
        r = jnp.array([1.0, 2.0, 3.0, 4.0])
        v = jnp.array([0.0, 2.0, 4.0, 6.0, 8.0])
        np.testing.assert_allclose(fn(r, jnp.full(4, 0.5), v), [2.65625, 4.625, 6.5, 8.0])
        # A terminal on entering s_3 (gamma_2 = 0) cuts everything after it:
        # R_2 = 3;  R_1 = 2 + 0.5 (0.5 * 4 + 0.5 * 3) = 3.75;
        # R_0 = 1 + 0.5 (0.5 * 2 + 0.5 * 3.75) = 2.4375;  R_3 is unchanged (8).
        d = jnp.array([0.5, 0.5, 0.0, 0.5])
        np.testing.assert_allclose(fn(r, d, v), [2.4375, 3.75, 3.0, 8.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_python_reference_on_random_inputs(self):
        rng = np.random.default_rng(0)
        for horizon in (1, 3, 15):
            for lam in (0.0, 0.3, 0.95, 1.0):
                r = rng.normal(size=horizon).astype(np.float32)
                d = rng.uniform(0, 1, horizon).astype(np.float32)
                v = rng.normal(size=horizon + 1).astype(np.float32)
                got = self.variant(lambda r, d, v: returns.lambda_returns(r, d, v, lam))(r, d, v)
                np.testing.assert_allclose(got, reference_lambda_returns(r, d, v, lam),
                                           rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_lambda_one_is_discounted_monte_carlo(self):
        rng = np.random.default_rng(1)
        r = rng.normal(size=7).astype(np.float32)
        d = rng.uniform(0.5, 1, 7).astype(np.float32)
        v = rng.normal(size=8).astype(np.float32)
        lam1 = self.variant(lambda r, d, v: returns.lambda_returns(r, d, v, 1.0))(r, d, v)
        mc = self.variant(returns.discounted_returns)(r, d, v[-1])
        # explicit sum: G_t = sum_{k >= t} (prod_{t <= j < k} d_j) r_k + (prod_{j >= t} d_j) v_H
        explicit = [sum(np.prod(d[t:k]) * r[k] for k in range(t, 7)) + np.prod(d[t:]) * v[-1]
                    for t in range(7)]
        np.testing.assert_allclose(lam1, mc, rtol=1e-5)
        np.testing.assert_allclose(mc, explicit, rtol=1e-5)

    def test_lambda_zero_is_one_step_td(self):
        r, d, v = jnp.array([1.0, -1.0]), jnp.array([0.9, 0.5]), jnp.array([3.0, 2.0, 4.0])
        # R_t = r_t + d_t v_{t+1}: [1 + 0.9 * 2, -1 + 0.5 * 4]
        np.testing.assert_allclose(returns.lambda_returns(r, d, v, 0.0), [2.8, 1.0], rtol=1e-6)

    def test_batched_matches_per_column(self):
        rng = np.random.default_rng(2)
        r, d = rng.normal(size=(5, 3)), rng.uniform(size=(5, 3))
        v = rng.normal(size=(6, 3))
        got = returns.batched_lambda_returns(jnp.array(r), jnp.array(d), jnp.array(v), 0.9)
        for n in range(3):
            np.testing.assert_allclose(got[:, n], reference_lambda_returns(
                r[:, n], d[:, n], v[:, n], 0.9), rtol=1e-5)

    def test_shape_errors(self):
        with pytest.raises(AssertionError):
            returns.lambda_returns(jnp.zeros(4), jnp.zeros(4), jnp.zeros(4), 0.9)  # values [H+1]
        with pytest.raises(AssertionError):
            returns.lambda_returns(jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros((5, 2)), 0.9)


def test_discount_weights():
    # w = [1, g0, g0 g1, g0 g1 g2]
    np.testing.assert_allclose(returns.discount_weights(jnp.array([0.5, 0.5, 0.0])),
                               [1.0, 0.5, 0.25, 0.0])


def test_percentile_normalizer():
    x = jnp.arange(101.0)                        # percentiles of 0..100 are the values themselves
    s = returns.percentile_update(returns.percentile_init(), x, decay=0.9)
    np.testing.assert_allclose([s.low, s.high], [5.0, 95.0])      # first update: set, not decayed
    np.testing.assert_allclose(returns.percentile_scale(s), 90.0)
    s = returns.percentile_update(s, jnp.zeros(10), decay=0.9)
    np.testing.assert_allclose([s.low, s.high], [4.5, 85.5], rtol=1e-6)  # 0.9 * old + 0.1 * 0
    small = returns.percentile_update(returns.percentile_init(), jnp.linspace(0, 0.1, 11))
    assert float(returns.percentile_scale(small)) == 1.0          # max(1, P95 - P5)


def test_moment_normalizer():
    s = returns.moment_update(returns.moment_init(), jnp.array([3.0, -3.0]))
    np.testing.assert_allclose(returns.moment_scale(s), 3.0, rtol=1e-6)
    s = returns.moment_update(s, jnp.zeros(2), decay=0.75)        # E[x^2]: 0.75 * 9 = 6.75
    np.testing.assert_allclose(s.sq, 6.75)
