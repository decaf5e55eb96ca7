"""Kill-and-resume is exact: a run killed at a random record and rerun in the same workdir logs
the same records, value for value, as the uninterrupted run (smoke presets, vector tasks).

A kill is an exception raised from the k-th `RunLogger.log` call (k drawn per binary), i.e. in
the middle of a segment between two checkpoints: the records logged after the last checkpoint
are on disk and must be dropped and logged again, identically."""
import importlib.util
import os
import random

import pytest

from experiments.configs import world_model as wm_configs
from jaxwm.agents.dreamer import train as dreamer_train
from jaxwm.agents.fowm import train as fowm_train
from jaxwm.agents.tdmpc import train as tdmpc_train
from jaxwm.runtime import logging as run_logging
from jaxwm.runtime import world_model_training
from jaxwm.runtime.logging import read_metrics

WALL_CLOCK = ("env_fps", "fps", "seconds")   # the only fields allowed to differ


class Killed(Exception):
    pass


def run_killed(train, config, workdir, monkeypatch, kill_at: int):
    """`train(config, workdir)` killed when it logs its `kill_at`-th record, then rerun."""
    log = run_logging.RunLogger.log
    calls = {"n": 0}

    def dying_log(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed
        return log(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(run_logging.RunLogger, "log", dying_log)
        with pytest.raises(Killed):
            train(config, workdir)
    train(config, workdir)
    return read_metrics(workdir)


def assert_same_records(resumed, uninterrupted):
    strip = lambda rs: [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rs]  # noqa
    assert strip(resumed) == strip(uninterrupted)


def test_world_model_resume_is_exact(tmp_path, monkeypatch):
    config = wm_configs.get_config("smoke")
    config.env.name = "CartpoleBalance-v1"
    config.train.env_steps, config.train.checkpoint_every = 240, 80
    config.num_devices = 1
    world_model_training.train(config, str(tmp_path / "a"))
    full = read_metrics(str(tmp_path / "a"))
    kill_at = random.Random(0).randrange(len(full) // 2, len(full) + 1)   # after a checkpoint
    resumed = run_killed(world_model_training.train, config, str(tmp_path / "b"), monkeypatch,
                         kill_at)
    assert_same_records(resumed, full)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "experiments", "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke")


def _check(train, config, tmp_path, monkeypatch, seed):
    train(config, str(tmp_path / "a"))
    full = read_metrics(str(tmp_path / "a"))
    kill_at = random.Random(seed).randrange(len(full) // 2, len(full) + 1)
    resumed = run_killed(train, config, str(tmp_path / "b"), monkeypatch, kill_at)
    assert_same_records(resumed, full)


def test_dreamer_resume_is_exact(tmp_path, monkeypatch):
    config = _load("dreamer")
    config.run.steps, config.run.checkpoint_every, config.run.eval_every = 100, 40, 40
    _check(dreamer_train.train_and_evaluate, config, tmp_path, monkeypatch, seed=1)


def test_tdmpc_resume_is_exact(tmp_path, monkeypatch):
    config = _load("tdmpc")
    config.run.env_steps, config.run.progress_bar = 120, False
    _check(tdmpc_train.train_and_evaluate, config, tmp_path, monkeypatch, seed=2)


# slow (~85 s cold): FOWM's online loop is TD-MPC's, whose exact resume is tested above
@pytest.mark.slow
def test_fowm_resume_is_exact(tmp_path, monkeypatch, fowm_smoke_dataset):
    config = _load("fowm")
    config.run.env_steps, config.run.progress_bar = 80, False
    config.dataset.path = fowm_smoke_dataset
    _check(fowm_train.train_and_evaluate, config, tmp_path, monkeypatch, seed=3)
