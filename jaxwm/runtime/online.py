"""The generic online host loop: env -> replay (on device) -> jitted train -> log / checkpoint.

Any agent that implements this protocol (duck-typed; Dreamer, Plan2Explore, ...) can be run:

  agent.init(key) -> state                                   a pytree (checkpointed)
  agent.initial_carry(num_envs) -> carry                     per-env policy memory, a pytree
  agent.act(state, carry, obs, key, mode) -> (action, carry) obs: {obs keys, 'is_first'} [N, ...];
                                                             mode: int32 [] (traced), index in
                                                             MODES = ('explore', 'eval',
                                                             'random' = uniform actions)
  agent.train_steps(state, batches, key) -> (state, metrics) batches: replay fields [K, T, B, ...]
  agent.video(state, batch, key, path)                       optional: GIF of real vs imagined

The host loop only steps the environments, writes replay, logs and checkpoints: `act` is one jitted
call per env step and `train` one jitted call (K scanned gradient steps on batches sampled on
device) every `train_every` env steps. Each replay record holds o_t, the action a_t taken after
it, the reward received on arriving at o_t, the episode flags and optional labels (e.g. the task
rewards of `jaxwm.envs.tasks`, keys 'reward/<task>'). Checkpoints hold the agent state, the replay
buffer and the RNG key, so a killed run resumes from its last checkpoint (environments restart
with a reset, which the policy memory handles through `is_first`).
"""
import os
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxwm import envs
from jaxwm.data import replay
from jaxwm.envs.tasks import label_keys
from jaxwm.runtime import sharding
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config, to_python
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

POLICIES = ("learned", "random")
MODES = ("explore", "eval", "random")


def run_config() -> ml_collections.ConfigDict:
    """Defaults of the loop (DreamerV2 DMC schedule); agent configs override them per preset."""
    c = ml_collections.ConfigDict()
    c.steps = 1_000_000        # total env steps (agent steps summed over envs)
    c.prefill = 5000           # env steps with uniform random actions before training
    c.pretrain = 100           # training calls right after prefill
    c.train_every = 5          # env steps (summed over envs) per training call
    c.grad_steps = 1           # K gradient steps per training call (a scan)
    c.batch_size = 16          # sequences per gradient step
    c.seq_len = 50             # steps per sequence
    c.replay_capacity = 1_000_000  # steps per env kept in replay
    c.policy = "learned"       # 'learned' or 'random' (baseline: uniform actions, no training)
    c.log_every = 5000         # env steps between metric records
    c.checkpoint_every = 50_000  # env steps between checkpoints (and at the end)
    c.checkpoints_to_keep = 2  # newest checkpoints kept (0: all); older ones are fallbacks
    c.video_every = 0          # env steps between open-loop GIFs (0: only at the end)
    c.video_len = 50           # steps per GIF (5 observed, the rest imagined)
    c.eval_every = 0           # env steps between evaluation phases (0: only at the end)
    c.eval_episodes = 0        # episodes with the mode policy per evaluation (0: none)
    c.num_devices = 1          # devices of the `data` mesh axis (1: no mesh)
    return c


# config fields a resumed run may change: the budget and what training never sees
EXTENDABLE = ("run.steps", "run.checkpoints_to_keep")


def check_run_config(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first bad field of a run config."""
    if c.policy not in POLICIES:
        raise ValueError(f"run.policy={c.policy!r} is not one of {POLICIES}")
    for field in ("steps", "train_every", "grad_steps", "batch_size", "seq_len",
                  "replay_capacity", "log_every", "checkpoint_every", "video_len", "num_devices"):
        if int(c[field]) < 1:
            raise ValueError(f"run.{field}={c[field]!r} must be an int >= 1")
    for field in ("prefill", "pretrain", "video_every", "eval_every", "eval_episodes"):
        if int(c[field]) < 0:
            raise ValueError(f"run.{field}={c[field]!r} must be an int >= 0")
    if c.seq_len > c.replay_capacity:
        raise ValueError(f"run.seq_len={c.seq_len} must be <= run.replay_capacity="
                         f"{c.replay_capacity}")


def make_env(env_config: ml_collections.ConfigDict, seed: int, num_envs: int | None = None):
    """`jaxwm.envs.make(name, num_envs, seed, **overrides)` from an `env` config block."""
    overrides = dict(env_config.get("overrides", {}) or {})
    return envs.make(env_config.name, num_envs or env_config.num_envs, seed, **overrides)


def policy_inputs(env, out: dict) -> dict:
    """The inputs `agent.act` sees: observation keys and 'is_first' [N, ...]."""
    return {**{k: out[k] for k in env.obs_space}, "is_first": out["is_first"]}


def sample_batches(replay_state, key, num: int, batch_size: int, seq_len: int) -> dict:
    """`num` replay batches stacked: fields [num, seq_len, batch_size, ...] (jittable)."""
    keys = jax.random.split(key, num)
    batches = [replay.sample(replay_state, k, batch_size, seq_len) for k in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


def prepare(config: ml_collections.ConfigDict, workdir: str, build: Callable,
            added_blocks: Mapping | None = None) -> tuple:
    """The run contract of an online binary (`jaxwm.runtime.workdir`), before anything is
    written: validate `config`, call `build(env)` on a probe env of the run, refuse a workdir of
    another config (`added_blocks`: see `check_saved_config`). Returns (env_fn for `run`, what
    `build` returned)."""
    with user_errors():
        check_values(config)
        check_run_config(config.run)
        env_fn = lambda step: make_env(config.env, env_seed(config.seed, step))  # noqa: E731
        env = env_fn(0)
        try:
            built = build(env)
        finally:
            env.close()
        check_saved_config(config, workdir, EXTENDABLE, added_blocks)
    return env_fn, built


def env_seed(seed: int, step: int) -> int:
    """Seed of the envs a run seeded `seed` (re)creates at env step `step`: at its start and
    after every checkpoint, in an uninterrupted run and in a resumed one alike, so that both
    see the same episodes (a checkpoint ends the running episodes)."""
    return (seed * 1_000_003 + step) % 2**31


def summed_keys(out: dict) -> list:
    """Per-step keys summed over an episode: 'reward', every 'reward/<task>' label and, where
    the env reports it, 'irreversible' (steps that cannot be undone, JAX-native envs)."""
    return [k for k in out if k in ("reward", "irreversible") or k.startswith("reward/")]


def episode_key(key: str) -> str:
    """Name of an episode sum: 'return', 'return_<task>' or the key itself."""
    if key == "reward":
        return "return"
    return "return_" + key[len("reward/"):] if key.startswith("reward/") else key


class EpisodeStats:
    """Host-side returns of finished episodes (env reward and every 'reward/<task>' label, plus
    the count of irreversible steps where the env reports them) and, when the env reports
    'agent_pos', the set of distinct grid cells visited (coverage).
    `checkpoint()` / `EpisodeStats(n, **saved)`: what a resumed run needs."""

    def __init__(self, num_envs: int, cells=(), finished=(), history=()):
        self.num_envs = num_envs
        self.sums: dict = {}
        self.length = np.zeros(num_envs, np.int64)
        self.finished: list = list(finished)  # dicts of finished episodes since the last `pop`
        self.history: list = list(history)    # returns of all finished episodes (env reward)
        self.cells = set(map(tuple, cells))

    def checkpoint(self) -> dict:
        """JSON-able state for a checkpoint's metadata; the running episodes are dropped (the
        envs are recreated after a checkpoint)."""
        self.sums, self.length = {}, np.zeros(self.num_envs, np.int64)
        return {"cells": sorted(self.cells), "finished": list(self.finished),
                "history": self.history[-1000:]}

    def observe(self, out: dict) -> None:
        keys = summed_keys(out)
        first = out["is_first"]
        for k in keys:
            prev = self.sums.get(k, np.zeros(self.num_envs))
            self.sums[k] = np.where(first, 0.0, prev + out[k])
        self.length = np.where(first, 0, self.length + 1)
        if "agent_pos" in out:
            self.cells.update(map(tuple, np.asarray(out["agent_pos"]).tolist()))
        for i in np.flatnonzero(out["is_last"]):
            episode = {episode_key(k): float(v[i]) for k, v in self.sums.items()}
            episode["length"] = float(self.length[i])
            self.finished.append(episode)
            self.history.append(episode["return"])

    def pop(self) -> dict:
        """Means over episodes finished since the last call (prefixed 'episode/') + coverage."""
        metrics = {}
        if self.finished:
            for k in self.finished[0]:
                metrics[f"episode/{k}"] = float(np.mean([e[k] for e in self.finished]))
            metrics["episode/count"] = float(len(self.finished))
        if self.cells:
            metrics["coverage/cells"] = float(len(self.cells))
        self.finished = []
        return metrics


def run_episodes(env, act_fn: Callable, carry, key, labeler=None, max_steps: int = 100_000):
    """Run one episode in each of the env's N envs with `act_fn(carry, obs, key) ->
    (action, carry)`; returns {'return': [N], 'return_<task>': [N], 'length': [N]} (numpy),
    and 'irreversible' [N] where the env reports it.
    Envs that finish early keep stepping (autoreset) until all are done; later episodes are
    ignored."""
    out = env.reset()
    if labeler is not None:
        out.update(labeler.label(out))
    keys = summed_keys(out)
    sums = {k: np.zeros(env.num_envs) for k in keys}
    length = np.zeros(env.num_envs)
    done = np.zeros(env.num_envs, bool)
    for _ in range(max_steps):
        key, k = jax.random.split(key)
        action, carry = act_fn(carry, policy_inputs(env, out), k)
        out = env.step(np.asarray(action))
        if labeler is not None:
            out.update(labeler.label(out))
        live = ~done
        for k in keys:
            sums[k] += np.where(live, out[k], 0.0)
        length += live
        done |= out["is_last"]
        if done.all():
            break
    else:
        raise RuntimeError(f"evaluation episodes did not end within {max_steps} steps")
    results = {episode_key(k): v for k, v in sums.items()}
    results["length"] = length
    return results


def run(agent, env_fn: Callable, config: ml_collections.ConfigDict, workdir: str, *,
        labeler=None, eval_env_fn: Callable | None = None, on_end: Callable | None = None,
        periodic=(), desc: str = "train", show_keys=("episode/return",)) -> dict:
    """Train `agent` online (see module docstring) or resume from `workdir`.

    env_fn(step) -> the training envs as (re)created at env step `step`, seeded
    `env_seed(config.seed, step)`: at the start and after every checkpoint, so that a resumed
    run logs exactly what the uninterrupted one does (the running episodes end there).
    config: a ConfigDict with `seed` and `run` (`run_config`); labeler: `.label(out)` adds
    float32 [N] keys to every env output (stored in replay); eval_env_fn() -> an env whose N
    envs each run one evaluation episode with the mode policy; on_end(state, replay_state,
    logger, env_step) -> dict of extra summary values (e.g. zero-shot evaluation); periodic:
    (every, fn) pairs, fn with on_end's signature, called every `every` env steps.
    Returns a summary dict (env steps, final returns, coverage, evaluation, on_end values).
    """
    c = config.run
    check_run_config(c)
    mesh = sharding.make_mesh(c.num_devices) if c.num_devices > 1 else None
    env = env_fn(0)
    spec = replay.env_spec(env, label_keys(labeler))
    key = jax.random.PRNGKey(config.seed)
    key, key_init = jax.random.split(key)
    agent_state = jax.jit(agent.init)(key_init)
    if mesh is not None:
        agent_state = sharding.replicate(agent_state, mesh)
    state = {"agent": agent_state,
             "replay": replay.init(spec, c.replay_capacity, env.num_envs, mesh), "key": key}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), c.checkpoints_to_keep or None)
    env_step, meta = 0, {}
    restored = ckpt.restore_latest(state)
    if restored is not None:
        env_step, state, meta = restored
    save_config(config, workdir)   # only once the config is known to fit the run
    stats = EpisodeStats(env.num_envs, **meta.get("episodes", {}))

    act = jax.jit(agent.act)
    mode_id = {m: jnp.int32(i) for i, m in enumerate(MODES)}

    def train(agent_state, replay_state, key):
        k_sample, k_train = jax.random.split(key)
        batches = sample_batches(replay_state, k_sample, c.grad_steps, c.batch_size, c.seq_len)
        return agent.train_steps(agent_state, batches, k_train)

    train = jax.jit(train, donate_argnums=0)
    add = jax.jit(replay.add, donate_argnums=0)
    learn = c.policy == "learned"

    def restart_envs(env, step):
        """Close `env`; the envs, their first outputs and the policy carry of env step `step`."""
        env.close()
        env = env_fn(step)
        out = env.reset()
        if labeler is not None:
            out.update(labeler.label(out))
        return env, out, agent.initial_carry(env.num_envs)

    env, out, carry = restart_envs(env, env_step)
    logger = RunLogger(workdir, total=c.steps, start=env_step, desc=desc, show_keys=show_keys,
                       keep_records=meta.get("records") if restored is not None else 0)
    pretrained = bool(meta.get("pretrained", False))
    loop = {"train_due": 0, "calls": 0, "metrics": {}, "last_log": env_step,
            "last_video": env_step, "last_eval": env_step,
            "last_periodic": [env_step] * len(periodic), **meta.get("loop", {})}
    train_due, calls, metrics, last_log, last_video, last_eval, last_periodic = (
        loop["train_due"], loop["calls"], loop["metrics"], loop["last_log"], loop["last_video"],
        loop["last_eval"], loop["last_periodic"])
    summary = {}
    t0, step0 = time.time(), env_step

    def evaluate(step):
        if not (eval_env_fn and c.eval_episodes):
            return {}
        eval_env = eval_env_fn()
        params = state["agent"]
        act_eval = lambda cr, o, k: act(params, cr, o, k, mode_id["eval"])  # noqa: E731
        state["key"], k_eval = jax.random.split(state["key"])
        res = run_episodes(eval_env, act_eval, agent.initial_carry(eval_env.num_envs), k_eval,
                           labeler)
        eval_env.close()
        values = {f"eval/{k}": float(np.mean(v)) for k, v in res.items()}
        logger.log(step, values)
        return values

    def video(step):
        if not hasattr(agent, "video") or int(state["replay"].count) < c.video_len:
            return None
        state["key"], k_batch, k_video = jax.random.split(state["key"], 3)
        batch = replay.sample(state["replay"], k_batch, max(4, sharding.num_shards(mesh)),
                              c.video_len)
        return agent.video(state["agent"], batch, k_video,
                           os.path.join(workdir, "videos", f"openloop_{step}"))

    while env_step < c.steps:
        # replay holds min(steps per env, capacity) >= seq_len steps per env (no device sync)
        ready = env_step >= c.prefill and env_step // env.num_envs >= c.seq_len
        mode = "explore" if (learn and env_step >= c.prefill) else "random"
        state["key"], k_act = jax.random.split(state["key"])
        action, carry = act(state["agent"], carry, policy_inputs(env, out), k_act, mode_id[mode])
        action = np.asarray(action)
        record = replay.env_row(spec, out, action)
        state["replay"] = add(state["replay"], record)
        out = env.step(action)
        if labeler is not None:
            out.update(labeler.label(out))
        stats.observe(out)
        env_step += env.num_envs
        if learn and ready:
            n = 0
            if not pretrained:
                n, pretrained = c.pretrain, True
            train_due += env.num_envs       # integer env steps owed to training
            n, train_due = n + train_due // c.train_every, train_due % c.train_every
            for _ in range(n):
                state["key"], k_train = jax.random.split(state["key"])
                state["agent"], metrics = train(state["agent"], state["replay"], k_train)
                calls += 1
        if env_step - last_log >= c.log_every or env_step >= c.steps:
            last_log = env_step
            fps = (env_step - step0) / max(time.time() - t0, 1e-6)
            values = {**metrics, **stats.pop(), "env_fps": fps, "train_calls": float(calls)}
            summary.update(logger.log(env_step, values))
        if c.eval_every and env_step - last_eval >= c.eval_every and env_step < c.steps:
            last_eval = env_step
            summary.update(evaluate(env_step))
        for i, (every, fn) in enumerate(periodic):
            if every and env_step - last_periodic[i] >= every and env_step < c.steps:
                last_periodic[i] = env_step
                summary.update(fn(state["agent"], state["replay"], logger, env_step) or {})
        if c.video_every and env_step - last_video >= c.video_every and learn and metrics:
            last_video = env_step
            video(env_step)
        if env_step % c.checkpoint_every < env.num_envs or env_step >= c.steps:
            loop = {"train_due": train_due, "calls": calls, "metrics": to_python(metrics),
                    "last_log": last_log, "last_video": last_video, "last_eval": last_eval,
                    "last_periodic": last_periodic}
            ckpt.save(env_step, state, {"env_step": env_step, "pretrained": pretrained,
                                        "episodes": stats.checkpoint(), "loop": loop,
                                        "records": logger.records})
            if env_step < c.steps:
                env, out, carry = restart_envs(env, env_step)
        logger.advance(env_step)

    summary.update(evaluate(env_step))
    if learn and env_step > c.prefill:
        path = video(env_step)
        if path:
            logger.write(f"open-loop video: {path}")
    if on_end is not None:
        summary.update(on_end(state["agent"], state["replay"], logger, env_step) or {})
    summary["env_steps"] = float(env_step)
    if stats.history:
        summary["return_last10"] = float(np.mean(stats.history[-10:]))
        summary["episodes"] = float(len(stats.history))
    if stats.cells:
        summary["coverage/cells"] = float(len(stats.cells))
    try:
        from jaxwm.runtime.plots import plot_metrics
        keys = ("episode/return", "eval/return", "coverage/cells", "model_loss", "actor_loss",
                "critic_loss", "imag_return", "disag_loss")
        plot = plot_metrics(workdir, keys, title=f"{desc}: {getattr(env, 'name', '')}")
        logger.write(f"metrics: {logger.metrics_path}  plot: {plot}")
    except ImportError:  # plots are optional (the module lives with the lead's runtime tools)
        pass
    logger.close()
    ckpt.close()
    env.close()
    return summary
