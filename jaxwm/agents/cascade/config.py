"""CASCADE on reward-free deployments (Xu et al. 2022, ALGORITHMS.md Sec. 4) and its baselines.

Presets: smoke (seconds, tests), cpu (MiniGrid FourRooms, ~10 minutes on 2 cores: `make demo`),
paper (published defaults: B = 10, E = 10, H = 15, batch 16 x 50, 100k env steps per deployment,
250 world-model steps per 1k env steps + 1). Methods from the same config: 'cascade', 'pp2e'
(population, lambda = 0), 'p2e' (B = 1) and 'random'.
"""
import ml_collections

from jaxwm.agents.dreamer.config import (apply_behavior_preset, apply_preset, behavior_config,
                                         model_config)
from jaxwm.agents.plan2explore.config import disag_config
from jaxwm.behaviors.cascade import cascade_config

PRESETS = ("smoke", "cpu", "paper")
METHODS = ("cascade", "pp2e", "p2e", "random")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    from jaxwm.runtime.zero_shot import zero_shot_config
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.method = "cascade"           # 'cascade', 'pp2e', 'p2e' or 'random'
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "MiniGrid-FourRooms-v0"  # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 10            # env slots; split equally among the B members
    c.env.overrides = ml_collections.ConfigDict()  # suite options
    c.model = apply_preset(model_config(), preset)
    c.model.reward_grad = False    # reward-free: reward head only for evaluation
    c.behavior = apply_behavior_preset(behavior_config(), preset)
    c.disag = disag_config()
    c.disag.log_reward = False     # keep InfoGain >= 0 so its RMS scale is meaningful
    c.cascade = cascade_config()
    d = c.deploy = ml_collections.ConfigDict()
    d.deployments = 15             # D reward-free deployments after the random deployment 0
    d.steps_per_deployment = 100_000  # env steps per deployment (summed over env slots)
    d.model_ratio = 250            # world-model gradient steps per 1k env steps collected (+1)
    d.model_grad_steps = 10        # gradient steps per jitted call (scanned)
    d.policy_updates = 1000        # population updates in imagination per deployment
    d.batch_size = 16              # replay sequences per gradient step
    d.seq_len = 50                 # steps per sequence
    d.eval_deployments = "last"    # deployments after which to run zero-shot eval: 'last',
    #                                'all', 'none' or comma-separated indices
    c.zero_shot = zero_shot_config("paper" if preset == "paper" else preset)
    if preset == "cpu":
        c.env.num_envs = 8
        c.env.overrides = ml_collections.ConfigDict({"obs": "vector", "max_episode_steps": 100})
        c.cascade.population = 4
        c.disag.members, c.disag.layers, c.disag.units = 5, 2, 200
        c.behavior.horizon = 15
        c.behavior.imag_starts = 256
        d.deployments, d.steps_per_deployment = 4, 2000
        d.model_ratio, d.model_grad_steps, d.policy_updates = 50, 10, 60
        d.batch_size, d.seq_len = 16, 16
    elif preset == "smoke":
        c.env.num_envs = 4
        c.env.overrides = ml_collections.ConfigDict({"obs": "vector", "max_episode_steps": 20})
        c.cascade.population = 2
        c.disag.members, c.disag.layers, c.disag.units = 3, 1, 32
        c.behavior.imag_starts = 32
        d.deployments, d.steps_per_deployment = 2, 64
        d.model_ratio, d.model_grad_steps, d.policy_updates = 30, 2, 2
        d.batch_size, d.seq_len = 4, 8
    return c
