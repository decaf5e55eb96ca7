"""TD-MPC end to end: the smoke preset trains, logs, plots, checkpoints and resumes; TD-MPC2 variant
steps; offline datasets from a run; config errors name the field; (slow) the cpu preset beats a
random policy on CartpoleBalance."""
import json
import os

import jax
import numpy as np
import pytest

from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.agents.tdmpc import offline_data
from jaxwm.agents.tdmpc.agent import Agent
from jaxwm.agents.tdmpc.train import train_and_evaluate
from jaxwm.data import datasets, replay
from jaxwm.runtime.logging import read_metrics


def smoke_config(preset="smoke"):
    config = tdmpc_config.get_config(preset)
    config.run.progress_bar = False
    return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One finished smoke run shared by the tests below (and the dataset fixture)."""
    workdir = str(tmp_path_factory.mktemp("tdmpc") / "run")
    config = smoke_config()
    return config, workdir, train_and_evaluate(config, workdir)


def test_smoke_trains_logs_plots_and_checkpoints(smoke_run):
    config, workdir, summary = smoke_run
    assert summary["env_steps"] == 80
    assert np.isfinite(summary["eval_return"]) and np.isfinite(summary["random_return"])
    assert json.load(open(os.path.join(workdir, "config.json")))["preset"] == "smoke"
    records = read_metrics(workdir)
    losses = [r["train/model_loss"] for r in records if "train/model_loss" in r]
    assert losses and all(np.isfinite(losses))
    assert [r["step"] for r in records if "eval/return" in r] == [40, 80]
    # Smoke's horizon schedule over 40 steps: logged at steps 16, 32, 48, 64, 80.
    assert [r["train/planning_horizon"] for r in records if "train/planning_horizon" in r] == \
        [2, 4, 5, 5, 5]
    assert os.listdir(os.path.join(workdir, "tb"))
    assert os.path.getsize(os.path.join(workdir, "plots", "return.png")) > 0
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["40", "80"]


def test_smoke_run_replays_by_priority(smoke_run):
    """The smoke preset keeps TD-MPC's prioritized replay: its checkpoint holds the sum tree,
    whose priorities moved from the initial 1 to the TD errors, over exactly the valid starts."""
    from jaxwm.agents.tdmpc import train as tdmpc_train
    from jaxwm.runtime.checkpoint import Checkpointer
    config, workdir, _ = smoke_run
    assert config.run.per and not tdmpc_config.get_config("cpu").run.per
    agent = Agent(config, obs_size=5, action_size=1)
    rstate = replay.init(agent.replay_spec(), config.run.replay_capacity // config.env.num_envs,
                         config.env.num_envs)
    target = tdmpc_train.checkpoint_tree(jax.jit(agent.init)(jax.random.key(0)), rstate,
                                         (agent.priorities(rstate),))
    with Checkpointer(os.path.join(workdir, "checkpoints"), None) as ckpt:
        tree, _ = ckpt.restore(80, target)
    pstate, rstate = tree["priorities"][0], tree["replay"]
    assert float(pstate.max_priority) > 1.0
    leaves = np.asarray(pstate.tree)[0, pstate.tree.shape[1] // 2:]
    valid = config.env.num_envs * (int(rstate.count) - config.model.horizon)
    assert np.count_nonzero(leaves) == valid
    assert len(np.unique(leaves[leaves > 0])) > 2


@pytest.fixture(scope="module")
def dataset_dir(smoke_run, tmp_path_factory):
    """Datasets of every kind from the finished smoke run (stage 80 is already trained)."""
    config, workdir, _ = smoke_run
    out = str(tmp_path_factory.mktemp("datasets"))
    written = offline_data.make_datasets(config, workdir, out, [80], random_steps=16,
                                         medium_steps=16, log=lambda *_: None)
    return out, written


def test_make_datasets_writes_valid_files(smoke_run, dataset_dir):
    config, _, _ = smoke_run
    out, written = dataset_dir
    for kind in offline_data.KINDS:
        arrays, meta = datasets.load(os.path.join(out, f"{kind}.npz"), env=config.env.name,
                                     env_options=dict(config.env.overrides))
        assert meta["kind"] == kind and meta["num_streams"] == config.env.num_envs
    # medium_replay is the run's whole replay (80 steps over 2 envs: 40 rows per stream).
    assert written["medium_replay"]["steps"] == 80
    assert written["mixed"]["steps"] == sum(written[k]["steps"] for k in
                                            ("random", "medium", "medium_replay"))


def test_resume_continues_with_a_larger_budget(smoke_run, tmp_path):
    config, workdir, _ = smoke_run
    config = smoke_config()
    config.run.env_steps = 96
    summary = train_and_evaluate(config, workdir)
    steps = [r["step"] for r in read_metrics(workdir) if "eval/return" in r]
    assert summary["env_steps"] == 96 and steps == [40, 80, 96]
    assert "96" in os.listdir(os.path.join(workdir, "checkpoints"))


@pytest.mark.slow   # kept out of `make test` for time; `make test-slow` runs it
def test_tdmpc2_variant_trains_and_plans():
    config = smoke_config("smoke_v2")
    agent = Agent(config, obs_size=5, action_size=1)
    state = jax.jit(agent.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    buffer = replay.init(agent.replay_spec(), 16, 2)
    add = jax.jit(replay.add, donate_argnums=0)
    for t in range(16):
        buffer = add(buffer, {"vector": rng.standard_normal((2, 5)).astype(np.float32),
                              "action": rng.uniform(-1, 1, (2, 1)).astype(np.float32),
                              "reward": rng.uniform(0, 1, 2).astype(np.float32),
                              "is_first": np.full(2, t == 0), "is_last": np.zeros(2, bool),
                              "is_terminal": np.zeros(2, bool)})
    train = jax.jit(agent.train_steps, static_argnames=("num_steps", "sizes"))
    state, metrics, _ = train(state, (buffer,), jax.random.key(1), 2)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(state.model.step) == 2 and float(state.q_scale) != 1.0  # running Q scale moved
    action, plan, _ = agent.jit_act(state, np.zeros((2, 5), np.float32), agent.initial_plan(2),
                                    np.ones(2, bool), jax.random.key(2), True)
    assert action.shape == (2, 1) and plan.shape == (2, config.model.horizon, 1)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)


@pytest.mark.parametrize("block,field,value,match", [
    ("planner", "num_elites", 1000, "planner.num_elites=1000 must be <= num_samples"),
    ("planner", "value_aggregation", "max", "planner.value_aggregation='max'"),
    ("run", "batch_size", 0, "run.batch_size=0: must be an integer >= 1"),
    ("model", "head", "gauss", "model.head='gauss' is not one of"),
    ("env", "name", "CartpoleBalance-v9", "Unknown environment name 'CartpoleBalance-v9'"),
    ("env", "name", "Pong-v5", "env.name='Pong-v5': TD-MPC needs 'vector' observations"),
])
def test_bad_config_value_names_the_field(tmp_path, block, field, value, match):
    config = smoke_config()
    config[block][field] = value
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(tmp_path))


def test_exploration_std_schedule():
    # TD-MPC paper: linear(0.5, 0.05, 25000): halfway 0.5 + 0.5 * (0.05 - 0.5) = 0.275.
    paper = tdmpc_config.get_config("paper")
    stds = [tdmpc_config.exploration_std(paper, s) for s in (0, 12_500, 25_000, 90_000)]
    np.testing.assert_allclose(stds, [0.5, 0.275, 0.05, 0.05], rtol=1e-12)
    for preset in ("paper_v2", "cpu"):  # no schedule: the fixed floor
        config = tdmpc_config.get_config(preset)
        assert tdmpc_config.exploration_std(config, 0) == config.planner.min_std


def test_planning_horizon_schedule():
    """TD-MPC's linear(1, 5, 25000), floored: 1 at 0, 2 from 6250, 3 from 12500, 5 from 25000;
    TD-MPC2 and the cpu presets plan at the full horizon."""
    c = tdmpc_config.get_config("paper")
    assert [tdmpc_config.planning_horizon(c, s) for s in (0, 6249, 6250, 12500, 24999, 25000, 10**6)] \
        == [1, 1, 2, 3, 4, 5, 5]
    for preset, horizon in (("paper_v2", 3), ("cpu", 5)):
        c = tdmpc_config.get_config(preset)
        assert tdmpc_config.planning_horizon(c, 0) == horizon


def test_bad_preset():
    with pytest.raises(ValueError, match=r"preset='huge' is not one of \('smoke'"):
        tdmpc_config.get_config("huge")


@pytest.mark.slow
def test_cpu_preset_beats_random_on_cartpole_balance(tmp_path):
    """~2-4 min on 2 shared cores (measured: eval return 994 vs random 248)."""
    summary = train_and_evaluate(tdmpc_config.get_config("cpu"), str(tmp_path / "tdmpc"))
    assert summary["eval_return"] > summary["random_return"] + 400
