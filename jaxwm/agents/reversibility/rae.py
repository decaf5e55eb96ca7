"""RAE: reversibility-aware exploration (Grinsztajn et al., NeurIPS 2021, Sec. 4.1) on a
JAX-native env (`rae.env`: Turf or Sokoban) as one compiled program: the envs, PPO and the
online precedence estimator run inside `lax.scan`s, and the host only logs and checkpoints
between chunks of iterations.

One iteration: roll out `rollout` steps of `num_envs` Turf rooms with the policy; slide the
rollout into psi's trajectory history (`history` steps per env, pairs never cross episodes);
`psi_updates` psi steps on pairs from the history; shape the rewards with
r - w * max(sigmoid(psi(s_t, s_{t+1})) - beta, 0); GAE; PPO epochs over minibatches.
With w = 0 it is plain PPO, psi trained all the same so that it can be scored.

Per iteration it reports, over the episodes that ended in it: env return, irreversible steps
(Turf: grass cells damaged; Sokoban: boxes pushed into a corner), success (goal reached, level
solved); and psi's precision / recall at beta against those true irreversible steps on the
rollout's transitions.
"""
from typing import NamedTuple

import distrax
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm.behaviors import model_free
from jaxwm.envs import jax_native
from jaxwm.models import precedence
from jaxwm.types import TrainState


class Nets(NamedTuple):
    policy: model_free.ActorCritic
    psi: precedence.Precedence
    policy_tx: optax.GradientTransformation
    psi_tx: optax.GradientTransformation


@flax.struct.dataclass
class RaeState:
    policy: TrainState
    psi: TrainState
    env: object                # the core's state pytree, [N]
    obs: jax.Array             # [N, D]
    episode: jax.Array         # int32 [N] id of each env's running episode
    ep_return: jax.Array       # [N] running sums of the current episodes
    ep_irreversible: jax.Array  # [N]
    history: jax.Array         # [L, N, D] psi's recent trajectories (time-major)
    history_episode: jax.Array  # int32 [L, N] (-1 = empty)
    key: jax.Array
    iteration: jax.Array       # int32 []


ENV_BLOCKS = {"Turf-v0": "turf", "Sokoban-v0": "sokoban"}   # rae.env -> its options block


def env_core(c: ml_collections.ConfigDict) -> tuple:
    """(core module, static config) of `rae.env` with its options block."""
    if c.rae.env not in ENV_BLOCKS:
        raise ValueError(f"rae.env={c.rae.env!r} is not one of {sorted(ENV_BLOCKS)}")
    options = c.rae[ENV_BLOCKS[c.rae.env]].to_dict()
    return jax_native.core(c.rae.env), jax_native.make_config(c.rae.env, **options)


def build(c: ml_collections.ConfigDict) -> Nets:
    p, e = c.precedence, c.rae
    return Nets(
        policy=model_free.ActorCritic(env_core(c)[0].NUM_ACTIONS, (p.units,) * p.layers),
        psi=precedence.Precedence((p.units,) * p.layers, p.embed),
        policy_tx=optax.chain(optax.clip_by_global_norm(e.grad_clip), optax.adam(e.lr, eps=1e-5)),
        psi_tx=optax.adam(p.lr))


def init(c: ml_collections.ConfigDict, nets: Nets, key: jax.Array) -> RaeState:
    e, (core, cfg) = c.rae, env_core(c)
    k_pol, k_psi, k_env, key = jax.random.split(key, 4)
    env, obs = jax_native.reset_batch(core, cfg, k_env, e.num_envs)
    length = c.rae.history
    return RaeState(
        policy=TrainState.create(nets.policy.init(k_pol, obs[:1]), nets.policy_tx),
        psi=TrainState.create(nets.psi.init(k_psi, obs[:1], obs[:1]), nets.psi_tx),
        env=env, obs=obs, episode=jnp.arange(e.num_envs, dtype=jnp.int32),
        ep_return=jnp.zeros(e.num_envs), ep_irreversible=jnp.zeros(e.num_envs),
        history=jnp.zeros((length,) + obs.shape),
        history_episode=jnp.full((length, e.num_envs), -1, jnp.int32),
        key=key, iteration=jnp.zeros((), jnp.int32))


def rollout(c, nets, state: RaeState, key) -> tuple:
    """`rollout` steps of all envs: (state with the envs moved on, transitions [T, N, ...])."""
    core, cfg = env_core(c)

    def env_step(s, key):
        k_act, k_env = jax.random.split(key)
        logits, value = nets.policy.apply(s.policy.params, s.obs)
        dist = distrax.Categorical(logits=logits)
        action = dist.sample(seed=k_act)
        env, obs, final_obs, reward, terminal, truncated, irreversible = jax_native.step_batch(
            core, cfg, s.env, action, k_env)
        done = terminal | truncated
        ep_return, ep_irreversible = s.ep_return + reward, s.ep_irreversible + irreversible
        out = dict(obs=s.obs, next_obs=final_obs, action=action, logp=dist.log_prob(action),
                   value=value, reward=reward, done=done, irreversible=irreversible,
                   episode=s.episode, success=terminal, ended_return=ep_return,
                   ended_irreversible=ep_irreversible)
        s = s.replace(env=env, obs=obs, episode=jnp.where(done, s.episode + c.rae.num_envs,
                                                          s.episode),
                      ep_return=jnp.where(done, 0.0, ep_return),
                      ep_irreversible=jnp.where(done, 0.0, ep_irreversible))
        return s, out

    return jax.lax.scan(env_step, state, jax.random.split(key, c.rae.rollout))


def iteration(c, nets, state: RaeState, _=None) -> tuple:
    """One RAE/PPO iteration (module docstring): (state, metrics of this iteration)."""
    e, p = c.rae, c.precedence
    key, k_roll, k_psi, k_ppo = jax.random.split(state.key, 4)
    state, tr = rollout(c, nets, state, k_roll)
    history = jnp.concatenate([state.history[e.rollout:], tr["obs"]])
    history_episode = jnp.concatenate([state.history_episode[e.rollout:], tr["episode"]])

    def psi_step(psi, key):
        return precedence.train_step(nets.psi, nets.psi_tx, psi, history, history_episode,
                                     p.window, p.batch_size, key)

    psi, psi_metrics = jax.lax.scan(psi_step, state.psi, jax.random.split(k_psi, e.psi_updates))
    irreversibility = jax.nn.sigmoid(nets.psi.apply(psi.params, tr["obs"], tr["next_obs"]))
    shaped = precedence.rae_reward(tr["reward"], irreversibility, e.penalty, p.beta)
    batch = model_free.ppo_batch(nets.policy.apply, state.policy.params, tr, state.obs, shaped,
                                 e.gamma, e.gae_lambda)
    policy, ppo_metrics = model_free.ppo_update(
        nets.policy.apply, nets.policy_tx, state.policy, batch, k_ppo, epochs=e.epochs,
        minibatches=e.minibatches, clip=e.clip_eps, value_coef=e.value_coef,
        entropy_coef=e.entropy_coef)

    ended = tr["done"].astype(jnp.float32)
    flagged, true = irreversibility > p.beta, tr["irreversible"]
    metrics = dict(
        episodes=ended.sum(),
        return_sum=(tr["ended_return"] * ended).sum(),
        irreversible_sum=(tr["ended_irreversible"] * ended).sum(),
        success_sum=(tr["success"] * ended).sum(),
        penalty=jnp.mean(tr["reward"] - shaped),
        true_positives=(flagged & true).sum(), flagged=flagged.sum(), irreversible=true.sum(),
        **jax.tree.map(jnp.mean, psi_metrics), **ppo_metrics)
    state = state.replace(policy=policy, psi=psi, history=history,
                          history_episode=history_episode, key=key,
                          iteration=state.iteration + 1)
    return state, metrics


def chunk(c, nets, state: RaeState) -> tuple:
    """`log_every` iterations: (state, metrics stacked [log_every])."""
    return jax.lax.scan(lambda s, _: iteration(c, nets, s), state, None, length=c.rae.log_every)


def summarize(metrics: dict) -> dict:
    """Per-chunk means from stacked iteration metrics: per-episode return / irreversible steps /
    success, psi precision and recall at beta, and the means of the loss metrics."""
    total = {k: float(jnp.sum(v)) for k, v in metrics.items()}
    episodes = max(total["episodes"], 1.0)
    out = {"episode/return": total["return_sum"] / episodes,
           "episode/irreversible": total["irreversible_sum"] / episodes,
           "episode/success": total["success_sum"] / episodes,
           "episodes": total["episodes"],
           "psi/precision": total["true_positives"] / max(total["flagged"], 1.0),
           "psi/recall": total["true_positives"] / max(total["irreversible"], 1.0)}
    skip = {"episodes", "return_sum", "irreversible_sum", "success_sum", "true_positives",
            "flagged", "irreversible"}
    out.update({k: float(jnp.mean(v)) for k, v in metrics.items() if k not in skip})
    return out


def score_psi(c, nets, psi_params, key) -> dict:
    """psi's precision and recall at beta on `eval_transitions` transitions of the uniform random
    policy in fresh envs (against the core's true irreversible steps), and its mean
    irreversibility on the irreversible and on the reversible ones."""
    core, cfg = env_core(c)
    n = c.rae.num_envs
    steps = max(1, c.rae.eval_transitions // n)

    def env_step(carry, key):
        env, obs = carry
        k_act, k_env = jax.random.split(key)
        action = jax.random.randint(k_act, (n,), 0, core.NUM_ACTIONS)
        env, next_obs, final_obs, _, _, _, irreversible = jax_native.step_batch(
            core, cfg, env, action, k_env)
        p = jax.nn.sigmoid(nets.psi.apply(psi_params, obs, final_obs))
        return (env, next_obs), (p, irreversible)

    k_env, k_roll = jax.random.split(key)
    start = jax_native.reset_batch(core, cfg, k_env, n)
    _, (p, irreversible) = jax.lax.scan(env_step, start, jax.random.split(k_roll, steps))
    flagged = p > c.precedence.beta
    tp = (flagged & irreversible).sum()
    mean_where = lambda m: jnp.sum(p * m) / jnp.maximum(m.sum(), 1)  # noqa: E731
    return {"psi/eval_precision": tp / jnp.maximum(flagged.sum(), 1),
            "psi/eval_recall": tp / jnp.maximum(irreversible.sum(), 1),
            "psi/eval_irreversible_mean": mean_where(irreversible),
            "psi/eval_reversible_mean": mean_where(~irreversible)}
