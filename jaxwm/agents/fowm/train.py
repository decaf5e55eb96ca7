"""FOWM: offline training on a dataset, then online finetuning (Feng et al., CoRL 2023).

Offline phase: `offline.steps` gradient steps (jitted calls of `offline.updates_per_call`) on
sequences from the dataset only, evaluated every `offline.eval_every` steps with the
uncertainty-penalized planner ('offline/eval_return' against gradient steps). The last offline
evaluation is the offline-only policy's score; it is also logged as 'eval/return' at env step 0,
the start of the online curve. Online phase: the TD-MPC host loop (`tdmpc.train.run_online`) with
batches balanced between the online and the offline buffer and no random seed steps.
Checkpoints (agent + online replay) are numbered by offline steps, then offline.steps + env steps,
so a killed run resumes in the right phase.
"""
import os
import time

import jax
import ml_collections
import numpy as np

from jaxwm.agents.fowm import config as fowm_config
from jaxwm.agents.fowm.agent import make_agent
from jaxwm.agents.tdmpc import train as tdmpc_train
from jaxwm.data import datasets, replay
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, read_metrics, save_config
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors


def load_dataset(config: ml_collections.ConfigDict, obs_size: int, action_size: int):
    """(arrays, metadata) of `dataset.path`, checked against the env of the run."""
    options = dict(config.env.overrides.to_dict()) if config.env.get("overrides") else {}
    return datasets.load(config.dataset.path, env=config.env.name, obs_size=obs_size,
                         action_size=action_size, env_options=options)


def _last(workdir: str, key: str):
    values = [m[key] for m in read_metrics(workdir) if key in m] if os.path.exists(
        os.path.join(workdir, "metrics.jsonl")) else []
    return values[-1] if values else None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Offline then online FOWM training per `config` in `workdir` (resumable). Returns
    {'offline_return', 'finetuned_return', 'random_return', 'dataset_return', 'seconds'}."""
    start = time.time()
    r, off = config.run, config.offline
    with user_errors():   # nothing is written before the config and dataset are valid
        check_values(config)
        fowm_config.check_config(config)
        env_fn, eval_env_fn, random_env_fn = tdmpc_train.env_fns(config)
        env = env_fn(0)
        env.close()
        obs_size, action_size = env.obs_space["vector"].shape[0], env.act_space.size
        arrays, meta = load_dataset(config, obs_size, action_size)
        agent = make_agent(config, obs_size, action_size)
        check_saved_config(config, workdir, tdmpc_train.EXTENDABLE)
    offline_replay = datasets.to_replay(arrays)
    del arrays
    key = jax.random.key(config.seed)
    k_init, k_offline, k_eval, k_online, k_random = jax.random.split(key, 5)
    state = jax.jit(agent.init)(k_init)
    online_replay = replay.init(agent.replay_spec(), max(r.replay_capacity // env.num_envs, 1),
                                env.num_envs)
    priorities = (agent.priorities(online_replay), agent.priorities(offline_replay, filled=True))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), r.checkpoints_to_keep or None)
    updates, env_step, ck_meta = 0, 0, {}
    restored = ckpt.restore_latest(tdmpc_train.checkpoint_tree(state, online_replay, priorities))
    if restored is not None:
        _, tree, ck_meta = restored
        state, online_replay = tree["agent"], tree["replay"]
        priorities = tree.get("priorities", priorities)
        updates, env_step = int(ck_meta["offline_updates"]), int(ck_meta["env_steps"])
    save_config(config, workdir)   # only once the config is known to fit the run
    logger = RunLogger(workdir, total=off.steps + r.env_steps, start=updates + env_step,
                       desc="fowm", enable_bar=r.progress_bar,
                       show_keys=("offline/eval_return", "eval/return", "train/model_loss"),
                       keep_records=ck_meta.get("records") if restored is not None else 0)

    def plan_eval(state, updates: int) -> float:
        """Mean planner return on eval envs of their own (`updates`: the offline step)."""
        eval_env = eval_env_fn(updates)
        try:
            return float(tdmpc_train.planner_returns(
                agent, state, eval_env, jax.random.fold_in(k_eval, updates)).mean())
        finally:
            eval_env.close()

    try:
        random_return = _last(workdir, "eval/random_return")
        if random_return is None:
            random_return = tdmpc_train.random_baseline(random_env_fn, k_random)
            logger.log(0, {"eval/random_return": random_return,
                           "dataset/return_mean": meta.get("return_mean") or 0.0,
                           "dataset/episodes": meta.get("episodes", 0)})

        # --- offline phase ------------------------------------------------------------------
        train = jax.jit(agent.train_steps, static_argnames=("num_steps", "sizes"),
                        donate_argnums=0)
        chunk = off.updates_per_call
        while updates < off.steps:
            num = min(chunk, off.steps - updates)
            state, metrics, (offline_priorities,) = train(
                state, (offline_replay,), jax.random.fold_in(k_offline, updates), num,
                (r.batch_size,), priorities[1:])
            priorities = (priorities[0], offline_priorities)
            updates += num
            if tdmpc_train.crossed(updates, num, max(off.eval_every // 4, 1)):
                logger.log(updates, {f"offline/{k}": v for k, v in metrics.items()})
            if tdmpc_train.crossed(updates, num, off.eval_every) or updates >= off.steps:
                value = plan_eval(state, updates)
                logger.log(updates, {"offline/eval_return": value})
                logger.write(f"offline step {updates}: eval return {value:.1f}")
            if tdmpc_train.crossed(updates, num, off.checkpoint_every) or updates >= off.steps:
                ckpt.save(updates, tdmpc_train.checkpoint_tree(state, online_replay, priorities),
                          {"phase": "offline", "offline_updates": updates, "env_steps": 0,
                           "pretrained": True, "records": logger.records})
            logger.advance(updates)
        offline_return = _last(workdir, "offline/eval_return")
        if env_step == 0 and _last(workdir, "eval/offline_only_return") is None:
            logger.log(0, {"eval/return": offline_return, "eval/offline_only_return":
                           offline_return})

        # --- online phase -------------------------------------------------------------------
        finetuned = _last(workdir, "eval/return")
        if env_step < r.env_steps:
            state, online_replay, finetuned = tdmpc_train.run_online(
                agent, config, state, online_replay, env_fn=env_fn, eval_env_fn=eval_env_fn,
                logger=logger, ckpt=ckpt, key=k_online, env_step=env_step, pretrained=True,
                fixed_replays=(offline_replay,), sizes=fowm_config.batch_sizes(config),
                ckpt_offset=off.steps, ckpt_meta={"phase": "online", "offline_updates": updates},
                resume=ck_meta.get("loop"), priorities=priorities)
        tdmpc_train.plot_returns(workdir, f"FOWM {config.env.name}")
    finally:
        logger.close()
        ckpt.close()
    return {"offline_return": offline_return, "finetuned_return": finetuned,
            "random_return": random_return, "dataset_return": meta.get("return_mean"),
            "seconds": time.time() - start}


def summary_numbers(workdir: str) -> dict:
    """Offline-only vs finetuned eval returns of a finished run (from metrics.jsonl)."""
    online = [(m["step"], m["eval/return"]) for m in read_metrics(workdir) if "eval/return" in m]
    return {"offline_return": _last(workdir, "eval/offline_only_return"),
            "finetuned_return": online[-1][1] if online else None,
            "online_curve": online, "random_return": _last(workdir, "eval/random_return"),
            "best_finetuned": float(np.max([v for _, v in online[1:]])) if len(online) > 1
            else None}
