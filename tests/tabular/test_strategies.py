"""The three deployment strategies: B = 1 equivalence, the depth-1 lemma by hand, a small sweep."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.tabular import binary_tree
from jaxwm.tabular import strategies

# One static configuration shared by the sweep tests, so each strategy compiles once.
SMALL = dict(depth=3, num_mdps=2, num_seeds=16)


def test_count_bonus_is_posterior_error():
    # alpha0 = 0.1: b(0) = 0.1 / 0.2 = 0.5, b(1) = 0.1 / 1.2, b(0.5) = 0.1 / 0.7.
    bonus = strategies.count_bonus(jnp.array([[0.0, 1.0], [0.5, 3.0]]), 0.1)
    np.testing.assert_allclose(bonus, [[0.5, 0.1 / 1.2], [0.1 / 0.7, 0.1 / 3.2]], rtol=1e-6)


def test_depth_one_lemma_by_hand():
    # Depth 1: one node, two actions, eps = alpha0 = 0.1 needs each (0, a) once. With no data both
    # bonuses are 0.5 (Q = bonus, the model is irrelevant) and ties go to action 0.
    # SPB: action 0 twice -> (0, 1) unseen -> a second round. Sequential: the second policy sees
    # the real visit (bonus 0.1 / 1.2) and takes action 1. CASCADE-TS: the same through the
    # first policy's imaginary visit. So T = 1, 1, 2 for every seed.
    expected = {"sequential": 1, "cascade_ts": 1, "single_policy_batch": 2}
    for strategy, rounds in expected.items():
        r, learned = strategies.sweep(jax.random.key(0), 2, strategy=strategy, depth=1,
                                      num_mdps=2, num_seeds=4)
        np.testing.assert_array_equal(r, rounds)
        assert learned.all()


def test_population_of_one_makes_strategies_coincide():
    results = [strategies.sweep(jax.random.key(7), 1, strategy=s, **SMALL)
               for s in strategies.STRATEGIES]
    for rounds, learned in results[1:]:
        np.testing.assert_array_equal(rounds, results[0][0])
        np.testing.assert_array_equal(learned, results[0][1])


def test_population_of_one_rounds_give_identical_counts():
    depth, key = 4, jax.random.key(3)
    true_left = binary_tree.sample_mdp(key, depth)
    counts = binary_tree.update_counts(binary_tree.prior_counts(depth),
                                       jax.random.bernoulli(key, 0.5, (15, 2)).astype(jnp.float32),
                                       true_left)
    after = [strategies.deployment_round(key, counts, true_left, 1, strategy=s, alpha0=0.1,
                                         depth=depth, max_population=4)
             for s in strategies.STRATEGIES]
    for other in after[1:]:
        np.testing.assert_array_equal(other, after[0])
    assert binary_tree.visit_counts(after[0] - counts).sum() == depth  # one root-to-leaf path


def test_same_seed_same_result():
    a = strategies.sweep(jax.random.key(1), 2, strategy="cascade_ts", **SMALL)
    b = strategies.sweep(jax.random.key(1), 2, strategy="cascade_ts", **SMALL)
    np.testing.assert_array_equal(a[0], b[0])


def test_small_sweep_reproduces_lemma_ordering():
    # Depth 3, B = 2, 32 runs. Every episode visits exactly one of the 2^d = 8 deepest (s, a),
    # each needed once, so any strategy needs >= 8 / B rounds, and SPB (one path per round) >= 8.
    depth, population = SMALL["depth"], 2
    means = {}
    for strategy in strategies.STRATEGIES:
        rounds, learned = strategies.sweep(jax.random.key(0), population, strategy=strategy,
                                           **SMALL)
        assert learned.all() and rounds.shape == (2, 16)
        assert rounds.min() >= 2**depth / population
        means[strategy] = float(rounds.mean())
    assert means["sequential"] <= means["cascade_ts"] <= means["single_policy_batch"], means
    assert means["single_policy_batch"] >= 2**depth


def test_cap_is_reported():
    rounds, learned = strategies.sweep(jax.random.key(0), 2, strategy="single_policy_batch",
                                       max_rounds=3, **SMALL)
    np.testing.assert_array_equal(rounds, 3)
    assert not learned.any()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="allowed"):
        strategies.sweep(jax.random.key(0), 2, strategy="greedy", **SMALL)
    with pytest.raises(ValueError, match="max_population"):
        strategies.sweep(jax.random.key(0), 9, strategy="cascade_ts", **SMALL)
