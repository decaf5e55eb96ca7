"""Train a Dreamer world model on data collected by a uniform random policy.

Host loop: step the envpool batch, write replay on device, every `train_every` batched env steps
run one jitted call of K gradient steps (batches sampled on device), log, checkpoint (world
model, replay and key: a killed run resumes where its last checkpoint was) and write GIFs of real
vs open-loop imagined frames.
"""
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxwm import envs
from jaxwm.data import replay
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import openloop, sharding
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config, to_python
from jaxwm.runtime.online import EpisodeStats, env_seed
from jaxwm.runtime.plots import plot_metrics
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

STEP_KEYS = ("action", "reward", "is_first", "is_last", "is_terminal")


def random_actions(act_space, num_envs: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions: int32 [N] or float32 [N, A] in [-1, 1]."""
    if act_space.discrete:
        return rng.integers(0, act_space.size, num_envs).astype(np.int32)
    return rng.uniform(-1, 1, (num_envs, act_space.size)).astype(np.float32)


def make_train_fn(wm: WorldModel, config):
    """Jitted (wm_state, replay_state, key) -> (wm_state, metrics): K steps on sampled batches."""
    t = config.train

    def train(wm_state, replay_state, key):
        keys = jax.random.split(key, t.grad_steps + 1)
        batches = [replay.sample(replay_state, k, t.batch_size, t.seq_len) for k in keys[1:]]
        batches = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
        return wm.train_steps(wm_state, batches, keys[0])

    return jax.jit(train, donate_argnums=0)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) a world-model training job; returns the last logged metrics."""
    t = config.train
    with user_errors():   # nothing is written before the config is known to be valid
        check_values(config)
        if t.seq_len > t.replay_capacity:
            raise ValueError(f"train.seq_len={t.seq_len} must be <= train.replay_capacity="
                             f"{t.replay_capacity}")
        mesh = sharding.make_mesh(config.num_devices or None)
        if config.env.num_envs % sharding.num_shards(mesh):
            raise ValueError(f"env.num_envs={config.env.num_envs} must be a multiple of the "
                             f"{sharding.num_shards(mesh)} devices (num_devices="
                             f"{config.num_devices}; 0 = all)")
        make_env = lambda step: envs.make(  # noqa: E731
            config.env.name, config.env.num_envs, env_seed(config.seed, step),
            **config.env.overrides)
        env = make_env(0)
        wm = WorldModel(config.model, env.obs_space, env.act_space)
        check_saved_config(config, workdir, ("train.env_steps", "train.checkpoints_to_keep"))
    spec = replay.env_spec(env)
    key = jax.random.PRNGKey(config.seed)
    key, key_init = jax.random.split(key)
    state = {"wm": sharding.replicate(jax.jit(wm.init_state)(key_init), mesh),
             "replay": replay.init(spec, t.replay_capacity, env.num_envs, mesh),
             "key": sharding.replicate(key, mesh)}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), t.checkpoints_to_keep or None)
    env_step, meta = 0, {}
    restored = ckpt.restore_latest(state)
    if restored is not None:
        env_step, state, meta = restored
    save_config(config, workdir)   # only once the config is known to fit the run
    train_fn = make_train_fn(wm, config)
    add = jax.jit(replay.add, donate_argnums=0)
    # envs and action RNG restart from (seed, step) at the start and after every checkpoint
    env.close()
    env = make_env(env_step)
    obs, rng = env.reset(), np.random.default_rng([config.seed, env_step])
    episodes = EpisodeStats(env.num_envs, **meta.get("episodes", {}))
    metrics, last_log = meta.get("metrics", {}), meta.get("last_log", env_step)
    calls, start_step = meta.get("calls", 0), env_step
    logger = RunLogger(workdir, total=t.env_steps, start=env_step, desc="world model",
                       show_keys=("model_loss", "image_loss", "kl"),
                       keep_records=meta.get("records") if restored is not None else 0)
    try:
        start_time = time.time()
        while env_step < t.env_steps:
            action = random_actions(env.act_space, env.num_envs, rng)
            state["replay"] = add(state["replay"], replay.env_row(spec, obs, action))
            obs = env.step(action)
            episodes.observe(obs)
            env_step += env.num_envs
            steps_per_env = env_step // env.num_envs
            if steps_per_env >= t.prefill and steps_per_env % t.train_every == 0:
                state["key"], key_train = jax.random.split(state["key"])
                state["wm"], metrics = train_fn(state["wm"], state["replay"], key_train)
                calls += 1
            if metrics and (env_step - last_log >= t.log_every or env_step >= t.env_steps):
                last_log = env_step
                fps = (env_step - start_step) / (time.time() - start_time)
                finished = episodes.pop()
                returns = ({"episode_return": finished["episode/return"]}
                           if "episode/return" in finished else {})
                logger.log(env_step, {**metrics, **returns, "env_fps": fps, "train_calls": calls})
            if env_step % t.checkpoint_every < env.num_envs or env_step >= t.env_steps:
                ckpt.save(env_step, state, {
                    "env_step": env_step, "records": logger.records, "last_log": last_log,
                    "calls": calls, "metrics": to_python(metrics),
                    "episodes": episodes.checkpoint()})
                if env_step < t.env_steps:
                    env.close()
                    env = make_env(env_step)
                    obs, rng = env.reset(), np.random.default_rng([config.seed, env_step])
            logger.advance(env_step)
        if metrics:
            state["key"], key_video = jax.random.split(state["key"])
            batch = replay.sample(state["replay"], key_video, max(sharding.num_shards(mesh), 4),
                                  t.video_len)
            path = openloop.write_openloop(wm, state["wm"].params, batch, key_video,
                                           os.path.join(workdir, "videos", f"openloop_{env_step}"))
            logger.write(f"open-loop rollout: {path}")
        plot = plot_metrics(workdir, ("model_loss", "image_loss", "vector_loss", "kl", "reward_loss"),
                            title=f"{config.env.name} world model", logy=True)
        logger.write(f"metrics: {logger.metrics_path}  plot: {plot}  checkpoints: {ckpt.directory}")
    finally:
        logger.close()
        ckpt.close()
        env.close()
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
