"""Online TD-MPC / TD-MPC2 training on envpool DMC state tasks (and the pieces FOWM reuses).

Host loop (TD-MPC Alg. 2): step N envs in lockstep with actions from a vmapped MPPI plan (uniform
random actions for the first `seed_steps`), write every step to a device replay buffer, and every
`train_every` batched steps run one jitted call of K gradient steps on batches sampled on device.
Evaluations run `eval_episodes` parallel envs for one episode each without exploration noise; the
first one also scores a uniform random policy (the baseline). A killed run resumes from
`workdir/checkpoints` (agent state, optimizer, EMA targets and replay; keys derive from the seed
and the step counters). Outputs: config.json, metrics.jsonl, tb/, plots/return.png.
"""
import math
import os
import time
from typing import Callable

import jax
import matplotlib
import ml_collections
import numpy as np

from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.agents.tdmpc.agent import Agent, AgentState
from jaxwm.data import prioritized, replay
from jaxwm.runtime import online
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, read_metrics, save_config, to_python
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors
from jaxwm.utils import random_action

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECORD_KEYS = ("vector", "action", "reward", "is_first", "is_last", "is_terminal")


# ------------------------------------------------------------------------------------------------
# Environment helpers
# ------------------------------------------------------------------------------------------------
# fields a resumed run may change: the budget and what neither training nor its records see
EXTENDABLE = ("run.env_steps", "run.progress_bar", "run.checkpoints_to_keep")


def make_env(env_config: ml_collections.ConfigDict, seed: int, num_envs: int | None = None):
    """`online.make_env` for a DMC state task; raises ValueError unless it has 'vector'
    observations and continuous actions (what TOLD's MLP encoder and MPPI need)."""
    env = online.make_env(env_config, seed, num_envs)
    if "vector" not in env.obs_space or env.act_space.discrete:
        env.close()
        raise ValueError(f"env.name={env_config.name!r}: TD-MPC needs 'vector' observations and "
                         f"continuous actions (a DMC state task like 'CartpoleBalance-v1'); got "
                         f"obs {sorted(env.obs_space)}, discrete={env.act_space.discrete}")
    return env


def record(out: dict, action) -> dict:
    """The replay row of one batched step: observation o_t, flags, and the action taken at o_t."""
    return replay.env_row(RECORD_KEYS, out, np.asarray(action, np.float32))


Policy = Callable  # (carry, obs dict [N], key) -> (action [N, A], carry), as `online.run_episodes`


def planner_policy(agent: Agent, state: AgentState, explore: bool,
                   horizon: int | None = None) -> Policy:
    """Acting by MPPI (planning `horizon` steps, default H); the carry is the plan mean
    [N, H, A] (start: `agent.initial_plan(N)`)."""
    def policy(plan, obs, key):
        action, plan, _ = agent.jit_act(state, obs["vector"], plan, obs["is_first"], key, explore,
                                        agent.planner.min_std, horizon)
        return np.asarray(action), plan
    return policy


def random_policy(act_space) -> Policy:
    def policy(carry, obs, key):
        return np.asarray(random_action(act_space, len(obs["is_first"]), key)), carry
    return policy


def planner_returns(agent: Agent, state: AgentState, eval_env, key: jax.Array,
                    horizon: int | None = None) -> np.ndarray:
    """Returns [N] of one noise-free MPPI episode per eval env (run in parallel), planning
    `horizon` steps (default H)."""
    return online.run_episodes(eval_env, planner_policy(agent, state, False, horizon),
                               agent.initial_plan(eval_env.num_envs), key)["return"]


def rollout(env, policy: Policy, carry, key: jax.Array, num_steps: int) -> dict:
    """`num_steps` batched steps from a reset, as time-major replay rows [T, N, ...] (numpy)."""
    out = env.reset()
    rows = []
    for t in range(num_steps):
        action, carry = policy(carry, out, jax.random.fold_in(key, t))
        rows.append(record(out, action))
        out = env.step(action)
    return {k: np.stack([r[k] for r in rows]) for k in RECORD_KEYS}


def crossed(step: int, delta: int, every: int) -> bool:
    """True if a multiple of `every` lies in (step - delta, step]."""
    return every > 0 and step // every > (step - delta) // every


def plot_returns(workdir: str, title: str) -> str:
    """plots/return.png: evaluation (and training-episode) returns against env steps, with the
    random-policy baseline as a dashed line; FOWM's offline phase in its own panel."""
    records = read_metrics(workdir)
    panels = [("offline", "offline/eval_return", "gradient steps (offline)"),
              ("online", "eval/return", "env steps")]
    panels = [p for p in panels if any(p[1] in r for r in records)]
    path = os.path.join(workdir, "plots", "return.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 3.5),
                             squeeze=False)
    random = [r["eval/random_return"] for r in records if "eval/random_return" in r]
    for ax, (name, key, xlabel) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*pts), marker="o", label="eval return")
        if name == "online":
            train = [(r["step"], r["train/episode_return"]) for r in records
                     if "train/episode_return" in r]
            if train:
                ax.plot(*zip(*train), alpha=0.5, label="train episodes")
        if random:
            ax.axhline(random[-1], color="gray", ls="--", label="random policy")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("return")
        ax.set_title(f"{title} ({name})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# The online loop (shared with FOWM's finetuning phase)
# ------------------------------------------------------------------------------------------------
def checkpoint_tree(state: AgentState, replay_state: replay.ReplayState,
                    priorities: tuple) -> dict:
    """What a checkpoint holds: agent, online replay and, with prioritized replay, every
    buffer's PriorityState."""
    tree = {"agent": state, "replay": replay_state}
    if any(p is not None for p in priorities):
        tree["priorities"] = priorities
    return tree


def run_online(agent: Agent, config: ml_collections.ConfigDict, state: AgentState,
               replay_state: replay.ReplayState, *, env_fn, eval_env_fn, logger: RunLogger,
               ckpt: Checkpointer, key: jax.Array, env_step: int = 0, pretrained: bool = False,
               fixed_replays: tuple = (), sizes: tuple | None = None, ckpt_offset: int = 0,
               ckpt_meta: dict | None = None, resume: dict | None = None,
               priorities: tuple | None = None):
    """Acts, stores and trains until `run.env_steps`; returns (state, replay_state, last eval).

    env_fn(step) / eval_env_fn(step): the training and evaluation envs as (re)created at env
    step `step` (at the start and after every checkpoint: a resumed run matches an
    uninterrupted one). fixed_replays: extra buffers sampled alongside the online one (FOWM's
    offline data), with per-buffer batch sizes `sizes` (online first). Checkpoints are numbered
    ckpt_offset + env_step, with `ckpt_meta` and, under 'loop', what the loop needs to resume
    exactly (`resume`: that dict of the restored checkpoint). priorities: with `run.per`, the
    PriorityState of every buffer (online first), saved with the checkpoints.
    """
    r = config.run
    total = r.env_steps
    resume = resume or {}
    k_act, k_train, k_pretrain, k_eval = jax.random.split(key, 4)
    act = agent.jit_act
    train = jax.jit(agent.train_steps, static_argnames=("num_steps", "sizes"), donate_argnums=0)
    add = jax.jit(replay.add, donate_argnums=0)
    add_prioritized = jax.jit(prioritized.add, donate_argnums=(0, 1))
    priorities = tuple(priorities or (None,) * (1 + len(fixed_replays)))
    num_updates = tdmpc_config.updates_per_call(config)
    sizes = tuple(sizes) if sizes else (r.batch_size,)
    min_rows = config.model.horizon + 1
    env, eval_env = env_fn(env_step), eval_env_fn(env_step)
    n = env.num_envs
    episodes = online.EpisodeStats(n, **resume.get("episodes", {}))
    out, plan = env.reset(), agent.initial_plan(n)
    host_step, start, start_step = env_step // n, time.time(), env_step
    last_eval, metrics = resume.get("last_eval"), resume.get("metrics", {})

    def save():
        loop = {"episodes": episodes.checkpoint(), "last_eval": last_eval,
                "metrics": to_python(metrics)}
        meta = dict(ckpt_meta or {}, env_steps=env_step, pretrained=pretrained,
                    records=logger.records, loop=loop)
        ckpt.save(ckpt_offset + env_step, checkpoint_tree(state, replay_state, priorities), meta)

    while env_step < total:
        key_t = jax.random.fold_in(k_act, host_step)
        if env_step < r.seed_steps:
            action = np.asarray(random_action(env.act_space, n, key_t))
        else:
            action, plan, _ = act(state, out["vector"], plan, out["is_first"], key_t, True,
                                  tdmpc_config.exploration_std(config, env_step),
                                  tdmpc_config.planning_horizon(config, env_step))
            action = np.asarray(action)
        if priorities[0] is None:
            replay_state = add(replay_state, record(out, action))
        else:
            replay_state, online_priorities = add_prioritized(replay_state, priorities[0],
                                                              record(out, action))
            priorities = (online_priorities,) + priorities[1:]
        out = env.step(action)
        episodes.observe(out)
        env_step += n
        host_step += 1
        ready = env_step >= r.seed_steps and host_step >= min_rows
        if ready and not pretrained:
            for i in range(math.ceil(r.pretrain_updates / num_updates)):
                state, metrics, priorities = train(
                    state, (replay_state,) + fixed_replays, jax.random.fold_in(k_pretrain, i),
                    num_updates, sizes, priorities)
            pretrained = True
        elif ready and host_step % r.train_every == 0:
            state, metrics, priorities = train(
                state, (replay_state,) + fixed_replays, jax.random.fold_in(k_train, host_step),
                num_updates, sizes, priorities)
        if crossed(env_step, n, r.log_every):
            finished = episodes.pop()
            record_ = {f"train/{k}": v for k, v in metrics.items()}
            record_["train/planning_horizon"] = tdmpc_config.planning_horizon(config, env_step)
            if "episode/return" in finished:
                record_["train/episode_return"] = finished["episode/return"]
            record_["fps"] = (env_step - start_step) / max(time.time() - start, 1e-6)
            logger.log(env_step, record_)
        if crossed(env_step, n, r.eval_every) or env_step >= total:
            returns = planner_returns(agent, state, eval_env, jax.random.fold_in(k_eval, env_step),
                                      tdmpc_config.planning_horizon(config, env_step))
            last_eval = float(returns.mean())
            logger.log(env_step, {"eval/return": last_eval, "eval/return_std": returns.std()})
            logger.write(f"step {env_step}: eval return {last_eval:.1f}")
        if crossed(env_step, n, r.checkpoint_every) or env_step >= total:
            save()
            if env_step < total:
                env.close()
                eval_env.close()
                env, eval_env = env_fn(env_step), eval_env_fn(env_step)
                out, plan = env.reset(), agent.initial_plan(n)
        logger.advance(env_step)
    env.close()
    eval_env.close()
    return state, replay_state, last_eval


def random_baseline(env_fn, key: jax.Array) -> float:
    """Mean return of the uniform random policy over one episode per env of `env_fn()` (its
    own envs: other streams do not depend on whether it ran)."""
    env = env_fn()
    try:
        return float(online.run_episodes(env, random_policy(env.act_space), None,
                                         key)["return"].mean())
    finally:
        env.close()


def env_fns(config: ml_collections.ConfigDict) -> tuple:
    """(training envs, evaluation envs, random-baseline envs) factories: the first two of an
    env step (`online.env_seed`), all seeded from `config.seed`."""
    r = config.run
    return (lambda step: make_env(config.env, online.env_seed(config.seed, step)),
            lambda step: make_env(config.env, online.env_seed(config.seed + 10_000, step),
                                  r.eval_episodes),
            lambda: make_env(config.env, config.seed + 20_000, r.eval_episodes))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train TD-MPC online per `config` (see `config.get_config`) in `workdir`; resumes from
    its checkpoints. Returns {'eval_return', 'random_return', 'env_steps', 'seconds'}."""
    r, start = config.run, time.time()
    with user_errors():   # nothing is written before the config is known to be valid
        check_values(config)
        tdmpc_config.check_config(config)
        env_fn, eval_env_fn, random_env_fn = env_fns(config)
        env = env_fn(0)
        agent = Agent(config, env.obs_space["vector"].shape[0], env.act_space.size)
        env.close()
        check_saved_config(config, workdir, EXTENDABLE)
    key = jax.random.key(config.seed)
    k_init, k_run, k_random = jax.random.split(key, 3)
    state = jax.jit(agent.init)(k_init)
    replay_state = replay.init(agent.replay_spec(), max(r.replay_capacity // env.num_envs, 1),
                               env.num_envs)
    priorities = agent.priorities(replay_state)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), r.checkpoints_to_keep or None)
    restored = ckpt.restore_latest(checkpoint_tree(state, replay_state, (priorities,)))
    env_step, pretrained, meta = 0, False, {}
    if restored is not None:
        _, tree, meta = restored
        state, replay_state = tree["agent"], tree["replay"]
        priorities = tree.get("priorities", (None,))[0]
        env_step, pretrained = int(meta["env_steps"]), bool(meta["pretrained"])
    save_config(config, workdir)   # only once the config is known to fit the run
    logger = RunLogger(workdir, total=r.env_steps, start=env_step, desc="tdmpc",
                       show_keys=("eval/return", "train/episode_return", "train/model_loss"),
                       enable_bar=r.progress_bar,
                       keep_records=meta.get("records") if restored is not None else 0)
    try:
        random_return = [m["eval/random_return"] for m in read_metrics(workdir)
                         if "eval/random_return" in m]
        if random_return:
            random_return = random_return[-1]
        else:
            random_return = random_baseline(random_env_fn, k_random)
            logger.log(0, {"eval/random_return": random_return})
        if env_step < r.env_steps:
            state, replay_state, eval_return = run_online(
                agent, config, state, replay_state, env_fn=env_fn, eval_env_fn=eval_env_fn,
                logger=logger, ckpt=ckpt, key=k_run, env_step=env_step, pretrained=pretrained,
                resume=meta.get("loop"), priorities=(priorities,))
        else:
            eval_return = [m["eval/return"] for m in read_metrics(workdir)
                           if "eval/return" in m and m["step"] <= env_step][-1]
        plot_returns(workdir, f"TD-MPC {config.env.name}")
    finally:
        logger.close()
        ckpt.close()
    return {"eval_return": eval_return, "random_return": random_return,
            "env_steps": r.env_steps, "seconds": time.time() - start}
