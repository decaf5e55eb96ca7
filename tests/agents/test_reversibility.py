"""RAE and RAC end to end on their smoke presets: outputs, exact resume, the workdir contract."""
import json
import os

import pytest

from jaxwm.agents.reversibility import config as rev_config
from jaxwm.agents.reversibility.train import train_and_evaluate
from jaxwm.runtime.workdir import UserError


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _config(mode, **fields):
    c = rev_config.get_config("smoke")
    c.mode = mode
    for path, value in fields.items():
        block, name = path.split(".")
        c[block][name] = value
    return c


def test_rae_smoke_runs_and_resumes_exactly(tmp_path):
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    summary = train_and_evaluate(_config("rae"), whole)
    for key in ("episode/irreversible", "episode/success", "psi/eval_precision",
                "psi/eval_recall", "psi_loss"):
        assert key in summary
    assert os.path.exists(os.path.join(whole, "plots", "metrics.png"))
    # half the iterations, then extended to all of them in the same workdir: same records
    train_and_evaluate(_config("rae", **{"rae.iterations": 2}), split)
    train_and_evaluate(_config("rae"), split)
    whole_records = [r for r in _records(whole) if "psi_loss" in r]
    split_records = [r for r in _records(split) if "psi_loss" in r]
    assert [r["step"] for r in split_records] == [r["step"] for r in whole_records]
    assert split_records == whole_records
    with pytest.raises(UserError, match="rae.penalty"):
        train_and_evaluate(_config("rae", **{"rae.penalty": 0.5}), whole)


def test_rac_smoke_runs_and_a_rerun_logs_nothing_twice(tmp_path):
    workdir = str(tmp_path / "rac")
    summary = train_and_evaluate(_config("rac"), workdir)
    assert {"eval/return", "eval/falls", "train/falls", "train/episodes"} <= set(summary)
    assert summary["train/falls"] <= summary["train/episodes"]
    records = _records(workdir)
    assert "offline/psi_loss" in records[0] and "offline/phi_loss" in records[0]
    train_and_evaluate(_config("rac"), workdir)          # finished: resumes at the end
    again = _records(workdir)
    assert len(again) == len(records)
    assert [r["step"] for r in again] == [r["step"] for r in records]


@pytest.mark.parametrize("mode, fields, message", [
    ("planning", {}, "mode='planning' is not one of"),
    ("rae", {"rae.env": "Turf-v1"}, r"rae.env='Turf-v1' is not one of \['Sokoban-v0', 'Turf-v0'\]"),
    ("rae", {"rae.penalty": -1.0}, r"rae.penalty=-1.0: must be >= 0"),
    ("rac", {"rac.beta": 1.5}, r"rac.beta=1.5: must be in \[0.0, 1.0\]"),
    ("rac", {"rac.env": "Pong-v5"}, "RAC needs discrete actions and vector observations"),
])
def test_bad_values_name_the_field_and_write_nothing(tmp_path, mode, fields, message):
    with pytest.raises(UserError, match=message):
        train_and_evaluate(_config(mode, **fields), str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")


def test_bad_turf_option_names_the_option(tmp_path):
    c = _config("rae")
    c.rae.turf.height = 2
    with pytest.raises(UserError, match="override height=2 is invalid; allowed: an int >= 3"):
        train_and_evaluate(c, str(tmp_path / "bad"))


@pytest.mark.slow   # a Dreamer compile (~30 s)
def test_dreamer_rae_switch_trains_psi_on_latents_and_shapes_imagined_rewards():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxwm.agents.dreamer.agent import Dreamer
    from jaxwm.agents.dreamer.config import get_config
    from jaxwm.behaviors.actor_critic import Trajectory, feat_size
    from jaxwm.data import replay
    from tests.models.test_dreamer import collect

    env, data = collect("Turf-v0")
    plain = Dreamer(get_config("smoke"), env.obs_space, env.act_space)
    assert plain.init(jax.random.PRNGKey(0)).psi is None     # penalty 0: no psi at all
    config = get_config("smoke")
    config.reversibility.penalty = 2.0
    agent = Dreamer(config, env.obs_space, env.act_space)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    batch = replay.sample(data, jax.random.PRNGKey(1), 4, 8)
    new, metrics = jax.jit(agent.train_step)(state, batch, jax.random.PRNGKey(2))
    assert np.isfinite(metrics["psi_loss"]) and int(new.psi.step) == 1
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.psi.params, new.psi.params)
    assert any(jax.tree.leaves(changed))
    # the shaped imagined reward is r - w * max(sigmoid(psi(f_t, f_t+1)) - beta, 0)
    feat = jax.random.normal(jax.random.PRNGKey(3), (4, 5, feat_size(config.model)))
    traj = Trajectory(states=None, feat=feat, actions=jnp.zeros((3, 5, 4)))
    sharp = jax.tree.map(lambda x: 3.0 * x, new.psi.params)   # confident psi: p near 0 or 1
    shaped = agent._rae_reward(lambda traj: jnp.ones((3, 5)), sharp)(traj)
    p = np.asarray(jax.nn.sigmoid(agent.psi.apply(sharp, feat[:-1], feat[1:])))
    assert (p > 0.7).any() and (p < 0.7).any()
    np.testing.assert_allclose(shaped, 1.0 - 2.0 * np.maximum(p - 0.7, 0.0), rtol=1e-6)


def test_paper_preset_holds_the_authors_settings():
    c = rev_config.get_config("paper")
    rev_config.check_config(c)
    p, e, q = c.precedence, c.rae, c.rac
    assert (p.beta, p.lr, p.window, p.batch_size) == (0.7, 1e-2, 100, 128)
    assert (e.env, e.turf.height, e.turf.width, e.turf.max_episode_steps) == (
        "Turf-v0", 10, 10, 120)
    assert (e.penalty, e.lr, e.epochs, e.entropy_coef, e.clip_eps) == (0.1, 3e-4, 10, 0.05, 0.2)
    # PPO minibatches of 64 from 2048-step rollouts, 5M env steps
    assert e.num_envs * e.rollout // e.minibatches == 64
    assert e.iterations * e.num_envs * e.rollout == 4_997_120
    assert (q.env, q.random_steps, q.phi_updates, q.beta) == ("CartPole-v0", 5_000, 100_000, 0.7)
