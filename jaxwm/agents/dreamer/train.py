"""Dreamer online training entry point: build env and agent from a config, run the loop."""
import ml_collections

from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.agents.dreamer.config import reversibility_config
from jaxwm.runtime import online

# Blocks added after runs were saved (their defaults = how those runs behaved).
ADDED_BLOCKS = {"reversibility": reversibility_config().to_dict()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or resume) Dreamer in `workdir`; returns the run summary (see `online.run`)."""
    env_fn, agent = online.prepare(
        config, workdir, lambda env: Dreamer(config, env.obs_space, env.act_space),
        ADDED_BLOCKS)
    eval_env_fn = lambda: online.make_env(config.env, config.seed + 10_000,  # noqa: E731
                                          num_envs=config.run.eval_episodes)
    return online.run(agent, env_fn, config, workdir, eval_env_fn=eval_env_fn, desc="dreamer",
                      show_keys=("episode/return", "eval/return", "model_loss"))
