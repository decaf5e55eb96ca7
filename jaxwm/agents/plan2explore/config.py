"""Plan2Explore configuration: reward-free world model, disagreement ensemble, explorer
actor-critic, online run and zero-shot evaluation, with presets smoke / cpu / cpu_minigrid / paper.

Paper values follow DreamerV2's Plan2Explore (configs.yaml: expl_*, disag_*; Sekar et al. 2020).
"""
import ml_collections

from jaxwm.agents.dreamer.config import (apply_behavior_preset, apply_preset, behavior_config,
                                         model_config)

PRESETS = ("smoke", "cpu", "cpu_minigrid", "paper")


def disag_config() -> ml_collections.ConfigDict:
    """DreamerV2 Plan2Explore ensemble (the `paper` values)."""
    c = ml_collections.ConfigDict()
    c.members = 10             # ensemble size E
    c.layers = 4               # MLP depth of each one-step head
    c.units = 400              # MLP width
    c.act = "elu"              # activation
    c.lr = 3e-4                # Adam learning rate
    c.eps = 1e-5               # Adam epsilon
    c.clip = 100.0             # global-norm gradient clip
    c.weight_decay = 1e-6      # decoupled weight decay
    c.log_reward = False       # r_int = log(disagreement) if True (DreamerV2 disag_log, False
    #                            since Sep 2021)
    c.intr_scale = 1.0         # weight of the intrinsic reward
    c.extr_scale = 0.0         # weight of the (reward-free, evaluation-only) reward head
    return c


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full Plan2Explore config.

    smoke: seconds (tests) on walker states with zero-shot evaluation; cpu: walker from states
    (dm_control, vector observations) with the zero-shot walker stand/walk/run/flip evaluation
    at the end; cpu_minigrid: MiniGrid-Empty-16x16 (fixed start, 100-step episodes) from the
    symbolic view, reporting state coverage; paper: walker from pixels, DreamerV2 DMC sizes.
    """
    from jaxwm.runtime.online import run_config
    from jaxwm.runtime.zero_shot import zero_shot_config
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    size = "cpu" if preset == "cpu_minigrid" else preset
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "dmc:walker_walk"  # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 1             # envs stepped in lockstep
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    c.model = apply_preset(model_config(), "paper_dmc" if size == "paper" else size)
    c.model.reward_grad = False    # reward-free world model: reward head on sg(features)
    c.behavior = apply_behavior_preset(behavior_config(),
                                       "paper_dmc" if size == "paper" else size)
    c.disag = disag_config()
    c.run = run_config()
    c.zero_shot = zero_shot_config(size)
    if size != "paper":
        c.model.kl_scale, c.model.kl_free = 1.0, 1.0     # DMC values
        c.model.loss_scales.discount = 1.0
        c.disag.layers, c.disag.units = 2, 200
    r = c.run
    if preset == "paper":
        r.eval_episodes = 0
    elif preset == "cpu":
        c.env.overrides = ml_collections.ConfigDict({"obs": "vector", "action_repeat": 2})
        r.steps, r.prefill, r.pretrain, r.train_every = 10_000, 1000, 100, 10
        r.batch_size, r.seq_len, r.replay_capacity = 16, 32, 10_000
        r.log_every, r.checkpoint_every = 1000, 5000
    elif preset == "cpu_minigrid":
        c.env.name = "MiniGrid-Empty-16x16-v0"
        c.env.overrides = ml_collections.ConfigDict({"obs": "vector", "max_episode_steps": 100})
        c.behavior.discount = 0.99
        # Discrete REINFORCE explorer on a tiny budget: V3-style normalized advantages, unimix
        # and a large entropy bonus keep it from collapsing onto one action (measured: with
        # eta = 3e-3 it collapsed onto 'turn left' and covered 60 cells vs random's 107).
        c.behavior.return_norm, c.behavior.actor_unimix = "percentile", 0.01
        c.behavior.actor_ent, c.behavior.actor_lr = 3e-2, 1e-4
        r.steps, r.prefill, r.pretrain, r.train_every = 20_000, 1000, 100, 10
        r.batch_size, r.seq_len, r.replay_capacity = 16, 32, 20_000
        r.log_every, r.checkpoint_every = 1000, 5000
    else:  # smoke
        c.env.num_envs = 2
        c.env.overrides = ml_collections.ConfigDict({"obs": "vector", "action_repeat": 4,
                                                     "max_episode_steps": 10})
        c.disag.members, c.disag.layers, c.disag.units = 3, 1, 32
        r.steps, r.prefill, r.pretrain, r.train_every = 40, 20, 1, 20
        r.batch_size, r.seq_len, r.replay_capacity = 4, 8, 100
        r.log_every, r.checkpoint_every, r.video_len = 20, 40, 8
    return c
