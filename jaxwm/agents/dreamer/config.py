"""Dreamer configuration: world model, actor-critic behaviour and the online run, with presets
smoke / cpu / paper (and paper_dmc for the model/behaviour blocks).

Paper defaults follow DreamerV2 (Hafner et al. 2021, App. D / official configs.yaml).
"""
import ml_collections

from jaxwm.behaviors.actor_critic import apply_behavior_preset, behavior_config  # noqa: F401
from jaxwm.models.dreamer import PRESETS, apply_preset, model_config  # noqa: F401

AGENT_PRESETS = ("smoke", "cpu", "paper")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full Dreamer agent config: env, model, behavior and run blocks.

    smoke: seconds (tests) on CartpoleBalance states; cpu: a real run on this 2-core machine
    (CartpoleBalance from states, 20k env steps, 4k gradient steps: ~20-45 min depending on the
    load); paper: DreamerV2 DMC (walker walk from pixels).
    """
    from jaxwm.runtime.online import run_config
    if preset not in AGENT_PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {AGENT_PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "dmc:walker_walk"  # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 1             # envs stepped in lockstep
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    c.model = apply_preset(model_config(), "paper_dmc")
    c.behavior = apply_behavior_preset(behavior_config(), "paper_dmc")
    c.run = run_config()
    if preset == "paper":
        c.run.eval_every, c.run.eval_episodes = 10_000, 10
        return c
    c.env.name = "CartpoleBalance-v1"
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})
    c.model = apply_preset(model_config(), preset)
    c.model.kl_scale, c.model.kl_free = 1.0, 1.0      # DMC values
    c.model.loss_scales.discount = 1.0
    c.behavior = apply_behavior_preset(behavior_config(), preset)
    r = c.run
    if preset == "cpu":
        c.env.num_envs = 1
        r.steps, r.prefill, r.pretrain, r.train_every = 20_000, 1000, 100, 5
        r.batch_size, r.seq_len, r.replay_capacity = 16, 32, 20_000
        r.log_every, r.checkpoint_every = 1000, 5000
        r.eval_every, r.eval_episodes = 5000, 5
    else:  # smoke
        c.env.num_envs = 2
        c.env.overrides = ml_collections.ConfigDict({"action_repeat": 4,
                                                     "max_episode_steps": 10})
        r.steps, r.prefill, r.pretrain, r.train_every = 60, 20, 1, 20
        r.batch_size, r.seq_len, r.replay_capacity = 4, 8, 100
        r.log_every, r.checkpoint_every, r.video_len = 20, 40, 8
        r.eval_every, r.eval_episodes = 0, 2
    return c
