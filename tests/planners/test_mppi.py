"""MPPI planner: optimum of a known quadratic with a fake linear model, FOWM's uncertainty penalty,
hand-worked scoring maths, warm start, vmap over envs equals a loop, config errors."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.planners import mppi

# Fake linear model z' = A z + B a with reward -||z' - g||^2 and zero Q/policy.
A_MAT = 0.9 * np.eye(2, dtype=np.float32)
B_MAT = np.array([[0.8, 0.2], [0.0, 1.0]], np.float32)
GOAL = np.array([0.5, 0.2], np.float32)
Z0 = np.array([0.1, -0.3], np.float32)


def linear_fns():
    def next_fn(params, z, a):
        return z @ params["A"].T + a @ params["B"].T
    return mppi.ModelFns(
        next=next_fn,
        reward=lambda p, z, a: -jnp.sum(jnp.square(next_fn(p, z, a) - p["goal"]), -1),
        q_ensemble=lambda p, z, a: jnp.zeros((2, z.shape[0])),
        policy=lambda p, z, key: jnp.zeros((z.shape[0], 2)))


LINEAR_PARAMS = {"A": jnp.asarray(A_MAT), "B": jnp.asarray(B_MAT), "goal": jnp.asarray(GOAL)}
QUAD_CONFIG = mppi.MPPIConfig(horizon=3, num_samples=512, num_pi_trajs=8, num_elites=64,
                              iterations=10, momentum=0.0, min_std=0.01)


@pytest.fixture(scope="module")
def quad_plan():
    return jax.jit(functools.partial(mppi.plan, QUAD_CONFIG, linear_fns()))


def test_finds_optimum_of_quadratic_with_linear_model(quad_plan):
    # Every reward is <= 0 and all can be 0: reach g at t = 1 and stay. Step 0 solves
    # B a_0 = g - A z0 = [0.5, 0.2] - [0.09, -0.27] = [0.41, 0.47]  ->  a_0 = [0.395, 0.47];
    # staying needs B a = g - A g = 0.1 g = [0.05, 0.02]  ->  a = [0.0575, 0.02].
    a0 = np.linalg.solve(B_MAT, GOAL - A_MAT @ Z0)
    a_stay = np.linalg.solve(B_MAT, GOAL - A_MAT @ GOAL)
    np.testing.assert_allclose(a0, [0.395, 0.47], atol=1e-6)
    action, mean, info = quad_plan(LINEAR_PARAMS, jax.random.key(0), jnp.asarray(Z0),
                                   mppi.initial_plan(QUAD_CONFIG, 2), True)
    np.testing.assert_allclose(action, a0, atol=0.03)
    np.testing.assert_allclose(mean, np.stack([a0, a_stay, a_stay]), atol=0.05)
    assert float(info["value"]) > -1e-3  # optimal value is 0
    assert np.all(info["std"] >= QUAD_CONFIG.min_std - 1e-7)
    assert np.all(info["std"] <= QUAD_CONFIG.max_std + 1e-7)


def test_min_std_argument_overrides_the_floor(quad_plan):
    # The elites of the quadratic concentrate (std << 0.5), so a floor of 0.5 binds everywhere.
    _, _, info = quad_plan(LINEAR_PARAMS, jax.random.key(0), jnp.asarray(Z0),
                           mppi.initial_plan(QUAD_CONFIG, 2), True, min_std=0.5)
    np.testing.assert_allclose(info["std"], 0.5)


def test_warm_start_shifts_previous_mean():
    # With momentum 0.99 and one iteration the new mean stays within 0.01 * 2 of the start mean,
    # which is prev_mean shifted by one step (zero-padded), or zero on the first step.
    config = dataclasses.replace(QUAD_CONFIG, momentum=0.99, iterations=1)
    plan = jax.jit(functools.partial(mppi.plan, config, linear_fns()))
    prev = jnp.array([[0.9, -0.9], [0.5, -0.5], [0.3, 0.7]])
    shifted = np.array([[0.5, -0.5], [0.3, 0.7], [0.0, 0.0]])
    _, mean, _ = plan(LINEAR_PARAMS, jax.random.key(1), jnp.asarray(Z0), prev, False)
    np.testing.assert_allclose(mean, 0.99 * shifted, atol=0.02 + 1e-6)
    _, mean, _ = plan(LINEAR_PARAMS, jax.random.key(1), jnp.asarray(Z0), prev, True)
    np.testing.assert_allclose(mean, 0.0, atol=0.02 + 1e-6)


def test_plan_batch_equals_loop_over_envs():
    config = dataclasses.replace(QUAD_CONFIG, num_samples=64, iterations=2)
    fns = linear_fns()
    latents = jnp.array([[0.1, -0.3], [0.0, 0.0], [-0.4, 0.2]])
    prev = jax.random.uniform(jax.random.key(2), (3, 3, 2), minval=-1)
    is_first = jnp.array([True, False, False])
    key = jax.random.key(3)
    actions, means, _ = jax.jit(functools.partial(mppi.plan_batch, config, fns))(
        LINEAR_PARAMS, key, latents, prev, is_first, True)
    one = jax.jit(functools.partial(mppi.plan, config, fns))
    for i, k in enumerate(jax.random.split(key, 3)):
        a, m, _ = one(LINEAR_PARAMS, k, latents[i], prev[i], is_first[i], True)
        np.testing.assert_allclose(actions[i], a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(means[i], m, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(actions) <= 1.0)


def disagreement_fns():
    """1-D action, reward -(a - 0.5)^2 (best a = 0.5); Q members +-relu(a): they agree (0) for
    a <= 0 and disagree for a > 0; sample std of {x, -x} is sqrt(2) |x|. Policy plays -0.5."""
    def q_ensemble(p, z, a):
        x = jax.nn.relu(a[:, 0])
        return jnp.stack([x, -x])
    return mppi.ModelFns(next=lambda p, z, a: z,
                         reward=lambda p, z, a: -jnp.square(a[:, 0] - 0.5),
                         q_ensemble=q_ensemble,
                         policy=lambda p, z, key: jnp.full((z.shape[0], 1), -0.5))


@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_uncertainty_penalty_moves_action_out_of_disagreement(penalty):
    # Penalized reward -(a - 0.5)^2 - sqrt(2) relu(a): its derivative for a > 0 is
    # -2 (a - 0.5) - 1.41 < 0 everywhere on a > 0, and for a <= 0 the reward rises to a = 0,
    # so the optimum moves from a = 0.5 (no penalty) to a = 0, the edge of the agreed region.
    config = mppi.MPPIConfig(horizon=2, num_samples=256, num_pi_trajs=0, num_elites=16,
                             iterations=6, temperature=50.0, momentum=0.0, min_std=0.01,
                             uncertainty_penalty=penalty, value_aggregation="mean")
    plan = jax.jit(functools.partial(mppi.plan, config, disagreement_fns()))
    action, mean, _ = plan({}, jax.random.key(0), jnp.zeros(1), mppi.initial_plan(config, 1), True)
    expected = 0.5 if penalty == 0 else 0.0
    np.testing.assert_allclose(action, [expected], atol=0.05)
    np.testing.assert_allclose(mean[:, 0], expected, atol=0.05)


def test_trajectory_value_and_penalized_value_hand_worked():
    # [1, 2] with gamma 0.5 and terminal 4: 1 + 0.5 * 2 + 0.25 * 4 = 3;  [0, 0] + 0.25 * -8 = -2.
    rewards = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(mppi.trajectory_value(rewards, jnp.array([4.0, -8.0]), 0.5),
                               [3.0, -2.0])
    # members {1, 3}: min 1, mean 2, sample std sqrt(2): mean - 2 std = 2 - 2.828.
    qs = jnp.array([[1.0], [3.0]])
    np.testing.assert_allclose(mppi.penalized_value(qs, 0.0, "min"), [1.0])
    np.testing.assert_allclose(mppi.penalized_value(qs, 2.0, "mean"), [2 - 2 * np.sqrt(2)],
                               rtol=1e-6)


def test_terminal_value_over_two_random_members_hand_worked():
    """FOWM: min of 2 of 5 members drawn at random, minus lambda * std over all 5.
    Q = [3, 1, 4, 1.5, 5]: of the 10 pairs, 4 hold the 1 (min 1), 3 more the 1.5 (min 1.5), then
    2 hold the 3 (min 3) and 1 is {4, 5} (min 4): frequencies 0.4, 0.3, 0.2, 0.1, never 5.
    Sample std over all 5: mean 2.9, squared deviations sum to 11.2, sqrt(11.2 / 4) = 1.6733.
    Mean of 2 (TD-MPC2): the pair means, e.g. (1 + 1.5) / 2 = 1.25 only for the pair {1, 1.5}."""
    qs = jnp.array([3.0, 1.0, 4.0, 1.5, 5.0])[:, None]
    keys = jax.random.split(jax.random.key(0), 4000)
    draw = jax.jit(jax.vmap(lambda k, lam, agg: mppi.penalized_value(qs, lam, agg, 2, k)[0],
                            (0, None, None)), static_argnums=(1, 2))
    values = np.asarray(draw(keys, 0.0, "min"))
    freq = {v: np.mean(values == v) for v in (1.0, 1.5, 3.0, 4.0)}
    np.testing.assert_allclose(list(freq.values()), [0.4, 0.3, 0.2, 0.1], atol=0.03)
    assert sum(freq.values()) == 1.0
    penalized = np.asarray(draw(keys, 1.0, "min"))
    np.testing.assert_allclose(penalized, values - np.sqrt(11.2 / 4), rtol=1e-5)
    means = np.asarray(draw(keys, 0.0, "mean"))
    np.testing.assert_allclose(np.mean(means == 1.25), 0.1, atol=0.03)
    # 0 members, or as many as the ensemble, aggregate all of it.
    assert float(mppi.penalized_value(qs, 0.0, "min", 0)[0]) == 1.0
    np.testing.assert_allclose(mppi.penalized_value(qs, 0.0, "mean", 5, keys[0]), [2.9])


def test_estimate_values_uses_the_configured_terminal_members():
    """Zero rewards and Q_e(z, a) = [3, 1, 4, 1.5, 5][e]: the value of a sequence is
    gamma^H * (the terminal value), so with gamma = 0.5, H = 2 and 2 members it is a quarter of
    one of the pair minima; with all members, exactly 0.25."""
    fns = mppi.ModelFns(
        next=lambda p, z, a: z, reward=lambda p, z, a: jnp.zeros(z.shape[0]),
        q_ensemble=lambda p, z, a: jnp.broadcast_to(
            jnp.array([3.0, 1.0, 4.0, 1.5, 5.0])[:, None], (5, z.shape[0])),
        policy=lambda p, z, key: jnp.zeros((z.shape[0], 1)))
    z, actions = jnp.zeros((3, 1)), jnp.zeros((3, 2, 1))
    seen = set()
    for members in (0, 2):
        config = mppi.MPPIConfig(horizon=2, num_samples=3, num_pi_trajs=0, num_elites=1,
                                 gamma=0.5, value_members=members)
        for i in range(20):
            v = mppi.estimate_values(config, fns, {}, z, actions, jax.random.key(i))
            assert float(v.max()) == float(v.min())      # one draw for all sequences
            seen.add((members, float(v[0]) / 0.25))
    assert {v for m, v in seen if m == 0} == {1.0}
    assert {v for m, v in seen if m == 2} <= {1.0, 1.5, 3.0, 4.0}
    assert len({v for m, v in seen if m == 2}) > 1


@pytest.mark.parametrize("h", [1, 3, 5])
def test_masked_horizon_equals_the_planner_built_for_that_horizon(h):
    """Values of sequences of length 5 planned with horizon h (traced) equal the values of their
    first h actions under a planner built for H = h: same rewards, same terminal latent and
    discount gamma^h, with a nonlinear model, an uncertainty penalty and 2 random Q members."""
    def fns():
        return mppi.ModelFns(
            next=lambda p, z, a: jnp.tanh(z @ p["w"] + a.sum(-1, keepdims=True)),
            reward=lambda p, z, a: (z * a[:, :1]).sum(-1) - jnp.square(a).sum(-1),
            q_ensemble=lambda p, z, a: jnp.stack([(z * c).sum(-1) + a[:, 0]
                                                  for c in (1.0, -0.5, 2.0)]),
            policy=lambda p, z, key: jnp.tanh(z[:, :2] + jax.random.normal(key, (z.shape[0], 2))))
    params = {"w": jax.random.normal(jax.random.key(0), (3, 3))}
    z = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (3,)), (8, 3))
    actions = jax.random.uniform(jax.random.key(2), (8, 5, 2), minval=-1)
    common = dict(num_samples=8, num_pi_trajs=0, num_elites=2, gamma=0.9,
                  uncertainty_penalty=0.5, value_members=2)
    masked = jax.jit(functools.partial(mppi.estimate_values, mppi.MPPIConfig(horizon=5, **common),
                                       fns()))(params, z, actions, jax.random.key(3), h)
    plain = mppi.estimate_values(mppi.MPPIConfig(horizon=h, **common), fns(), params, z,
                                 actions[:, :h], jax.random.key(3))
    np.testing.assert_allclose(masked, plain, rtol=1e-5, atol=1e-6)
    if h < 5:   # and differ from the full horizon
        full = mppi.estimate_values(mppi.MPPIConfig(horizon=5, **common), fns(), params, z,
                                    actions, jax.random.key(3))
        assert float(jnp.abs(full - masked).max()) > 1e-3


def test_mppi_update_hand_worked():
    # Values [0, 1, -5] with 2 elites -> samples 1 and 0 with weights exp(T * (V - 1)), T = ln 3:
    # w = [1, 1/3] / (4/3) = [0.75, 0.25]; mean = 0.75 * 2 + 0.25 * 1 = 1.75 (action of sample 1
    # is 2, of sample 0 is 1); std = sqrt(0.75 * 0.25^2 + 0.25 * 0.75^2) = sqrt(0.1875).
    actions = jnp.array([1.0, 2.0, 9.0]).reshape(3, 1, 1)
    mean, std, elites, weights = mppi.mppi_update(actions, jnp.array([0.0, 1.0, -5.0]), 2,
                                                  float(np.log(3.0)))
    np.testing.assert_allclose(weights, [0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(elites[:, 0, 0], [2.0, 1.0])
    np.testing.assert_allclose(mean, [[1.75]], rtol=1e-6)
    np.testing.assert_allclose(std, [[np.sqrt(0.1875)]], rtol=1e-6)


@pytest.mark.parametrize("changes,match", [
    (dict(num_elites=600), "planner.num_elites=600 must be <= num_samples"),
    (dict(value_aggregation="max"), r"planner.value_aggregation='max' is not one of \('min'"),
    (dict(value_members=-1), "planner.value_members=-1 must be an int >= 0"),
    (dict(min_std=3.0), "planner.min_std=3.0"),
    (dict(horizon=0), "planner.horizon=0 must be an int >= 1"),
    (dict(uncertainty_penalty=-1.0), "planner.uncertainty_penalty=-1.0"),
])
def test_bad_config_raises_naming_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        mppi.MPPIConfig(**changes)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['samples'\]"):
        mppi.MPPIConfig.from_config({"samples": 3})
