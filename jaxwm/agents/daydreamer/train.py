"""DayDreamer entry point: the agent of `config.agent` trained by `jaxwm.runtime.async_runner`."""
import functools
import os

import jax
import ml_collections

from jaxwm.agents.daydreamer.config import PRESETS
from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.agents.tdmpc.agent import OnlineTDMPC
from jaxwm.runtime import async_runner, distributed
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

AGENTS = ("dreamer", "tdmpc")


def build_agent(config: ml_collections.ConfigDict, env):
    """The agent of `config.agent` for `env` (module level: Ray actors pickle it)."""
    if config.agent == "tdmpc":
        return OnlineTDMPC(config, env.obs_space, env.act_space)
    return Dreamer(config, env.obs_space, env.act_space)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first bad field."""
    if config.get("agent") not in AGENTS:
        raise ValueError(f"agent={config.get('agent')!r} is not one of {AGENTS}")
    block = {"dreamer": "behavior", "tdmpc": "planner"}[config.agent]
    if block not in config:       # the agent's blocks come with its presets
        raise ValueError(f"agent={config.agent!r} needs a preset of that agent (its "
                         f"'{block}' block); this config is preset {config.get('preset')!r}, "
                         f"presets: {PRESETS}")
    async_runner.check_runner_config(config.runner)
    if config.distributed.num_processes > 1 and config.runner.backend == "sync":
        raise ValueError("runner.backend='sync' runs in one process; with "
                         "distributed.num_processes > 1 use 'threads' or 'ray'")
    if config.agent == "tdmpc":
        tdmpc_config.planner_from(config)
        if config.runner.seq_len != config.model.horizon + 1:
            raise ValueError(f"runner.seq_len={config.runner.seq_len} must be model.horizon + 1 "
                             f"= {config.model.horizon + 1} for TD-MPC")


def join_processes(c: ml_collections.ConfigDict) -> None:
    """`distributed.initialize` unless this process already belongs to the run (ValueError if
    JAX started before it could join)."""
    distributed.check_distributed_config(c)
    if c.num_processes > 1 and not jax.distributed.is_initialized():
        try:
            distributed.initialize(c)
        except RuntimeError as e:
            raise ValueError(f"distributed.num_processes={c.num_processes}: {e}") from e


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, **kwargs) -> dict:
    """Train (or resume) in `workdir` (`<workdir>/process_<i>` for process i of several);
    kwargs go to `async_runner.run`. Returns its summary."""
    with user_errors():
        join_processes(config.distributed)
        if config.distributed.num_processes > 1:
            workdir = os.path.join(workdir, f"process_{config.distributed.process_id}")
        check_values(config)
        check_config(config)
        probe = async_runner.actor_env(config.env, config.seed, 0.0, 0, 0)
        try:
            build_agent(config, probe)     # the agent's own config errors, before any write
        finally:
            probe.close()
        check_saved_config(config, workdir, async_runner.EXTENDABLE)
    return async_runner.run(functools.partial(build_agent, config), config, workdir,
                            desc=f"daydreamer {config.runner.backend}", **kwargs)


__all__ = ["PRESETS", "build_agent", "train_and_evaluate"]
