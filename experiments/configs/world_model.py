"""World model on random-policy data. Presets: smoke (tests), cpu (minutes here), paper (V2).

Usage: python experiments/world_model.py --config=experiments/configs/world_model.py:cpu
       --config.env.name=WalkerWalk-v1 --workdir=runs/wm
"""
import ml_collections

from jaxwm.agents.dreamer.config import PRESETS, apply_preset, model_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init and sampling
    c.num_devices = 0              # devices of the `data` mesh axis (0: all)
    c.env = ml_collections.ConfigDict()
    c.env.name = "Pong-v5"         # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 4             # envpool batch size
    c.env.overrides = ml_collections.ConfigDict()  # suite options, e.g. {'size': 64}
    c.model = apply_preset(model_config(), preset)
    c.train = ml_collections.ConfigDict()
    c.train.env_steps = 200_000    # total env steps (summed over envs)
    c.train.prefill = 1000         # steps per env before training starts
    c.train.train_every = 16       # steps per env between training calls
    c.train.grad_steps = 1         # K gradient steps per training call (scanned)
    c.train.batch_size = 16        # sequences per gradient step
    c.train.seq_len = 50           # steps per sequence
    c.train.replay_capacity = 250_000  # steps per env kept in replay
    c.train.log_every = 1000       # env steps between metric records
    c.train.checkpoint_every = 50_000  # env steps between checkpoints
    c.train.checkpoints_to_keep = 2    # newest checkpoints kept (0: all); older ones are fallbacks
    c.train.video_len = 50         # frames in the open-loop GIF (5 observed, rest imagined)
    if preset == "cpu":
        c.train.env_steps = 20_000
        c.train.prefill = 100
        c.train.train_every = 5
        c.train.batch_size, c.train.seq_len = 16, 16
        c.train.replay_capacity = 10_000
        c.train.log_every = 500
        c.train.checkpoint_every = 10_000
        c.train.video_len = 30
    elif preset == "smoke":
        c.env.num_envs = 2
        c.train.env_steps = 200
        c.train.prefill = 20
        c.train.train_every = 10
        c.train.grad_steps = 2
        c.train.batch_size, c.train.seq_len = 8, 8
        c.train.replay_capacity = 200
        c.train.log_every = 20
        c.train.checkpoint_every = 100
        c.train.video_len = 10
    return c
