"""DINO-WM training and goal-reaching evaluation (Zhou et al., 2024; see models/dino_wm.py).

Stages, all resumable from `<workdir>/checkpoints` (numbered by gradient steps over stages):
1. encoder: 'dino' pretrains the ViT by DINO self-distillation on the dataset's frames
   (`dino.steps`, the teacher is kept), 'dinov2' loads a local DINOv2 file, 'random' keeps the
   initialization, 'reconstruction' trains it in stage 2;
2. world model: the predictor (teacher forcing over windows of h + 1 model steps, MSE on the
   next frame's patch features) and the visualization decoder (on frozen features), on
   features precomputed once for the frozen encoders; 'reconstruction' encodes every batch and
   adds pixel MSE of the decoded current and predicted frames (encoder trained end to end);
   'bc' trains a goal-conditioned policy instead (hindsight goals from the same episode);
3. evaluation on `eval.goals` fixed start/goal pairs: MPC with CEM (or MPPI) on the goal
   distance, `replan_every` model steps executed per plan; success = the goal test at the
   end of the episode (also: ever reached), and planning seconds per decision. Written to
   `eval.json`, `metrics.jsonl` and `plots/rollout.png` (real vs predicted, decoded frames).
"""
import json
import os
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxwm.agents.dino_wm import config as dwm_config
from jaxwm.data import datasets
from jaxwm.envs import goal_tasks
from jaxwm.models import dino, dino_wm
from jaxwm.nn import vit as vit_lib
from jaxwm.nn.blocks import ConvEncoder
from jaxwm.planners import cem, mppi
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime import goal_reaching, steps as steps_lib
from jaxwm.runtime.logging import RunLogger, save_config, write_json
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

EVAL_FILE = goal_reaching.EVAL_FILE
FROZEN = ("dino", "dinov2", "random")


# ------------------------------------------------------------------------------------------------
# Config and data
# ------------------------------------------------------------------------------------------------
def check_config(c: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the field and the allowed values."""
    for field, value, allowed in (("task", c.task, dwm_config.TASKS),
                                  ("variant", c.variant, dwm_config.VARIANTS),
                                  ("planner.kind", c.planner.kind, dwm_config.PLANNERS)):
        if value not in allowed:
            raise ValueError(f"{field}={value!r} is not one of {allowed}")
    e, p, pl = c.encoder, c.predictor, c.planner
    if e.image_size % e.patch_size:
        raise ValueError(f"encoder.image_size={e.image_size} must be a multiple of "
                         f"encoder.patch_size={e.patch_size}")
    if e.dim % e.heads or p.dim % p.heads:
        raise ValueError(f"encoder.dim={e.dim} / predictor.dim={p.dim} must be multiples of "
                         f"their heads ({e.heads} / {p.heads})")
    if pl.replan_every > pl.horizon:
        raise ValueError(f"planner.replan_every={pl.replan_every} must be <= planner.horizon="
                         f"{pl.horizon}")
    if pl.num_elites > pl.num_candidates:
        raise ValueError(f"planner.num_elites={pl.num_elites} must be <= planner.num_candidates="
                         f"{pl.num_candidates}")
    if c.eval.batch > c.eval.goals:
        raise ValueError(f"eval.batch={c.eval.batch} must be <= eval.goals={c.eval.goals}")
    paths = tuple(c.dataset.paths)
    if not paths or not all(isinstance(x, str) and x.endswith(".npz") for x in paths):
        raise ValueError(f"dataset.paths={paths!r} must be .npz files of experiments/"
                         f"make_dataset.py --goal_task={c.task}")
    if c.variant == "dinov2" and not os.path.isfile(c.encoder.checkpoint):
        raise ValueError(f"encoder.checkpoint={c.encoder.checkpoint!r}: variant 'dinov2' needs a "
                         f"local DINOv2 checkpoint (.npz or .safetensors in the official layout)")
    if c.variant == "dino":
        dino.check_config(c.dino, make_vit(c))


def make_vit(c: ml_collections.ConfigDict) -> vit_lib.ViT:
    e = c.encoder
    return vit_lib.ViT(image_size=e.image_size, patch_size=e.patch_size, dim=e.dim,
                       depth=e.depth, heads=e.heads, mlp_ratio=e.mlp_ratio,
                       layer_scale=e.layer_scale or None, num_registers=e.num_registers)


def load_data(c: ml_collections.ConfigDict) -> dict:
    """The datasets of `dataset.paths` side by side (streams concatenated; equal T required):
    'image' uint8 [T, N, H, W, 3], 'action' float32 [T, N, A], 'is_first' bool [T, N]."""
    parts = []
    for path in c.dataset.paths:
        arrays, _ = datasets.load(path, env=c.task)
        if "image" not in arrays:
            raise datasets.DatasetError(f"{path}: no 'image' field; DINO-WM needs pixel "
                                        f"datasets (make_dataset.py --goal_task={c.task})")
        parts.append(arrays)
    lengths = {p["image"].shape[0] for p in parts}
    if len(lengths) != 1:
        raise datasets.DatasetError(f"dataset.paths have different lengths T {sorted(lengths)}")
    return {k: np.concatenate([p[k] for p in parts], 1) for k in ("image", "action", "is_first")}


def gather_windows(images, actions, starts, idx, history: int, frameskip: int):
    """Windows of h + 1 model steps at starts[idx]: images [B, h+1, H, W, 3] (every frameskip-th
    row) and actions [B, h+1, frameskip * A] (the frameskip env actions of each model step)."""
    t0, n = starts[idx, 0], starts[idx, 1]
    rows = t0[:, None] + frameskip * jnp.arange(history + 1)[None]        # [B, h+1]
    frames = images[rows, n[:, None]]
    arows = rows[..., None] + jnp.arange(frameskip)                        # [B, h+1, k]
    arows = jnp.minimum(arows, images.shape[0] - 1)
    acts = actions[arows, n[:, None, None]]
    return frames, acts.reshape(*acts.shape[:2], -1)


# ------------------------------------------------------------------------------------------------
# Encoders
# ------------------------------------------------------------------------------------------------
def encode(vit: vit_lib.ViT, params, images: jax.Array) -> jax.Array:
    """uint8 [..., H, W, 3] -> patch features [..., P, D] (frames resized to vit.image_size)."""
    lead = images.shape[:-3]
    x = vit_lib.preprocess(images.reshape(-1, *images.shape[-3:]))
    if x.shape[1] != vit.image_size:
        x = jax.image.resize(x, (x.shape[0], vit.image_size, vit.image_size, 3), "bilinear")
    z = vit.apply(params, x)["patches"]
    return z.reshape(*lead, *z.shape[1:])


def target_images(images: jax.Array, size: int) -> jax.Array:
    """uint8 [..., H, W, 3] -> float [..., size, size, 3] in [0, 1] (decoder targets)."""
    x = images.astype(jnp.float32) / 255.0
    if x.shape[-2] != size:
        lead = x.shape[:-3]
        x = jax.image.resize(x.reshape(-1, *x.shape[-3:]), (int(np.prod(lead)), size, size, 3),
                             "bilinear").reshape(*lead, size, size, 3)
    return x


def encode_dataset(vit, params, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Features of every frame: uint8 [T, N, H, W, 3] -> float32 [T, N, P, D] (host)."""
    flat = images.reshape(-1, *images.shape[2:])
    fn = jax.jit(lambda p, x: encode(vit, p, x))
    out = [np.asarray(fn(params, flat[i:i + chunk])) for i in range(0, len(flat), chunk)]
    z = np.concatenate(out, 0)
    return z.reshape(*images.shape[:2], *z.shape[1:])


# ------------------------------------------------------------------------------------------------
# World model and policy training
# ------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
    params: dict       # {'pred', 'dec'} (+ 'enc' for 'reconstruction'; {'bc'} for 'bc')
    opt_state: optax.OptState
    step: jax.Array


class GoalPolicy(nn.Module):
    """Goal-conditioned BC policy: (obs, goal) uint8 [B, H, W, 3] each -> action [B, A]
    (unbounded regression target; clipped to the action box when acting)."""
    action_size: int
    depth: int = 32
    hidden: int = 256

    @nn.compact
    def __call__(self, obs, goal):
        # DreamerV2's conv encoder (with its fast CPU lowering) on the stacked frames.
        x = ConvEncoder(self.depth, act="elu")(jnp.concatenate([obs, goal], -1))
        x = nn.elu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.action_size)(x)


class Models:
    """The modules and optimizer of one config (static; built once per run)."""

    def __init__(self, c: ml_collections.ConfigDict, action_size: int):
        self.c, self.vit = c, make_vit(c)
        p = c.predictor
        self.frameskip, self.history = p.frameskip, p.history
        self.model_action = action_size * p.frameskip
        self.predictor = dino_wm.Predictor(history=p.history, dim=p.dim, depth=p.depth,
                                           heads=p.heads, mlp_ratio=p.mlp_ratio,
                                           action_emb=p.action_emb, residual=p.residual)
        self.decoder = dino_wm.PatchDecoder(patch_size=c.encoder.patch_size,
                                            hidden=p.decoder_hidden)
        self.policy = GoalPolicy(action_size, c.bc.depth, c.bc.hidden)
        t = c.train
        rates = {"pred": t.lr, "dec": t.decoder_lr, "enc": t.encoder_lr, "bc": c.bc.lr}
        self.optimizer = optax.multi_transform(
            {k: optax.adamw(lr, weight_decay=1e-4) for k, lr in rates.items()},
            lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()})
        grid = c.encoder.image_size // c.encoder.patch_size
        self.num_patches = grid * grid

    def init(self, key, encoder_params) -> TrainState:
        c, e = self.c, self.c.encoder
        k_pred, k_dec, k_bc = jax.random.split(key, 3)
        if c.variant == "bc":
            frame = jnp.zeros((1, e.image_size, e.image_size, 3), jnp.uint8)
            params = {"bc": self.policy.init(k_bc, frame, frame)}
        else:
            z = jnp.zeros((1, self.history, self.num_patches, e.dim))
            params = {"pred": self.predictor.init(
                          k_pred, z, jnp.zeros((1, self.history, self.model_action))),
                      "dec": self.decoder.init(k_dec, z[:, 0])}
            if c.variant == "reconstruction":
                params["enc"] = jax.tree.map(jnp.copy, encoder_params)   # state is donated
        return TrainState(params, self.optimizer.init(params), jnp.zeros((), jnp.int32))

    def loss(self, params, batch, frozen_params):
        """Scalar loss and metrics of one batch (see the module docstring)."""
        c = self.c
        size = c.encoder.image_size
        if c.variant == "bc":
            action = self.policy.apply(params["bc"], batch["obs"], batch["goal"])
            loss = jnp.mean(jnp.square(action - batch["action"]))
            return loss, {"bc_loss": loss}
        if c.variant == "reconstruction":
            z = encode(self.vit, params["enc"], batch["images"])
        else:
            z = batch["z"]
        pred_loss = dino_wm.prediction_loss(self.predictor, params["pred"], z, batch["actions"])
        images = target_images(batch["images"], size)
        if c.variant == "reconstruction":
            pred = self.predictor.apply(params["pred"], z[:, :-1], batch["actions"][:, :-1])
            recon = jnp.mean(jnp.square(self.decoder.apply(params["dec"], z) - images))
            recon_next = jnp.mean(jnp.square(self.decoder.apply(params["dec"], pred)
                                             - images[:, 1:]))
            dec_loss = recon + recon_next
            loss = pred_loss + c.train.recon_weight * dec_loss
        else:
            decoded = self.decoder.apply(params["dec"], jax.lax.stop_gradient(z[:, 0]))
            dec_loss = jnp.mean(jnp.square(decoded - images[:, 0]))
            loss = pred_loss + dec_loss
        return loss, {"pred_loss": pred_loss, "dec_loss": dec_loss}

    def train_step(self, state: TrainState, key, data: dict):
        """One gradient step on a batch sampled from `data` (device); see `runtime.steps`."""
        c = self.c
        bsz = c.train.batch_size

        def sample(k):
            k_idx, k_goal = jax.random.split(k)
            idx = jax.random.randint(k_idx, (bsz,), 0, data["starts"].shape[0])
            if c.variant == "bc":
                t, n = data["starts"][idx, 0], data["starts"][idx, 1]
                room = jnp.minimum(data["ends"][t, n] - t, c.bc.goal_horizon)
                ahead = 1 + jnp.floor(jax.random.uniform(k_goal, (bsz,)) * room).astype(
                    jnp.int32)
                return {"obs": data["images"][t, n], "goal": data["images"][t + ahead, n],
                        "action": data["actions"][t, n]}
            frames, acts = gather_windows(data["images"], data["actions"], data["starts"], idx,
                                          self.history, self.frameskip)
            batch = {"images": frames, "actions": acts}
            if "z" in data:
                t0, n = data["starts"][idx, 0], data["starts"][idx, 1]
                rows = t0[:, None] + self.frameskip * jnp.arange(self.history + 1)[None]
                batch["z"] = data["z"][rows, n[:, None]]
            return batch

        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, sample(key), None)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), metrics


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
class Planner:
    """Jitted batched planning from PlanStates [B, ...] to goal features."""

    def __init__(self, models: Models):
        c, pl = models.c, models.c.planner
        self.models, self.pl = models, pl
        like = dino_wm.PlanState(
            z=jnp.zeros((models.history, models.num_patches, c.encoder.dim)),
            actions=jnp.zeros((models.history, models.model_action)),
            goal=jnp.zeros((models.num_patches, c.encoder.dim)))
        if pl.kind == "cem":
            cfg = cem.CEMConfig(horizon=pl.horizon, num_candidates=pl.num_candidates,
                                num_elites=pl.num_elites, iterations=pl.iterations,
                                init_std=pl.init_std, explore_noise=0.0)
            fns = dino_wm.cem_fns(models.predictor)

            def plan(params, key, states, prev, is_first):
                _, mean, _ = cem.plan_batch(cfg, fns, params, key, states, prev, is_first)
                return mean
        else:
            cfg = mppi.MPPIConfig(horizon=pl.horizon, num_samples=pl.num_candidates,
                                  num_pi_trajs=0, num_elites=pl.num_elites,
                                  iterations=pl.iterations, temperature=pl.temperature,
                                  momentum=0.0, max_std=max(pl.init_std, 0.05), gamma=1.0)
            fns = dino_wm.mppi_fns(models.predictor, like)

            def plan(params, key, states, prev, is_first):
                flat = jax.vmap(dino_wm.flatten_state)(states)
                _, mean, _ = mppi.plan_batch(cfg, fns, params, key, flat, prev, is_first)
                return mean
        self.plan = jax.jit(plan)
        self.initial = lambda b: jnp.zeros((b, pl.horizon, models.model_action))


def _shift(mean: jax.Array, steps: int) -> jax.Array:
    """The plan [B, H, A] after executing `steps - 1` more steps than the planner's own shift."""
    if steps <= 1:
        return mean
    return jnp.concatenate([mean[:, steps - 1:], jnp.zeros_like(mean[:, :steps - 1])], 1)


def evaluate(models: Models, state: TrainState, encoder_params, key, scale: float,
             record: bool = False) -> dict:
    """Success over `eval.goals` fixed start/goal pairs; with `record`, also the first env's real
    frames and executed model actions of the first batch."""
    c = models.c
    with goal_tasks.make_goal_task(c.task, num_envs=c.eval.batch, seed=c.eval.seed) as task:
        return _evaluate(models, state, encoder_params, key, scale, record, task)


def _evaluate(models, state, encoder_params, key, scale, record, task) -> dict:
    c = models.c
    starts, goals = task.eval_pairs(c.eval.goals, c.eval.seed)
    enc = jax.jit(lambda p, x: encode(models.vit, p, x) / scale)
    bc = jax.jit(lambda p, o, g: jnp.clip(models.policy.apply(p, o, g), -1.0, 1.0))
    planner = None if c.variant == "bc" else Planner(models)
    k, h, b = models.frameskip, models.history, c.eval.batch
    model_steps = -(-task.max_steps // k)
    success, ever, costs, plan_seconds, decisions, frames, executed = [], [], [], 0.0, 0, [], []
    for first in range(0, c.eval.goals, b):
        idx = np.arange(first, first + b) % c.eval.goals   # the last batch wraps around
        obs = task.reset_to(starts[idx], goals[idx])
        if planner is not None:
            enc_params = state.params.get("enc", encoder_params)
            goal_z = enc(enc_params, obs["goal_image"])
            z = enc(enc_params, obs["image"])
            window = dino_wm.PlanState(z=jnp.repeat(z[:, None], h, 1),
                                       actions=jnp.zeros((b, h, models.model_action)),
                                       goal=goal_z)
            mean, is_first = planner.initial(b), jnp.ones(b, bool)
        for s in range(model_steps):
            key, k_plan = jax.random.split(key)
            if planner is None:
                action = np.asarray(bc(state.params["bc"], obs["image"], obs["goal_image"]))
                model_action = action
            else:
                r = c.planner.replan_every
                if s % r == 0:
                    began = time.perf_counter()
                    mean = planner.plan(state.params["pred"], k_plan, window,
                                        _shift(mean, r), is_first)
                    mean.block_until_ready()
                    if first or s:   # the first call compiles
                        plan_seconds += time.perf_counter() - began
                        decisions += b
                    is_first = jnp.zeros(b, bool)
                model_action = np.asarray(mean[:, s % r])
                action = model_action.reshape(b, k, -1)
            for j in range(k if planner is not None else 1):
                if record and first == 0:
                    frames.append(obs["image"][0])
                obs = task.step(action[:, j] if planner is not None else action)
            if record and first == 0:
                executed.append(model_action[0])
            if planner is not None:
                z = enc(enc_params, obs["image"])
                acts = window.actions.at[:, -1].set(model_action)
                window = dino_wm.PlanState(
                    z=jnp.concatenate([window.z[:, 1:], z[:, None]], 1),
                    actions=jnp.concatenate([acts[:, 1:], jnp.zeros_like(acts[:, :1])], 1),
                    goal=window.goal)
        if record and first == 0:
            frames.append(obs["image"][0])
        keep = np.arange(min(b, c.eval.goals - first))
        success.append(obs["success"][keep])
        ever.append(obs["ever_success"][keep])
        if planner is not None:
            costs.append(np.asarray(dino_wm.goal_cost(window.z[:, -1], window.goal))[keep])
    out = {"success_rate": float(np.concatenate(success).mean()),
           "ever_success_rate": float(np.concatenate(ever).mean()),
           "successes": np.concatenate(success).astype(int).tolist()}
    if costs:
        out["final_goal_cost"] = float(np.concatenate(costs).mean())
    if decisions:
        out["plan_seconds_per_decision"] = plan_seconds / decisions
        out["plan_seconds_per_batch"] = plan_seconds * b / decisions
    if record:
        out["frames"], out["executed"] = np.stack(frames), np.stack(executed)
    return out


def rollout_figure(models: Models, state: TrainState, encoder_params, frames, executed,
                   scale: float, path: str) -> None:
    """Real frames (top) vs the decoded open-loop prediction from the first frame (bottom)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k, h = models.frameskip, models.history
    steps = min(len(executed), 8)
    real = frames[::k][:steps + 1]
    enc_params = state.params.get("enc", encoder_params)
    z = encode(models.vit, enc_params, jnp.asarray(real[:1])) / scale
    s = dino_wm.PlanState(z=jnp.repeat(z[:, None], h, 1),
                          actions=jnp.zeros((1, h, models.model_action)), goal=z)
    latents = [z[0]]
    for t in range(steps):
        s = dino_wm.rollout_step(models.predictor, state.params["pred"], s,
                                 jnp.asarray(executed[t][None]))
        latents.append(s.z[0, -1])
    decoded = np.asarray(models.decoder.apply(state.params["dec"], jnp.stack(latents)))
    fig, axes = plt.subplots(2, steps + 1, figsize=(1.3 * (steps + 1), 2.8))
    for t in range(steps + 1):
        axes[0, t].imshow(real[t])
        axes[1, t].imshow(np.clip(decoded[t], 0, 1))
        axes[0, t].set_title(f"t={t}", fontsize=7)
        for a in axes[:, t]:
            a.axis("off")
    axes[0, 0].text(-8, 32, "real", rotation=90, va="center", fontsize=8)
    axes[1, 0].text(-8, 32, "predicted", rotation=90, va="center", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """All stages per `config` in `workdir` (resumable). Returns the evaluation summary."""
    began = time.time()
    c = config
    with user_errors():
        check_values(c)
        check_config(c)
        data = load_data(c)
        action_size = data["action"].shape[-1]
        models = Models(c, action_size)
        check_saved_config(c, workdir)
    eval_path = os.path.join(workdir, EVAL_FILE)
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            return json.load(f)
    key = jax.random.key(c.seed)
    k_vit, k_dino, k_model, k_train, k_eval = jax.random.split(key, 5)
    vit = models.vit
    e = c.encoder
    encoder_params = vit.init(k_vit, jnp.zeros((1, e.image_size, e.image_size, 3)))
    if c.variant == "dinov2":
        from jaxwm.models import dinov2_loader
        with user_errors():
            encoder_params = dinov2_loader.load_dinov2(e.checkpoint, vit)
    dino_steps = c.dino.steps if c.variant == "dino" else 0
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), c.train.checkpoints_to_keep)
    save_config(c, workdir)
    # Restore before logging: records logged after the checkpoint (a kill) are dropped.
    latest, meta, dino_state, restored_model = ckpt.latest_step(), {}, None, None
    if dino_steps:
        dino_state = dino.init(k_dino, c.dino, vit)
    if latest is not None and latest <= dino_steps:
        _, restored, meta = ckpt.restore_latest({"dino": dino_state})
        dino_state = restored["dino"]
    elif latest is not None:
        restored_model = ckpt.restore_latest(
            {"model": models.init(k_model, encoder_params), "encoder": encoder_params})
        meta = restored_model[2]
    logger = RunLogger(workdir, total=dino_steps + c.train.steps, start=latest or 0,
                       desc=f"dino_wm/{c.variant}", enable_bar=c.train.progress_bar,
                       show_keys=("dino/loss", "train/pred_loss", "train/bc_loss"),
                       keep_records=meta.get("records", 0) if latest is not None else 0)
    images = jnp.asarray(data["image"])
    try:
        done = latest or 0
        # --- stage 1: DINO pretraining ------------------------------------------------------
        if dino_steps:
            if done < dino_steps:
                logger.write(f"stage 1: DINO pretraining, {dino_steps} steps")
                frames = images.reshape(-1, *images.shape[2:])
                step_fn = jax.jit(lambda s, k: _dino_step(c.dino, vit, s, frames, k),
                                  donate_argnums=0)
                while done < dino_steps:
                    dino_state, metrics = step_fn(dino_state, jax.random.fold_in(k_dino, done))
                    done += 1
                    if done % max(c.train.log_every // 4, 1) == 0 or done == dino_steps:
                        logger.log(done, {f"dino/{k}": v for k, v in metrics.items()})
                    if done % c.train.checkpoint_every == 0 or done == dino_steps:
                        ckpt.save(done, {"dino": dino_state},
                                  {"stage": "dino", "records": logger.records})
                    logger.advance(done)
            encoder_params = dino.teacher_backbone(dino_state)   # restored below in stage 2
        del dino_state
        # --- stage 2: world model (or BC policy) --------------------------------------------
        if restored_model is not None:
            state, encoder_params = restored_model[1]["model"], restored_model[1]["encoder"]
        else:
            state = models.init(k_model, encoder_params)
        device_data = {"images": images, "actions": jnp.asarray(data["action"]),
                       "ends": jnp.asarray(datasets.episode_ends(data["is_first"]))}
        scale = 1.0
        if c.variant in FROZEN:
            z = encode_dataset(vit, encoder_params, data["image"])
            scale = float(z.std()) or 1.0
            device_data["z"] = jnp.asarray(z / scale)
            del z
        span = 1 if c.variant == "bc" else models.history * models.frameskip
        device_data["starts"] = jnp.asarray(datasets.window_starts(data["is_first"], span))
        train = steps_lib.repeat_steps(models.train_step)   # host loop on CPU (conv gradients)
        chunk = max(min(c.train.log_every, c.train.checkpoint_every) // 2, 1)
        step = done - dino_steps
        if step < c.train.steps:
            logger.write(f"stage 2: {'BC policy' if c.variant == 'bc' else 'world model'}, "
                         f"{c.train.steps} steps")
        while step < c.train.steps:
            num = min(chunk, c.train.steps - step)
            state, metrics = train(state, jax.random.fold_in(k_train, step), num, device_data)
            step += num
            if step % c.train.log_every < num or step == c.train.steps:
                logger.log(dino_steps + step, {f"train/{k}": v.mean() for k, v in metrics.items()})
            if step % c.train.checkpoint_every < num or step == c.train.steps:
                ckpt.save(dino_steps + step, {"model": state, "encoder": encoder_params},
                          {"stage": "model", "records": logger.records})
            logger.advance(dino_steps + step)
        del device_data
        # --- stage 3: goal-reaching evaluation -----------------------------------------------
        logger.write(f"stage 3: evaluation on {c.eval.goals} goals of {c.task}")
        result = evaluate(models, state, encoder_params, k_eval, scale, record=True)
        frames, executed = result.pop("frames"), result.pop("executed")
        if c.variant != "bc":
            rollout_figure(models, state, encoder_params, frames, executed, scale,
                           os.path.join(workdir, "plots", "rollout.png"))
        logger.log(dino_steps + c.train.steps, {f"eval/{k}": v for k, v in result.items()
                                                if not isinstance(v, list)})
        result.update(variant=c.variant, task=c.task, seed=c.seed,
                      seconds=time.time() - began)
        write_json(eval_path, result)
    finally:
        logger.close()
        ckpt.close()
    return result


def _dino_step(config, vit, state, frames, key):
    """One DINO step on a batch of frames drawn uniformly from `frames` [F, H, W, 3]."""
    k_idx, k_step = jax.random.split(key)
    idx = jax.random.randint(k_idx, (config.batch_size,), 0, frames.shape[0])
    return dino.train_step(config, vit, state, frames[idx], k_step)
