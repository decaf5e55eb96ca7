"""DayDreamer entry point: the agent of `config.agent` trained by `jaxwm.runtime.async_runner`."""
import functools

import ml_collections

from jaxwm.agents.daydreamer.config import PRESETS
from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.agents.tdmpc.agent import OnlineTDMPC
from jaxwm.runtime import async_runner
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
    async_runner.check_runner_config(config.runner)
    if config.agent == "tdmpc":
        tdmpc_config.planner_from(config)
        if config.runner.seq_len != config.model.horizon + 1:
            raise ValueError(f"runner.seq_len={config.runner.seq_len} must be model.horizon + 1 "
                             f"= {config.model.horizon + 1} for TD-MPC")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, **kwargs) -> dict:
    """Train (or resume) in `workdir`; kwargs go to `async_runner.run`. Returns its summary."""
    with user_errors():
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
