"""Latent Diffusion Planning: training stages and goal-reaching evaluation (Xie et al., 2025).

Stages (checkpointed at the end of each, so a killed run resumes at the next stage):
1. VAE on every frame of both datasets (`models/vae.py`); frozen after, frames encoded once to
   their posterior means, standardized per dimension;
2. the variant's models (config.py): the planner, a DDPM over the next H latents
   x0 = [z_{t+1}, ..., z_{t+H}] conditioned on (z_t, z_goal) with hindsight goals (a later frame
   of the same episode), and the IDM, a DDPM over a_t conditioned on (z_t, z_{t+1}); or a
   diffusion policy over the next `execute` actions conditioned on (z_t, z_goal); or BC;
3. evaluation on the goal tasks' fixed start/goal pairs: every `execute` steps the planner
   samples a latent plan by DDIM, the IDM turns (z_t, z_1), (z_1, z_2), ... into the actions
   executed until the next plan. Success at the end of the episode (and ever), planning seconds
   per decision and decisions/s, and errors on the demonstrations (`demo_errors`) that show
   which part fails: the plan, the IDM or their combination.
The planner's latents are scaled per dimension to [-1, 1] (`plan_range`) and its x0 estimates
clipped there while sampling: Diffusion Policy's normalizer and clip_sample (Chi et al. 2023).
"""
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxwm.agents.ldp import config as ldp_config
from jaxwm.data import datasets
from jaxwm.envs import goal_tasks
from jaxwm.models import diffusion, vae as vae_lib
from jaxwm.nn.blocks import MLP
from jaxwm.runtime import goal_reaching, steps as steps_lib
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config, write_json
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

EVAL_FILE = goal_reaching.EVAL_FILE


def check_config(c: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the field and the allowed values."""
    for field, value, allowed in (("task", c.task, ldp_config.TASKS),
                                  ("variant", c.variant, ldp_config.VARIANTS),
                                  ("planner.prediction", c.planner.prediction,
                                   diffusion.PREDICTIONS)):
        if value not in allowed:
            raise ValueError(f"{field}={value!r} is not one of {allowed}")
    if c.train.execute > c.planner.horizon:
        raise ValueError(f"train.execute={c.train.execute} must be <= planner.horizon="
                         f"{c.planner.horizon}")
    for name in ("demos", "suboptimal"):
        if not str(c.dataset[name]).endswith(".npz"):
            raise ValueError(f"dataset.{name}={c.dataset[name]!r} must be an .npz file of "
                             f"experiments/make_dataset.py --goal_task={c.task}")
    if c.eval.batch > c.eval.goals:
        raise ValueError(f"eval.batch={c.eval.batch} must be <= eval.goals={c.eval.goals}")


def load(c: ml_collections.ConfigDict, name: str) -> dict:
    arrays, _ = datasets.load(c.dataset[name], env=c.task)
    if "image" not in arrays:
        raise datasets.DatasetError(f"dataset.{name}={c.dataset[name]!r}: no 'image' field "
                                    f"(make_dataset.py --goal_task={c.task})")
    return arrays


@flax.struct.dataclass
class State:
    params: dict
    opt_state: optax.OptState


class Models:
    """Modules, schedules and losses of one config."""

    def __init__(self, c: ml_collections.ConfigDict, action_size: int):
        self.c, self.action_size = c, action_size
        self.vae = vae_lib.VAE(latent_dim=c.vae.latent_dim, depth=c.vae.depth)
        p, i = c.planner, c.idm
        self.planner = diffusion.TemporalDenoiser(horizon=p.horizon, dim=p.dim, depth=p.depth,
                                                  heads=p.heads)
        self.idm = diffusion.MLPDenoiser(hidden=tuple(i.hidden))
        self.bc = MLP(tuple(i.hidden), out=action_size, act="mish", layer_norm=True)
        self.plan_schedule = diffusion.make_schedule(p.diffusion_steps)
        self.action_schedule = diffusion.make_schedule(i.diffusion_steps)
        self.chunk = c.train.execute if c.variant == "diffusion_policy" else 1

    def init(self, key) -> dict:
        latent, a = self.c.vae.latent_dim, self.action_size
        k_plan, k_idm = jax.random.split(key)
        z2 = jnp.zeros((1, 2 * latent))
        t = jnp.zeros((1,), jnp.int32)
        if self.c.variant == "bc":
            return {"bc": self.bc.init(k_idm, z2)}
        params = {"idm": self.idm.init(k_idm, jnp.zeros((1, a * self.chunk)), t, z2)}
        if self.c.variant != "diffusion_policy":
            params["planner"] = self.planner.init(
                k_plan, jnp.zeros((1, self.c.planner.horizon, latent)), t, z2)
        return params

    def loss(self, params, batch, key):
        """Sum of the variant's losses on one batch (dict of latents and actions)."""
        k_plan, k_idm = jax.random.split(key)
        metrics = {}
        if "bc" in params:
            pred = jnp.tanh(self.bc.apply(params["bc"], batch["cond_goal"]))
            metrics["bc_loss"] = jnp.mean(jnp.square(pred - batch["action"]))
            return metrics["bc_loss"], metrics
        if "planner" in params:
            metrics["planner_loss"] = diffusion.ddpm_loss(
                self.planner.apply, params["planner"], self.plan_schedule, batch["plan"],
                batch["cond_goal"], k_plan, self.c.planner.cond_drop_prob,
                self.c.planner.prediction)
        cond = batch["cond_goal"] if self.c.variant == "diffusion_policy" else batch["cond_next"]
        metrics["action_loss"] = diffusion.ddpm_loss(
            self.idm.apply, params["idm"], self.action_schedule, batch["action"], cond, k_idm)
        return sum(metrics.values()), metrics


def plan_range(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, half-width) [L] of latents z [..., L] per dimension: the planner sees
    (z - centre) / half-width, in [-1, 1] on its training data."""
    lo, hi = z.reshape(-1, z.shape[-1]).min(0), z.reshape(-1, z.shape[-1]).max(0)
    return (hi + lo) / 2, np.maximum((hi - lo) / 2, 1e-6)


def sample_batch(models: Models, data: dict, key, size: int, planner_data: bool) -> dict:
    """A batch of (z_t, z_goal), the next H latents (scaled by data['plan_range']), (z_t,
    z_{t+1}) and the action chunk from the device arrays `data` (latents [T, N, L], actions
    [T, N, A], starts [K, 2], ends [T, N], and for the planner plan_range)."""
    c = models.c
    k_idx, k_goal = jax.random.split(key)
    idx = jax.random.randint(k_idx, (size,), 0, data["starts"].shape[0])
    t, n = data["starts"][idx, 0], data["starts"][idx, 1]
    ends = data["ends"][t, n]
    ahead = 1 + jnp.floor(jax.random.uniform(k_goal, (size,)) * (ends - t)).astype(jnp.int32)
    z = data["z"]
    out = {"cond_goal": jnp.concatenate([z[t, n], z[t + ahead, n]], -1),
           "cond_next": jnp.concatenate([z[t, n], z[t + 1, n]], -1)}
    if planner_data:
        rows = t[:, None] + 1 + jnp.arange(c.planner.horizon)[None]
        centre, half = data["plan_range"]
        out["plan"] = (z[rows, n[:, None]] - centre) / half
    rows = jnp.minimum(t[:, None] + jnp.arange(models.chunk)[None], z.shape[0] - 1)
    out["action"] = data["actions"][rows, n[:, None]].reshape(size, -1)
    return out


def take_episodes(arrays: dict, count: int) -> dict:
    """The first `count` streams (columns N) of a dataset's action and is_first."""
    return {k: arrays[k][:, :count] for k in ("action", "is_first")}


def stage_keys(seed: int) -> tuple:
    """(k_vae, k_init, k_train, k_eval): the keys of a run's stages."""
    return tuple(jax.random.split(jax.random.key(seed), 4))


def init_vae(models: Models, demos: dict, subopt: dict, key) -> tuple:
    """(optimizer, State, frames [N, 64, 64, 3]) that stage 1 starts from: every frame of both
    datasets."""
    params, opt = vae_lib.init(models.vae, key), optax.adam(models.c.vae.lr)
    frames = jnp.asarray(np.concatenate([demos["image"], subopt["image"]], 1).reshape(
        -1, *demos["image"].shape[2:]))
    return opt, State(params, opt.init(params)), frames


def train_vae(models: Models, opt, state: State, frames: jax.Array, key, start: int, stop: int,
              on_chunk=None) -> State:
    """Stage 1 from VAE step `start` to `stop` on random frames [N, 64, 64, 3]; chunk i of
    steps uses the key fold_in(key, its first step), so training in pieces gives the same VAE.
    Conv gradients: a host loop on CPU (runtime.steps). on_chunk(step, metrics [n, ...])."""
    c = models.c

    def vae_step(state, key):
        k_idx, k_loss = jax.random.split(key)
        images = frames[jax.random.randint(k_idx, (c.vae.batch_size,), 0, len(frames))]
        grads, metrics = jax.grad(lambda p: vae_lib.vae_loss(
            models.vae, p, images, k_loss, c.vae.kl_weight), has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state)
        return State(optax.apply_updates(state.params, updates), opt_state), metrics

    chunk, run, done = max(c.train.log_every // 5, 1), steps_lib.repeat_steps(vae_step), start
    while done < stop:
        num = min(chunk - done % chunk, stop - done)
        state, metrics = run(state, jax.random.fold_in(key, done), num)
        done += num
        if on_chunk:
            on_chunk(done, metrics)
    return state


def latents(models: Models, vae_params, images: np.ndarray) -> np.ndarray:
    """Posterior means [T, E, L] of frames [T, E, 64, 64, 3], encoded 512 at a time."""
    encode = jax.jit(lambda x: vae_lib.encode_mean(models.vae, vae_params, x))
    flat = images.reshape(-1, *images.shape[2:])
    z = np.concatenate([np.asarray(encode(flat[i:i + 512])) for i in range(0, len(flat), 512)])
    return z.reshape(*images.shape[:2], -1)


def device_data(arrays: dict, z: np.ndarray, span: int) -> dict:
    return {"z": jnp.asarray(z), "actions": jnp.asarray(arrays["action"]),
            "ends": jnp.asarray(datasets.episode_ends(arrays["is_first"])),
            "starts": jnp.asarray(datasets.window_starts(arrays["is_first"], span))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """All stages per `config` in `workdir` (resumable by stage). Returns the evaluation."""
    began = time.time()
    c = config
    with user_errors():
        check_values(c)
        check_config(c)
        demos, subopt = load(c, "demos"), load(c, "suboptimal")
        models = Models(c, demos["action"].shape[-1])
        if not 0 <= c.dataset.labelled_demos <= demos["action"].shape[1]:
            raise ValueError(f"dataset.labelled_demos={c.dataset.labelled_demos} must be in "
                             f"[0, {demos['action'].shape[1]}] (the demo episodes; 0: all)")
        check_saved_config(c, workdir)
    eval_path = os.path.join(workdir, EVAL_FILE)
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            return json.load(f)
    k_vae, k_init, k_train, k_eval = stage_keys(c.seed)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 2)
    save_config(c, workdir)
    vae_opt, vae_state, frames = init_vae(models, demos, subopt, k_vae)
    params = models.init(k_init)
    model_opt = optax.adamw(c.train.lr, weight_decay=1e-4)
    state = State(params, model_opt.init(params))
    stage2 = c.vae.steps + c.train.steps
    # Restore before logging (records logged after the checkpoint, by a kill, are dropped); each
    # stage's checkpoint holds the states trained so far: {"vae"}, then {"vae", "model"}.
    done, meta = ckpt.latest_step() or 0, {}
    if done:
        tree = {"vae": vae_state, "model": state} if done >= stage2 else {"vae": vae_state}
        _, tree, meta = ckpt.restore_latest(tree)
        vae_state, state = tree["vae"], tree.get("model", state)
    logger = RunLogger(workdir, total=stage2, start=done, desc=f"ldp/{c.variant}",
                       enable_bar=c.train.progress_bar,
                       show_keys=("vae/loss", "train/planner_loss", "train/action_loss"),
                       keep_records=meta.get("records", 0) if done else 0)
    try:
        # --- stage 1: VAE ----------------------------------------------------------------------
        if not done:
            def log(step, metrics):
                logger.log(step, {f"vae/{k}": v[-1] for k, v in metrics.items()})
                logger.advance(step)

            vae_state = train_vae(models, vae_opt, vae_state, frames, k_vae, done,
                                  c.vae.steps, log)
            done = c.vae.steps
            ckpt.save(done, {"vae": vae_state}, {"stage": "vae", "records": logger.records})
        z_demos, z_subopt = (latents(models, vae_state.params, d["image"]) for d in (demos, subopt))
        encode = jax.jit(lambda x: vae_lib.encode_mean(models.vae, vae_state.params, x))
        mean, std = z_demos.mean((0, 1)), z_demos.std((0, 1)) + 1e-6
        normalize = lambda z: (z - mean) / std
        # --- stage 2: planner and IDM / policy -----------------------------------------------
        span = c.planner.horizon if c.variant in ("ldp", "ldp_demos") else models.chunk
        labelled = c.dataset.labelled_demos or demos["action"].shape[1]
        z_demos = normalize(z_demos)
        if c.variant == "ldp":   # planner: every demo; IDM: suboptimal + labelled demos
            demo_data = device_data(demos, z_demos, span)
            both = {k: np.concatenate([subopt[k], demos[k][:, :labelled]], 1)
                    for k in ("action", "is_first")}
            idm_data = device_data(both, np.concatenate(
                [normalize(z_subopt), z_demos[:, :labelled]], 1), 1)
        else:
            demo_data = idm_data = device_data(take_episodes(demos, labelled),
                                               z_demos[:, :labelled], span)
        scale = plan_range(np.asarray(demo_data["z"]))   # of the planner's training latents
        demo_data["plan_range"] = tuple(jnp.asarray(x) for x in scale)

        def step(state, key):
            k_plan, k_idm, k_loss = jax.random.split(key, 3)
            batch = sample_batch(models, demo_data, k_plan, c.train.batch_size,
                                 "planner" in state.params)
            if idm_data is not demo_data:   # 'ldp': the IDM learns from the suboptimal data
                other = sample_batch(models, idm_data, k_idm, c.train.batch_size, False)
                batch = {**batch, "cond_next": other["cond_next"], "action": other["action"]}
            grads, metrics = jax.grad(models.loss, has_aux=True)(state.params, batch, k_loss)
            updates, opt_state = model_opt.update(grads, state.opt_state, state.params)
            return State(optax.apply_updates(state.params, updates), opt_state), metrics

        run = steps_lib.repeat_steps(step)
        while done < stage2:
            num = min(c.train.log_every, stage2 - done)
            state, metrics = run(state, jax.random.fold_in(k_train, done), num)
            done += num
            logger.log(done, {f"train/{k}": v.mean() for k, v in metrics.items()})
            logger.advance(done)
            if done == stage2:
                ckpt.save(done, {"vae": vae_state, "model": state},
                          {"stage": "model", "records": logger.records})
        # --- stage 3: evaluation -------------------------------------------------------------
        policy = Policy(models, state.params, scale)
        result = evaluate(models, policy, encode, normalize, k_eval)
        result.update(demo_errors(policy, demos, z_demos, labelled,
                                  jax.random.fold_in(k_eval, 1)))
        logger.log(stage2, {f"eval/{k}": v for k, v in result.items() if not isinstance(v, list)})
        result.update(variant=c.variant, task=c.task, seed=c.seed, seconds=time.time() - began)
        write_json(eval_path, result)
    finally:
        logger.close()
        ckpt.close()
    return result


class Policy:
    """The variant's jitted acting functions on standardized latents:
      plan(z [B, L], z_goal [B, L], key) -> the next H latents [B, H, L] (LDP variants)
      idm(z [B, L], z_next [B, L], key) -> actions [B, A] (LDP variants)
      act(z, z_goal, key) -> actions [B, execute, A] for the next env steps (one plan; BC: 1)."""

    def __init__(self, models: Models, params, scale: tuple):
        self.models, self.params = models, params
        self.centre, self.half = (jnp.asarray(x) for x in scale)
        self.plan, self.idm, self.act = (jax.jit(f) for f in (self._plan, self._idm, self._act))

    def _plan(self, z, goal, key):
        m, c = self.models, self.models.c
        x = diffusion.ddim_sample(m.planner.apply, self.params["planner"], m.plan_schedule,
                                  (z.shape[0], c.planner.horizon, z.shape[-1]),
                                  jnp.concatenate([z, goal], -1), key, c.planner.sample_steps,
                                  guidance=c.planner.guidance, clip_x0=1.0,
                                  prediction=c.planner.prediction)
        return x * self.half + self.centre

    def _idm(self, z, z_next, key):
        m = self.models
        return diffusion.ddim_sample(m.idm.apply, self.params["idm"], m.action_schedule,
                                     (z.shape[0], m.action_size),
                                     jnp.concatenate([z, z_next], -1), key,
                                     m.c.idm.sample_steps, clip_x0=1.0)

    def _act(self, z, goal, key):
        m, params = self.models, self.params
        c, a, e, b = m.c, m.action_size, m.c.train.execute, z.shape[0]
        k_plan, k_act = jax.random.split(key)
        cond = jnp.concatenate([z, goal], -1)
        if c.variant == "bc":
            return jnp.tanh(m.bc.apply(params["bc"], cond))[:, None]
        if c.variant == "diffusion_policy":
            chunk = diffusion.ddim_sample(m.idm.apply, params["idm"], m.action_schedule,
                                          (b, a * e), cond, k_act, c.idm.sample_steps,
                                          clip_x0=1.0)
            return chunk.reshape(b, e, a)
        path = jnp.concatenate([z[:, None], self._plan(z, goal, k_plan)[:, :e]], 1)  # [B, e+1, L]
        actions = self._idm(path[:, :-1].reshape(b * e, -1), path[:, 1:].reshape(b * e, -1),
                            k_act)
        return actions.reshape(b, e, a)


def demo_errors(policy: Policy, demos: dict, z: np.ndarray, labelled: int, key,
                count: int = 1000) -> dict:
    """Errors on `count` random transitions (t, t + 1 in one episode) of the demonstrations
    whose actions no model trained on (episodes >= `labelled`; every episode when all are
    labelled), z the standardized latents [T, N, L], goal = the episode's last latent:
      demo_action_var        variance of the demo actions per dimension (= the error of their mean)
      policy_action_mse      the policy's first action vs a_t
    and for the LDP variants
      idm_action_mse         the IDM's action from the true (z_t, z_{t+1}) vs a_t
      plan_mse, still_mse    mean over k of |plan_k - z_{t+k}|^2 per dimension, and of the
                             plan that stays at z_t (z_{t+k} held at the episode's end)."""
    ends = datasets.episode_ends(demos["is_first"])
    first = labelled if labelled < z.shape[1] else 0
    t, n = np.nonzero(np.arange(z.shape[0])[:, None] < ends)
    keep = n >= first
    pick = np.random.default_rng(0).permutation(int(keep.sum()))[:count]
    t, n = t[keep][pick], n[keep][pick]
    actions, goal = demos["action"][t, n], z[ends[t, n], n]
    k_act, k_idm, k_plan = jax.random.split(key, 3)
    out = {"demo_action_var": float(actions.var(0).mean()),
           "policy_action_mse": float(np.mean(np.square(
               np.asarray(policy.act(z[t, n], goal, k_act))[:, 0] - actions)))}
    if "planner" in policy.params:
        out["idm_action_mse"] = float(np.mean(np.square(
            np.asarray(policy.idm(z[t, n], z[t + 1, n], k_idm)) - actions)))
        horizon = policy.models.c.planner.horizon
        future = np.stack([z[np.minimum(t + k, ends[t, n]), n] for k in range(1, horizon + 1)], 1)
        plan = np.asarray(policy.plan(z[t, n], goal, k_plan))
        out["plan_mse"] = float(np.mean(np.square(plan - future)))
        out["still_mse"] = float(np.mean(np.square(z[t, n][:, None] - future)))
    return out


def evaluate(models: Models, policy: Policy, encode, normalize, key) -> dict:
    """Success over the task's fixed start/goal pairs; BC acts every step, the others execute
    `train.execute` actions per plan."""
    c, act = models.c, policy.act
    success, ever, seconds, plans = [], [], 0.0, 0
    with goal_tasks.make_goal_task(c.task, num_envs=c.eval.batch, seed=c.eval.seed) as task:
        starts, goals = task.eval_pairs(c.eval.goals, c.eval.seed)
        for first in range(0, c.eval.goals, c.eval.batch):
            idx = np.arange(first, first + c.eval.batch) % c.eval.goals
            obs = task.reset_to(starts[idx], goals[idx])
            goal = normalize(np.asarray(encode(obs["goal_image"])))
            actions, s = None, 0
            while s < task.max_steps:
                key, k = jax.random.split(key)
                began = time.perf_counter()
                actions = np.asarray(act(normalize(np.asarray(encode(obs["image"]))), goal, k))
                if first or s:
                    seconds += time.perf_counter() - began
                    plans += 1
                for j in range(actions.shape[1]):
                    if s < task.max_steps:
                        obs = task.step(actions[:, j])
                        s += 1
            keep = np.arange(min(c.eval.batch, c.eval.goals - first))
            success.append(obs["success"][keep])
            ever.append(obs["ever_success"][keep])
    out = {"success_rate": float(np.concatenate(success).mean()),
           "ever_success_rate": float(np.concatenate(ever).mean()),
           "successes": np.concatenate(success).astype(int).tolist()}
    if plans:   # a decision: one env's plan (or BC action); planned for batched
        out["plan_seconds_per_decision"] = seconds / (plans * c.eval.batch)
        out["plan_seconds_per_batch"] = seconds / plans
        out["decisions_per_s"] = plans * c.eval.batch / max(seconds, 1e-9)
    return out
