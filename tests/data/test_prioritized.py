"""Prioritized replay: sum-tree sampling frequencies, importance weights, priority updates and
which starts are valid, on hand-made buffers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.data import prioritized, replay
from jaxwm.runtime import sharding

SPEC = {"t": ((), np.int32)}   # each step stores its global step index


def filled(capacity, num_envs, steps, seq_len, alpha=1.0, mesh=None):
    rstate = replay.init(SPEC, capacity, num_envs, mesh)
    pstate = prioritized.init(rstate, seq_len, alpha)
    for i in range(steps):
        rstate, pstate = prioritized.add(rstate, pstate,
                                         {"t": jnp.full((num_envs,), i, jnp.int32)})
    return rstate, pstate


def leaf_values(pstate):
    tree = np.asarray(pstate.tree)
    return tree[:, tree.shape[1] // 2:]


def test_sampling_frequencies_match_priorities_chi_square():
    """8 starts with priorities p = [1, 2, 3, 4, 0, 5, 6, 7] and alpha = 0.6: 40,000 draws
    against the expected counts 40,000 p^0.6 / sum p^0.6. The chi-square statistic over the 7
    nonzero cells (df 6) stays below 22.46, its 0.999 quantile; the zero cell (priority 1e-6,
    probability ~1e-5) is drawn at most a few times."""
    rstate, pstate = filled(8, 1, 8, seq_len=1, alpha=0.6)
    p = np.array([1, 2, 3, 4, 0, 5, 6, 7], np.float32)
    pstate = prioritized.update(pstate, jnp.arange(8), jnp.asarray(p))
    draws = 40_000
    _, info = prioritized.sample(rstate, pstate, jax.random.key(0), draws)
    counts = np.bincount(np.asarray(info.leaves), minlength=8)
    expected = draws * p ** 0.6 / (p ** 0.6).sum()
    nonzero = p > 0
    chi2 = ((counts[nonzero] - expected[nonzero]) ** 2 / expected[nonzero]).sum()
    assert chi2 < 22.46, (counts, expected)
    assert counts[4] <= 3
    np.testing.assert_allclose(prioritized.probabilities(pstate)[0], p ** 0.6 / (p ** 0.6).sum(),
                               atol=5e-5)   # the zero cell: 1e-6^0.6 / 15.5 = 1.6e-5


def test_importance_weights_hand_worked():
    """2 starts with priorities [1, 3], alpha = 1, beta = 0.5: P = [1/4, 3/4], N = 2, so
    w = (N P)^-0.5 = [sqrt(2), sqrt(2/3)], divided by the batch max sqrt(2): [1, sqrt(1/3)]."""
    rstate, pstate = filled(2, 1, 2, seq_len=1)
    pstate = prioritized.update(pstate, jnp.array([0, 1]), jnp.array([1.0, 3.0]))
    batch, info = prioritized.sample(rstate, pstate, jax.random.key(1), 64, beta=0.5)
    leaves, weights = np.asarray(info.leaves), np.asarray(info.weights)
    assert set(leaves) == {0, 1}
    np.testing.assert_allclose(weights[leaves == 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights[leaves == 1], np.sqrt(1 / 3), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(batch["t"])[0], leaves)   # slot i holds step i


def test_priority_update_after_a_step_and_new_starts_at_the_max():
    """New starts enter at max_priority^alpha (1 before any update). After priorities [0.5, 9]
    for two sampled starts the max is 9 and the next start written enters at 9^alpha; the root
    is the sum of the leaves."""
    rstate, pstate = filled(8, 1, 4, seq_len=1, alpha=0.5)
    np.testing.assert_allclose(leaf_values(pstate)[0, :4], 1.0)
    pstate = prioritized.update(pstate, jnp.array([1, 2]), jnp.array([0.5, 9.0]))
    np.testing.assert_allclose(leaf_values(pstate)[0, :4], [1, np.sqrt(0.5), 3, 1], rtol=1e-5)
    assert float(pstate.max_priority) == pytest.approx(9.0)
    rstate, pstate = prioritized.add(rstate, pstate, {"t": jnp.full((1,), 4, jnp.int32)})
    np.testing.assert_allclose(leaf_values(pstate)[0, 4], 3.0, rtol=1e-5)
    np.testing.assert_allclose(pstate.tree[0, 1], leaf_values(pstate)[0].sum(), rtol=1e-6)


@pytest.mark.parametrize("steps", [2, 3, 6, 10, 13])
def test_only_whole_sequences_behind_the_write_head_are_drawn(steps):
    """Capacity 6, 2 envs, sequences of 3: after `steps` adds the nonzero leaves are exactly the
    starts at offsets 0 .. count - 3 from the oldest slot, and every sampled sequence holds
    consecutive step indices (none crosses the write head)."""
    capacity, envs, seq_len = 6, 2, 3
    rstate, pstate = filled(capacity, envs, steps, seq_len)
    count = min(steps, capacity)
    oldest = (steps - count) % capacity
    valid = {((oldest + o) % capacity) * envs + e for o in range(count - seq_len + 1)
             for e in range(envs)}
    assert set(np.flatnonzero(leaf_values(pstate)[0])) == valid
    if count >= seq_len:
        batch, _ = prioritized.sample(rstate, pstate, jax.random.key(steps), 256)
        t = np.asarray(batch["t"])
        np.testing.assert_array_equal(np.diff(t, axis=0), 1)
        assert t.min() >= steps - count and t.max() <= steps - 1


@pytest.mark.slow   # ~110 s cold on 2 cores: keeps `make test` under 15 min
def test_sharded_buffer_samples_each_devices_envs_and_updates_locally():
    """On a 2-device mesh each device keeps the tree of its 2 envs: samples are valid, split on
    the batch axis, the weights' batch max is 1, and local leaves update their own device."""
    mesh = sharding.make_mesh(2)
    rstate, pstate = filled(5, 4, 7, seq_len=2, mesh=mesh)
    assert pstate.tree.shape[0] == 2
    batch, info = jax.jit(prioritized.sample, static_argnames="batch_size")(
        rstate, pstate, jax.random.key(0), batch_size=8)
    assert batch["t"].sharding.spec[1] == sharding.DATA_AXIS
    np.testing.assert_array_equal(np.diff(np.asarray(batch["t"]), axis=0), 1)
    assert float(info.weights.max()) == 1.0
    pstate = prioritized.update(pstate, info.leaves, jnp.arange(8.0))
    assert float(pstate.max_priority) == pytest.approx(7.0)
    tree = np.asarray(pstate.tree)
    np.testing.assert_allclose(tree[:, 1], leaf_values(pstate).sum(1), rtol=1e-5)


@pytest.mark.parametrize("steps", [4, 9])
def test_a_filled_buffer_starts_with_its_valid_starts_at_one(steps):
    """from_replay gives the same leaves as adding the steps one by one (all priorities 1)."""
    rstate, pstate = filled(6, 2, steps, seq_len=3)
    built = prioritized.from_replay(rstate, 3)
    np.testing.assert_array_equal(np.asarray(built.tree), np.asarray(pstate.tree))


def test_bad_arguments():
    rstate = replay.init(SPEC, 4, 1)
    with pytest.raises(ValueError, match="seq_len=5 must be in"):
        prioritized.init(rstate, 5)
    rstate, pstate = filled(4, 1, 1, seq_len=2)
    with pytest.raises(ValueError, match="replay holds 1 steps per env"):
        prioritized.sample(rstate, pstate, jax.random.key(0), 4)
