"""Dreamer V1 / V2 / V3 by preset: each smoke preset trains one jitted step on real data; the
paper presets hold the published values; DreamerV3's two-hot critic round trip, critic
regularizer toward the EMA critic, EMA update and symlog inputs; wrong combinations raise."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxwm import distributions as dists
from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.agents.dreamer.config import apply_variant, get_config
from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.data import replay
from jaxwm.envs.base import ActionSpace
from jaxwm.models.dreamer import WorldModel, WorldModelNet
from tests.models.test_dreamer import collect

T, B = 8, 4


@pytest.fixture(scope="module")
def cartpole():
    return collect("CartpoleBalance-v1")


@pytest.mark.slow   # V1/V3 compile (~1 min); V2's smoke run stays in the default suite
@pytest.mark.parametrize("preset", ["smoke_v1", "smoke_v3"])   # smoke (V2): test_dreamer.py
def test_smoke_preset_builds_and_trains_one_step(cartpole, preset):
    env, data = cartpole
    config = get_config(preset)
    agent = Dreamer(config, env.obs_space, env.act_space)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    batch = replay.sample(data, jax.random.PRNGKey(1), B, T)
    state, metrics = jax.jit(agent.train_step)(state, batch, jax.random.PRNGKey(2))
    assert int(state.step) == 1
    for k, v in metrics.items():
        assert np.isfinite(v), (preset, k)
    obs = {k: batch[k][0, :2] for k, _ in agent.wm.obs_shapes}
    action, _ = jax.jit(agent.act)(state, agent.initial_carry(2),
                                   {**obs, "is_first": jnp.ones(2, bool)}, jax.random.PRNGKey(3))
    assert action.shape == (2, env.act_space.size) and np.all(np.abs(action) <= 1.0)
    if preset == "smoke_v3":   # returns divided by max(1, P95 - P5) of the imagined returns
        assert float(metrics["return_scale"]) >= 1.0


def test_presets_hold_the_published_values():
    v1 = get_config("paper_v1")
    m, b, r = v1.model, v1.behavior, v1.run
    assert v1.variant == "v1" and (m.latent, m.deter, m.stoch, m.hidden) == ("gaussian", 200, 30,
                                                                              200)
    assert (m.kl_balancing, m.kl_scale, m.kl_free, m.pred_discount) == (False, 1.0, 3.0, False)
    assert (m.lr, b.actor_lr, b.critic_lr) == (6e-4, 8e-5, 8e-5)
    assert (b.horizon, b.return_lambda, b.discount, b.slow_target) == (15, 0.95, 0.99, False)
    assert (b.actor_grad, b.actor_ent, b.actor_dist) == ("dynamics", 0.0, "tanh_normal")
    assert (m.mlp_layers, m.mlp_units, b.actor_layers, b.critic_units) == (3, 400, 3, 400)
    assert (r.batch_size, r.seq_len, v1.env.overrides.action_repeat) == (50, 50, 2)
    v3 = get_config("paper_v3")
    m, b = v3.model, v3.behavior
    assert v3.variant == "v3" and (m.unimix, m.act, m.layer_norm, m.symlog_inputs) == (
        0.01, "silu", True, True)
    np.testing.assert_allclose([m.kl_scale * m.kl_balance, m.kl_scale * (1 - m.kl_balance)],
                               [0.5, 0.1])                                  # beta_dyn, beta_rep
    assert (m.kl_free, m.kl_free_avg, m.reward_head, m.reward_bins) == (1.0, False, "twohot", 255)
    assert (m.lr, m.eps, m.clip, b.actor_lr, b.critic_lr) == (1e-4, 1e-8, 1000.0, 3e-5, 3e-5)
    assert (b.critic_head, b.critic_bins, b.critic_slowreg, b.slow_target_fraction,
            b.slow_target_update, b.slow_target) == ("twohot", 255, 1.0, 0.02, 1, False)
    assert (b.return_norm, b.actor_ent, b.actor_unimix) == ("percentile", 3e-4, 0.01)
    np.testing.assert_allclose(b.discount, 1 - 1 / 333)
    assert get_config("paper").variant == "v2" and get_config("paper").model.latent == "discrete"
    for size in ("smoke", "cpu"):    # same env and budgets as the V2 preset of that size
        base = get_config(size)
        for variant in ("v1", "v3"):
            c = get_config(f"{size}_{variant}")
            assert c.env == base.env and c.run == base.run and c.variant == variant
    assert get_config("cpu_v1").model.stoch == 30 and get_config("cpu_v3").model.deter == 200


def test_v3_twohot_critic_round_trips_values():
    ac = ac_lib.ActorCritic(get_config("smoke_v3").behavior, 8, ActionSpace(False, 1))
    assert ac.bins.shape == (255,)
    values = jnp.concatenate([jnp.linspace(-1e3, 1e3, 2001), jnp.array([-0.37, 1e-3, 0.0])])
    logits = jnp.log(dists.two_hot(dists.symlog(values), ac.bins))
    np.testing.assert_allclose(dists.two_hot_mean(logits, ac.bins), values, rtol=1e-4, atol=1e-4)
    # the head starts at 0: zero-initialized output layer
    state = ac.init(jax.random.PRNGKey(0))
    feat = jax.random.normal(jax.random.PRNGKey(1), (5, 8))
    np.testing.assert_allclose(ac.value(state.critic.params, feat), 0.0, atol=1e-5)


def test_critic_regularizer_hand_case():
    # Gaussian head, zero weight on the return term (returns = v): loss = 0.5 * (v - v_slow)^2,
    # d/dv = v - v_slow = -2 at v = 1, v_slow = 3; an SGD step of 0.25 moves v to 1.5.
    v, v_slow = jnp.array([1.0]), jnp.array([3.0])
    loss = lambda v: ac_lib.critic_loss(v, jnp.array([1.0]), jnp.ones(1), v_slow, 1.0)  # noqa
    np.testing.assert_allclose(loss(v), 2.0)
    np.testing.assert_allclose(v - 0.25 * jax.grad(loss)(v), [1.5])


@pytest.mark.slow   # actor-critic compiles; the hand case below stays
@pytest.mark.parametrize("head", ["twohot", "normal"])
def test_critic_regularizer_pulls_toward_the_ema_critic(head):
    c = get_config("smoke_v3").behavior
    c.critic_head = head
    ac = ac_lib.ActorCritic(c, 8, ActionSpace(False, 1))
    state = ac.init(jax.random.PRNGKey(0))
    noise = lambda p, k: p + 0.3 * jax.random.normal(k, p.shape)  # noqa: E731
    leaves, tree = jax.tree.flatten(state.slow_critic)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    slow = jax.tree.unflatten(tree, [noise(p, k) for p, k in zip(leaves, keys)])
    feat = jax.random.normal(jax.random.PRNGKey(2), (16, 8))
    v_slow = ac.value(slow, feat)
    returns, weights = jnp.zeros(16), jnp.ones(16)

    def regularizer(params):  # the critic loss minus its return term
        out = ac.critic_out(params, feat)
        return (ac_lib.critic_loss(out, returns, weights, v_slow, 1.0, ac.bins)
                - ac_lib.critic_loss(out, returns, weights, bins=ac.bins))

    params = state.critic.params
    gap = lambda p: float(jnp.abs(ac.value(p, feat) - v_slow).mean())  # noqa: E731
    before = gap(params)
    assert before > 1e-3
    params = jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(regularizer)(params))
    assert gap(params) < before


def test_ema_slow_critic_update_hand_case():
    c = get_config("smoke_v3").behavior
    ac = ac_lib.ActorCritic(c, 4, ActionSpace(False, 1))
    state = ac.init(jax.random.PRNGKey(0))
    state = state.replace(slow_critic=jax.tree.map(lambda p: jnp.full_like(p, 2.0),
                                                    state.critic.params))
    zero = jax.tree.map(jnp.zeros_like, state.actor.params)
    grads = jax.tree.map(jnp.ones_like, state.critic.params)
    new = ac.apply_gradients(state, zero, grads, state.norm)
    expected = jax.tree.map(lambda s, p: 0.98 * s + 0.02 * p, state.slow_critic,
                            new.critic.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new.slow_critic,
                 expected)
    leaf = jax.tree.leaves(new.critic.params)[0]
    assert not np.allclose(leaf, 2.0)           # the critic moved, the EMA followed 2%


@pytest.mark.slow   # world-model compiles
def test_symlog_inputs_encoder_and_vector_target(cartpole):
    env, data = cartpole
    config = get_config("smoke").model
    plain = WorldModel(config, env.obs_space, env.act_space)
    config = ml_collections.ConfigDict(config.to_dict())
    config.symlog_inputs = True
    wm = WorldModel(config, env.obs_space, env.act_space)
    params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    batch = replay.sample(data, jax.random.PRNGKey(1), B, T)
    x = batch["vector"] * 5.0                      # well outside the near-linear range of symlog
    np.testing.assert_allclose(wm.encode(params, {"vector": x}),
                               plain.encode(params, {"vector": dists.symlog(x)}), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(wm.encode(params, {"vector": x}), plain.encode(params, {"vector": x}))
    key = jax.random.PRNGKey(2)
    _, (metrics, posts) = wm.loss(params, batch, key)
    from jaxwm.models import rssm
    feat = rssm.features(posts)
    raw = wm.net.apply(params, feat, method=WorldModelNet.decode)["vector"]
    target = dists.symlog(batch["vector"])
    np.testing.assert_allclose(metrics["vector_loss"],
                               (0.5 * jnp.square(raw - target).sum(-1)).mean(), rtol=1e-5)
    np.testing.assert_allclose(wm.decode(params, feat)["vector"], dists.symexp(raw), rtol=1e-5)


@pytest.mark.parametrize("preset,block,field,value,match", [
    ("smoke_v3", "model", "latent", "gaussian", r"model.unimix=0.01.*model.latent='discrete'"),
    ("smoke", "behavior", "critic_head", "mse", r"behavior.critic_head='mse'.*twohot"),
    ("smoke_v3", "behavior", "slow_target_fraction", 1.0, r"behavior.critic_slowreg"),
    ("smoke_v3", "behavior", "critic_slowreg", -1.0, r"behavior.critic_slowreg=-1.0"),
    ("smoke_v3", "behavior", "critic_bins", 1, r"behavior.critic_bins=1 .*critic_head='twohot'"),
    ("smoke_v1", "model", "unimix", 1.0, r"model.unimix=1.0 .*'discrete'"),
])
def test_wrong_combinations_name_the_field(cartpole, preset, block, field, value, match):
    env, _ = cartpole
    config = get_config(preset)
    config[block][field] = value
    with pytest.raises(ValueError, match=match):
        Dreamer(config, env.obs_space, env.act_space)


def test_bad_variant_and_continuous_actor_on_discrete_actions():
    with pytest.raises(ValueError, match="preset='paper_v4'.*smoke_v1"):
        get_config("paper_v4")
    with pytest.raises(ValueError, match="variant='v4'"):
        apply_variant(get_config("smoke"), "v4")
    with pytest.raises(ValueError, match="behavior.actor_dist='tanh_normal'.*discrete"):
        ac_lib.ActorCritic(get_config("smoke_v1").behavior, 8, ActionSpace(True, 3))


def test_tanh_normal_actor_log_prob_and_mode():
    ac = ac_lib.ActorCritic(get_config("smoke_v1").behavior, 8, ActionSpace(False, 2))
    params = ac.init(jax.random.PRNGKey(0)).actor.params
    feat = jax.random.normal(jax.random.PRNGKey(1), (64, 8))
    action = ac.sample_features(params, feat, jax.random.PRNGKey(2))
    assert np.all(np.abs(action) <= 1.0)       # initial pre-tanh std 5: many saturate at +-1
    logp, ent = ac.log_prob_entropy(params, feat, action)
    assert np.isfinite(logp).all() and np.isfinite(ent).all()
    mean, std = ac._dist_params(params, feat)
    u = jnp.arctanh(action)   # change of variables: log N(u) - log(1 - tanh(u)^2)
    expected = (ac_lib._normal_log_prob(u, mean, std) - jnp.log1p(-action ** 2)).sum(-1)
    inside = np.all(np.abs(action) < 0.99, -1)
    assert inside.sum() >= 5
    np.testing.assert_allclose(logp[inside], expected[inside], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ac.act(params, feat, None, sample=False), jnp.tanh(mean),
                               rtol=1e-6)
