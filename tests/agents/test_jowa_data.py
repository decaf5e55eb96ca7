"""JOWA's mixed-quality MinAtar data (`jaxwm.agents.jowa.data`): PPO snapshots, their rollouts in
the offline-dataset format, the written files and the CLI mode, on tiny budgets."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxwm.agents.jowa import data
from jaxwm.data import datasets

GAME = "MinAtar-Breakout-v0"
# A tiny PPO (4 iterations of 8 envs x 16 steps) shared by the tests, so that it compiles once.
TINY = dict(num_envs=8, rollout=16, minibatches=2, epochs=1, hidden=(16, 16))
TINY_STEPS, STREAMS, PER_POLICY = 512, 4, 480       # collect: 120 rows x 4 streams per source


@pytest.fixture(scope="module")
def tiny_ppo():
    return data.train_ppo(GAME, TINY_STEPS, seed=0, chunks=4, **TINY)


@pytest.fixture(scope="module")
def collected(tiny_ppo):
    return data.collect(GAME, tiny_ppo.params, PER_POLICY, 0.05, seed=0, num_streams=STREAMS,
                        hidden=TINY["hidden"], labels=["p0", "p25", "p50", "p100"])


def parts(arrays, count):
    rows = PER_POLICY // STREAMS
    return [{k: v[i * rows:(i + 1) * rows] for k, v in arrays.items()} for i in range(count)]


def test_train_ppo_returns_snapshots_and_curve(tiny_ppo):
    t = tiny_ppo
    assert t.fractions == data.SNAPSHOTS and t.snapshot_steps == [0, 128, 256, 512]
    assert t.env_steps == 512 and len(t.curve) == 4 and t.steps_per_second > 0
    assert [c["env_steps"] for c in t.curve] == [128, 256, 384, 512]
    assert all(c["episodes"] > 0 and c["return"] >= 0 for c in t.curve)
    structure = jax.tree.structure(t.params[0])
    shapes = jax.tree.map(np.shape, t.params[0])
    for params in t.params:
        assert jax.tree.structure(params) == structure
        assert jax.tree.map(np.shape, params) == shapes
        assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(params))
    first, last = jax.tree.leaves(t.params[0]), jax.tree.leaves(t.params[-1])
    assert any(not np.array_equal(a, b) for a, b in zip(first, last))   # it was trained
    # the same settings and seed give the same run (the chunks are cached compiled programs)
    again = data.train_ppo(GAME, TINY_STEPS, seed=0, chunks=4, **TINY)
    assert again.curve == t.curve and again.compile_seconds < 1.0
    assert all(np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(again.params[-1]), jax.tree.leaves(t.params[-1])))


def test_collect_layout_rewards_and_random_actions(collected):
    arrays, report = collected
    t, n = datasets.validate(arrays)
    assert (t, n) == (5 * PER_POLICY // STREAMS, STREAMS)       # 4 snapshots + random, chained
    assert arrays["vector"].shape[-1] == 10 * 10 * 4 and set(np.unique(arrays["vector"])) <= {0, 1}
    action = arrays["action"]
    assert action.shape[-1] == data.NUM_ACTIONS
    assert set(np.unique(action)) == {0.0, 1.0} and (action.sum(-1) == 1).all()
    assert [s["label"] for s in report["sources"]] == ["p0", "p25", "p50", "p100", "random"]
    assert [s["epsilon"] for s in report["sources"]] == [0.05] * 4 + [1.0]
    assert arrays["reward"].sum() > 0
    for part, source in zip(parts(arrays, 5), report["sources"]):
        first, last = part["is_first"], part["is_last"]
        assert first[0].all()                              # every source starts fresh episodes
        np.testing.assert_array_equal(first[1:], last[:-1])  # Dreamer autoreset
        assert (part["reward"][first] == 0).all()
        assert not (part["is_terminal"] & ~last).any()
        # the rewards of each completed episode sum to the env's 'score' (the report's returns)
        returns = datasets.episode_returns(part)
        assert len(returns) == source["episodes"] > 0
        assert returns.mean() == pytest.approx(source["return"])
    assert report["random_return"] == report["sources"][-1]["return"]
    assert report["agent_return"] == report["sources"][-2]["return"]
    counts = np.bincount(parts(arrays, 5)[-1]["action"].argmax(-1).ravel(), minlength=6)
    assert np.all(np.abs(counts / counts.sum() - 1 / 6) < 0.06), counts   # 480 uniform draws


def test_write_datasets_round_trip(tmp_path, collected):
    out = str(tmp_path / "jowa")
    written = data.write_datasets([GAME], out, TINY_STEPS, PER_POLICY, seed=0,
                                  num_streams=STREAMS, chunks=4, **TINY)
    arrays, meta = datasets.load(os.path.join(out, GAME, "mixed.npz"), env=GAME, obs_size=400,
                                 action_size=6)
    for k, v in collected[0].items():    # the same PPO run and collect seed as the fixtures
        np.testing.assert_array_equal(arrays[k], v, err_msg=k)
    assert meta["env"] == GAME and meta["kind"] == "mixed"
    assert meta["env_options"]["sticky"] == 0.1
    assert [s["label"] for s in meta["sources"]] == ["ppo@0", "ppo@128", "ppo@256", "ppo@512",
                                                     "random"]
    assert meta["sources"][-1]["policy"] == "uniform random"
    assert meta["ppo"]["env_steps"] == 512 and len(meta["learning_curve"]) == 4
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    entry = summary[GAME]
    assert entry == json.loads(json.dumps(written[GAME]))
    assert entry["steps"] == 5 * PER_POLICY and entry["streams"] == STREAMS
    assert entry["random_return"] == meta["random_return"] is not None
    assert entry["agent_return"] == meta["agent_return"] is not None
    assert entry["seconds"] > 0 and entry["ppo_env_steps"] == 512
    # another game's summary is merged in, not overwritten
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump({"MinAtar-Freeway-v0": {"steps": 1}, GAME: {}}, fh)
    data._merge_summary(out, {GAME: entry})
    with open(os.path.join(out, "summary.json")) as fh:
        assert json.load(fh) == {"MinAtar-Freeway-v0": {"steps": 1}, GAME: entry}


@pytest.mark.slow
def test_ppo_improves_breakout():
    """~60k env steps of a small PPO lift Breakout's return clearly above its start and the
    final snapshot beats random (measured over seeds 0-4: 0.7-0.9 in the first chunk, 3.1-3.5 in
    the last; the final snapshot, epsilon 0, ~3.3 against random's 0.7)."""
    trained = data.train_ppo(GAME, 61_440, seed=0, num_envs=32, rollout=64, minibatches=4,
                             hidden=(64, 64), lr=2e-3, chunks=3, snapshots=(1.0,))
    first, last = trained.curve[0]["return"], trained.curve[-1]["return"]
    assert first < 1.2 and last > first + 1.5, trained.curve
    _, report = data.collect(GAME, trained.params, 2048, 0.0, seed=0, num_streams=16,
                             hidden=(64, 64))
    assert report["agent_return"] > report["random_return"] + 1.5, report


def test_unknown_game_and_bad_values_are_named(tmp_path):
    allowed = r"\['MinAtar-Breakout-v0', 'MinAtar-SpaceInvaders-v0', 'MinAtar-Freeway-v0', " \
              r"'MinAtar-Asterix-v0'\]"
    for call in (lambda: data.train_ppo("MinAtar-Pong-v0", 100),
                 lambda: data.collect("Breakout", [{}], 100),
                 lambda: data.write_datasets([GAME, "Pong"], str(tmp_path / "x"), 100, 100)):
        with pytest.raises(ValueError, match=rf"game=.* is not one of {allowed}"):
            call()
    assert not os.path.exists(tmp_path / "x")            # checked before anything is trained
    with pytest.raises(ValueError, match="epsilon=1.5 must be a probability"):
        data.write_datasets([GAME], str(tmp_path / "x"), 100, 100, epsilon=1.5)
    with pytest.raises(ValueError, match=r"unknown PPO field\(s\) \['lr_'\]"):
        data.train_ppo(GAME, 100, lr_=1.0)
    with pytest.raises(ValueError, match="minibatches=3 must divide"):
        data.train_ppo(GAME, 100, minibatches=3)
    with pytest.raises(ValueError, match="steps_per_policy=7 must be an int >= 16"):
        data.collect(GAME, [{}], 7)
    with pytest.raises(ValueError, match=r"snapshots=\(0.5, 2\) must be fractions"):
        data.train_ppo(GAME, 100, snapshots=(0.5, 2))


def test_cli_rejects_an_unknown_game(tmp_path):
    out = str(tmp_path / "cli")
    proc = subprocess.run([sys.executable, "experiments/make_dataset.py",
                           "--jowa_games=MinAtar-Breakout-v0,MinAtar-Pong-v0", f"--out_dir={out}"],
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 2, proc.stderr
    assert "error: game='MinAtar-Pong-v0' is not one of ['MinAtar-Breakout-v0'" in proc.stderr
    assert not os.path.exists(out)
