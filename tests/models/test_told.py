"""TOLD (TD-MPC / TD-MPC2 / FOWM): hand-worked loss maths, ensemble vmap vs loop, loss weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import told

OBS, ACT, B = 5, 2, 4


def tiny_config(variant):
    c = told.model_config(variant)
    c.latent_dim, c.mlp_dim, c.enc_dim, c.num_bins, c.horizon = 16, 32, 32, 11, 3
    return c


@pytest.fixture(scope="module", params=["tdmpc", "tdmpc2", "fowm"])
def model(request):
    m = told.TOLD(tiny_config(request.param), OBS, ACT)
    params, pi_params = jax.jit(m.init)(jax.random.key(0))
    return m, params, pi_params


def make_batch(horizon, reset_at=None):
    """Sequences [H + 1, B] with reward 1 on every step; optional reset of env 0 at `reset_at`."""
    is_first = np.zeros((horizon + 1, B), bool)
    if reset_at is not None:
        is_first[reset_at, 0] = True
    return {"vector": jax.random.normal(jax.random.key(1), (horizon + 1, B, OBS)),
            "action": jax.random.uniform(jax.random.key(2), (horizon + 1, B, ACT), minval=-1),
            "reward": jnp.ones((horizon + 1, B)), "is_first": jnp.asarray(is_first),
            "is_terminal": jnp.zeros((horizon + 1, B), bool)}


def test_expectile_loss_hand_worked():
    # |tau - 1(u < 0)| u^2 with tau = 0.7: u = 2 -> 0.7 * 4; u = -2 -> 0.3 * 4; u = 0.5 -> 0.7 / 4.
    diff = jnp.array([2.0, -2.0, 0.5, 0.0])
    np.testing.assert_allclose(told.expectile_loss(diff, 0.7), [2.8, 1.2, 0.175, 0.0], rtol=1e-6)
    # tau = 0.5 is half the squared error.
    np.testing.assert_allclose(told.expectile_loss(diff, 0.5), 0.5 * diff ** 2, rtol=1e-6)


def test_awr_weights_hand_worked():
    # exp(3 * (Q - V)): (1 - 0.5) -> e^1.5; (0 - 1) -> e^-3; (3 - 0) -> e^9 = 8103 clamped to 100.
    q, v = jnp.array([1.0, 0.0, 3.0]), jnp.array([0.5, 1.0, 0.0])
    np.testing.assert_allclose(told.awr_weights(q, v, 3.0, 100.0),
                               [np.exp(1.5), np.exp(-3.0), 100.0], rtol=1e-6)
    # No gradient flows through the weights.
    grad = jax.grad(lambda q: told.awr_weights(q, v, 3.0, 100.0).sum())(q)
    np.testing.assert_array_equal(grad, 0.0)


def test_transition_mask_stops_at_resets():
    # is_first at k = 2 in column 0 masks transitions t >= 1 (t + 1 >= 2); k = 0 never matters.
    is_first = jnp.array([[True, True], [False, False], [True, False], [False, True]])
    np.testing.assert_array_equal(told.transition_mask(is_first), [[1, 1], [0, 1], [0, 0]])


def test_min_of_two_and_ema():
    values = jnp.array([[3.0, -1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(told.min_of_two(values, jax.random.key(0)), [1.0, -1.0])
    five = jax.random.normal(jax.random.key(1), (5, 7))
    out = told.min_of_two(five, jax.random.key(2))
    pair_mins = [np.minimum(five[i], five[j]) for i in range(5) for j in range(i + 1, 5)]
    assert any(np.array_equal(out, m) for m in pair_mins)
    # 0.9 * 1 + 0.1 * 3 = 1.2
    np.testing.assert_allclose(told.ema({"w": jnp.ones(2)}, {"w": 3 * jnp.ones(2)}, 0.1)["w"], 1.2)


def test_vmapped_q_ensemble_equals_loop_over_members(model):
    m, params, _ = model
    z = jax.random.normal(jax.random.key(3), (6, m.config.latent_dim))
    a = jax.random.uniform(jax.random.key(4), (6, ACT), minval=-1)
    # Give members distinct, non-zero output layers (they are zero-initialized).
    q_params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(5), x.shape),
                            params["q"])
    vmapped = jax.jit(m.q_values)(q_params, z, a)
    assert vmapped.shape == (m.config.num_q, 6)
    for e in range(m.config.num_q):
        member = jax.tree.map(lambda x: x[e], q_params)
        loop = m._decode(m.q_net.apply(member, jnp.concatenate([z, a], -1)))
        np.testing.assert_allclose(vmapped[e], loop, rtol=1e-5, atol=1e-6)
    assert float(told.ensemble_std(vmapped).mean()) > 0


def test_q_dropout_acts_only_with_a_key():
    """TD-MPC2's Q nets drop first-layer units in training (a key) and never in eval (no key):
    eval equals the member nets applied without dropout; train differs, is fixed by its key, and
    with rate 0.5 zeroes about half of the first-layer units of each member."""
    c = tiny_config("tdmpc2")
    c.dropout = 0.5
    m = told.TOLD(c, OBS, ACT)
    params, _ = jax.jit(m.init)(jax.random.key(0))
    q = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(5), x.shape),
                     params["q"])
    z = jax.random.normal(jax.random.key(3), (6, c.latent_dim))
    a = jnp.zeros((6, ACT))
    no_dropout = tiny_config("tdmpc2")
    no_dropout.dropout = 0.0
    plain = told.TOLD(no_dropout, OBS, ACT)                  # same layers, no dropout
    np.testing.assert_array_equal(m.q_values(q, z, a), plain.q_values(q, z, a))
    np.testing.assert_array_equal(plain.q_values(q, z, a, jax.random.key(7)),
                                  plain.q_values(q, z, a))
    train = m.q_values(q, z, a, jax.random.key(7))
    np.testing.assert_array_equal(train, m.q_values(q, z, a, jax.random.key(7)))
    assert float(jnp.abs(train - m.q_values(q, z, a)).min()) > 0
    member = jax.tree.map(lambda x: x[0], q)
    first = m.q_net.apply(member, jnp.concatenate([z, a], -1), False,
                          rngs={"dropout": jax.random.key(8)}, capture_intermediates=True)
    dropped = first[1]["intermediates"]["Dropout_0"]["__call__"][0]
    assert 0.4 < float(jnp.mean(dropped == 0)) < 0.6


@pytest.mark.slow   # kept out of `make test` for time; `make test-slow` runs it
def test_tdmpc2_encoder_learns_at_a_scaled_rate():
    """enc_lr_scale 0.3: the encoder's Adam update is 0.3 x the one at scale 1, every other
    part's is unchanged; the policy prior's Adam uses eps 1e-5 (TD-MPC2)."""
    from jaxwm.agents.tdmpc import agent as tdmpc_agent, config as tdmpc_config
    config = tdmpc_config.get_config("smoke_v2")
    assert (config.model.enc_lr_scale, config.model.pi_eps, config.model.dropout) == \
        (0.3, 1e-5, 0.01)
    agent = tdmpc_agent.Agent(config, OBS, ACT)
    config_one = tdmpc_config.get_config("smoke_v2")
    config_one.model.enc_lr_scale = 1.0
    unscaled = tdmpc_agent.Agent(config_one, OBS, ACT)
    state = jax.jit(agent.init)(jax.random.key(0))
    params = state.model.params
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), params)
    scaled, _ = agent.optimizer.update(grads, agent.optimizer.init(params), params)
    plain, _ = unscaled.optimizer.update(grads, unscaled.optimizer.init(params), params)
    for part in params:
        factor = 0.3 if part == "encoder" else 1.0
        jax.tree.map(lambda s, p: np.testing.assert_allclose(s, factor * p, rtol=1e-6),
                     scaled[part], plain[part])
    assert told.model_config("tdmpc").enc_lr_scale == 1.0


@pytest.mark.parametrize("variant", ["tdmpc", "fowm"])  # the MSE reward head
def test_reward_loss_has_rho_weights_and_masks(variant):
    m = told.TOLD(tiny_config(variant), OBS, ACT)
    params, pi_params = jax.jit(m.init)(jax.random.key(0))
    # Heads start at ~0 (zero-initialized output layer) and rewards are 1, so every per-step
    # squared error is 1: loss = sum_t rho^t mask_t = 1 + 0.5 + 0.25 = 1.75 for full sequences;
    # env 0 resets at k = 2, so only t = 0 counts for it: mean over B = (1 + 3 * 1.75) / 4.
    loss_fn = jax.jit(m.world_model_loss)
    _, (metrics, zs, _) = loss_fn(params, pi_params, m.target_params(params), make_batch(3),
                                  jax.random.key(0))
    np.testing.assert_allclose(metrics["reward_loss"], 1.75, rtol=1e-3)
    batch = make_batch(3, 2)
    loss, (metrics, _, priorities) = loss_fn(params, pi_params, m.target_params(params), batch,
                                             jax.random.key(0))
    np.testing.assert_allclose(metrics["reward_loss"], (1 + 3 * 1.75) / 4, rtol=1e-3)
    np.testing.assert_allclose(metrics["mask_frac"], (1 + 3 * 3) / 12, rtol=1e-6)
    assert zs.shape == (4, B, m.config.latent_dim)
    # PER priorities: Q heads and the bootstrap (Q' or V) are exactly 0, so y_t = r_t = 1 and
    # each of the E members is off by 1: sum_t rho^t mask_t E = 1.75 E, and E for env 0.
    e = m.config.num_q
    np.testing.assert_allclose(priorities, [e, 1.75 * e, 1.75 * e, 1.75 * e], rtol=1e-5)
    # IS weights scale each sequence's loss: all ones is the plain loss, and weights add up.
    weighted = lambda w: loss_fn(params, pi_params, m.target_params(params), batch,  # noqa
                                 jax.random.key(0), jnp.asarray(w, jnp.float32))[0]
    np.testing.assert_allclose(weighted([1, 1, 1, 1]), loss, rtol=1e-6)
    np.testing.assert_allclose(weighted([2, 0, 3, 0]),
                               2 * weighted([1, 0, 0, 0]) + 3 * weighted([0, 0, 1, 0]), rtol=1e-5)


def test_losses_finite_and_gradients_reach_the_right_params(model):
    m, params, pi_params = model
    batch, target = make_batch(m.config.horizon), m.target_params(params)
    grads, (metrics, zs, _) = jax.jit(jax.grad(m.world_model_loss, has_aux=True))(
        params, pi_params, target, batch, jax.random.key(0))
    assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    norms = {k: float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(g))) for k, g in grads.items()}
    assert all(v > 0 for v in norms.values()), norms  # encoder, dynamics, reward, q (and v)
    pi_grads, pi_metrics = jax.jit(jax.grad(m.policy_loss, has_aux=True))(
        pi_params, params, target, zs, batch, jnp.ones(()), jax.random.key(1))
    assert np.isfinite(float(pi_metrics["pi_loss"]))
    assert sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(pi_grads)) > 0


def test_deterministic_policy_log_prob_is_unit_gaussian():
    m = told.TOLD(tiny_config("fowm"), OBS, ACT)
    _, pi_params = jax.jit(m.init)(jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (3, 16))
    a = jnp.array([[0.1, -0.2], [0.5, 0.5], [-1.0, 1.0]])

    @jax.jit
    def run(pi_params, z, a, key):
        mean = m.pi_dist(pi_params, z)[0]
        return mean, m.pi_log_prob(pi_params, z, a), m.pi(pi_params, z, key)[0]

    mean, log_prob, action = run(pi_params, z, a, jax.random.key(2))
    expected = -0.5 * ((a - mean) ** 2).sum(-1) - np.log(2 * np.pi)  # A = 2: 2 * 0.5 log 2pi
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    assert np.all(np.abs(action - mean) <= 0.3 + 1e-6)  # TD-MPC's noise clip


@pytest.mark.parametrize("field,value,match", [
    ("act", "swish", "model.act='swish' is not one of"),
    ("latent_norm", "l2", "model.latent_norm"),
    ("num_q", 1, "model.num_q=1"),
    ("policy_objective", "awr", "needs model.value_learning='iql'"),
    ("expectile", 1.0, r"model.expectile=1.0 must be in \[0, 1\)"),
])
def test_bad_config_raises_naming_the_field(field, value, match):
    c = told.model_config("tdmpc")
    c[field] = value
    with pytest.raises(ValueError, match=match):
        told.TOLD(c, OBS, ACT)
    with pytest.raises(ValueError, match="variant='tdmpc3' is not one of"):
        told.model_config("tdmpc3")
