"""DayDreamer configuration (Wu et al., "DayDreamer: World Models for Physical Robot Learning",
CoRL 2022): an online agent's blocks (Dreamer V2/V3 or TD-MPC) plus the `runner` block of
`jaxwm.runtime.async_runner` (backend, actors, control rate, budgets, training schedule).

Presets `<size>[_<agent>]`, sizes smoke / cpu / paper, agents v2 (no suffix), v3, tdmpc:
- smoke: seconds, for tests (CartpoleBalance states, threads backend).
- cpu: Dreamer's cpu preset on CartpoleBalance from states, its envs paced at 20 Hz
  (`runner.control_hz`), an 8-minute wall-clock budget: the DayDreamer sync-vs-async comparison.
`distributed` (num_processes > 1): one process per host, each with its own actors, replays and
workdir `<workdir>/process_<i>`, training one learner in lockstep on the global batch
(`runner.batch_size` sequences from every process; `jaxwm.runtime.distributed`).
- paper: the official code's A1 quadruped settings (danijar/daydreamer configs.yaml `a1`), on a
  DMC state task since no robot is attached: RSSM deter/hidden 256, batch 32 x 32, 5000 prefill
  steps, parameters synced to the actor every 20 learner steps, discount 0.995, actor min std
  and unimix 0.1, one env; control at 20 Hz (the issue's stand-in rate; the paper's robots
  each have their own).
"""
import ml_collections

from jaxwm.agents.dreamer import config as dreamer_config
from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.runtime.async_runner import runner_config
from jaxwm.runtime.distributed import distributed_config

SIZES = ("smoke", "cpu", "paper")
AGENTS = ("v2", "v3", "tdmpc")
PRESETS = tuple(s if a == "v2" else f"{s}_{a}" for a in AGENTS for s in SIZES)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    size, _, agent = preset.partition("_")
    agent = agent or "v2"
    if agent == "tdmpc":
        c = tdmpc_config.get_config(size)
        c.agent = "tdmpc"
        runner = runner_config()
        r = c.run
        runner.steps, runner.prefill = r.env_steps, r.seed_steps
        runner.pretrain = max(1, r.pretrain_updates // tdmpc_config.updates_per_call(c))
        runner.grad_steps = tdmpc_config.updates_per_call(c)
        runner.train_every = r.train_every * c.env.num_envs
        runner.batch_size, runner.seq_len = r.batch_size, c.model.horizon + 1
        runner.replay_capacity = max(r.replay_capacity // c.env.num_envs, runner.seq_len)
        runner.log_every, runner.checkpoint_every = r.log_every, max(r.checkpoint_every, 1)
        runner.eval_episodes = r.eval_episodes
    else:
        c = dreamer_config.get_config(size if agent == "v2" else f"{size}_{agent}")
        c.agent = "dreamer"
        runner = runner_config()
        for k in ("steps", "prefill", "pretrain", "train_every", "grad_steps", "batch_size",
                  "seq_len", "replay_capacity", "log_every", "checkpoint_every",
                  "checkpoints_to_keep", "eval_episodes"):
            runner[k] = c.run[k]
    del c["run"]                   # the runner block holds the whole schedule
    c.preset = preset
    c.runner = runner
    c.distributed = distributed_config()   # a learner over several processes (hosts)
    if size == "smoke":
        runner.chunk, runner.queue_size, runner.sync_every = 4, 4, 2
    elif size == "cpu":
        runner.control_hz, runner.minutes, runner.steps = 20.0, 8.0, 100_000
        runner.chunk = 5           # 0.25 s of 20 Hz acting per chunk
    else:
        _paper(c)
    return c


def _paper(c: ml_collections.ConfigDict) -> None:
    """The official code's `a1` preset, where the agent has the field."""
    r = c.runner
    r.control_hz, r.sync_every, r.chunk = 20.0, 20, 10
    r.batch_size, r.seq_len, r.prefill, r.train_every = 32, 32, 5000, 4
    if c.agent == "dreamer":
        c.env.name, c.env.num_envs = "WalkerWalk-v1", 1
        c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})
        c.model.deter = c.model.hidden = 256
        c.behavior.discount = 0.995
        c.behavior.actor_min_std = 0.1
        if "actor_unimix" in c.behavior:
            c.behavior.actor_unimix = 0.1
