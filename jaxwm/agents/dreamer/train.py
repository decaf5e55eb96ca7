"""Dreamer online training entry point: build env and agent from a config, run the loop."""
import ml_collections

from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.runtime import online
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or resume) Dreamer in `workdir`; returns the run summary (see `online.run`)."""
    with user_errors():   # nothing is written before the config is known to be valid
        check_values(config)
        online.check_run_config(config.run)
        env = online.make_env(config.env, config.seed)
        agent = Dreamer(config, env.obs_space, env.act_space)
        check_saved_config(config, workdir, online.EXTENDABLE)
    eval_env_fn = lambda: online.make_env(config.env, config.seed + 10_000,  # noqa: E731
                                          num_envs=config.run.eval_episodes)
    try:
        return online.run(agent, env, config, workdir, eval_env_fn=eval_env_fn, desc="dreamer",
                          show_keys=("episode/return", "eval/return", "model_loss"))
    finally:
        env.close()
