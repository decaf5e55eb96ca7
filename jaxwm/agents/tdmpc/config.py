"""TD-MPC / TD-MPC2 configuration with presets.

smoke / smoke_v2: seconds (tests). cpu / cpu_v2: a real run on this 2-core machine (CartpoleBalance
from states with TD-MPC's cartpole action repeat 8, ~2-3 minutes). paper / paper_v2: the published
defaults (TD-MPC, Hansen et al. 2022, official cfgs/default.yaml; TD-MPC2, Hansen et al. 2024,
official config) on walker walk, for GPU/TPU.
Env steps count agent steps (one action, repeated `action_repeat` times by the env) over all envs.
"""
import ml_collections

from jaxwm.models import told
from jaxwm.planners import mppi

PRESETS = ("smoke", "cpu", "paper", "smoke_v2", "cpu_v2", "paper_v2")


def planner_config() -> ml_collections.ConfigDict:
    """MPPI settings of TD-MPC (horizon and gamma come from the model config)."""
    p = ml_collections.ConfigDict()
    p.num_samples = 512            # Gaussian action sequences per iteration
    p.num_pi_trajs = 25            # policy-prior trajectories (TD-MPC: 0.05 * 512; TD-MPC2: 24)
    p.num_elites = 64              # top-k elites of the refit
    p.iterations = 6               # MPPI iterations per step
    p.temperature = 0.5            # inverse temperature of the elite weights
    p.momentum = 0.1               # smoothing of the mean across iterations (TD-MPC2: 0)
    p.min_std = 0.05               # lower clamp of the sampling std
    p.max_std = 2.0                # upper clamp and initial std
    p.uncertainty_penalty = 0.0    # lambda * std over the Q-ensemble (FOWM); 0 = off
    p.value_aggregation = "min"    # terminal Q over members: 'min' (TD-MPC) / 'mean' (TD-MPC2)
    p.value_members = 0            # members aggregated: 0 all (TD-MPC's 2), 2 of 5 drawn at
    #                                random per call (TD-MPC2, FOWM)
    return p


def run_config() -> ml_collections.ConfigDict:
    """Host loop settings (TD-MPC paper values)."""
    r = ml_collections.ConfigDict()
    r.env_steps = 250_000          # total agent steps over all envs (TD-MPC: 500k frames / repeat)
    r.seed_steps = 5_000           # uniform random actions before training starts
    r.pretrain_updates = 5_000     # gradient steps once the seed data is in (TD-MPC: seed_steps)
    r.updates_per_step = 1.0       # gradient steps per agent step (update-to-data ratio)
    r.train_every = 1              # batched env steps between jitted training calls
    r.batch_size = 512             # sequences per gradient step
    r.per = True                   # prioritized replay (TD-MPC: on; TD-MPC2: uniform)
    r.per_alpha = 0.6              # priority exponent alpha
    r.per_beta = 0.4               # importance-weight exponent beta
    r.replay_capacity = 1_000_000  # replay size in agent steps over all envs
    r.eval_every = 5_000           # agent steps between evaluations (TD-MPC: 10k frames)
    r.eval_episodes = 10           # evaluation episodes (run as parallel envs)
    r.log_every = 1_000            # agent steps between train-metric records
    r.std_schedule_start = 0.5     # planner std floor at step 0, annealed linearly to
    r.std_schedule_steps = 25_000  # planner.min_std over this many agent steps (TD-MPC's
    #                                std_schedule linear(0.5, 0.05, 25000); 0: no schedule)
    r.horizon_schedule_steps = 25_000  # planning horizon 1 -> model.horizon linearly over this
    #                                many agent steps (TD-MPC's linear(1, 5, 25000); 0: fixed)
    r.checkpoint_every = 50_000    # agent steps between checkpoints (0: only at the end)
    r.checkpoints_to_keep = 2      # newest checkpoints kept (0: all, e.g. for dataset stages)
    r.progress_bar = True          # tqdm bar with ETA on the console
    return r


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full TD-MPC agent config: env, model (TOLD), planner (MPPI) and run blocks."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    v2 = preset.endswith("_v2")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "WalkerWalk-v1"   # a DMC state task id of `jaxwm.envs.make`
    c.env.num_envs = 1             # training envs stepped in lockstep (planning is vmapped)
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    c.model = told.model_config("tdmpc2" if v2 else "tdmpc")
    c.planner = planner_config()
    c.run = run_config()
    if v2:
        c.planner.num_pi_trajs, c.planner.momentum, c.planner.value_aggregation = 24, 0.0, "mean"
        c.planner.value_members = 2
        c.run.batch_size, c.run.per = 256, False
        c.run.std_schedule_steps = 0  # TD-MPC2 plans with a fixed std floor and horizon
        c.run.horizon_schedule_steps = 0
    base = preset.removesuffix("_v2")
    if base == "paper":
        return c
    c.env.name = "CartpoleBalance-v1"
    m, p, r = c.model, c.planner, c.run
    r.std_schedule_steps = r.horizon_schedule_steps = 0   # budgets of a few k steps
    if base == "cpu":
        r.per = False              # uniform until PER is measured at this budget
        c.env.num_envs = 4
        c.env.overrides.action_repeat = 8  # TD-MPC's cartpole setting: 125 agent steps / episode
        m.latent_dim, m.enc_dim, m.mlp_dim = (64 if v2 else 32), 128, 128
        p.num_samples, p.num_pi_trajs, p.num_elites, p.iterations = 128, 8, 16, 4
        r.env_steps, r.seed_steps, r.pretrain_updates = 5_000, 500, 250
        r.updates_per_step, r.train_every, r.batch_size = 1.0, 4, 128
        r.replay_capacity = 8_000
        r.eval_every, r.eval_episodes, r.log_every = 1_000, 4, 250
        r.checkpoint_every = 2_500
    else:  # smoke
        c.env.num_envs = 2
        c.env.overrides = ml_collections.ConfigDict({"action_repeat": 4, "max_episode_steps": 10})
        m.latent_dim, m.enc_dim, m.mlp_dim, m.num_bins = 16, 16, 16, 11
        p.num_samples, p.num_pi_trajs, p.num_elites, p.iterations = 16, 4, 4, 2
        r.env_steps, r.seed_steps, r.pretrain_updates = 80, 24, 2
        r.updates_per_step, r.train_every, r.batch_size = 0.5, 4, 4
        r.replay_capacity = 200
        r.eval_every, r.eval_episodes, r.log_every = 40, 2, 16
        r.checkpoint_every = 40
        if not v2:
            r.horizon_schedule_steps = 40  # exercise the schedule: h = 1, 2, 3, 4, 5 over 40
    return c


def exploration_std(c: ml_collections.ConfigDict, step: int) -> float:
    """The planner's std floor while training at agent step `step`: run.std_schedule_start
    annealed linearly to planner.min_std over run.std_schedule_steps (TD-MPC), else min_std."""
    steps, end = c.run.std_schedule_steps, c.planner.min_std
    if not steps:
        return float(end)
    frac = min(step / steps, 1.0)
    return float(c.run.std_schedule_start + frac * (end - c.run.std_schedule_start))


def planning_horizon(c: ml_collections.ConfigDict, step: int) -> int:
    """The planning horizon at agent step `step`: int(1 + (H - 1) min(step / S, 1)) for
    S = run.horizon_schedule_steps (TD-MPC's linear(1, horizon, 25000)), else H = model.horizon."""
    steps, end = c.run.horizon_schedule_steps, c.model.horizon
    if not steps:
        return int(end)
    return int(min(end, 1 + (end - 1) * min(step / steps, 1.0)))


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}")


def check_config(c: ml_collections.ConfigDict) -> mppi.MPPIConfig:
    """Validates a TD-MPC config; raises ValueError naming the field and its allowed values.
    Returns the planner's `MPPIConfig` (horizon and gamma from the model)."""
    told.check_config(c.model)
    planner = planner_from(c)
    _positive_int("env.num_envs", c.env.num_envs)
    r = c.run
    for name in ("env_steps", "batch_size", "replay_capacity", "train_every", "eval_every",
                 "eval_episodes", "log_every"):
        _positive_int(f"run.{name}", r[name])
    for name in ("seed_steps", "pretrain_updates", "checkpoint_every", "checkpoints_to_keep",
                 "horizon_schedule_steps"):
        _positive_int(f"run.{name}", r[name], 0)
    for name in ("per_alpha", "per_beta"):
        if not 0.0 <= r[name] <= 1.0:
            raise ValueError(f"run.{name}={r[name]!r} must be in [0, 1]")
    if not r.updates_per_step > 0:
        raise ValueError(f"run.updates_per_step={r.updates_per_step!r} must be > 0")
    if r.replay_capacity < c.env.num_envs * (c.model.horizon + 1):
        raise ValueError(f"run.replay_capacity={r.replay_capacity} must hold horizon + 1 = "
                         f"{c.model.horizon + 1} steps per env ({c.env.num_envs} envs)")
    return planner


def planner_from(c: ml_collections.ConfigDict) -> mppi.MPPIConfig:
    """The MPPIConfig of an agent config (planner block + model horizon and discount)."""
    return mppi.MPPIConfig.from_config(c.planner, horizon=c.model.horizon, gamma=c.model.gamma)


def updates_per_call(c: ml_collections.ConfigDict) -> int:
    """Gradient steps per jitted training call: ratio * envs * train_every (at least 1)."""
    return max(1, round(c.run.updates_per_step * c.env.num_envs * c.run.train_every))
