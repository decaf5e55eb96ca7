"""PlaNet online training entry point: build env and agent from a config, run the loop."""
import ml_collections

from jaxwm.agents.planet.agent import PlaNet
from jaxwm.agents.planet.config import check_config
from jaxwm.runtime import online


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or resume) PlaNet in `workdir`; returns the run summary (see `online.run`)."""
    def build(env):
        check_config(config)
        return PlaNet(config, env.obs_space, env.act_space)

    env_fn, agent = online.prepare(config, workdir, build)
    eval_env_fn = lambda: online.make_env(config.env, config.seed + 10_000,  # noqa: E731
                                          num_envs=config.run.eval_episodes)
    return online.run(agent, env_fn, config, workdir, eval_env_fn=eval_env_fn, desc="planet",
                      show_keys=("episode/return", "eval/return", "model_loss"))
