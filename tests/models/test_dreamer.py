"""Dreamer world model: smoke training on real Atari / DMC-state / MiniGrid data, sharding,
config errors, and the reconstruction learning check on Pong."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import world_model as wm_configs
from jaxwm import envs
from jaxwm.agents.dreamer.config import apply_preset, model_config
from jaxwm.data import replay
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import sharding, world_model_training
from jaxwm.runtime.logging import read_metrics

T, B = 8, 8


def collect(name, steps=24, num_envs=2, **overrides):
    """Random-policy data of a real env in a replay buffer."""
    env = envs.make(name, num_envs, seed=0, **overrides)
    spec = replay.env_spec(env)
    state = replay.init(spec, steps, num_envs)
    rng = np.random.default_rng(0)
    obs = env.reset()
    for _ in range(steps):
        action = world_model_training.random_actions(env.act_space, num_envs, rng)
        state = replay.add(state, replay.env_row(spec, obs, action))
        obs = env.step(action)
    env.close()
    return env, state


def smoke_model(env, **changes):
    c = apply_preset(model_config(), "smoke")
    c.update(changes)
    return WorldModel(c, env.obs_space, env.act_space)


@pytest.mark.parametrize("name, overrides", [   # images: the Pong reconstruction test below
    pytest.param("Pong-v5", {}, marks=pytest.mark.slow), ("CartpoleBalance-v1", {}),
    pytest.param("MiniGrid-FourRooms-v0", {}, marks=pytest.mark.slow)])
def test_smoke_train_steps_on_real_data(name, overrides):
    env, data = collect(name, **overrides)
    wm = smoke_model(env)
    state = jax.jit(wm.init_state)(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    batches = jax.tree.map(lambda *x: jnp.stack(x),
                           *[replay.sample(data, k, B, T) for k in keys])
    before = state.params
    state, metrics = jax.jit(wm.train_steps)(state, batches, jax.random.PRNGKey(2))
    assert int(state.step) == 2
    for k, v in metrics.items():
        assert np.isfinite(v), k
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), before, state.params)
    assert max(jax.tree.leaves(moved)) > 0
    expected = {"Pong-v5": "image_loss", "CartpoleBalance-v1": "vector_loss",
                "MiniGrid-FourRooms-v0": "image_loss"}[name]
    assert expected in metrics


def test_eight_device_mesh_matches_single_device():
    assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
    env, data = collect("CartpoleBalance-v1")
    wm = smoke_model(env, deter=16, hidden=16)
    params = jax.jit(wm.init)(jax.random.PRNGKey(0))
    batch = replay.sample(data, jax.random.PRNGKey(1), B, T)
    loss = jax.jit(lambda p, b: wm.loss(p, b, jax.random.PRNGKey(2))[0])
    mesh = sharding.make_mesh(8)
    sharded_batch = sharding.shard_batch(batch, mesh, axis=1)
    assert sharded_batch["vector"].sharding.spec[1] == sharding.DATA_AXIS
    single = loss(params, batch)
    multi = loss(sharding.replicate(params, mesh), sharded_batch)
    np.testing.assert_allclose(multi, single, rtol=1e-5)
    grads = jax.jit(jax.grad(lambda p, b: wm.loss(p, b, jax.random.PRNGKey(2))[0]))
    g1, g8 = grads(params, batch), grads(sharding.replicate(params, mesh), sharded_batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g1, g8)


@pytest.mark.parametrize("field, value, allowed", [
    ("latent", "bernoulli", "discrete"), ("reward_head", "mse", "twohot"),
    ("conv_lowering", "fft", "phase"), ("act", "swish2", "elu")])
def test_bad_model_config_names_field_and_allowed(field, value, allowed):
    env, _ = collect("Pong-v5", steps=2)
    with pytest.raises(ValueError, match=f"model.{field}={value!r}.*{allowed}"):
        smoke_model(env, **{field: value})


def test_bad_preset_and_env_name():
    with pytest.raises(ValueError, match=r"preset='huge'.*smoke"):
        wm_configs.get_config("huge")
    with pytest.raises(ValueError, match="Pong-v5"):
        envs.make("Pong-v4", 1)


def test_gaussian_and_v3_variants_train():
    env, data = collect("CartpoleBalance-v1")
    batch = replay.sample(data, jax.random.PRNGKey(1), B, T)
    for changes in ({"latent": "gaussian", "stoch": 6},
                    {"unimix": 0.01, "reward_head": "twohot", "kl_free": 1.0,
                     "kl_free_avg": False, "kl_scale": 0.6, "kl_balance": 5 / 6}):
        wm = smoke_model(env, **changes)
        state = jax.jit(wm.init_state)(jax.random.PRNGKey(0))
        state, metrics, posts = jax.jit(wm.train_step)(state, batch, jax.random.PRNGKey(2))
        assert np.isfinite(metrics["model_loss"])
        assert posts["deter"].shape == (T, B, wm.config.deter)


@pytest.mark.slow   # kept out of `make test` for time; `make test-slow` runs it
def test_pong_reconstruction_learns_and_run_resumes(tmp_path):
    """The binary's job on Pong-v5 random data: image loss falls well below its initial value
    within the smoke budget; a second call with a larger budget resumes from the checkpoint."""
    config = wm_configs.get_config("smoke")
    config.train.env_steps = 240
    config.num_devices = 2                  # data-parallel over 2 of the 8 simulated devices
    workdir = str(tmp_path / "pong")
    world_model_training.train(config, workdir)
    records = [r for r in read_metrics(workdir) if "image_loss" in r]
    first, last = records[0]["image_loss"], records[-1]["image_loss"]
    assert last < 0.5 * first, (first, last)
    config.train.env_steps = 280
    world_model_training.train(config, workdir)
    steps = [r["step"] for r in read_metrics(workdir)]
    assert steps == sorted(steps) and steps[-1] == 280   # resumed at 240, not from scratch
    assert (tmp_path / "pong" / "plots" / "metrics.png").exists()
    assert list((tmp_path / "pong" / "videos").glob("openloop_*.gif"))


@pytest.mark.slow   # three model compiles; test_rssm's hand rollout stays
def test_latent_overshooting_loss_is_the_average_over_distances():
    # PlaNet Eq. 7 with beta_d = beta: KL term = beta / D * (KL_1 + sum_{d=2..D} KL_d), where
    # KL_1 is the model's one-step term. D = 1 is the plain model loss, value and gradient.
    env, data = collect("CartpoleBalance-v1")
    batch = replay.sample(data, jax.random.PRNGKey(1), B, T)
    base = dict(latent="gaussian", stoch=6, kl_balancing=False, kl_scale=1.0, kl_free=0.0)
    plain = smoke_model(env, **base)
    params = jax.jit(plain.init)(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(2)
    loss_plain, (m_plain, _) = plain.loss(params, batch, key)
    one = smoke_model(env, overshooting=1, **base)
    np.testing.assert_allclose(one.loss(params, batch, key)[0], loss_plain, rtol=1e-6)
    three = smoke_model(env, overshooting=3, **base)
    loss3, (m3, _) = three.loss(params, batch, key)
    posts, priors = three.observe(params, batch, key)
    from jaxwm.models import rssm
    extra, by_distance = rssm.overshooting_kl(
        three.cell, three.cell_params(params), posts, priors,
        three.action_features(batch["action"]), batch["is_first"], 3,
        jax.random.fold_in(key, 1), 0.0)
    assert by_distance.shape == (3,)
    np.testing.assert_allclose(m3["kl_loss"], (m_plain["kl_loss"] + extra) / 3, rtol=1e-5)
    np.testing.assert_allclose(loss3 - m3["kl_loss"], loss_plain - m_plain["kl_loss"],
                               rtol=1e-5)
    grads = jax.grad(lambda p: three.loss(p, batch, key)[0])(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="model.overshooting"):
        smoke_model(env, overshooting=0)
