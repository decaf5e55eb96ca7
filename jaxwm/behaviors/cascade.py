"""CASCADE: a population of diverse explorers trained in imagination in one vmapped update.

Xu et al., "Learning General World Models in a Handful of Reward-Free Deployments" (NeurIPS
2022), Sec. 4 / Algorithm 1. Member i of a population of B explorers maximizes

    r_i = lambda * PopDiv_i + (1 - lambda) * InfoGain_i,

InfoGain_i: the Plan2Explore disagreement of (s_t, a_t) along member i's imagined trajectory;
PopDiv_i(x) = mean_{j < i} || Phi_i(x) - sg(Phi_j(x)) ||^2 with Phi = h_H, the final deterministic
state imagined from start state x (all members start from the same x); PopDiv_0 = 0 and the
PopDiv reward is placed at the final imagined step. Because earlier members enter only under
stop-gradient, every member's objective is differentiable in its own params alone, so all B
actor-critics (params stacked on a leading axis [B, ...]) are imagined and updated in ONE jitted
step: vmap over the population, a strictly-lower-triangular mask over it. (The official TF code
loops over members in Python and gathers feature columns rather than trajectories for the
diversity term; neither is reproduced here.) Each term is divided by a running RMS scale
(switchable) so that lambda does not depend on the terms' units.
"""
import chex
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm import returns as rets
from jaxwm.behaviors.actor_critic import ACState, ActorCritic, Trajectory

sg = jax.lax.stop_gradient


def cascade_diversity(final_states: jax.Array) -> jax.Array:
    """PopDiv of every member for one start state: Phi [B, D] -> [B].

    PopDiv_i = mean_{j < i} ||Phi_i - sg(Phi_j)||^2 and PopDiv_0 = 0. Gradients reach only
    Phi_i through PopDiv_i (earlier members are stop-gradient).
    """
    chex.assert_rank(final_states, 2)
    size = final_states.shape[0]
    diff = final_states[:, None, :] - sg(final_states)[None, :, :]        # [i, j, D]
    sq = jnp.square(diff).sum(-1)                                          # [i, j]
    earlier = jnp.tril(jnp.ones((size, size)), k=-1)                       # j < i
    return (sq * earlier).sum(1) / jnp.maximum(earlier.sum(1), 1.0)


def cascade_config() -> ml_collections.ConfigDict:
    """CASCADE population defaults (paper values)."""
    c = ml_collections.ConfigDict()
    c.population = 10          # B explorers
    c.diversity_scale = 0.1    # lambda: weight of PopDiv vs InfoGain (paper sweeps 0.01..1)
    c.normalize = True         # divide each term by its running RMS (official code: False)
    c.norm_decay = 0.99        # EMA decay of the running scales
    return c


@flax.struct.dataclass
class PopulationState:
    """B stacked actor-critics and the running scales of the two reward terms."""
    members: ACState                   # every leaf [B, ...]
    diversity_norm: rets.MomentState   # running RMS of PopDiv
    info_norm: rets.MomentState        # running RMS of InfoGain


class Cascade:
    """The population update. ac: the members' ActorCritic; disag: a plan2explore.Disagreement."""

    def __init__(self, config: ml_collections.ConfigDict, ac: ActorCritic, disag):
        if config.population < 1:
            raise ValueError(f"cascade.population={config.population!r} must be an int >= 1")
        if not 0.0 <= config.diversity_scale <= 1.0:
            raise ValueError(f"cascade.diversity_scale={config.diversity_scale!r} must be in "
                             "[0, 1]")
        self.config, self.ac, self.disag = config, ac, disag

    def init(self, key) -> PopulationState:
        keys = jax.random.split(key, self.config.population)
        return PopulationState(members=jax.vmap(self.ac.init)(keys),
                               diversity_norm=rets.moment_init(), info_norm=rets.moment_init())

    def imagine(self, wm, wm_params, actor_params, start, key) -> Trajectory:
        """Trajectories of all members from the same start states [N]: leaves [B, H + 1, N, ...].

        Member i uses key fold_in(key, i)."""
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(
            jnp.arange(self.config.population))
        imagine_one = lambda p, k: self.ac.imagine(wm, wm_params, p, start,  # noqa: E731
                                                   self.ac.config.horizon, k)
        return jax.vmap(imagine_one)(actor_params, keys)

    def rewards(self, state: PopulationState, disag_params, trajs: Trajectory):
        """Per-member rewards [B, H, N] of trajectories [B, ...], and the updated scales.

        InfoGain is the disagreement of every imagined (s_t, a_t); PopDiv of h_H is added at
        the last step. Both differentiable in the member's own trajectory (dynamics backprop).
        """
        c = self.config
        info = self.disag.intrinsic_reward(disag_params, trajs.feat[:, :-1], trajs.actions)
        final = trajs.states["deter"][:, -1]                                   # [B, N, D]
        diversity = jax.vmap(cascade_diversity, in_axes=1, out_axes=1)(final)  # [B, N]
        info_norm = rets.moment_update(state.info_norm, info, c.norm_decay)
        # Member 0's PopDiv is identically zero: keep it out of the scale.
        div_norm = rets.moment_update(state.diversity_norm, diversity[1:] if
                                      c.population > 1 else diversity, c.norm_decay)
        if c.normalize:
            info = info / rets.moment_scale(info_norm)
            diversity = diversity / rets.moment_scale(div_norm)
        lam = c.diversity_scale
        reward = (1.0 - lam) * info
        reward = reward.at[:, -1].add(lam * diversity)
        metrics = {"info_gain": info.mean(), "pop_diversity": diversity[1:].mean()
                   if c.population > 1 else jnp.zeros(())}
        return reward, info_norm, div_norm, metrics

    def losses(self, state: PopulationState, actor_params, critic_params, wm, wm_params,
               disag_params, start, key):
        """Sum over members of actor + critic losses; aux = (new scales, member aux, metrics)."""
        trajs = self.imagine(wm, wm_params, actor_params, start, key)
        reward, info_norm, div_norm, metrics = self.rewards(state, disag_params, trajs)
        member_losses = jax.vmap(
            lambda a, c, s, t, r: self.ac.losses(a, c, s, wm, wm_params, t, r))
        a_loss, c_loss, aux = member_losses(actor_params, critic_params, state.members,
                                            trajs, reward)
        return (a_loss + c_loss).sum(), (info_norm, div_norm, aux, metrics)

    def update(self, state: PopulationState, wm, wm_params, disag_params, start, key):
        """One update of all B members from start states [N]. Returns (state, metrics)."""
        start = sg(start)
        grads, (info_norm, div_norm, aux, metrics) = jax.grad(
            self.losses, argnums=(1, 2), has_aux=True)(
                state, state.members.actor.params, state.members.critic.params, wm, wm_params,
                disag_params, start, key)
        g_actor, g_critic = grads
        members = jax.vmap(self.ac.apply_gradients)(state.members, g_actor, g_critic, aux.norm)
        metrics = dict(metrics, **jax.tree.map(jnp.mean, aux.metrics),
                       actor_grad_norm=optax.global_norm(g_actor) / self.config.population)
        return PopulationState(members=members, diversity_norm=div_norm,
                               info_norm=info_norm), metrics
