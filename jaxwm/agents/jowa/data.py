"""Mixed-quality offline data for JOWA (Cheng et al., ICLR 2025, "Scaling Offline Model-Based RL
via Jointly-Optimized World-Action Model Pretraining"), at `cpu` scale on the JAX-native MinAtar
games (`jaxwm.envs.minatar`).

JOWA pretrains one world-action transformer on the DQN-Replay data of several Atari games
(everything a DQN saw while it learned, so a mix of qualities, plus some random data) and then
finetunes it few-shot on a held-out game. Here the data-generating agent is the project's PPO
(`jaxwm.behaviors.model_free`: `ActorCritic`, `gae`, `ppo_loss`), run as in
`jaxwm.agents.reversibility.rae`: envs, rollout and update compile into one `lax.scan` per chunk
of iterations and the host only records the learning curve and the policy snapshots.

- `train_ppo(game, env_steps, seed, ...)`: PPO on one game; the policy params at the fractions
  `snapshots` of training (default 0%, 25%, 50%, 100%) and the learning curve (mean return of
  the episodes that ended in each chunk).
- `collect(game, params_list, steps_per_policy, epsilon, seed)`: `steps_per_policy` rows of each
  snapshot policy (epsilon-greedy on its sampled action) and of a uniform-random policy, as
  `num_streams` time-major streams in the `jaxwm.data.datasets` format (Dreamer autoreset:
  `jax_native.protocol_step`), concatenated along time into 'mixed' (the analogue of
  DQN-Replay's mix); plus the reference returns for score normalization: the random policy's
  and the final agent's mean return over completed episodes.
- `write_datasets(games, out_dir, ...)`: `<out_dir>/<game>/mixed.npz` per game
  (`datasets.save`, with the sources and reference returns in its metadata) and
  `<out_dir>/summary.json` (`experiments/make_dataset.py --jowa_games=...`).

Actions are stored as one-hots of MinAtar's 6 actions ('action' float32 [T, N, 6]); the action of
an is_last row is the one chosen there, which the autoreset ignores. Time-limit truncation ends
the bootstrap like a termination (as `model_free` says); MinAtar has no truncation by default.
"""
import functools
import json
import os
import time
from typing import Any, NamedTuple

import distrax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxwm.behaviors import model_free
from jaxwm.data import datasets
from jaxwm.envs import base, jax_native, minatar
from jaxwm.types import TrainState

GAMES = tuple(minatar.NAMES)
NUM_ACTIONS = minatar.NUM_ACTIONS
SNAPSHOTS = (0.0, 0.25, 0.5, 1.0)     # fractions of training at which the policy is kept
ENV_STEPS = 2_500_000   # per game (20 chunks of 15 iterations: 2,457,600), ~2-3.5 min of PPO at
                        # the 12k-22k env steps/s measured on 2 busy CPU cores
STEPS_PER_POLICY = 25_000             # rows per source (4 snapshots + random: 125k per game)
NUM_STREAMS = 8                       # 3125 rows a stream: a whole Freeway episode (2501 rows)
EPSILON = 0.05
HIDDEN, ACT = (128, 128), "relu"      # MLP torsos of the policy and value on the flat grid
CHUNKS = 20                           # points of the learning curve
OUT_DIR = "datasets/jowa"


class PPOConfig(NamedTuple):
    """PPO's hyperparameters (static). One iteration: `rollout` steps of `num_envs` envs, then
    `epochs` passes over the batch in `minibatches` minibatches."""
    num_envs: int = 64
    rollout: int = 128
    epochs: int = 4
    minibatches: int = 8
    lr: float = 5e-4
    anneal: bool = True          # lr decays linearly to 0 over the run
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    grad_clip: float = 0.5
    hidden: tuple = HIDDEN       # MLP torsos of `ActorCritic` on the flattened 10x10xC grid
    act: str = ACT


@flax.struct.dataclass
class PPOState:
    policy: TrainState
    env: Any                 # the core's state pytree, [num_envs]
    obs: jax.Array           # [num_envs, D]
    ep_return: jax.Array     # [num_envs] running sums of the current episodes
    key: jax.Array


class Trained(NamedTuple):
    """What `train_ppo` returns. params[i] is the policy at fraction fractions[i] of training
    (after snapshot_steps[i] env steps); curve: per chunk {'env_steps', 'return' (mean over the
    episodes that ended in the chunk; None if none did), 'episodes', 'entropy'}."""
    params: list
    fractions: tuple
    snapshot_steps: list
    curve: list
    env_steps: int
    seconds: float            # of training, after `compile_seconds` of compiling a chunk
    steps_per_second: float
    compile_seconds: float
    config: PPOConfig


def check_game(game: str) -> str:
    """`game` if it is a MinAtar game, else ValueError naming the field and the allowed games."""
    if game not in minatar.NAMES:
        raise ValueError(f"game={game!r} is not one of {list(GAMES)}")
    return game


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r} must be an int >= {low}")
    return int(value)


def _fractions(snapshots) -> tuple:
    try:
        fractions = tuple(float(f) for f in snapshots)
    except (TypeError, ValueError):
        fractions = ()
    if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"snapshots={snapshots!r} must be fractions of training in [0, 1]")
    return fractions


def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or \
            not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon={epsilon!r} must be a probability in [0, 1]")
    return float(epsilon)


def ppo_config(**overrides) -> PPOConfig:
    """`PPOConfig` with `overrides`; ValueError naming an unknown field or a bad size."""
    unknown = sorted(set(overrides) - set(PPOConfig._fields))
    if unknown:
        raise ValueError(f"unknown PPO field(s) {unknown}; allowed: {list(PPOConfig._fields)}")
    cfg = PPOConfig(**{**overrides, "hidden": tuple(overrides.get("hidden", HIDDEN))})
    for name in ("num_envs", "rollout", "epochs", "minibatches"):
        _check_int(name, getattr(cfg, name), 1)
    if (cfg.num_envs * cfg.rollout) % cfg.minibatches:
        raise ValueError(f"minibatches={cfg.minibatches} must divide num_envs * rollout = "
                         f"{cfg.num_envs * cfg.rollout}")
    return cfg


def network(hidden: tuple = HIDDEN, act: str = ACT) -> model_free.ActorCritic:
    """The policy of `train_ppo` and `collect`: obs [..., D] -> (logits [..., 6], value [...])."""
    return model_free.ActorCritic(NUM_ACTIONS, tuple(hidden), act)


def env_core(game: str) -> tuple:
    """(core module, static config, resolved options) of `game` with MinAtar's default options
    (sticky actions 0.1, ramping)."""
    core = jax_native.core(check_game(game))
    options = base.resolve_options(game, core.OPTIONS, {})
    return core, core.make_config(options, game), options


# ----------------------------------------------------------------------------------------- PPO
def _optimizer(cfg: PPOConfig, iterations: int) -> optax.GradientTransformation:
    updates = iterations * cfg.epochs * cfg.minibatches
    lr = optax.linear_schedule(cfg.lr, 0.0, updates) if cfg.anneal else cfg.lr
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(lr, eps=1e-5))


def _rollout(net, cfg: PPOConfig, core, env_cfg, state: PPOState, key) -> tuple:
    """`rollout` steps of all envs with the sampled policy (gymnax autoreset): (state,
    transitions [rollout, num_envs, ...])."""
    def env_step(s, key):
        k_act, k_env = jax.random.split(key)
        logits, value = net.apply(s.policy.params, s.obs)
        dist = distrax.Categorical(logits=logits)
        action = dist.sample(seed=k_act)
        env, obs, _, reward, terminal, truncated, _ = jax_native.step_batch(
            core, env_cfg, s.env, action, k_env)
        done = terminal | truncated
        ep_return = s.ep_return + reward
        out = dict(obs=s.obs, action=action, logp=dist.log_prob(action), value=value,
                   reward=reward, done=done, ended_return=ep_return)
        return s.replace(env=env, obs=obs, ep_return=jnp.where(done, 0.0, ep_return)), out

    return jax.lax.scan(env_step, state, jax.random.split(key, cfg.rollout))


def _iteration(net, tx, cfg: PPOConfig, core, env_cfg, state: PPOState, _=None) -> tuple:
    """Rollout, GAE, PPO epochs: (state, metrics of this iteration)."""
    key, k_roll, k_ppo = jax.random.split(state.key, 3)
    state, tr = _rollout(net, cfg, core, env_cfg, state, k_roll)
    batch = model_free.ppo_batch(net.apply, state.policy.params, tr, state.obs, tr["reward"],
                                 cfg.gamma, cfg.gae_lambda)
    policy, metrics = model_free.ppo_update(
        net.apply, tx, state.policy, batch, k_ppo, epochs=cfg.epochs,
        minibatches=cfg.minibatches, clip=cfg.clip, value_coef=cfg.value_coef,
        entropy_coef=cfg.entropy_coef)
    ended = tr["done"].astype(jnp.float32)
    metrics = dict(episodes=ended.sum(), return_sum=(tr["ended_return"] * ended).sum(),
                   entropy=metrics["entropy"])
    return state.replace(policy=policy, key=key), metrics


@functools.partial(jax.jit, static_argnames=("game", "cfg", "iterations"))
def _init(key, *, game: str, cfg: PPOConfig, iterations: int) -> PPOState:
    core, env_cfg, _ = env_core(game)
    k_net, k_env, key = jax.random.split(key, 3)
    env, obs = jax_native.reset_batch(core, env_cfg, k_env, cfg.num_envs)
    params = network(cfg.hidden, cfg.act).init(k_net, obs[:1])
    return PPOState(policy=TrainState.create(params, _optimizer(cfg, iterations)), env=env,
                    obs=obs, ep_return=jnp.zeros(cfg.num_envs), key=key)


@functools.partial(jax.jit, static_argnames=("game", "cfg", "iterations", "length"))
def _chunk(state: PPOState, *, game: str, cfg: PPOConfig, iterations: int, length: int) -> tuple:
    """`length` iterations of a run of `iterations` (the lr schedule's length): (state, metrics
    stacked [length])."""
    core, env_cfg, _ = env_core(game)
    step = functools.partial(_iteration, network(cfg.hidden, cfg.act), _optimizer(cfg, iterations),
                             cfg, core, env_cfg)
    return jax.lax.scan(step, state, None, length=length)


def train_ppo(game: str, env_steps: int = ENV_STEPS, seed: int = 0, num_envs: int = 64, *,
              chunks: int = CHUNKS, snapshots: tuple = SNAPSHOTS, **overrides) -> Trained:
    """PPO on the JAX-native `game` for about `env_steps` env steps (rounded down to whole
    chunks of iterations of num_envs * rollout steps; at least one iteration), as `chunks`
    compiled `lax.scan`s. `overrides`: other `PPOConfig` fields. Returns `Trained`: the policy
    params (host numpy) at each fraction of `snapshots` (rounded to a chunk boundary) and the
    learning curve. ValueError naming a bad game, size or fraction."""
    check_game(game)
    cfg = ppo_config(num_envs=num_envs, **overrides)
    _check_int("env_steps", env_steps, 1)
    _check_int("chunks", chunks, 1)
    fractions = _fractions(snapshots)
    per_iteration = cfg.num_envs * cfg.rollout
    iterations = max(1, env_steps // per_iteration)
    chunks = min(chunks, iterations)
    per_chunk = iterations // chunks
    iterations = per_chunk * chunks
    at_chunk = [int(round(f * chunks)) for f in fractions]

    state = _init(jax.random.key(seed), game=game, cfg=cfg, iterations=iterations)
    kept = {0: jax.device_get(state.policy.params)}
    start = time.perf_counter()
    run_chunk = _chunk.lower(state, game=game, cfg=cfg, iterations=iterations,
                              length=per_chunk).compile()
    compile_seconds, curve, start = time.perf_counter() - start, [], time.perf_counter()
    for c in range(1, chunks + 1):
        state, metrics = run_chunk(state)
        metrics = jax.device_get(metrics)
        episodes = float(metrics["episodes"].sum())
        curve.append({"env_steps": c * per_chunk * per_iteration, "episodes": int(episodes),
                      "return": (float(metrics["return_sum"].sum()) / episodes
                                 if episodes else None),
                      "entropy": round(float(metrics["entropy"].mean()), 4)})
        if c in at_chunk:
            kept[c] = jax.device_get(state.policy.params)
    seconds = time.perf_counter() - start
    steps = iterations * per_iteration
    return Trained(params=[kept[c] for c in at_chunk], fractions=fractions,
                   snapshot_steps=[c * per_chunk * per_iteration for c in at_chunk], curve=curve,
                   env_steps=steps, seconds=seconds, steps_per_second=steps / seconds,
                   compile_seconds=compile_seconds, config=cfg)


# ------------------------------------------------------------------------------------- collect
@functools.partial(jax.jit, static_argnames=("game", "rows", "streams", "hidden", "act"))
def _stream(params, epsilon, key, *, game: str, rows: int, streams: int, hidden: tuple,
            act: str) -> dict:
    """`rows` rows of `streams` envs of `game` (Dreamer autoreset) with the epsilon-greedy
    sampled policy of `params` (epsilon 1: uniform random): dataset fields [rows, streams, ...]
    and the envs' 'score' info."""
    core, env_cfg, _ = env_core(game)
    net = network(hidden, act)
    k_env, k_roll = jax.random.split(key)
    state, out = jax_native.protocol_reset(core, env_cfg, k_env, streams)

    def env_step(carry, key):
        state, out = carry
        k_pol, k_eps, k_rand, k_env = jax.random.split(key, 4)
        logits, _ = net.apply(params, out["vector"])
        sampled = distrax.Categorical(logits=logits).sample(seed=k_pol)
        explore = jax.random.bernoulli(k_eps, epsilon, (streams,))
        action = jnp.where(explore, jax.random.randint(k_rand, (streams,), 0, NUM_ACTIONS),
                           sampled)
        row = dict(vector=out["vector"], action=jax.nn.one_hot(action, NUM_ACTIONS),
                   reward=out["reward"].astype(jnp.float32), is_first=out["is_first"],
                   is_last=out["is_last"], is_terminal=out["is_terminal"], score=out["score"])
        state, out = jax_native.protocol_step(core, env_cfg, state, action, out["is_last"], k_env)
        return (state, out), row

    _, rows_out = jax.lax.scan(env_step, (state, out), jax.random.split(k_roll, rows))
    return rows_out


def _returns(part: dict) -> np.ndarray:
    """Returns of the episodes completed in a stream part: the 'score' info of its is_last rows."""
    return part["score"][part["is_last"]].astype(np.float64)


def collect(game: str, params_list: list, steps_per_policy: int = STEPS_PER_POLICY,
            epsilon: float = EPSILON, seed: int = 0, *, num_streams: int = NUM_STREAMS,
            hidden: tuple = HIDDEN, act: str = ACT,
            labels: list | None = None) -> tuple:
    """Rollouts of each policy in `params_list` (`network(hidden, act)` params; epsilon-greedy
    on the sampled action: with probability epsilon a uniform action replaces it) and of the
    uniform-random policy: `steps_per_policy` rows each, as
    `num_streams` streams of steps_per_policy // num_streams rows, chained along time in that
    order ('mixed', `datasets.concatenate`). Returns (arrays, report): arrays in the
    `jaxwm.data.datasets` format; report {'sources': [{'label', 'epsilon', 'rows', 'episodes',
    'return'}], 'random_return', 'agent_return'} where the returns are means over the episodes
    completed in a source (None if none did) and the agent is the last of `params_list`."""
    check_game(game)
    if not params_list:
        raise ValueError("params_list must hold at least one policy")
    labels = list(labels) if labels is not None else [f"policy{i}" for i in range(len(params_list))]
    if len(labels) != len(params_list):
        raise ValueError(f"labels has {len(labels)} entries for {len(params_list)} policies")
    _check_epsilon(epsilon)
    _check_int("num_streams", num_streams, 1)
    _check_int("steps_per_policy", steps_per_policy, 2 * num_streams)
    rows = steps_per_policy // num_streams
    sources = [(label, params, float(epsilon)) for label, params in zip(labels, params_list)]
    sources.append(("random", params_list[0], 1.0))     # epsilon 1: the policy is never used
    keys = jax.random.split(jax.random.key(seed), len(sources))
    parts, report = [], {"sources": []}
    for (label, params, eps), key in zip(sources, keys):
        part = jax.device_get(_stream(params, jnp.float32(eps), key, game=game, rows=rows,
                                      streams=num_streams, hidden=tuple(hidden), act=act))
        part = {k: np.asarray(v) for k, v in part.items()}
        returns = _returns(part)
        report["sources"].append({"label": label, "epsilon": eps, "rows": rows * num_streams,
                                  "episodes": int(len(returns)),
                                  "return": float(returns.mean()) if len(returns) else None})
        parts.append({k: v for k, v in part.items() if k != "score"})
    report["random_return"] = report["sources"][-1]["return"]
    report["agent_return"] = report["sources"][-2]["return"]
    return datasets.concatenate(parts), report


# ------------------------------------------------------------------------------------- writing
def write_datasets(games, out_dir: str = OUT_DIR, env_steps: int = ENV_STEPS,
                   steps_per_policy: int = STEPS_PER_POLICY, seed: int = 0, *,
                   epsilon: float = EPSILON, num_streams: int = NUM_STREAMS,
                   snapshots: tuple = SNAPSHOTS, chunks: int = CHUNKS, **ppo_overrides) -> dict:
    """For each of `games` (the i-th with seed `seed + i`): `train_ppo`, `collect` from its
    snapshots, save `<out_dir>/<game>/mixed.npz` (`datasets.save`; metadata: env, env_options,
    sources, the reference returns 'random_return' / 'agent_return', the PPO settings and
    learning curve) and merge its summary (returns of random and of the final agent, dataset
    size, seconds) into `<out_dir>/summary.json`. Returns {game: summary}. ValueError for a bad
    game or size before anything is trained."""
    games = [check_game(g) for g in games]
    if not games:
        raise ValueError(f"games must name at least one of {list(GAMES)}")
    _check_int("env_steps", env_steps, 1)
    _check_int("chunks", chunks, 1)
    _check_int("num_streams", num_streams, 1)
    _check_int("steps_per_policy", steps_per_policy, 2 * num_streams)
    _check_epsilon(epsilon)
    _fractions(snapshots)
    cfg = ppo_config(**ppo_overrides)
    written = {}
    for index, game in enumerate(games):
        start = time.perf_counter()
        trained = train_ppo(game, env_steps, seed + index, chunks=chunks, snapshots=snapshots,
                            **cfg._asdict())
        collect_start = time.perf_counter()
        arrays, report = collect(game, trained.params, steps_per_policy, epsilon, seed + index,
                                 num_streams=num_streams, hidden=cfg.hidden, act=cfg.act,
                                 labels=[f"ppo@{s}" for s in trained.snapshot_steps])
        collect_seconds = time.perf_counter() - collect_start
        _, _, options = env_core(game)
        policies = [f"PPO after {s} env steps, epsilon-greedy" for s in trained.snapshot_steps]
        sources = [dict(s, policy=p) for s, p in zip(report["sources"],
                                                     policies + ["uniform random"])]
        path = datasets.save(
            os.path.join(out_dir, game, "mixed.npz"), arrays,
            dict(env=game, env_options=options, kind="mixed", seed=seed + index,
                 sources=sources, random_return=report["random_return"],
                 agent_return=report["agent_return"], ppo=dict(cfg._asdict(),
                                                               env_steps=trained.env_steps),
                 learning_curve=trained.curve,
                 generator="jaxwm.agents.jowa.data.write_datasets"))
        t, n = arrays["reward"].shape
        written[game] = dict(
            path=path, random_return=report["random_return"],
            agent_return=report["agent_return"], steps=t * n, rows=t, streams=n,
            episodes={s["label"]: s["episodes"] for s in report["sources"]},
            returns={s["label"]: s["return"] for s in report["sources"]},
            ppo_env_steps=trained.env_steps,
            ppo_steps_per_second=round(trained.steps_per_second, 1),
            train_seconds=round(trained.seconds, 2), collect_seconds=round(collect_seconds, 2),
            seconds=round(time.perf_counter() - start, 2))
        _merge_summary(out_dir, {game: written[game]})
    return written


def _merge_summary(out_dir: str, entries: dict) -> None:
    """Writes `entries` into `<out_dir>/summary.json`, keeping the other games' entries."""
    path = os.path.join(out_dir, "summary.json")
    summary = {}
    if os.path.exists(path):
        try:
            with open(path) as fh:
                summary = json.load(fh)
        except (OSError, ValueError):
            summary = {}
    summary.update(entries)
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2)
    os.replace(tmp, path)
