"""CASCADE's population objective: hand-worked PopDiv, the raw reward mix and each term's share
of the return, gradient isolation between members, the one vmapped population update equals
updating members one at a time, and pure diversity updates spread the members apart."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxwm import returns as rets
from jaxwm.agents.dreamer.config import (apply_behavior_preset, apply_preset, behavior_config,
                                         model_config)
from jaxwm.behaviors import actor_critic, cascade, plan2explore
from jaxwm.models.dreamer import WorldModel

PHI = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])


def test_cascade_diversity_hand_worked_b3():
    # PopDiv_0 = 0; PopDiv_1 = ||(1,0) - (0,0)||^2 = 1;
    # PopDiv_2 = mean(||(0,2) - (0,0)||^2, ||(0,2) - (1,0)||^2) = mean(4, 5) = 4.5.
    np.testing.assert_allclose(cascade.cascade_diversity(PHI), [0.0, 1.0, 4.5])
    np.testing.assert_allclose(jax.jit(cascade.cascade_diversity)(PHI), [0.0, 1.0, 4.5])


def test_cascade_diversity_gradients_only_reach_own_state():
    jac = jax.jacobian(cascade.cascade_diversity)(PHI)          # [i, j, D]
    for i in range(3):
        for j in range(3):
            if i != j:
                assert not np.any(jac[i, j]), (i, j)
    # d PopDiv_2 / d Phi_2 = mean_j 2 (Phi_2 - Phi_j) = ((0, 4) + (-2, 4)) / 2 = (-1, 4).
    np.testing.assert_allclose(jac[2, 2], [-1.0, 4.0])
    assert not np.any(jac[0])                                    # member 0: no diversity term


@pytest.fixture(scope="module")
def setup():
    obs_space = {"vector": SimpleNamespace(shape=(3,), dtype=np.float32)}
    act_space = SimpleNamespace(discrete=False, size=2)
    wm = WorldModel(apply_preset(model_config(), "smoke"), obs_space, act_space)
    bc = apply_behavior_preset(behavior_config(), "smoke")
    bc.horizon = 3
    ac = actor_critic.ActorCritic(bc, actor_critic.feat_size(wm.config), act_space)
    disag_cfg = ml_collections.ConfigDict(dict(
        members=3, units=16, layers=1, act="elu", lr=1e-3, eps=1e-5, clip=100.0,
        weight_decay=0.0, log_reward=False, intr_scale=1.0))
    disag = plan2explore.Disagreement(disag_cfg, ac.feat_size, 2,
                                      wm.config.stoch * wm.config.classes)
    cc = cascade.cascade_config()
    cc.population, cc.diversity_scale = 3, 0.5
    pop = cascade.Cascade(cc, ac, disag)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    wm_params = wm.init(keys[0])
    start = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(keys[1], x.shape),
                         wm.initial_state((5,)))
    return SimpleNamespace(wm=wm, ac=ac, pop=pop, wm_params=wm_params, start=start,
                           disag_params=disag.init(keys[2]), state=pop.init(keys[3]))


def test_member_losses_have_no_gradient_wrt_earlier_members(setup):
    s = setup
    key = jax.random.PRNGKey(7)

    def member_loss(actor_params, i):
        trajs = s.pop.imagine(s.wm, s.wm_params, actor_params, s.start, key)
        reward, *_ = s.pop.rewards(s.state, s.disag_params, trajs)
        return reward[i].sum()

    params = s.state.members.actor.params
    for i in range(3):
        grads = jax.grad(member_loss)(params, i)
        norms = [float(optax.global_norm(jax.tree.map(lambda g: g[j], grads))) for j in range(3)]
        assert norms[i] > 0
        for j in range(3):
            if j != i:
                assert norms[j] == 0.0, (i, j, norms)
    reward, *_ = s.pop.rewards(s.state, s.disag_params,
                               s.pop.imagine(s.wm, s.wm_params, params, s.start, key))
    assert reward.shape == (3, 3, 5)


def test_vmapped_population_update_equals_one_member_at_a_time(setup):
    s = setup
    key = jax.random.PRNGKey(11)
    new_state, metrics = jax.jit(
        lambda st: s.pop.update(st, s.wm, s.wm_params, s.disag_params, s.start, key))(s.state)
    assert np.isfinite(metrics["actor_loss"])

    # Reference: rewards from all members' pre-update trajectories, then member i alone is
    # differentiated and stepped, in a Python loop.
    members = s.state.members
    trajs = s.pop.imagine(s.wm, s.wm_params, members.actor.params, s.start, key)
    reward, *_ = s.pop.rewards(s.state, s.disag_params, trajs)
    keys = [jax.random.fold_in(key, i) for i in range(3)]
    for i in range(3):
        member = jax.tree.map(lambda x: x[i], members)

        def loss(actor_params, critic_params, i=i, member=member):
            traj = s.ac.imagine(s.wm, s.wm_params, actor_params, s.start,
                                s.ac.config.horizon, keys[i])
            all_trajs = jax.tree.map(lambda all_, own: all_.at[i].set(own), trajs, traj)
            r, *_ = s.pop.rewards(s.state, s.disag_params, all_trajs)
            a, c, aux = s.ac.losses(actor_params, critic_params, member, s.wm, s.wm_params,
                                    traj, r[i])
            return a + c, aux

        (ga, gc), aux = jax.grad(loss, argnums=(0, 1), has_aux=True)(
            member.actor.params, member.critic.params)
        expected = s.ac.apply_gradients(member, ga, gc, aux.norm)
        got = jax.tree.map(lambda x: x[i], new_state.members)
        jax.tree.map(lambda e, g: np.testing.assert_allclose(e, g, rtol=2e-4, atol=1e-6),
                     expected.actor.params, got.actor.params)
        jax.tree.map(lambda e, g: np.testing.assert_allclose(e, g, rtol=2e-4, atol=1e-6),
                     expected.critic.params, got.critic.params)


def test_zero_lambda_is_pp2e_and_bad_values_raise(setup):
    s = setup
    cc = cascade.cascade_config()
    cc.population, cc.diversity_scale = 3, 0.0
    pp2e = cascade.Cascade(cc, s.ac, s.pop.disag)
    trajs = pp2e.imagine(s.wm, s.wm_params, s.state.members.actor.params, s.start,
                         jax.random.PRNGKey(1))
    info = s.pop.disag.intrinsic_reward(s.disag_params, trajs.feat[:, :-1], trajs.actions)
    # lambda = 0: every member's reward is its raw InfoGain alone (PP2E) ...
    reward, *_ = pp2e.rewards(s.state, s.disag_params, trajs)
    np.testing.assert_allclose(reward, info, rtol=1e-6)
    # ... or its RMS-normalized InfoGain with normalize=True.
    cc.normalize = True
    reward, info_norm, *_ = cascade.Cascade(cc, s.ac, s.pop.disag).rewards(
        s.state, s.disag_params, trajs)
    np.testing.assert_allclose(reward, info / rets.moment_scale(info_norm), rtol=1e-5)
    for field, value in (("diversity_scale", 1.5), ("population", 0),
                         ("diversity_placement", "middle")):
        bad = cascade.cascade_config()
        bad[field] = value
        with pytest.raises(ValueError, match=rf"cascade.{field}={value!r}"):
            cascade.Cascade(bad, s.ac, s.pop.disag)


class FirstFeatureDisagreement:
    """A stand-in ensemble whose InfoGain of (feat, action) is feat[..., 0]."""

    def intrinsic_reward(self, params, feat, action):
        return feat[..., 0]


def hand_made(placement: str = "final"):
    """B = 2 members, H = 2, N = 1: InfoGain 1 at every step, Phi_0 = (0, 0), Phi_1 = (2, 0),
    lambda = 0.5, gamma = 0.5, return lambda = 1, no discount head."""
    bc = apply_behavior_preset(behavior_config(), "smoke")
    bc.discount, bc.return_lambda, bc.discount_head = 0.5, 1.0, False
    ac = actor_critic.ActorCritic(bc, 4, SimpleNamespace(discrete=False, size=1))
    cc = cascade.cascade_config()
    cc.population, cc.diversity_scale, cc.diversity_placement = 2, 0.5, placement
    pop = cascade.Cascade(cc, ac, FirstFeatureDisagreement())
    deter = jnp.zeros((2, 3, 1, 2)).at[1, -1, 0, 0].set(2.0)
    trajs = actor_critic.Trajectory(states={"deter": deter}, feat=jnp.ones((2, 3, 1, 4)),
                                    actions=jnp.zeros((2, 2, 1, 1)))
    return pop, trajs, pop.init(jax.random.PRNGKey(0))


def test_raw_reward_is_the_hand_worked_mix_of_the_terms():
    pop, trajs, state = hand_made("final")
    reward, _, _, metrics = pop.rewards(state, None, trajs)
    # PopDiv_1 = ||(2, 0) - (0, 0)||^2 = 4, PopDiv_0 = 0; r = 0.5 * 1 every step, plus
    # 0.5 * PopDiv at the last step: member 0 [0.5, 0.5], member 1 [0.5, 0.5 + 2].
    np.testing.assert_allclose(reward[:, :, 0], [[0.5, 0.5], [0.5, 2.5]])
    np.testing.assert_allclose(metrics["pop_diversity_raw"], 4.0)
    # Spread over H = 2 steps: member 1 gets 0.5 + 0.5 * 4 / 2 = 1.5 at each step.
    pop, trajs, state = hand_made("spread")
    reward, *_ = pop.rewards(state, None, trajs)
    np.testing.assert_allclose(reward[:, :, 0], [[0.5, 0.5], [1.5, 1.5]])


def test_logged_popdiv_share_is_the_hand_worked_share():
    pop, trajs, state = hand_made("final")
    terms, *_ = pop.reward_terms(state, None, trajs)
    shares = pop.shares(None, None, trajs, terms)
    # Member 1, gamma 0.5, lambda 1 (values excluded: each term's exact part of R_t):
    #   InfoGain part: R_1 = 0.5, R_0 = 0.5 + 0.5 * 0.5 = 0.75 -> mean |R| 0.625, std 0.125
    #   PopDiv part:   R_1 = 2,   R_0 = 0 + 0.5 * 2 = 1        -> mean |R| 1.5,   std 0.5
    # return share 1.5 / 2.125, advantage share 0.5 / 0.625; member 0 has no PopDiv.
    np.testing.assert_allclose(shares["popdiv_return_share/1"], 1.5 / 2.125, rtol=1e-6)
    np.testing.assert_allclose(shares["popdiv_advantage_share/1"], 0.8, rtol=1e-6)
    np.testing.assert_allclose(shares["popdiv_return_share"], 1.5 / 2.125, rtol=1e-6)
    assert shares["popdiv_return_share/0"] == 0.0 and shares["popdiv_advantage_share/0"] == 0.0


def test_pairwise_spread_hand_worked():
    # Pairs of PHI: ||(1,0)||^2 = 1, ||(0,2)||^2 = 4, ||(1,-2)||^2 = 5 -> mean 10 / 3.
    np.testing.assert_allclose(cascade.pairwise_spread(PHI), 10.0 / 3.0, rtol=1e-6)
    assert cascade.pairwise_spread(PHI[:1]) == 0.0


class PointModel:
    """A fake world model: a point moved by its actions, h_{t+1} = h_t + a_t (2-d), no latent."""

    def imagine(self, params, policy, start, horizon, key):
        def step(state, k):
            action = policy(state, k)
            nxt = {"deter": state["deter"] + action, "stoch": state["stoch"]}
            return nxt, (nxt, action)

        _, (states, actions) = jax.lax.scan(step, start, jax.random.split(key, horizon))
        states = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x], 0), start, states)
        return states, actions


def test_pure_diversity_updates_spread_the_members_final_states():
    """lambda = 1 on the point model: 40 population updates move the members' imagined end
    points apart (mean pairwise ||h_H^i - h_H^j||^2), far more than lambda = 0, whose InfoGain
    (= h[0]) sends every member the same way. The critics are fixed at zero so that the
    returns hold the rewards alone."""
    bc = apply_behavior_preset(behavior_config(), "smoke")
    bc.discount_head, bc.actor_lr, bc.critic_lr = False, 1e-2, 0.0
    act_space = SimpleNamespace(discrete=False, size=2)
    ac = actor_critic.ActorCritic(bc, 3, act_space)
    start = {"deter": jnp.zeros((16, 2)), "stoch": jnp.zeros((16, 1))}
    key = jax.random.PRNGKey(3)
    spreads = {}
    for lam in (0.0, 1.0):
        cc = cascade.cascade_config()
        cc.population, cc.diversity_scale = 3, lam
        pop = cascade.Cascade(cc, ac, FirstFeatureDisagreement())
        update = jax.jit(lambda st, k, pop=pop: pop.update(st, PointModel(), None, None, start,
                                                           k))
        state = pop.init(jax.random.PRNGKey(5))
        zero = jax.tree.map(jnp.zeros_like, state.members.critic.params)
        state = state.replace(members=state.members.replace(
            critic=state.members.critic.replace(params=zero), slow_critic=zero))
        for i in range(41):
            if i in (0, 40):
                trajs = pop.imagine(PointModel(), None, state.members.actor.params, start, key)
                final = trajs.states["deter"][:, -1]
                spreads[lam, i] = float(jax.vmap(cascade.pairwise_spread, 1)(final).mean())
            state, _ = update(state, jax.random.PRNGKey(100 + i))
    assert spreads[1.0, 40] > 2.0 * spreads[1.0, 0], spreads
    assert spreads[1.0, 40] > 2.0 * spreads[0.0, 40], spreads
