"""CEM planner: optimum of a fake quadratic model, hand-worked refit and returns, shifted warm
start, exploration noise, vmap over envs equals a loop, one compile, config errors."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.planners import cem

# Fake model with a pytree state: position p' = p + a, a step counter, reward -||p' - g||^2.
GOAL = np.array([0.5, 0.2], np.float32)
P0 = np.array([0.1, -0.3], np.float32)


def point_fns():
    def next_fn(params, s, a, key):
        return {"pos": s["pos"] + a, "steps": s["steps"] + 1}
    return cem.ModelFns(
        next=next_fn,
        reward=lambda p, s, a: -jnp.sum(jnp.square(s["pos"] - p["goal"]), -1))


PARAMS = {"goal": jnp.asarray(GOAL)}
CONFIG = cem.CEMConfig(horizon=4)  # PlaNet: J = 1000, K = 100, I = 10


def start(pos=P0):
    return {"pos": jnp.asarray(pos), "steps": jnp.zeros((), jnp.int32)}


@pytest.fixture(scope="module")
def point_plan():
    return jax.jit(functools.partial(cem.plan, CONFIG, point_fns()))


def test_finds_the_optimum_of_a_fake_quadratic_model(point_plan):
    # Every reward is <= 0 and all are 0 iff p_1 = g and p stays there: a_0 = g - p0 =
    # [0.4, 0.5] (inside the action box), then a_t = 0; the optimal return is 0.
    action, mean, info = point_plan(PARAMS, jax.random.key(0), start(),
                                    cem.initial_plan(CONFIG, 2), True)
    optimum = np.array([[0.4, 0.5], [0, 0], [0, 0], [0, 0]], np.float32)
    # (Over keys 0..19: max error 0.027 in the mean, 0.018 in the action, value > -2e-3.)
    np.testing.assert_allclose(mean, optimum, atol=0.05)
    np.testing.assert_allclose(action, optimum[0], atol=0.03)
    assert -5e-3 < float(info["value"]) <= 0.0
    # The sampling distribution has collapsed onto it (it started at std 1).
    assert float(info["std"].max()) < 0.05


def test_candidate_returns_hand_worked():
    # 1-D p' = p + a from p0 = 0, reward p', terminal value 10 p_H, gamma 0.5, H = 2:
    # a = [1, 1]:   p = 1, 2   -> 1 + 0.5 * 2 + 0.25 * 10 * 2 = 7;
    # a = [-1, 0.5]: p = -1, -0.5 -> -1 + 0.5 * -0.5 + 0.25 * 10 * -0.5 = -2.5.
    fns = cem.ModelFns(next=lambda p, s, a, k: s + a, reward=lambda p, s, a: s[:, 0],
                       terminal_value=lambda p, s: 10 * s[:, 0])
    config = cem.CEMConfig(horizon=2, num_candidates=2, num_elites=1, gamma=0.5)
    actions = jnp.array([[1.0, 1.0], [-1.0, 0.5]])[..., None]
    returns = cem.candidate_returns(config, fns, {}, jnp.zeros((2, 1)), actions,
                                    jax.random.key(0))
    np.testing.assert_allclose(returns, [7.0, -2.5], rtol=1e-6)
    # Without a terminal value and gamma 1 (PlaNet): 1 + 2 = 3 and -1 - 0.5 = -1.5.
    returns = cem.candidate_returns(dataclasses.replace(config, gamma=1.0), fns._replace(
        terminal_value=None), {}, jnp.zeros((2, 1)), actions, jax.random.key(0))
    np.testing.assert_allclose(returns, [3.0, -1.5], rtol=1e-6)


def test_refit_to_elites_hand_worked():
    # J = 4 sequences of H = 2 one-dim actions with returns [3, 1, 2, 0]; K = 2 keeps
    # sequences 0 and 2: step 0 actions {0.2, 0.6} -> mean 0.4, var ((-0.2)^2 + 0.2^2) / 2 = 0.04;
    # step 1 actions {-1, -1} -> mean -1, var 0. With min_std 0.1 the std is
    # sqrt(var + 0.01): sqrt(0.05) and 0.1.
    actions = jnp.array([[0.2, -1.0], [-0.4, 0.3], [0.6, -1.0], [1.0, 0.9]])[..., None]
    mean, std, best = cem.cem_refit(actions, jnp.array([3.0, 1.0, 2.0, 0.0]), 2, 0.1)
    np.testing.assert_allclose(mean[:, 0], [0.4, -1.0], rtol=1e-6)
    np.testing.assert_allclose(std[:, 0], [np.sqrt(0.05), 0.1], rtol=1e-6)
    assert float(best) == 3.0


def test_shift_plan_hand_worked():
    prev = jnp.array([[0.9, -0.9], [0.5, -0.5], [0.3, 0.7]])
    np.testing.assert_allclose(cem.shift_plan(prev, False),
                               [[0.5, -0.5], [0.3, 0.7], [0.0, 0.0]])
    np.testing.assert_array_equal(cem.shift_plan(prev, True), np.zeros((3, 2)))


@pytest.mark.parametrize("warm_start", [True, False])
def test_plan_starts_from_the_shifted_previous_mean(warm_start):
    # Zero reward: the elites are any K of J samples of N(m0, 0.01^2), so one iteration returns
    # m0 up to ~0.01 / sqrt(K) = 0.0016: m0 is prev shifted by one step (warm start), or 0 on the
    # episode's first step and always without warm start (PlaNet).
    config = cem.CEMConfig(horizon=3, num_candidates=64, num_elites=32, iterations=1,
                           init_std=0.01, warm_start=warm_start)
    fns = cem.ModelFns(next=lambda p, s, a, k: s, reward=lambda p, s, a: jnp.zeros(s.shape[0]))
    plan = jax.jit(functools.partial(cem.plan, config, fns))
    prev = jnp.array([[0.9, -0.9], [0.5, -0.5], [0.3, 0.7]])
    shifted = np.array([[0.5, -0.5], [0.3, 0.7], [0.0, 0.0]])
    _, mean, _ = plan({}, jax.random.key(1), jnp.zeros(1), prev, False)
    np.testing.assert_allclose(mean, shifted if warm_start else 0.0, atol=0.01)
    _, mean, _ = plan({}, jax.random.key(1), jnp.zeros(1), prev, True)
    np.testing.assert_allclose(mean, 0.0, atol=0.01)


def test_exploration_noise_is_added_to_the_first_mean_action(point_plan):
    # Exploring changes only the executed action: mean[0] + 0.3 * eps, eps ~ N(0, I) drawn from
    # the second half of the plan's key, clipped to [-1, 1]; the plan itself is unchanged.
    key = jax.random.key(4)
    greedy, mean, _ = point_plan(PARAMS, key, start(), cem.initial_plan(CONFIG, 2), True)
    noisy, mean_explore, _ = point_plan(PARAMS, key, start(), cem.initial_plan(CONFIG, 2), True,
                                        True)
    np.testing.assert_array_equal(greedy, mean[0])
    np.testing.assert_array_equal(mean_explore, mean)
    eps = jax.random.normal(jax.random.split(key)[1], (2,))
    np.testing.assert_allclose(noisy, np.clip(mean[0] + 0.3 * eps, -1, 1), rtol=1e-6)
    assert float(jnp.abs(noisy - greedy).max()) > 1e-3


def test_plan_batch_plans_each_env_independently_and_equals_a_loop():
    config, fns = CONFIG, point_fns()
    # Three envs at different positions: each first action is its own g - p0.
    starts = np.array([[0.1, -0.3], [0.0, 0.0], [0.8, 0.7]], np.float32)
    states = {"pos": jnp.asarray(starts), "steps": jnp.zeros(3, jnp.int32)}
    prev = jax.random.uniform(jax.random.key(2), (3, 4, 2), minval=-1)
    is_first = jnp.array([True, False, True])
    key = jax.random.key(3)
    actions, means, info = jax.jit(functools.partial(cem.plan_batch, config, fns))(
        PARAMS, key, states, prev, is_first)
    assert actions.shape == (3, 2) and means.shape == (3, 4, 2)
    assert info["std"].shape == (3, 4, 2) and info["value"].shape == (3,)
    np.testing.assert_allclose(actions, GOAL - starts, atol=0.05)
    one = jax.jit(functools.partial(cem.plan, config, fns))
    for i, k in enumerate(jax.random.split(key, 3)):
        a, m, _ = one(PARAMS, k, jax.tree.map(lambda x: x[i], states), prev[i], is_first[i])
        np.testing.assert_allclose(actions[i], a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(means[i], m, rtol=1e-5, atol=1e-6)


def test_jit_compiles_once_for_new_keys_states_and_plans():
    traces = []

    def traced(*args):
        traces.append(1)
        return cem.plan(CONFIG, point_fns(), *args)

    plan = jax.jit(traced)
    _, mean, _ = plan(PARAMS, jax.random.key(0), start(), cem.initial_plan(CONFIG, 2), True,
                      False)
    _, mean, _ = plan(PARAMS, jax.random.key(1), start(GOAL), mean, False, True)
    plan({"goal": -PARAMS["goal"]}, jax.random.key(2), start(), mean, jnp.asarray(False),
         jnp.asarray(True))
    assert len(traces) == 1


def test_prev_mean_of_the_wrong_horizon_raises():
    with pytest.raises(ValueError, match="prev_mean has horizon 3; planner.horizon=4"):
        cem.plan(CONFIG, point_fns(), PARAMS, jax.random.key(0), start(), jnp.zeros((3, 2)),
                 True)


@pytest.mark.parametrize("changes,match", [
    (dict(num_elites=2000), "planner.num_elites=2000 must be <= num_candidates = 1000"),
    (dict(horizon=0), "planner.horizon=0 must be an int >= 1"),
    (dict(iterations=2.0), "planner.iterations=2.0 must be an int >= 1"),
    (dict(init_std=0.0), "planner.init_std=0.0 must be > 0"),
    (dict(min_std=-1.0), "planner.min_std=-1.0 must be >= 0"),
    (dict(explore_noise=-0.3), "planner.explore_noise=-0.3 must be >= 0"),
    (dict(gamma=1.5), r"planner.gamma=1.5 must be in \[0, 1\]"),
    (dict(warm_start="yes"), "planner.warm_start='yes' must be True or False"),
])
def test_bad_config_raises_naming_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        cem.CEMConfig(**changes)


def test_from_config_defaults_overrides_and_unknown_fields():
    # Defaults are PlaNet's: H = 12, J = 1000, K = 100, I = 10.
    c = cem.CEMConfig.from_config({"num_candidates": 200}, horizon=5)
    assert (c.horizon, c.num_candidates, c.num_elites, c.iterations) == (5, 200, 100, 10)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['amount'\]"):
        cem.CEMConfig.from_config({"amount": 3})
