"""Plan2Explore online training entry point, with zero-shot evaluation on a task family."""
import jax
import ml_collections

from jaxwm.agents.plan2explore.agent import Plan2Explore
from jaxwm.envs import tasks as task_lib
from jaxwm.runtime import online, zero_shot


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Explore reward-free (or resume) in `workdir`. If the env has a task family
    (`jaxwm.envs.tasks.family_for_env`), replay steps are labelled with all its rewards and the
    zero-shot protocol runs at the end of training. Returns the run summary (`online.run`)."""
    env_fn, (family, agent) = online.prepare(config, workdir, lambda env: (
        task_lib.family_for_env(config.env.name, env),
        Plan2Explore(config, env.obs_space, env.act_space)))
    eval_env_fn = lambda n: online.make_env(config.env, config.seed + 10_000,  # noqa: E731
                                            num_envs=n)

    def on_end(state, replay_state, logger, step):
        if family is None:
            return {}
        logger.write("zero-shot evaluation: reward heads, task actor-critics in imagination, "
                     "episodes in the real env")
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
        return zero_shot.evaluate(config.zero_shot, agent.wm, state.wm.params, replay_state,
                                  family, eval_env_fn, key, logger, step)

    periodic = [(config.zero_shot.every, on_end)] if family is not None else []
    return online.run(agent, env_fn, config, workdir, labeler=family, on_end=on_end,
                      periodic=periodic,
                      eval_env_fn=lambda: eval_env_fn(config.run.eval_episodes),
                      desc="plan2explore",
                      show_keys=("episode/return", "coverage/cells", "disag_loss"))
