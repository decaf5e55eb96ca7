"""MPPI trajectory optimization in a learned latent model, as a pure jittable function.

TD-MPC (Hansen et al., ICML 2022, Alg. 1) plans with MPPI (Williams et al. 2015):
Gaussian action sequences plus trajectories of the policy prior are scored by
  V(tau) = sum_{t<H} gamma^t R(z_t, a_t) + gamma^H Q(z_H, pi(z_H)),
the top-k elites are averaged with weights exp(temperature (V - V_max)), the Gaussian is refit
(std clamped to [min_std, max_std], mean smoothed by momentum) for a few iterations, and the action
executed is the first action of an elite drawn by weight (plus std noise when exploring). The mean
is warm-started from the previous plan shifted by one step. TD-MPC2 keeps this with
momentum 0 and the mean of 2 randomly drawn Qs as terminal value. FOWM (Feng et al., CoRL 2023)
takes the min of 2 random Qs of its 5 and penalizes epistemic uncertainty: every reward and the
terminal value lose lambda * std_e Q_e over the whole Q-ensemble.

`plan(config, fns, params, key, latent, prev_mean, is_first, explore)` is written for one latent
(no batch axis) in the style of acme's MBOP MPPI (a pure function of config, model fns, params,
key, observation and previous plan); `plan_batch` vmaps it over environments. Rollouts are a
`lax.scan` over the horizon and iterations a `lax.scan` too, so one call compiles to one program.
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxwm.utils import dataclass_from_config

AGGREGATIONS = ("min", "mean")


@dataclasses.dataclass(frozen=True)
class MPPIConfig:
    """MPPI settings (defaults: TD-MPC's official config). Static under jit (hashable)."""
    horizon: int = 5              # planning horizon H
    num_samples: int = 512        # Gaussian action sequences per iteration
    num_pi_trajs: int = 25        # policy-prior trajectories (TD-MPC: 5% of 512; TD-MPC2: 24)
    num_elites: int = 64          # k of the top-k refit
    iterations: int = 6           # MPPI iterations
    temperature: float = 0.5      # inverse temperature of the weights exp(temp * (V - V_max))
    momentum: float = 0.1         # mean <- momentum * mean + (1 - momentum) * elite mean
    min_std: float = 0.05         # lower clamp of the sampling std
    max_std: float = 2.0          # upper clamp and initial sampling std
    gamma: float = 0.99           # discount of rewards and of the terminal value
    uncertainty_penalty: float = 0.0  # lambda: FOWM's penalty lambda * std_e Q_e (0: off)
    value_aggregation: str = "min"    # terminal Q over members: 'min' (TD-MPC) or 'mean' (TD-MPC2)
    value_members: int = 0        # members aggregated: 0 = all, k = k drawn at random per call
    #                               (TD-MPC2, FOWM: 2 of 5)

    def __post_init__(self):
        for name in ("horizon", "num_samples", "num_elites", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"planner.{name}={value!r} must be an int >= 1")
        if isinstance(self.num_pi_trajs, bool) or not isinstance(self.num_pi_trajs, int) or (
                self.num_pi_trajs < 0):
            raise ValueError(f"planner.num_pi_trajs={self.num_pi_trajs!r} must be an int >= 0")
        total = self.num_samples + self.num_pi_trajs
        if self.num_elites > total:
            raise ValueError(f"planner.num_elites={self.num_elites} must be <= num_samples + "
                             f"num_pi_trajs = {total}")
        if not 0.0 < self.min_std <= self.max_std:
            raise ValueError(f"planner.min_std={self.min_std!r}, max_std={self.max_std!r}: need "
                             f"0 < min_std <= max_std")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"planner.momentum={self.momentum!r} must be in [0, 1)")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"planner.gamma={self.gamma!r} must be in [0, 1]")
        if self.temperature <= 0.0:
            raise ValueError(f"planner.temperature={self.temperature!r} must be > 0")
        if self.uncertainty_penalty < 0.0:
            raise ValueError(f"planner.uncertainty_penalty={self.uncertainty_penalty!r} must be "
                             f">= 0")
        if isinstance(self.value_members, bool) or not isinstance(self.value_members, int) or (
                self.value_members < 0):
            raise ValueError(f"planner.value_members={self.value_members!r} must be an int >= 0")
        if self.value_aggregation not in AGGREGATIONS:
            raise ValueError(f"planner.value_aggregation={self.value_aggregation!r} is not one of "
                             f"{AGGREGATIONS}")

    @classmethod
    def from_config(cls, config, **overrides) -> "MPPIConfig":
        """From an ml_collections `planner` ConfigDict (field names as above) plus overrides."""
        return dataclass_from_config(cls, config, "planner", **overrides)


class ModelFns(NamedTuple):
    """The latent model as seen by the planner; each fn maps a batch [N, ...] of latents.

    next(params, z [N, L], a [N, A]) -> z' [N, L]
    reward(params, z [N, L], a [N, A]) -> r [N]
    q_ensemble(params, z [N, L], a [N, A]) -> Q [E, N]
    policy(params, z [N, L], key) -> a [N, A] in [-1, 1]
    """
    next: Callable
    reward: Callable
    q_ensemble: Callable
    policy: Callable


# ------------------------------------------------------------------------------------------------
# Core maths (unbatched)
# ------------------------------------------------------------------------------------------------
def trajectory_value(rewards: jax.Array, terminal: jax.Array, gamma: float,
                     horizon: jax.Array | int | None = None) -> jax.Array:
    """sum_{t<h} gamma^t r_t + gamma^h terminal with h = horizon (default H; rewards at t >= h
    must be 0).  rewards [H, N], terminal [N] -> [N]."""
    chex.assert_rank([rewards, terminal], [2, 1])
    chex.assert_equal_shape_suffix([rewards, terminal], 1)
    steps = rewards.shape[0] if horizon is None else horizon
    discounts = gamma ** jnp.arange(rewards.shape[0], dtype=rewards.dtype)
    return (discounts[:, None] * rewards).sum(0) + jnp.power(gamma, steps) * terminal


def penalized_value(qs: jax.Array, penalty: float, aggregation: str, members: int = 0,
                    key: jax.Array | None = None) -> jax.Array:
    """Aggregate ('min' or 'mean') of an ensemble [E, N] -> [N], over all E members or over
    `members` distinct ones drawn with `key` (one draw for all N, as TD-MPC2's Q(..., 'avg')),
    minus penalty * the sample std over all E members (FOWM)."""
    chex.assert_rank(qs, 2)
    chosen = qs
    if members and members < qs.shape[0]:
        chosen = qs[jax.random.choice(key, qs.shape[0], (members,), replace=False)]
    value = chosen.min(0) if aggregation == "min" else chosen.mean(0)
    if penalty:
        value = value - penalty * qs.std(0, ddof=1)
    return value


def uncertainty_cost(qs: jax.Array, penalty: float) -> jax.Array:
    """penalty * std_e Q_e: [E, N] -> [N]."""
    chex.assert_rank(qs, 2)
    return penalty * qs.std(0, ddof=1)


def mppi_update(actions: jax.Array, values: jax.Array, num_elites: int, temperature: float):
    """Refit of the sampling Gaussian to the elites (TD-MPC Alg. 1).

    actions [N, H, A], values [N] -> (mean [H, A], std [H, A], elites [K, H, A], weights [K]),
    weights_k = softmax_k(temperature * V_k) over the K best, mean and std weighted by them.
    """
    chex.assert_rank([actions, values], [3, 1])
    chex.assert_equal_shape_prefix([actions, values], 1)
    elite_values, idx = jax.lax.top_k(values, num_elites)
    elites = actions[idx]
    weights = jnp.exp(temperature * (elite_values - elite_values.max()))
    weights = weights / weights.sum()
    mean = jnp.einsum("k,kha->ha", weights, elites)
    std = jnp.sqrt(jnp.einsum("k,kha->ha", weights, jnp.square(elites - mean)))
    return mean, std, elites, weights


# ------------------------------------------------------------------------------------------------
# Planner
# ------------------------------------------------------------------------------------------------
def initial_plan(config: MPPIConfig, action_size: int, batch: tuple = ()) -> jax.Array:
    """Zero mean [*batch, H, A]: the `prev_mean` before the first step."""
    return jnp.zeros(tuple(batch) + (config.horizon, action_size), jnp.float32)


def estimate_values(config: MPPIConfig, fns: ModelFns, params: Any, z: jax.Array,
                    actions: jax.Array, key: jax.Array,
                    horizon: jax.Array | int | None = None) -> jax.Array:
    """Values of action sequences from copies of one latent.  z [N, L], actions [N, H, A] -> [N].

    Rewards (minus lambda * std of Q_e(z_t, a_t) if lambda > 0) are accumulated by a scan over
    the first `horizon` (traced; default H) steps, later steps are masked out and leave z alone;
    the terminal value is the aggregated Q at (z_h, pi(z_h)) (over `value_members` random
    members if set), penalized the same way. A shorter horizon thus reuses the program compiled
    for H (TD-MPC's horizon schedule).
    """
    chex.assert_rank([z, actions], [2, 3])
    lam = config.uncertainty_penalty
    steps = actions.shape[1] if horizon is None else horizon

    def step(z_t, inputs):
        t, a_t = inputs
        r = fns.reward(params, z_t, a_t)
        if lam:
            r = r - uncertainty_cost(fns.q_ensemble(params, z_t, a_t), lam)
        live = t < steps
        return jnp.where(live, fns.next(params, z_t, a_t), z_t), jnp.where(live, r, 0.0)

    z_h, rewards = jax.lax.scan(step, z, (jnp.arange(actions.shape[1]),
                                          jnp.swapaxes(actions, 0, 1)))
    k_pi, k_members = jax.random.split(key)
    qs = fns.q_ensemble(params, z_h, fns.policy(params, z_h, k_pi))
    terminal = penalized_value(qs, lam, config.value_aggregation, config.value_members,
                               k_members)
    return trajectory_value(rewards, terminal, config.gamma, steps)


def policy_trajectories(config: MPPIConfig, fns: ModelFns, params: Any, z: jax.Array,
                        key: jax.Array) -> jax.Array:
    """Action sequences of the policy prior rolled out in the model: z [N, L] -> [N, H, A]."""
    def step(z_t, k):
        a = fns.policy(params, z_t, k)
        return fns.next(params, z_t, a), a
    _, actions = jax.lax.scan(step, z, jax.random.split(key, config.horizon))
    return jnp.swapaxes(actions, 0, 1)


def plan(config: MPPIConfig, fns: ModelFns, params: Any, key: jax.Array, latent: jax.Array,
         prev_mean: jax.Array, is_first: jax.Array, explore: jax.Array | bool = False,
         min_std: jax.Array | float | None = None, horizon: jax.Array | int | None = None):
    """One MPPI plan from one latent.

    latent [L]; prev_mean [H, A] (the `mean` returned by the previous call; ignored when
    is_first, a bool []); explore: add N(0, std_0) noise to the action (training); min_std:
    lower clamp of the std replacing `config.min_std` (TD-MPC's annealed std schedule);
    horizon: planning horizon h <= config.horizon, traced (TD-MPC's horizon schedule; default
    config.horizon): sequences keep length H, steps from h on are masked in their values.
    Returns (action [A] in [-1, 1], mean [H, A] to pass back next step, info dict with
    'std' [H, A] and 'value' [] (best elite value of the last iteration)).
    """
    c = config
    chex.assert_rank([latent, prev_mean], [1, 2])
    horizon, action_size = prev_mean.shape
    if horizon != c.horizon:
        raise ValueError(f"prev_mean has horizon {horizon}; planner.horizon={c.horizon}")
    k_pi, k_iter, k_select, k_noise = jax.random.split(key, 4)
    z = jnp.broadcast_to(latent, (c.num_samples + c.num_pi_trajs,) + latent.shape)
    pi_actions = (policy_trajectories(c, fns, params, z[:c.num_pi_trajs], k_pi)
                  if c.num_pi_trajs else None)
    shifted = jnp.concatenate([prev_mean[1:], jnp.zeros_like(prev_mean[:1])], 0)
    mean = jnp.where(is_first, jnp.zeros_like(prev_mean), shifted)
    std = jnp.full_like(prev_mean, c.max_std)
    floor = c.min_std if min_std is None else min_std

    def iteration(carry, k):
        mean, std, _, _ = carry
        k_sample, k_value = jax.random.split(k)
        noise = jax.random.normal(k_sample, (c.num_samples, horizon, action_size))
        actions = jnp.clip(mean + std * noise, -1.0, 1.0)
        if pi_actions is not None:
            actions = jnp.concatenate([actions, pi_actions], 0)
        values = jnp.nan_to_num(estimate_values(c, fns, params, z, actions, k_value, horizon),
                                nan=0.0)
        elite_mean, elite_std, elites, weights = mppi_update(actions, values, c.num_elites,
                                                             c.temperature)
        mean = c.momentum * mean + (1.0 - c.momentum) * elite_mean
        std = jnp.clip(elite_std, floor, c.max_std)
        return (mean, std, elites, weights), values.max()

    init = (mean, std, jnp.zeros((c.num_elites, horizon, action_size)),
            jnp.full((c.num_elites,), 1.0 / c.num_elites))
    (mean, std, elites, weights), best = jax.lax.scan(
        iteration, init, jax.random.split(k_iter, c.iterations))
    choice = jax.random.categorical(k_select, jnp.log(weights))
    action = elites[choice, 0]
    noise = jax.random.normal(k_noise, action.shape) * std[0]
    action = jnp.clip(action + jnp.asarray(explore, action.dtype) * noise, -1.0, 1.0)
    return action, mean, {"std": std, "value": best[-1]}


def plan_batch(config: MPPIConfig, fns: ModelFns, params: Any, key: jax.Array,
               latents: jax.Array, prev_means: jax.Array, is_first: jax.Array,
               explore: jax.Array | bool = False, min_std: jax.Array | float | None = None,
               horizon: jax.Array | int | None = None):
    """`plan` vmapped over environments: latents [N, L], prev_means [N, H, A], is_first [N]
    -> (actions [N, A], means [N, H, A], info with leading [N]). Per-env keys are split from key."""
    keys = jax.random.split(key, latents.shape[0])
    fn = functools.partial(plan, config, fns)
    return jax.vmap(fn, in_axes=(None, 0, 0, 0, 0, None, None, None))(
        params, keys, latents, prev_means, is_first, explore, min_std, horizon)
