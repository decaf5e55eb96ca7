"""PlaNet configuration with presets smoke / cpu / paper.

paper: PlaNet's published settings (Hafner et al., ICML 2019, Sec. 5 and App. A): Gaussian RSSM
(GRU 200, 30-d stochastic state, min std 0.1), 64x64 images, free nats 3 with the plain
(unbalanced) KL and beta 1, latent overshooting D = 50 (the paper's Sec. 4 objective; its
ablation found it mattered less for the RSSM than for deterministic/stochastic-only models),
Adam lr 1e-3, eps 1e-4, global-norm clip 1000, batches of 50 sequences x 50 steps, 5 random seed
episodes, C = 100 gradient steps per collected episode (walker walk: 1000 frames / action repeat 2
= 500 agent steps, so one step every 5), CEM H 12 / J 1000 / K 100 / I 10 with exploration noise
0.3, and 1000 training episodes. cpu: CartpoleSwingup from states (action repeat 8, PlaNet's
cartpole setting) with a small model and planner (~10 minutes here); smoke: seconds (tests).
"""
import ml_collections

from jaxwm.models.dreamer import apply_preset, model_config
from jaxwm.planners import cem

PRESETS = ("smoke", "cpu", "paper")


def planner_config() -> ml_collections.ConfigDict:
    """CEM settings (PlaNet's; `warm_start` shifts the previous plan, PlaNet restarts at 0)."""
    p = ml_collections.ConfigDict()
    p.horizon = 12                 # planning horizon H
    p.num_candidates = 1000        # J sequences per iteration
    p.num_elites = 100             # K best refit
    p.iterations = 10              # I refits
    p.init_std = 1.0               # std of the first iteration
    p.min_std = 1e-3               # std floor of the refit
    p.explore_noise = 0.3          # N(0, 0.3^2) added to the executed action while collecting
    p.gamma = 1.0                  # plain sum of predicted rewards
    p.warm_start = True            # start from the previous plan shifted by one step
    return p


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full PlaNet agent config: env, model, planner and run blocks."""
    from jaxwm.runtime.online import run_config
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "dmc:walker_walk"  # a continuous-action task id of `jaxwm.envs.make`
    c.env.num_envs = 1             # envs stepped in lockstep (planning is vmapped)
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    m = c.model = apply_preset(model_config(), "paper_dmc")
    m.latent, m.stoch, m.deter, m.hidden, m.min_std = "gaussian", 30, 200, 200, 0.1
    m.kl_balancing, m.kl_scale, m.kl_free = False, 1.0, 3.0
    m.overshooting = 50
    m.pred_discount = False        # PlaNet models no terminations (DMC has none)
    m.cnn_depth = 32               # PlaNet's encoder/decoder channel multiplier
    m.mlp_layers, m.mlp_units = 2, 200  # reward head
    m.lr, m.eps, m.clip, m.weight_decay = 1e-3, 1e-4, 1000.0, 0.0
    c.planner = planner_config()
    r = c.run = run_config()
    r.steps = 500_000              # 1000 episodes of 500 agent steps
    r.prefill, r.pretrain = 2_500, 100  # 5 random seed episodes, then C = 100 steps
    r.train_every = 5              # C = 100 gradient steps per 500-step episode
    r.batch_size, r.seq_len = 50, 50
    r.eval_every, r.eval_episodes = 10_000, 10
    if preset == "paper":
        return c
    c.env.name = "CartpoleSwingup-v1"
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 8})
    m.overshooting = 1
    p = c.planner
    if preset == "cpu":
        c.env.num_envs = 4
        m.deter, m.hidden, m.stoch, m.mlp_units = 100, 100, 16, 100
        p.num_candidates, p.num_elites, p.iterations = 100, 10, 4
        r.steps, r.prefill, r.pretrain, r.train_every = 5_000, 500, 100, 2
        r.batch_size, r.seq_len, r.replay_capacity = 16, 32, 5_000
        r.log_every, r.checkpoint_every = 500, 2_500
        r.eval_every, r.eval_episodes, r.video_len = 1_000, 4, 30
    else:  # smoke
        c.env.num_envs = 2
        c.env.overrides.max_episode_steps = 10
        apply_preset(m, "smoke")
        m.overshooting = 3         # exercise the overshooting path
        p.horizon, p.num_candidates, p.num_elites, p.iterations = 4, 16, 4, 2
        r.steps, r.prefill, r.pretrain, r.train_every = 60, 20, 1, 20
        r.batch_size, r.seq_len, r.replay_capacity = 4, 8, 100
        r.log_every, r.checkpoint_every, r.video_len = 20, 40, 8
        r.eval_every, r.eval_episodes = 0, 2
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """PlaNet needs Gaussian latents; the planner block must be a valid CEMConfig. Raises
    ValueError naming the field and the allowed values."""
    if c.model.latent != "gaussian":
        raise ValueError(f"model.latent={c.model.latent!r}: PlaNet's RSSM is 'gaussian' (use the "
                         f"dreamer agent for discrete latents)")
    cem.CEMConfig.from_config(c.planner)
