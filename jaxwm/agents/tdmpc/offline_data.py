"""Offline datasets generated on this machine from TD-MPC runs (D4RL-style kinds, Fu et al. 2020).

The public FOWM datasets cannot be downloaded here, so they are made locally: a TD-MPC agent is
trained in stages (each stage resumes the previous run's checkpoint), and from a chosen stage:
  'random'         uniform random actions;
  'medium'         rollouts of the stage's agent (MPPI with exploration noise);
  'medium_replay'  the agent's replay buffer up to that stage (its seed data and all exploration);
  'mixed'          random + medium + medium_replay chained in time.
Every dataset is written with `jaxwm.data.datasets.save` (validated, checksummed, atomic) and
records its sources, the stage's evaluation return and the env options in its metadata.
"""
import os
import time

import jax
import ml_collections

from jaxwm.agents.tdmpc import train as tdmpc_train
from jaxwm.agents.tdmpc.agent import Agent
from jaxwm.data import datasets, replay
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.workdir import UserError

KINDS = ("random", "medium", "medium_replay", "mixed")


def restore_run(config: ml_collections.ConfigDict, workdir: str, step: int):
    """(agent, state, replay_state) of a TD-MPC run in `workdir` at its first checkpoint at or
    after env step `step` (runs stop at multiples of num_envs)."""
    env = tdmpc_train.make_env(config.env, config.seed)
    try:
        agent = Agent(config, env.obs_space["vector"].shape[0], env.act_space.size)
        num_envs = env.num_envs
    finally:
        env.close()
    state = jax.jit(agent.init)(jax.random.key(0))
    replay_state = replay.init(agent.replay_spec(),
                               max(config.run.replay_capacity // num_envs, 1), num_envs)
    with Checkpointer(os.path.join(workdir, "checkpoints"), None) as ckpt:
        steps = [s for s in ckpt.all_steps() if s >= step]
        if not steps:
            raise FileNotFoundError(f"no checkpoint at or after env step {step} in {workdir}; "
                                    f"available: {ckpt.all_steps()}")
        tree, _ = ckpt.restore(steps[0], tdmpc_train.checkpoint_tree(
            state, replay_state, (agent.priorities(replay_state),)))
    return agent, tree["agent"], tree["replay"]


def make_datasets(config: ml_collections.ConfigDict, workdir: str, out_dir: str,
                  stages: list[int], data_stage: int | None = None, random_steps: int = 1_000,
                  medium_steps: int = 1_000, kinds: tuple = KINDS, log=print) -> dict:
    """Trains TD-MPC per `config` up to each of `stages` (env steps, ascending) in `workdir`,
    then writes the requested `kinds` from stage `data_stage` (default: the first) to
    `out_dir/<kind>.npz`. random_steps / medium_steps: agent steps over all envs.
    Returns {kind: {'path', 'episodes', 'return_mean', ...}} plus {'stages': {step: return}}."""
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise UserError(f"kinds={bad} are not among {KINDS}")
    stages = sorted(int(s) for s in stages)
    data_stage = stages[0] if data_stage is None else int(data_stage)
    if data_stage not in stages:
        raise UserError(f"data_stage={data_stage} must be one of stages={stages}")
    config = ml_collections.ConfigDict(config.to_dict())
    config.run.checkpoints_to_keep = 0  # keep every stage
    stage_returns = {}
    for stage in stages:
        config.run.env_steps = stage
        start = time.time()
        result = tdmpc_train.train_and_evaluate(config, workdir)
        stage_returns[stage] = result["eval_return"]
        log(f"TD-MPC stage {stage} env steps: eval return {result['eval_return']:.1f} "
            f"(random {result['random_return']:.1f}), {time.time() - start:.0f} s")
    agent, state, replay_state = restore_run(config, workdir, data_stage)
    env = tdmpc_train.make_env(config.env, config.seed + 20_000)
    key = jax.random.key(config.seed + 20_000)
    k_random, k_medium = jax.random.split(key)
    n = env.num_envs
    options = dict(config.env.overrides.to_dict()) if config.env.get("overrides") else {}
    base_meta = {"env": config.env.name, "env_options": options,
                 "generator": "experiments/make_dataset.py", "seed": config.seed,
                 "tdmpc_stage_returns": {str(k): v for k, v in stage_returns.items()}}
    parts, sources = {}, {}
    try:
        if {"random", "mixed"} & set(kinds):
            parts["random"] = tdmpc_train.rollout(
                env, tdmpc_train.random_policy(env.act_space), None, k_random,
                max(random_steps // n, 2))
            sources["random"] = {"kind": "random", "steps": int(parts["random"]["reward"].size)}
        if {"medium", "mixed"} & set(kinds):
            parts["medium"] = tdmpc_train.rollout(
                env, tdmpc_train.planner_policy(agent, state, True), agent.initial_plan(n),
                k_medium, max(medium_steps // n, 2))
            sources["medium"] = {"kind": "medium", "stage": data_stage,
                                 "stage_eval_return": stage_returns[data_stage],
                                 "steps": int(parts["medium"]["reward"].size)}
        if {"medium_replay", "mixed"} & set(kinds):
            parts["medium_replay"] = datasets.from_replay(replay_state)
            sources["medium_replay"] = {"kind": "medium_replay", "stage": data_stage,
                                        "stage_eval_return": stage_returns[data_stage],
                                        "steps": int(parts["medium_replay"]["reward"].size)}
    finally:
        env.close()
    if "mixed" in kinds:
        order = ("random", "medium", "medium_replay")
        parts["mixed"] = datasets.concatenate([parts[k] for k in order])
        sources["mixed"] = [sources[k] for k in order]
    written = {"stages": stage_returns}
    for kind in kinds:
        path = datasets.save(os.path.join(out_dir, f"{kind}.npz"), parts[kind],
                             dict(base_meta, kind=kind, sources=sources[kind]))
        _, meta = datasets.load(path)
        written[kind] = {"path": path, "episodes": meta["episodes"],
                         "return_mean": meta["return_mean"], "steps": meta["num_steps"] *
                         meta["num_streams"]}
        log(f"wrote {path}: {written[kind]}")
    return written
