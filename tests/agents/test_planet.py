"""PlaNet end to end: the smoke preset (with latent overshooting) trains, logs, checkpoints and
resumes; the acting carry and modes; config errors leave the workdir empty; (slow) the cpu
preset beats a random policy on CartpoleSwingup."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.agents.planet.agent import PlaNet
from jaxwm.agents.planet.config import get_config
from jaxwm.agents.planet.train import train_and_evaluate
from jaxwm.runtime import online
from jaxwm.runtime.logging import read_metrics


def test_smoke_trains_logs_checkpoints_and_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    config = get_config("smoke")
    summary = train_and_evaluate(config, workdir)
    assert summary["env_steps"] == 60 and summary["train_calls"] >= 2
    for key in ("model_loss", "overshooting_kl", "eval/return", "episode/return"):
        assert np.isfinite(summary[key]), key
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["40", "60"]
    config.run.steps = 80
    assert train_and_evaluate(config, workdir)["env_steps"] == 80
    steps = [r["step"] for r in read_metrics(workdir)]
    assert steps == sorted(steps) and steps[-1] == 80


@pytest.mark.slow   # CEM acting compiles; the smoke run acts too
def test_act_carries_the_plan_and_modes():
    config = get_config("smoke")
    env = online.make_env(config.env, 0)
    agent = PlaNet(config, env.obs_space, env.act_space)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    carry = agent.initial_carry(env.num_envs)
    out = env.reset()
    obs = online.policy_inputs(env, out)
    env.close()
    act = jax.jit(agent.act)
    key = jax.random.PRNGKey(1)
    explore, carry_e = act(state, carry, obs, key, jnp.int32(0))
    greedy, carry_g = act(state, carry, obs, key, jnp.int32(1))
    uniform, _ = act(state, carry, obs, key, jnp.int32(2))
    h, a = config.planner.horizon, env.act_space.size
    assert carry_g["plan"].shape == (env.num_envs, h, a)
    # eval executes the first step of the CEM mean; explore adds N(0, 0.3^2) noise to it only
    np.testing.assert_allclose(greedy, np.clip(carry_g["plan"][:, 0], -1, 1), atol=1e-6)
    np.testing.assert_allclose(carry_e["plan"], carry_g["plan"], atol=1e-6)
    assert not np.allclose(explore, greedy)
    assert np.all(np.abs(np.asarray(uniform)) <= 1.0) and not np.allclose(uniform, greedy)
    np.testing.assert_allclose(carry_g["action"], greedy)


@pytest.mark.parametrize("field,value,match", [
    (("model", "latent"), "discrete", "model.latent"),
    (("planner", "num_elites"), 999, "planner.num_elites"),
    (("env", "name"), "MiniGrid-Empty-5x5-v0", "env.name")])
def test_bad_config_names_the_field_and_writes_nothing(tmp_path, field, value, match):
    config = get_config("smoke")
    config[field[0]][field[1]] = value
    if field == ("env", "name"):          # a discrete-action env (without DMC's options)
        del config.env.overrides["action_repeat"]
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(workdir))
    assert not workdir.exists() or not os.listdir(workdir)


@pytest.mark.slow
def test_cpu_preset_beats_random_on_cartpole_swingup(tmp_path):
    config = get_config("cpu")
    learned = train_and_evaluate(config, str(tmp_path / "planet"))
    config = get_config("cpu")
    config.run.policy = "random"
    random = train_and_evaluate(config, str(tmp_path / "random"))
    assert learned["eval/return"] > random["eval/return"] + 100


def test_paper_preset_holds_planets_published_settings():
    c = get_config("paper")
    p, m, r = c.planner, c.model, c.run
    assert (p.horizon, p.num_candidates, p.num_elites, p.iterations, p.explore_noise) == (
        12, 1000, 100, 10, 0.3)
    assert (m.latent, m.deter, m.stoch, m.min_std, m.overshooting) == ("gaussian", 200, 30, 0.1,
                                                                       50)
    assert (m.kl_balancing, m.kl_scale, m.kl_free) == (False, 1.0, 3.0)
    assert (m.lr, m.eps, m.clip) == (1e-3, 1e-4, 1000.0)
    # 5 seed episodes of 500 agent steps, then C = 100 gradient steps per 500-step episode
    assert (r.batch_size, r.seq_len, r.prefill, r.train_every) == (50, 50, 2500, 5)
    assert c.env.overrides.action_repeat == 2
