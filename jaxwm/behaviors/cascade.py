"""CASCADE: a population of diverse explorers trained in imagination in one vmapped update.

Xu et al., "Learning General World Models in a Handful of Reward-Free Deployments" (NeurIPS
2022), Sec. 4 / Algorithm 1. Member i of a population of B explorers maximizes

    r_i = lambda * PopDiv_i + (1 - lambda) * InfoGain_i                          (Eq. 5)

InfoGain_i: the Plan2Explore disagreement of (s_t, a_t) along member i's imagined trajectory;
PopDiv_i(x) = mean_{j < i} || Phi_i(x) - sg(Phi_j(x)) ||^2 with Phi = h_H, the final deterministic
state imagined from start state x (all members start from the same x); PopDiv_0 = 0. Because
earlier members enter only under stop-gradient, every member's objective is differentiable in
its own params alone, so all B actor-critics (params stacked on a leading axis [B, ...]) are
imagined and updated in ONE jitted step: vmap over the population, a strictly-lower-triangular
mask over it.

Defaults follow the paper: both terms on their raw scales (`normalize=False`) and PopDiv paid
at the final imagined step (`diversity_placement='final'`). Where the official TF release
differs, the paper is followed: that code loops over members in Python, computes its
"diversity" as the variance across feature dimensions of each member's own final state, and
writes it to the last row of the reward array, which its lambda-return then drops, so the
released code trains no diversity at all. Options kept for measurement: `normalize=True`
divides each term by a running RMS (then lambda weighs unit-scale terms, and with InfoGain
paid on all H steps PopDiv is ~1/(9H) of the return at lambda = 0.1), and
`diversity_placement='spread'` pays PopDiv / H at every step.

Diagnostics (`term_shares`): by linearity of the lambda-return (the coefficient of r_{t+k} in
R_t is prod_{k' < k} gamma_{t+k'} lambda), the return splits exactly into one part per reward
term plus a value part; each term's share of the return is mean|R^term| / sum over terms, and
its share of the advantage (what REINFORCE's baseline leaves) std(R^term) / sum over terms.
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

PLACEMENTS = ("final", "spread")


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


def pairwise_spread(final_states: jax.Array) -> jax.Array:
    """Mean over member pairs i != j of ||Phi_i - Phi_j||^2 for one start state: [B, D] -> []
    (0 for B = 1): how far apart the members' imagined trajectories end."""
    chex.assert_rank(final_states, 2)
    size = final_states.shape[0]
    sq = jnp.square(final_states[:, None] - final_states[None]).sum(-1)
    return sq.sum() / max(size * (size - 1), 1)


def term_shares(terms: dict, discounts: jax.Array, lambda_: float) -> dict:
    """Each reward term's share of the lambda-return and of the advantage, for one member.

    terms: {name: reward part [H, N]} (summing to the reward); discounts gamma_t [H, N].
    R^name = lambda_returns(term, gammas, values = 0) is that term's exact part of R_t.
    Returns {"return/<name>": mean|R^name| / sum_k mean|R^k|,
             "advantage/<name>": std(R^name) / sum_k std(R^k)} (scalars; 0 where all are 0).
    """
    zeros = jnp.zeros((discounts.shape[0] + 1, discounts.shape[1]), discounts.dtype)
    parts = {k: rets.batched_lambda_returns(v, discounts, zeros, lambda_)
             for k, v in terms.items()}
    out = {}
    for kind, stat in (("return", lambda x: jnp.abs(x).mean()), ("advantage", jnp.std)):
        values = {k: stat(v) for k, v in parts.items()}
        total = sum(values.values())
        out.update({f"{kind}/{k}": jnp.where(total > 0, v / jnp.maximum(total, 1e-12), 0.0)
                    for k, v in values.items()})
    return out


def cascade_config() -> ml_collections.ConfigDict:
    """CASCADE population defaults (paper values)."""
    c = ml_collections.ConfigDict()
    c.population = 10          # B explorers
    c.diversity_scale = 0.1    # lambda in Eq. 5: weight of PopDiv vs InfoGain (swept 0.01..1)
    c.normalize = False        # divide each term by its running RMS (paper and official: off)
    c.norm_decay = 0.99        # EMA decay of the running scales (normalize=True only)
    c.diversity_placement = "final"  # 'final': PopDiv at the last imagined step (Eq. 5);
    #                                  'spread': PopDiv / H at every step
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """ValueError naming `cascade.<field>` and its allowed values."""
    if not isinstance(c.population, int) or c.population < 1:
        raise ValueError(f"cascade.population={c.population!r} must be an int >= 1")
    if not 0.0 <= c.diversity_scale <= 1.0:
        raise ValueError(f"cascade.diversity_scale={c.diversity_scale!r} must be in [0, 1]")
    if not 0.0 <= c.norm_decay < 1.0:
        raise ValueError(f"cascade.norm_decay={c.norm_decay!r} must be in [0, 1)")
    if c.diversity_placement not in PLACEMENTS:
        raise ValueError(f"cascade.diversity_placement={c.diversity_placement!r} is not one of "
                         f"{PLACEMENTS}")


@flax.struct.dataclass
class PopulationState:
    """B stacked actor-critics and the running scales of the two reward terms."""
    members: ACState                   # every leaf [B, ...]
    diversity_norm: rets.MomentState   # running RMS of PopDiv
    info_norm: rets.MomentState        # running RMS of InfoGain


class Cascade:
    """The population update. ac: the members' ActorCritic; disag: a plan2explore.Disagreement."""

    def __init__(self, config: ml_collections.ConfigDict, ac: ActorCritic, disag):
        check_config(config)
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

    def reward_terms(self, state: PopulationState, disag_params, trajs: Trajectory):
        """The two weighted reward parts [B, H, N] of trajectories [B, ...] and the new scales.

        Returns ({"info_gain": (1 - lambda) InfoGain, "pop_diversity": lambda PopDiv placed
        per `diversity_placement`}, info_norm, div_norm, metrics). Both parts are
        differentiable in the member's own trajectory (dynamics backprop).
        """
        c = self.config
        info = self.disag.intrinsic_reward(disag_params, trajs.feat[:, :-1], trajs.actions)
        final = trajs.states["deter"][:, -1]                                   # [B, N, D]
        diversity = jax.vmap(cascade_diversity, in_axes=1, out_axes=1)(final)  # [B, N]
        info_norm = rets.moment_update(state.info_norm, info, c.norm_decay)
        # Member 0's PopDiv is identically zero: keep it out of the scale.
        div_norm = rets.moment_update(state.diversity_norm, diversity[1:] if
                                      c.population > 1 else diversity, c.norm_decay)
        metrics = {"info_gain_raw": info.mean(), "pop_diversity_raw": diversity[1:].mean()
                   if c.population > 1 else jnp.zeros(()),
                   "final_state_spread": jax.vmap(pairwise_spread, 1)(sg(final)).mean()}
        if c.normalize:
            info = info / rets.moment_scale(info_norm)
            diversity = diversity / rets.moment_scale(div_norm)
        metrics.update(info_gain=info.mean(), pop_diversity=diversity[1:].mean()
                       if c.population > 1 else jnp.zeros(()))
        lam, horizon = c.diversity_scale, info.shape[1]
        if c.diversity_placement == "final":
            div_reward = jnp.zeros_like(info).at[:, -1].set(lam * diversity)
        else:
            div_reward = jnp.broadcast_to(lam * diversity[:, None] / horizon, info.shape)
        return ({"info_gain": (1.0 - lam) * info, "pop_diversity": div_reward},
                info_norm, div_norm, metrics)

    def rewards(self, state: PopulationState, disag_params, trajs: Trajectory):
        """Per-member rewards [B, H, N] and (info_norm, div_norm, metrics) as `reward_terms`."""
        terms, info_norm, div_norm, metrics = self.reward_terms(state, disag_params, trajs)
        return terms["info_gain"] + terms["pop_diversity"], info_norm, div_norm, metrics

    def shares(self, wm, wm_params, trajs: Trajectory, terms: dict) -> dict:
        """Per-member shares of each term in the lambda-returns and advantages (`term_shares`):
        {"popdiv_return_share/<i>", "popdiv_advantage_share/<i>"} for every member and their
        means over members 1..B-1 (member 0 has no PopDiv)."""
        _, gammas = jax.vmap(lambda f: self.ac.discounts(wm, wm_params, f))(sg(trajs.feat))
        shares = jax.vmap(lambda t, g: term_shares(t, g, self.ac.config.return_lambda))(
            sg(terms), gammas)
        out = {}
        for kind in ("return", "advantage"):
            per_member = shares[f"{kind}/pop_diversity"]                       # [B]
            out.update({f"popdiv_{kind}_share/{i}": per_member[i]
                        for i in range(self.config.population)})
            out[f"popdiv_{kind}_share"] = (per_member[1:].mean() if self.config.population > 1
                                           else jnp.zeros(()))
        return out

    def losses(self, state: PopulationState, actor_params, critic_params, wm, wm_params,
               disag_params, start, key, trajs=None, start_cont=None):
        """Sum over members of actor + critic losses; aux = (new scales, member aux, metrics).

        trajs: precomputed stop-gradient trajectories (pure REINFORCE needs no gradient
        through the rollout), else imagined here under the actors; start_cont [N]: the
        replay's 1 - is_terminal of the starts (`ActorCritic.losses`)."""
        if trajs is None:
            trajs = self.imagine(wm, wm_params, actor_params, start, key)
        terms, info_norm, div_norm, metrics = self.reward_terms(state, disag_params, trajs)
        reward = terms["info_gain"] + terms["pop_diversity"]
        metrics.update(self.shares(wm, wm_params, trajs, terms))
        member_losses = jax.vmap(
            lambda a, c, s, t, r: self.ac.losses(a, c, s, wm, wm_params, t, r, start_cont))
        a_loss, c_loss, aux = member_losses(actor_params, critic_params, state.members,
                                            trajs, reward)
        return (a_loss + c_loss).sum(), (info_norm, div_norm, aux, sg(metrics))

    def update(self, state: PopulationState, wm, wm_params, disag_params, start, key,
               start_cont=None):
        """One update of all B members from start states [N] (start_cont [N]: the replay's
        1 - is_terminal there). Returns (state, metrics)."""
        start = sg(start)
        trajs = None
        if self.ac.rho == 1.0:   # REINFORCE only: skip the backward pass through imagination
            trajs = sg(self.imagine(wm, wm_params, state.members.actor.params, start, key))
        grads, (info_norm, div_norm, aux, metrics) = jax.grad(
            self.losses, argnums=(1, 2), has_aux=True)(
                state, state.members.actor.params, state.members.critic.params, wm, wm_params,
                disag_params, start, key, trajs, start_cont)
        g_actor, g_critic = grads
        members = jax.vmap(self.ac.apply_gradients)(state.members, g_actor, g_critic, aux.norm)
        metrics = dict(metrics, **jax.tree.map(jnp.mean, aux.metrics),
                       actor_grad_norm=optax.global_norm(g_actor) / self.config.population)
        return PopulationState(members=members, diversity_norm=div_norm,
                               info_norm=info_norm), metrics
