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
        env_fn = lambda step: online.make_env(  # noqa: E731
            config.env, online.env_seed(config.seed, step))
        env = env_fn(0)
        agent = Dreamer(config, env.obs_space, env.act_space)
        env.close()
        check_saved_config(config, workdir, online.EXTENDABLE)
    eval_env_fn = lambda: online.make_env(config.env, config.seed + 10_000,  # noqa: E731
                                          num_envs=config.run.eval_episodes)
    return online.run(agent, env_fn, config, workdir, eval_env_fn=eval_env_fn, desc="dreamer",
                      show_keys=("episode/return", "eval/return", "model_loss"))
