"""Cross-entropy method (CEM) over action sequences in a learned model, as a pure jittable function.

PlaNet (Hafner et al., ICML 2019, "Learning Latent Dynamics for Planning from Pixels", Sec. 3
and its appendix) plans with CEM in its RSSM: J = 1000 candidate sequences of H = 12 actions are
drawn from a diagonal Gaussian N(mean, std) (clipped to the action box [-1, 1]), each is rolled
out from the current model state and scored by the sum of predicted rewards, and the Gaussian is
refit to the K = 100 best (unweighted elite mean and std) for I = 10 iterations. The action
executed is the first step of the final mean; while collecting data PlaNet adds N(0, 0.3^2)
exploration noise to it. The official code's std is sqrt(elite variance + 1e-6), here
sqrt(var + min_std^2) with min_std 1e-3.

PlaNet restarts every plan from mean 0, std 1. The warm start asked for here (as in MPPI/TD-MPC)
starts the mean from the previous plan shifted by one step instead (zero on an episode's first
step); it is on by default (`warm_start=True`), and `warm_start=False` is PlaNet's restart.

`plan(config, fns, params, key, state, prev_mean, is_first, explore)` plans from one model state
(a pytree with no batch axis, e.g. the RSSM's {'deter', 'stoch', ...}); `plan_batch` vmaps it over
environments. Rollouts are a `lax.scan` over the horizon inside a `lax.scan` over iterations, so
one call compiles to one program.
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from jaxwm.utils import dataclass_from_config


@dataclasses.dataclass(frozen=True)
class CEMConfig:
    """CEM settings (defaults: PlaNet's, except warm_start). Static under jit (hashable)."""
    horizon: int = 12             # planning horizon H
    num_candidates: int = 1000    # J action sequences per iteration
    num_elites: int = 100         # K best sequences the Gaussian is refit to
    iterations: int = 10          # I refits
    init_std: float = 1.0         # sampling std of the first iteration
    min_std: float = 1e-3         # std = sqrt(elite var + min_std^2) (PlaNet: + 1e-6 in the sqrt)
    explore_noise: float = 0.3    # std of the Gaussian noise added to the action when exploring
    gamma: float = 1.0            # reward discount over the horizon (PlaNet: plain sum)
    warm_start: bool = True       # start from the previous mean shifted by one step (PlaNet: 0)

    def __post_init__(self):
        for name in ("horizon", "num_candidates", "num_elites", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"planner.{name}={value!r} must be an int >= 1")
        if self.num_elites > self.num_candidates:
            raise ValueError(f"planner.num_elites={self.num_elites} must be <= "
                             f"num_candidates = {self.num_candidates}")
        if not self.init_std > 0.0:
            raise ValueError(f"planner.init_std={self.init_std!r} must be > 0")
        if not self.min_std >= 0.0:
            raise ValueError(f"planner.min_std={self.min_std!r} must be >= 0")
        if not self.explore_noise >= 0.0:
            raise ValueError(f"planner.explore_noise={self.explore_noise!r} must be >= 0")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"planner.gamma={self.gamma!r} must be in [0, 1]")
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"planner.warm_start={self.warm_start!r} must be True or False")

    @classmethod
    def from_config(cls, config, **overrides) -> "CEMConfig":
        """From an ml_collections `planner` ConfigDict (field names as above) plus overrides."""
        return dataclass_from_config(cls, config, "planner", **overrides)


class ModelFns(NamedTuple):
    """The model as seen by the planner. States are pytrees whose leaves have a batch axis [N].

    next(params, s_t, a_t [N, A], key) -> s_{t+1}: one transition; `key` lets it sample (PlaNet's
        prior sample) or be ignored (prior mean, deterministic models). One key per step for
        the whole batch of N states.
    reward(params, s_{t+1}, a_t [N, A]) -> r [N]: the reward predicted at the state the action led
        to (PlaNet's reward head on feat(s_{t+1})); a_t for models whose reward uses it.
    terminal_value(params, s_H) -> v [N] or None: value added at gamma^H (None: 0, PlaNet).
    """
    next: Callable
    reward: Callable
    terminal_value: Optional[Callable] = None


# ------------------------------------------------------------------------------------------------
# Core maths (unbatched)
# ------------------------------------------------------------------------------------------------
def shift_plan(prev_mean: jax.Array, is_first: jax.Array) -> jax.Array:
    """Warm start: [a_1, ..., a_{H-1}, 0] from the previous mean [H, A]; zeros where is_first."""
    chex.assert_rank(prev_mean, 2)
    shifted = jnp.concatenate([prev_mean[1:], jnp.zeros_like(prev_mean[:1])], 0)
    return jnp.where(is_first, jnp.zeros_like(prev_mean), shifted)


def cem_refit(actions: jax.Array, returns: jax.Array, num_elites: int, min_std: float):
    """Refit of the sampling Gaussian to the K best sequences (PlaNet, unweighted).

    actions [J, H, A], returns [J] -> (mean [H, A], std [H, A], best return []), with mean and
    (population) variance over the elites and std = sqrt(var + min_std^2).
    """
    chex.assert_rank([actions, returns], [3, 1])
    chex.assert_equal_shape_prefix([actions, returns], 1)
    elite_returns, idx = jax.lax.top_k(returns, num_elites)
    elites = actions[idx]
    mean = elites.mean(0)
    std = jnp.sqrt(jnp.square(elites - mean).mean(0) + min_std ** 2)
    return mean, std, elite_returns[0]


def candidate_returns(config: CEMConfig, fns: ModelFns, params: Any, states: Any,
                      actions: jax.Array, key: jax.Array) -> jax.Array:
    """sum_{t<H} gamma^t r_{t+1} (+ gamma^H v(s_H) with a terminal value) of each sequence.

    states: pytree with leading [J] (copies of the start state); actions [J, H, A] -> [J].
    """
    chex.assert_rank(actions, 3)
    horizon = actions.shape[1]

    def step(s, inputs):
        a_t, k = inputs
        s = fns.next(params, s, a_t, k)
        return s, fns.reward(params, s, a_t)

    final, rewards = jax.lax.scan(step, states, (jnp.swapaxes(actions, 0, 1),
                                                 jax.random.split(key, horizon)))
    discounts = config.gamma ** jnp.arange(horizon, dtype=rewards.dtype)
    value = (discounts[:, None] * rewards).sum(0)
    if fns.terminal_value is not None:
        value = value + config.gamma ** horizon * fns.terminal_value(params, final)
    return value


# ------------------------------------------------------------------------------------------------
# Planner
# ------------------------------------------------------------------------------------------------
def initial_plan(config: CEMConfig, action_size: int, batch: tuple = ()) -> jax.Array:
    """Zero mean [*batch, H, A]: the `prev_mean` before the first step."""
    return jnp.zeros(tuple(batch) + (config.horizon, action_size), jnp.float32)


def plan(config: CEMConfig, fns: ModelFns, params: Any, key: jax.Array, state: Any,
         prev_mean: jax.Array, is_first: jax.Array, explore: jax.Array | bool = False):
    """One CEM plan from one model state.

    state: pytree without batch axis; prev_mean [H, A] (the `mean` returned by the previous call;
    ignored when is_first, a bool [], or without warm start); explore: add
    N(0, explore_noise^2) to the action (data collection).
    Returns (action [A] in [-1, 1], mean [H, A] to pass back next step, info dict with
    'std' [H, A] and 'value' [] (best elite return of the last iteration)).
    """
    c = config
    chex.assert_rank(prev_mean, 2)
    horizon, action_size = prev_mean.shape
    if horizon != c.horizon:
        raise ValueError(f"prev_mean has horizon {horizon}; planner.horizon={c.horizon}")
    k_iter, k_noise = jax.random.split(key)
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (c.num_candidates,) + jnp.shape(x)),
                          state)
    mean = shift_plan(prev_mean, is_first) if c.warm_start else jnp.zeros_like(prev_mean)
    std = jnp.full_like(prev_mean, c.init_std)

    def iteration(carry, k):
        mean, std = carry
        k_sample, k_model = jax.random.split(k)
        noise = jax.random.normal(k_sample, (c.num_candidates, horizon, action_size))
        actions = jnp.clip(mean + std * noise, -1.0, 1.0)
        returns = candidate_returns(c, fns, params, states, actions, k_model)
        # A NaN return (diverged rollout) is never an elite.
        returns = jnp.nan_to_num(returns, nan=-jnp.inf)
        mean, std, best = cem_refit(actions, returns, c.num_elites, c.min_std)
        return (mean, std), best

    (mean, std), best = jax.lax.scan(iteration, (mean, std),
                                     jax.random.split(k_iter, c.iterations))
    noise = c.explore_noise * jax.random.normal(k_noise, (action_size,))
    action = jnp.clip(mean[0] + jnp.asarray(explore, mean.dtype) * noise, -1.0, 1.0)
    return action, mean, {"std": std, "value": best[-1]}


def plan_batch(config: CEMConfig, fns: ModelFns, params: Any, key: jax.Array, states: Any,
               prev_means: jax.Array, is_first: jax.Array, explore: jax.Array | bool = False):
    """`plan` vmapped over environments: states pytree with leading [N], prev_means [N, H, A],
    is_first [N] -> (actions [N, A], means [N, H, A], info with leading [N]). Per-env keys are
    split from key."""
    keys = jax.random.split(key, prev_means.shape[0])
    fn = functools.partial(plan, config, fns)
    return jax.vmap(fn, in_axes=(None, 0, 0, 0, 0, None))(
        params, keys, states, prev_means, is_first, explore)
