"""Actor-critic: exact loss values, gradient signs of REINFORCE and dynamics backprop (on the pure
losses and through imagination with a tiny world model), action distributions, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxwm.agents.dreamer.config import (apply_behavior_preset, apply_preset, behavior_config,
                                         model_config)
from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.envs.base import ActionSpace, Space
from jaxwm.models import rssm
from jaxwm.models.dreamer import WorldModel


# --- pure losses ------------------------------------------------------------------------------

def test_actor_loss_exact_value():
    # H = 2, rho = 0.5, eta = 0.1, S = 2, w = [1, 0.5]:
    # objective_t = 0.5 * logp * (R - b) / S + 0.5 * R / S + 0.1 * ent
    # t=0: 0.5 * (-1) * (3 - 1) / 2 + 0.5 * 3 / 2 + 0.1 * 2 = -0.5 + 0.75 + 0.2 = 0.45
    # t=1: 0.5 * (-2) * (1 - 2) / 2 + 0.5 * 1 / 2 + 0.1 * 1 = 0.5 + 0.25 + 0.1 = 0.85
    # loss = -mean(w * obj) = -(0.45 + 0.5 * 0.85) / 2 = -0.4375
    loss = ac_lib.actor_loss(jnp.array([-1.0, -2.0]), jnp.array([2.0, 1.0]),
                             jnp.array([3.0, 1.0]), jnp.array([1.0, 2.0]),
                             jnp.array([1.0, 0.5]), rho=0.5, eta=0.1, scale=2.0)
    np.testing.assert_allclose(loss, -0.4375, rtol=1e-6)


def test_critic_loss_exact_value():
    # mean(w * 0.5 (v - R)^2) = (1 * 0.5 * 4 + 0.5 * 0.5 * 1) / 2 = 1.125
    loss = ac_lib.critic_loss(jnp.array([1.0, 0.0]), jnp.array([3.0, 1.0]), jnp.array([1.0, 0.5]))
    np.testing.assert_allclose(loss, 1.125)


def reinforce_loss(logits, action, advantage, rho=1.0):
    logp = jax.nn.log_softmax(logits)[action][None]
    return ac_lib.actor_loss(logp, jnp.zeros(1), jnp.array([advantage]), jnp.zeros(1),
                             jnp.ones(1), rho=rho, eta=0.0)


def test_reinforce_gradient_sign():
    logits = jnp.zeros(2)
    grad = jax.grad(reinforce_loss)(logits, 1, 2.0)
    # Descent raises the logit of an action with positive advantage and lowers the other one.
    assert grad[1] < 0 < grad[0]
    grad = jax.grad(reinforce_loss)(logits, 1, -2.0)
    assert grad[0] < 0 < grad[1]
    # d/dtheta_1 of -(log softmax(theta)_1 * A) at theta = 0 is -(1 - 0.5) * A = -1 for A = 2.
    np.testing.assert_allclose(jax.grad(reinforce_loss)(logits, 1, 2.0), [1.0, -1.0], rtol=1e-6)


def test_dynamics_backprop_gradient_sign_and_reinforce_ignores_it():
    def loss(mu, rho):
        ret = -(mu - 2.0) ** 2           # a return that depends differentiably on the action mu
        return ac_lib.actor_loss(jnp.zeros(1), jnp.zeros(1), ret[None], jnp.zeros(1),
                                 jnp.ones(1), rho=rho, eta=0.0)
    assert jax.grad(loss)(0.0, 0.0) < 0          # descent moves mu towards the optimum 2
    assert jax.grad(loss)(3.0, 0.0) > 0
    assert jax.grad(loss)(0.0, 1.0) == 0         # REINFORCE stops gradients through returns


def test_entropy_bonus_gradient_raises_entropy():
    def loss(logits):
        logp = jax.nn.log_softmax(logits)
        ent = -(jnp.exp(logp) * logp).sum()
        return ac_lib.actor_loss(jnp.zeros(1), ent[None], jnp.zeros(1), jnp.zeros(1),
                                 jnp.ones(1), rho=1.0, eta=1.0)
    grad = jax.grad(loss)(jnp.array([1.0, 0.0]))
    assert grad[0] > 0 > grad[1]                # descent flattens the distribution


# --- the actor-critic with a tiny world model -------------------------------------------------

def tiny(discrete: bool, **behavior):
    model = apply_preset(model_config(), "smoke")
    model.deter, model.hidden, model.stoch, model.classes, model.mlp_units = 16, 16, 2, 4, 16
    act_space = ActionSpace(discrete, 3 if discrete else 2)
    wm = WorldModel(model, {"vector": Space((3,), np.dtype(np.float32))}, act_space)
    cfg = apply_behavior_preset(behavior_config(), "smoke")
    cfg.actor_units = cfg.critic_units = 16
    cfg.discount_head, cfg.actor_ent = False, 0.0
    cfg.update(behavior)
    return wm, ac_lib.ActorCritic(cfg, ac_lib.feat_size(model), act_space)


def random_starts(wm, key, n):
    state = wm.initial_state((n,))
    k1, k2 = jax.random.split(key)
    state["deter"] = jax.random.normal(k1, state["deter"].shape)
    logits = jax.random.normal(k2, state["logits"].shape)
    state["logits"] = logits
    state["stoch"] = jax.nn.one_hot(logits.argmax(-1), logits.shape[-1])
    return state


def out_bias_grad(grads):
    """Gradient of the actor's output-layer bias."""
    layers = grads["params"]
    return layers[sorted(layers, key=lambda k: int(k.split("_")[-1]))[-1]]["bias"]


def zero_critics(ac_state):
    zeros = jax.tree.map(jnp.zeros_like, ac_state.slow_critic)
    return ac_state.replace(slow_critic=zeros,
                            critic=ac_state.critic.replace(params=zeros))


@pytest.fixture(scope="module")
def continuous():
    wm, ac = tiny(False)
    key = jax.random.PRNGKey(0)
    return (wm, ac, jax.jit(wm.init)(key), zero_critics(jax.jit(ac.init)(key)),
            random_starts(wm, key, 64))


@pytest.fixture(scope="module")
def discrete():
    wm, ac = tiny(True)
    key = jax.random.PRNGKey(1)
    return (wm, ac, jax.jit(wm.init)(key), zero_critics(jax.jit(ac.init)(key)),
            random_starts(wm, key, 256))


def test_imagine_shapes_and_gradient_flow(continuous):
    wm, ac, wm_params, state, start = continuous
    traj = jax.jit(lambda p: ac.imagine(wm, wm_params, p, start, 5, jax.random.PRNGKey(2)))(
        state.actor.params)
    assert traj.feat.shape == (6, 64, ac.feat_size) and traj.actions.shape == (5, 64, 2)
    np.testing.assert_array_equal(traj.feat[0], rssm.features(start))
    assert float(jnp.abs(traj.actions).max()) <= 1.0

    def last_deter(params):
        t = ac.imagine(wm, wm_params, params, start, 5, jax.random.PRNGKey(2))
        return t.states["deter"][-1].sum()
    # The dynamics depend on the actor's actions.
    grads = jax.jit(jax.grad(last_deter))(state.actor.params)
    assert float(jnp.abs(out_bias_grad(grads)).sum()) > 0


def test_dynamics_backprop_pushes_actions_up_the_reward(continuous):
    wm, ac, wm_params, state, start = continuous
    assert ac.rho == 0.0                      # 'auto' on continuous actions
    reward_fn = lambda traj: 10.0 * traj.actions[..., 0]  # noqa: E731 (r_t = 10 a_t[0])

    def loss(actor_params):
        traj = ac.imagine(wm, wm_params, actor_params, start, 5, jax.random.PRNGKey(3))
        a_loss, _, _ = ac.losses(actor_params, state.critic.params, state, wm, wm_params, traj,
                                 reward_fn(traj))
        return a_loss
    # Output bias layout: [mean_0, mean_1, std_0, std_1].
    grad = out_bias_grad(jax.jit(jax.grad(loss))(state.actor.params))
    # With zero critics every return is a positive combination of later actions, and the
    # truncated normal's reparameterized sample increases with its mean: descent raises mean_0.
    assert grad[0] < 0
    assert abs(float(grad[1])) < abs(float(grad[0]))


def test_mix_one_is_pure_dynamics_backprop_and_zero_pure_reinforce(continuous):
    """DreamerV2's `actor_grad_mix` weighs dynamics backprop: mix * dynamics + (1 - mix) *
    reinforce. So mix = 1 has the 'dynamics' gradient exactly and mix = 0 the 'reinforce' one."""
    wm, _, wm_params, state, start = continuous
    reward_fn = lambda traj: 10.0 * traj.actions[..., 0]  # noqa: E731

    def actor_grad(**behavior):
        ac = tiny(False, **behavior)[1]

        def loss(actor_params):
            traj = ac.imagine(wm, wm_params, actor_params, start, 5, jax.random.PRNGKey(3))
            return ac.losses(actor_params, state.critic.params, state, wm, wm_params, traj,
                             reward_fn(traj))[0]
        return ac.rho, jax.jit(jax.grad(loss))(state.actor.params)

    rho_mix1, mix1 = actor_grad(actor_grad="mix", actor_grad_mix=1.0)
    rho_dyn, dynamics = actor_grad(actor_grad="dynamics")
    rho_mix0, mix0 = actor_grad(actor_grad="mix", actor_grad_mix=0.0)
    rho_rf, reinforce = actor_grad(actor_grad="reinforce")
    assert (rho_mix1, rho_dyn, rho_mix0, rho_rf) == (0.0, 0.0, 1.0, 1.0)
    jax.tree.map(np.testing.assert_array_equal, mix1, dynamics)
    jax.tree.map(np.testing.assert_array_equal, mix0, reinforce)
    # The two estimators differ, so the test tells them apart.
    assert float(jnp.abs(out_bias_grad(mix1) - out_bias_grad(mix0)).max()) > 1e-6


def test_start_weight_is_the_replays_true_continue_flag():
    """With a discount head, w_0 is the replay's 1 - is_terminal of the start (DreamerV2), not
    the predicted cont(s_0): w_t = c_0 prod_{k<t} gamma cont(s_{k+1}). A terminal start (c_0 = 0)
    weighs nothing, so all-terminal starts give zero losses; without the head it is ignored."""
    wm, ac = tiny(False, discount_head=True)
    key = jax.random.PRNGKey(5)
    wm_params, ac_state = jax.jit(wm.init)(key), jax.jit(ac.init)(key)
    start = random_starts(wm, key, 8)
    traj = ac.imagine(wm, wm_params, ac_state.actor.params, start, 3, key)
    reward = jnp.ones((3, 8))
    losses = lambda cont: ac.losses(ac_state.actor.params, ac_state.critic.params,  # noqa
                                    ac_state, wm, wm_params, traj, reward, cont)
    cont, gammas = ac.discounts(wm, wm_params, traj.feat)
    products = jnp.concatenate([jnp.ones((1, 8)), jnp.cumprod(gammas, 0)])         # [H + 1, N]
    predicted = float((products * cont[:1]).mean())
    flags = jnp.array([1.0, 0.0] * 4)
    assert abs(float(cont[0].mean()) - 1.0) > 1e-3      # the head is not 1 at init
    np.testing.assert_allclose(losses(None)[2].metrics["imag_weight"], predicted, rtol=1e-5)
    np.testing.assert_allclose(losses(flags)[2].metrics["imag_weight"],
                               float((products * flags).mean()), rtol=1e-5)
    a_loss, c_loss, _ = losses(jnp.zeros(8))
    assert float(a_loss) == 0.0 and float(c_loss) == 0.0
    _, no_head = tiny(False, discount_head=False)
    a_plain, _, _ = no_head.losses(ac_state.actor.params, ac_state.critic.params, ac_state, wm,
                                   wm_params, traj, reward, jnp.zeros(8))
    assert float(a_plain) != 0.0


def test_reinforce_raises_probability_of_rewarded_action(discrete):
    wm, ac, wm_params, state, start = discrete
    assert ac.rho == 1.0                      # 'auto' on discrete actions
    reward_fn = lambda traj: traj.actions[..., 1]  # noqa: E731 (reward 1 for action 1)
    traj = jax.jit(lambda p: ac.imagine(wm, wm_params, p, start, 5, jax.random.PRNGKey(4)))(
        state.actor.params)
    reward = reward_fn(traj)

    def loss(actor_params):
        a_loss, _, _ = ac.losses(actor_params, state.critic.params, state, wm, wm_params,
                                 jax.lax.stop_gradient(traj), reward)
        return a_loss
    grad = out_bias_grad(jax.jit(jax.grad(loss))(state.actor.params))
    assert grad[1] < 0 and grad[1] < grad[0] and grad[1] < grad[2]
    # ... and a few full updates (imagination included) make action 1 more likely.
    probs = lambda s: jax.nn.softmax(ac._dist_params(  # noqa: E731
        s.actor.params, rssm.features(start)))[:, 1].mean()
    update = jax.jit(lambda s, k: ac.update(s, wm, wm_params, start, reward_fn, k))
    new = state
    for i in range(5):
        new, metrics = update(new, jax.random.PRNGKey(10 + i))
    assert float(probs(new)) > float(probs(state)) + 0.01
    assert np.isfinite(float(metrics["critic_loss"]))


def test_update_metrics_slow_target_and_population_vmap(continuous):
    wm, ac, wm_params, _, start = continuous
    reward_fn = ac_lib.extrinsic_reward(wm, wm_params)
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    pop = jax.vmap(ac.init)(keys)                     # population on a leading axis
    update = jax.jit(jax.vmap(lambda s, k: ac.update(s, wm, wm_params, start, reward_fn, k)))
    new, metrics = update(pop, keys)
    assert metrics["actor_loss"].shape == (3,) and np.isfinite(metrics["actor_loss"]).all()
    np.testing.assert_array_equal(new.step, [1, 1, 1])
    one, _ = jax.jit(lambda s, k: ac.update(s, wm, wm_params, start, reward_fn, k))(
        jax.tree.map(lambda x: x[1], pop), keys[1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=2e-5, atol=2e-6),
                 new.actor.params, one.actor.params)   # vmapped member == single update


def test_slow_target_refresh():
    _, ac = tiny(False, slow_target_update=2)
    state = jax.jit(ac.init)(jax.random.PRNGKey(0))
    grads = jax.tree.map(jnp.ones_like, state.critic.params)
    zero_a = jax.tree.map(jnp.zeros_like, state.actor.params)
    apply = jax.jit(ac.apply_gradients)
    s1 = apply(state, zero_a, grads, state.norm)                 # step 1: slow unchanged
    jax.tree.map(np.testing.assert_array_equal, s1.slow_critic, state.slow_critic)
    s2 = apply(s1, zero_a, grads, state.norm)                    # step 2: copy of the critic
    jax.tree.map(np.testing.assert_array_equal, s2.slow_critic, s2.critic.params)


@pytest.mark.parametrize("dist", ["trunc_normal", "normal"])
def test_continuous_distributions(dist):
    _, ac = tiny(False, actor_dist=dist)
    params = jax.jit(ac.init)(jax.random.PRNGKey(0)).actor.params
    feat = jax.random.normal(jax.random.PRNGKey(1), (4000, ac.feat_size))
    sample = jax.jit(ac.sample_features)
    log_prob_entropy = jax.jit(ac.log_prob_entropy)
    x = sample(params, feat, jax.random.PRNGKey(2))
    assert x.shape == (4000, 2) and float(jnp.abs(x).max()) <= 1.0
    logp, ent = log_prob_entropy(params, feat, x)
    assert np.isfinite(logp).all() and np.isfinite(ent).all()
    if dist == "trunc_normal":
        # Entropy is the expected negative log-density: compare with a Monte-Carlo estimate
        # over many samples of one state's distribution.
        f1 = jnp.broadcast_to(feat[:1], feat.shape)
        x1 = sample(params, f1, jax.random.PRNGKey(3))
        lp1, ent1 = log_prob_entropy(params, f1, x1)
        np.testing.assert_allclose(-lp1.mean(), ent1[0], atol=0.05)
    mode = ac.act(params, feat[:3], jax.random.PRNGKey(0), sample=False)
    assert mode.shape == (3, 2)


def test_trunc_normal_log_prob_normalizes():
    mean, std = jnp.array(0.3), jnp.array(0.5)
    xs = jnp.linspace(-1, 1, 20001)
    density = jnp.exp(ac_lib._trunc_normal_log_prob(xs, mean, std))
    np.testing.assert_allclose(jnp.trapezoid(density, xs), 1.0, rtol=1e-4)


def test_ndtri_derivative_is_exact():
    # ndtri(0.5) = 0, so d ndtri / dp = 1 / phi(0) = sqrt(2 pi) = 2.50663 exactly. Elsewhere the
    # custom derivative 1 / phi(ndtri(p)) must match JAX's derivative of the approximation and
    # scipy's float64 1 / phi(Phi^-1(p)).
    grad = jax.vmap(jax.grad(ac_lib._ndtri))
    p = jnp.array([0.5, 1e-6, 0.02, 0.3, 0.9, 1.0 - 1e-6])
    g = grad(p)
    np.testing.assert_allclose(g[0], np.sqrt(2 * np.pi), rtol=1e-6)
    np.testing.assert_array_equal(ac_lib._ndtri(p), ac_lib.ndtri(p))
    np.testing.assert_allclose(g, jax.vmap(jax.grad(ac_lib.ndtri))(p), rtol=2e-3)
    z = scipy.stats.norm.ppf(np.asarray(p, np.float64))
    np.testing.assert_allclose(g, 1.0 / scipy.stats.norm.pdf(z), rtol=1e-4)


def test_act_discrete_returns_ints():
    _, ac = tiny(True)
    params = jax.jit(ac.init)(jax.random.PRNGKey(0)).actor.params
    feat = jnp.ones((5, ac.feat_size))
    for sample in (True, False):
        a = ac.act(params, feat, jax.random.PRNGKey(0), sample=sample)
        assert a.shape == (5,) and a.dtype == jnp.int32 and int(a.max()) < 3


@pytest.mark.parametrize("field,value,match", [
    ("actor_dist", "beta", "actor_dist"), ("actor_grad", "ppo", "actor_grad"),
    ("return_norm", "max", "return_norm"), ("actor_dist", "onehot", "continuous"),
    ("actor_grad_mix", 2.0, "actor_grad_mix"), ("horizon", 0, "horizon")])
def test_bad_config_raises(field, value, match):
    cfg = behavior_config()
    if field == "actor_grad_mix":
        cfg.actor_grad = "mix"
    cfg[field] = value
    with pytest.raises(ValueError, match=match):
        ac_lib.ActorCritic(cfg, 8, ActionSpace(False, 2))


def test_population_pieces_with_cross_member_rewards(continuous):
    """The CASCADE pattern: vmap imagination over stacked actors from the same starts; member i's
    reward uses sg(final deter) of members j < i; one grad of the summed vmapped losses. Member
    0's gradient must equal the gradient it gets alone, and every member's gradient is finite."""
    wm, ac, wm_params, _, start = continuous
    pop = jax.vmap(ac.init)(jax.random.split(jax.random.PRNGKey(7), 3))
    key = jax.random.PRNGKey(8)
    mask = jnp.tril(jnp.ones((3, 3)), -1)                 # j < i

    def rewards(trajs):                                   # [P, H, N]
        final = trajs.states["deter"][:, -1]              # [P, N, D]
        dist = jnp.square(final[:, None] - jax.lax.stop_gradient(final)[None]).sum(-1)
        div = (mask[..., None] * dist).sum(1) / jnp.maximum(mask.sum(1), 1)[:, None]  # [P, N]
        r = jnp.zeros(trajs.actions.shape[:3])
        return r.at[:, -1].set(div)                       # placed at the final step

    def total(actor_params, critic_params):
        trajs = jax.vmap(lambda p: ac.imagine(wm, wm_params, p, start, 4, key))(actor_params)
        a, c, aux = jax.vmap(lambda ap, cp, s, t, r: ac.losses(ap, cp, s, wm, wm_params, t, r))(
            actor_params, critic_params, pop, trajs, rewards(trajs))
        return (a + c).sum(), aux

    grad_fn = jax.jit(jax.grad(total, argnums=(0, 1), has_aux=True))
    (g_actor, g_critic), aux = grad_fn(pop.actor.params, pop.critic.params)
    new = jax.jit(jax.vmap(ac.apply_gradients))(pop, g_actor, g_critic, aux.norm)
    np.testing.assert_array_equal(new.step, [1, 1, 1])
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(g_actor))
    # Member 0 has no earlier members: its reward is zero, as when it is updated alone.
    alone = jax.jit(jax.grad(lambda p: ac.losses(
        p, jax.tree.map(lambda x: x[0], pop.critic.params),
        jax.tree.map(lambda x: x[0], pop), wm, wm_params,
        ac.imagine(wm, wm_params, p, start, 4, key), jnp.zeros((4, 64)))[0]))(
        jax.tree.map(lambda x: x[0], pop.actor.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6),
                 g_actor, alone)
    # Member 2's reward depends on its own final state: its actor gradient is non-zero.
    assert float(jnp.abs(out_bias_grad(jax.tree.map(lambda x: x[2], g_actor))).sum()) > 0


@pytest.mark.parametrize("sample", [True, False])
def test_act_in_blocks_equals_each_actor_on_its_block(sample):
    """3 stacked actors, 6 slots: slots 2k and 2k + 1 follow actor k with the k-th split key."""
    _, ac = tiny(discrete=False)
    actors = jax.vmap(ac.init)(jax.random.split(jax.random.PRNGKey(0), 3)).actor.params
    feat = jax.random.normal(jax.random.PRNGKey(1), (6, ac.feat_size))
    key = jax.random.PRNGKey(2)
    got = ac.act_in_blocks(actors, feat, key, sample=sample)
    keys = jax.random.split(key, 3)
    for k in range(3):
        actor = jax.tree.map(lambda x: x[k], actors)
        np.testing.assert_allclose(got[2 * k:2 * k + 2],
                                   ac.act(actor, feat[2 * k:2 * k + 2], keys[k], sample=sample),
                                   rtol=1e-6, atol=1e-6)
    assert got.shape == (6, 2)
