"""CASCADE's population objective: hand-worked PopDiv, gradient isolation between members, and
the one vmapped population update equals updating members one at a time."""
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
    reward, info_norm, *_ = pp2e.rewards(s.state, s.disag_params, trajs)
    info = s.pop.disag.intrinsic_reward(s.disag_params, trajs.feat[:, :-1], trajs.actions)
    # lambda = 0: every member's reward is its normalized InfoGain alone (PP2E).
    np.testing.assert_allclose(reward, info / rets.moment_scale(info_norm), rtol=1e-5)
    cc.diversity_scale = 1.5
    with pytest.raises(ValueError, match=r"cascade.diversity_scale=1.5"):
        cascade.Cascade(cc, s.ac, s.pop.disag)
