"""Value iteration, greedy policies and occupancies on small hand-worked trees."""
import functools

import chex
import jax.numpy as jnp
import numpy as np

from jaxwm.tabular import binary_tree
from jaxwm.tabular import planning


def _known_tree():
    """Depth 3 (internal nodes 0..6, leaves 7..14); nodes 0 and 6 swapped, 5 unswapped.

    Rewards: (0,1)->1 gets 0.5, (1,0)->3 gets 0.2, (3,1) 0.2; (2,0)->5 gets 0.1, (5,0) 0.8;
    (2,1)->6 gets 0.3, (6,1)->13 gets 0.7. Hand-worked values: V(3) = 0.2, V(1) = 0.4,
    V(5) = 0.8, V(6) = 0.7, Q(2) = [0.1 + 0.8, 0.3 + 0.7] = [0.9, 1.0], Q(0) = [0 + 1.0, 0.5 + 0.4]
    = [1.0, 0.9]. A myopic planner would take the 0.5; the optimum is 0 -> 2 -> 6 -> 13.
    """
    swap = jnp.array([1, 0, 0, 0, 0, 0, 1], jnp.float32)
    true_left = jnp.stack([1.0 - swap, swap], -1)
    reward = jnp.zeros((7, 2)).at[0, 1].set(0.5).at[1, 0].set(0.2).at[3, 1].set(0.2)
    reward = reward.at[2, 0].set(0.1).at[5, 0].set(0.8).at[2, 1].set(0.3).at[6, 1].set(0.7)
    return true_left, reward


class PlanningTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_value_iteration_finds_optimal_path(self):
        true_left, reward = _known_tree()
        q, values = self.variant(functools.partial(planning.value_iteration, depth=3))(
            true_left, reward)
        np.testing.assert_allclose(q[0], [1.0, 0.9], rtol=1e-6)
        np.testing.assert_allclose(q[2], [0.9, 1.0], rtol=1e-6)
        values, policy = np.asarray(values), np.asarray(planning.greedy_policy(q))
        np.testing.assert_allclose(values[[1, 3, 5, 6]], [0.4, 0.2, 0.8, 0.7], rtol=1e-6)
        np.testing.assert_array_equal(values[7:], 0.0)
        np.testing.assert_array_equal(policy[[0, 2, 6]], [0, 1, 1])
        np.testing.assert_array_equal(planning.greedy_path(true_left, policy, 3), [0, 2, 6, 13])
        visits = planning.occupancy(true_left, policy, 3)
        expected = np.zeros((7, 2))
        expected[0, 0] = expected[2, 1] = expected[6, 1] = 1.0
        np.testing.assert_array_equal(visits, expected)

    @chex.variants(with_jit=True, without_jit=True)
    def test_stochastic_model_hand_worked(self):
        # Depth 2: p(left | 0, a) = [0.25, 0.5]; node 1 rewards [2, 0], node 2 rewards [1, 3].
        # V(1) = 2, V(2) = 3; Q(0, 0) = 0.25 * 2 + 0.75 * 3 = 2.75,
        # Q(0, 1) = 0.5 * 2 + 0.5 * 3 = 2.5.
        left_prob = jnp.array([[0.25, 0.5], [0.9, 0.1], [0.3, 0.6]])
        reward = jnp.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
        q, values = self.variant(functools.partial(planning.value_iteration, depth=2))(
            left_prob, reward)
        np.testing.assert_allclose(q, [[2.75, 2.5], [2.0, 0.0], [1.0, 3.0]], rtol=1e-6)
        np.testing.assert_allclose(values[:3], [2.75, 2.0, 3.0], rtol=1e-6)
        # Policy [0, 0, 1]: node 1 is reached w.p. 0.25, node 2 w.p. 0.75.
        policy = planning.greedy_policy(q)
        np.testing.assert_array_equal(policy, [0, 0, 1])
        visits = self.variant(functools.partial(planning.occupancy, depth=2))(left_prob, policy)
        np.testing.assert_allclose(visits, [[1.0, 0.0], [0.25, 0.0], [0.0, 0.75]], rtol=1e-6)

    def test_occupancy_sums_to_one_per_level(self):
        true_left, _ = _known_tree()
        model = jnp.clip(true_left + 0.3, 0.0, 1.0) * 0.7
        visits = planning.occupancy(model, jnp.array([1, 0, 1, 1, 0, 0, 1]), 3)
        levels = binary_tree.node_depth(3)[:7]
        np.testing.assert_allclose([visits[levels == k].sum() for k in range(3)], 1.0, rtol=1e-6)
