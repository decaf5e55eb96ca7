"""Zero-shot protocol end to end on the walker family (smoke sizes): reward heads on labelled
replay, task actor-critics in imagination, evaluation episodes; the env is used only to evaluate."""
import jax
import numpy as np
import pytest

from jaxwm.agents.plan2explore.config import get_config
from jaxwm.data import replay
from jaxwm.envs import make, tasks
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import zero_shot

ENV = dict(obs="vector", action_repeat=4, max_episode_steps=6)


@pytest.fixture(scope="module")
def labelled_replay():
    """20 random steps of 2 walker envs, labelled with stand / walk / run / flip."""
    env = make("dmc:walker_walk", 2, seed=0, **ENV)
    family = tasks.family_for_env("dmc:walker_walk", env)
    spec = replay.env_spec(env, [f"reward/{t}" for t in family.tasks])
    state = replay.init(spec, 32, 2)
    rng = np.random.default_rng(0)
    out = env.reset()
    out.update(family.label(out))
    for _ in range(20):
        action = rng.uniform(-1, 1, (2, 6)).astype(np.float32)
        state = replay.add(state, replay.env_row(spec, out, action))
        out = env.step(action)
        out.update(family.label(out))
    return env, family, state


def test_walker_zero_shot_smoke(labelled_replay):
    env, family, state = labelled_replay
    config = get_config("smoke")
    wm = WorldModel(config.model, env.obs_space, env.act_space)
    wm_params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    made = []

    def env_fn(n):
        made.append(n)
        return make("dmc:walker_walk", n, seed=1, **ENV)

    results = zero_shot.evaluate(config.zero_shot, wm, wm_params, state, family, env_fn,
                                 jax.random.PRNGKey(1))
    assert made == [4 * config.zero_shot.episodes]       # one env, for evaluation episodes only
    for task in family.tasks:
        # 6 agent steps x action repeat 4 x per-step reward in [0, 1]
        assert 0.0 <= results[f"zero_shot/{task}"] <= 24.0 + 1e-4
        assert np.isfinite(results[f"zero_shot_train/reward_loss/{task}"])
        assert np.isfinite(results[f"zero_shot_train/imag_return/{task}"])


def test_task_selection_and_missing_labels(labelled_replay):
    env, family, state = labelled_replay
    assert zero_shot.select_tasks("walk, flip", family) == ("walk", "flip")
    with pytest.raises(ValueError, match="zero_shot.tasks"):
        zero_shot.select_tasks("walk,backflip", family)
    config = get_config("smoke")
    wm = WorldModel(config.model, env.obs_space, env.act_space)
    bare = state.replace(data={k: v for k, v in state.data.items() if k != "reward/flip"})
    with pytest.raises(ValueError, match="flip"):
        zero_shot.evaluate(config.zero_shot, wm, None, bare, family, None, jax.random.PRNGKey(0))
