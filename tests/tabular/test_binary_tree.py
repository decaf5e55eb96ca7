"""Binary Tree MDP layout, posterior updates on hand-worked counts, and the Beta sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.tabular import binary_tree


def test_layout():
    assert binary_tree.num_internal(3) == 7 and binary_tree.num_nodes(3) == 15
    np.testing.assert_array_equal(binary_tree.node_depth(2), [0, 1, 1, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="depth"):
        binary_tree.num_internal(0)


def test_sample_mdp_is_a_deterministic_bijection():
    true_left = binary_tree.sample_mdp(jax.random.key(0), 6)
    assert true_left.shape == (63, 2)
    assert set(np.unique(true_left)) <= {0.0, 1.0}
    np.testing.assert_array_equal(true_left.sum(-1), 1.0)  # the two actions reach both children
    np.testing.assert_array_equal(true_left, binary_tree.sample_mdp(jax.random.key(0), 6))


def test_posterior_update_hand_worked():
    # Depth 2 (S = 3). Truth: (0, 0) -> left, (0, 1) -> right, (1, 0) -> right, (1, 1) -> left,
    # node 2 unswapped. Real visits: (0, 0) twice, (0, 1) once, (1, 1) once.
    true_left = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    visits = jnp.array([[2.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    counts = binary_tree.update_counts(binary_tree.prior_counts(2), visits, true_left)
    expected = np.zeros((3, 2, 2))
    expected[0, 0] = [2, 0]  # two transitions to the left child
    expected[0, 1] = [0, 1]
    expected[1, 1] = [1, 0]
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(binary_tree.visit_counts(counts), visits)
    # alpha0 = 0.5: mean left = (0.5 + n_L) / (1 + n):
    # (0,0): 2.5 / 3; (0,1): 0.5 / 2; (1,1): 1.5 / 2; unvisited: 0.5 / 1.
    mean = binary_tree.posterior_mean(counts, 0.5)
    np.testing.assert_allclose(mean, [[2.5 / 3, 0.25], [0.5, 0.75], [0.5, 0.5]], rtol=1e-6)
    # TV error = alpha0 / (2 alpha0 + n) for deterministic truth: 0.5 / 3, 0.5 / 2, 0.5 / 1.
    error = binary_tree.model_error(counts, true_left, 0.5)
    np.testing.assert_allclose(error, [[0.5 / 3, 0.25], [0.5, 0.25], [0.5, 0.5]], rtol=1e-6)
    assert not binary_tree.is_learned(counts, true_left, 0.5, eps=0.2)
    # Four visits of every (s, a) give error 0.5 / 5 = 0.1 exactly: learned at eps = 0.1.
    counts = binary_tree.update_counts(
        binary_tree.prior_counts(2), jnp.full((3, 2), 4.0), true_left)
    assert binary_tree.is_learned(counts, true_left, 0.5, eps=0.1)
    assert not binary_tree.is_learned(counts, true_left, 0.5, eps=0.099)


@pytest.mark.parametrize("eps, alpha0, visits", [(0.1, 0.1, 1), (0.05, 0.1, 2), (0.1, 0.5, 4),
                                                 (0.1, 1.0, 8), (0.3, 0.1, 1)])
def test_visits_for_accuracy(eps, alpha0, visits):
    # n(eps) = ceil(alpha0 / eps - 2 alpha0): e.g. 0.5 / 0.1 - 1 = 4 and 1 / 0.1 - 2 = 8.
    assert binary_tree.visits_for_accuracy(eps, alpha0) == visits
    assert alpha0 / (2 * alpha0 + visits) <= eps + 1e-9 < alpha0 / (2 * alpha0 + visits - 1)


def test_visits_for_accuracy_rejects_bad_values():
    with pytest.raises(ValueError, match="eps"):
        binary_tree.visits_for_accuracy(0.5, 0.1)
    with pytest.raises(ValueError, match="alpha0"):
        binary_tree.visits_for_accuracy(0.1, 0.0)


@pytest.mark.parametrize("a, b", [(0.1, 0.1), (1.1, 0.1), (0.6, 2.0), (20.1, 3.1)])
def test_sample_beta_moments(a, b):
    n = 200_000
    x = np.asarray(binary_tree.sample_beta(jax.random.key(1), jnp.full(n, a), jnp.full(n, b)))
    assert np.all((x >= 0) & (x <= 1))
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / n)
    np.testing.assert_allclose(x.var(), var, rtol=0.03)


def test_sample_model_follows_counts():
    true_left = binary_tree.sample_mdp(jax.random.key(2), 3)
    counts = binary_tree.update_counts(
        binary_tree.prior_counts(3), jnp.full((7, 2), 50.0), true_left)
    model = binary_tree.sample_model(jax.random.key(3), counts, 0.1)
    np.testing.assert_array_equal(model, binary_tree.sample_model(jax.random.key(3), counts, 0.1))
    # 50 visits: the sample sits within 0.05 of the observed child almost surely.
    np.testing.assert_allclose(model, counts[..., 0] / 50.0, atol=0.05)
