"""Dreamer end to end: the smoke preset trains, logs, checkpoints and resumes; config errors;
(slow) the cpu preset beats a random policy on CartpoleBalance."""
import json
import os

import numpy as np
import pytest

from jaxwm.agents.dreamer.config import get_config
from jaxwm.agents.dreamer.train import train_and_evaluate
from jaxwm.runtime.logging import read_metrics


def test_smoke_trains_logs_checkpoints_and_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    config = get_config("smoke")
    summary = train_and_evaluate(config, workdir)
    assert summary["env_steps"] == 60 and summary["train_calls"] >= 2
    for key in ("model_loss", "actor_loss", "critic_loss", "eval/return", "episode/return"):
        assert np.isfinite(summary[key]), key
    assert json.load(open(os.path.join(workdir, "config.json")))["preset"] == "smoke"
    assert os.listdir(os.path.join(workdir, "tb"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["40", "60"]
    assert os.listdir(os.path.join(workdir, "plots"))
    # vector observations: real vs open-loop imagined values as a PNG
    assert os.path.exists(os.path.join(workdir, "videos", "openloop_60.png"))
    # Resume with a larger budget: continues from the checkpoint at step 60.
    config.run.steps = 80
    summary = train_and_evaluate(config, workdir)
    assert summary["env_steps"] == 80
    steps = [r["step"] for r in read_metrics(workdir)]
    assert steps == sorted(steps) and steps[-1] == 80 and 40 <= min(
        s for s in steps if s > 60) <= 80


@pytest.mark.parametrize("block,field,value", [
    ("run", "policy", "greedy"), ("run", "train_every", 0), ("behavior", "actor_grad", "ppo"),
    ("behavior", "return_norm", "max")])
def test_bad_config_value_names_the_field(tmp_path, block, field, value):
    config = get_config("smoke")
    config[block][field] = value
    with pytest.raises(ValueError, match=f"{block}.{field}"):
        train_and_evaluate(config, str(tmp_path))


def test_bad_preset():
    with pytest.raises(ValueError, match="preset"):
        get_config("huge")


@pytest.mark.slow
def test_cpu_preset_beats_random_on_cartpole_balance(tmp_path):
    """~10 min on 2 free cores. Measured with the binary (seed 0): eval return (5 episodes, mode
    policy) 764 vs 312 random; mean of the last 10 training episodes 793 vs 362 random."""
    config = get_config("cpu")
    learned = train_and_evaluate(config, str(tmp_path / "dreamer"))
    config = get_config("cpu")
    config.run.policy = "random"
    random = train_and_evaluate(config, str(tmp_path / "random"))
    assert learned["eval/return"] > random["eval/return"] + 200
    assert learned["return_last10"] > random["return_last10"] + 200
