"""FOWM end to end: offline phase then balanced online finetuning on a small dataset (smoke), the
dataset is checked against the env, config errors name the field; (slow) on CartpoleSwingup the
finetuned policy beats the offline-only one."""
import os

import numpy as np
import pytest

from jaxwm.agents.fowm import config as fowm_config
from jaxwm.agents.fowm.train import summary_numbers, train_and_evaluate
from jaxwm.runtime.logging import read_metrics
from jaxwm.runtime.workdir import UserError


def smoke_config(path):
    config = fowm_config.get_config("smoke")
    config.run.progress_bar = False
    config.dataset.path = path
    return config


@pytest.fixture
def dataset_path(fowm_smoke_dataset):
    return fowm_smoke_dataset


def test_smoke_offline_then_online(dataset_path, tmp_path):
    workdir = str(tmp_path / "run")
    summary = train_and_evaluate(smoke_config(dataset_path), workdir)
    for key in ("offline_return", "finetuned_return", "random_return", "dataset_return"):
        assert np.isfinite(summary[key]), key
    records = read_metrics(workdir)
    assert [r["step"] for r in records if "offline/eval_return" in r] == [4, 8]
    assert any(np.isfinite(r["offline/v_loss"]) for r in records if "offline/v_loss" in r)
    awr = [r["train/awr_weight"] for r in records if "train/awr_weight" in r]
    assert awr and all(0 < w <= 100 for w in awr)  # clamped AWR weights in the online phase
    numbers = summary_numbers(workdir)
    assert numbers["offline_return"] == summary["offline_return"]
    assert [s for s, _ in numbers["online_curve"]] == [0, 40]  # offline-only score at step 0
    # Offline checkpoints by gradient step (8), online ones at offline.steps + env steps (8 + 40).
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [8, 48]
    assert os.path.getsize(os.path.join(workdir, "plots", "return.png")) > 0
    # Resuming a finished run trains nothing and reports the same numbers.
    again = train_and_evaluate(smoke_config(dataset_path), workdir)
    assert again["offline_return"] == summary["offline_return"]
    assert again["finetuned_return"] == summary["finetuned_return"]


def test_dataset_must_match_the_env(dataset_path, tmp_path):
    # dataset errors are user errors (one line, exit 2 from the binary), before any write
    config = smoke_config(dataset_path)
    config.env.overrides.action_repeat = 2
    with pytest.raises(UserError, match="env option action_repeat=4 does not match"):
        train_and_evaluate(config, str(tmp_path))
    config = smoke_config(str(tmp_path / "missing.npz"))
    with pytest.raises(UserError, match="does not exist; generate one with"):
        train_and_evaluate(config, str(tmp_path))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("block,field,value,match", [
    ("dataset", "offline_fraction", 1.0, r"dataset.offline_fraction=1.0 must be in \[0, 1\)"),
    ("dataset", "path", "data.h5", "dataset.path='data.h5' must name an .npz"),
    ("model", "policy_objective", "max_q", "FOWM needs 'iql' / 'awr'"),
    ("offline", "updates_per_call", 0, "offline.updates_per_call=0"),
    ("planner", "uncertainty_penalty", -1.0, "planner.uncertainty_penalty=-1.0"),
])
def test_bad_config_value_names_the_field(dataset_path, tmp_path, block, field, value, match):
    config = smoke_config(dataset_path)
    config[block][field] = value
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, str(tmp_path))


def test_balanced_batch_sizes():
    config = fowm_config.get_config("cpu")
    assert fowm_config.batch_sizes(config) == (64, 64)  # 50/50 of 128
    config.dataset.offline_fraction = 0.25
    assert fowm_config.batch_sizes(config) == (96, 32)


@pytest.mark.slow
def test_cpu_finetuning_improves_on_offline_only(tmp_path):
    """Generates CartpoleSwingup datasets from a TD-MPC run, then runs FOWM's cpu preset
    (~10 min on 2 shared cores). Measured with the binary on the make_dataset.py data: eval
    return 365 offline only -> 847 after 1.5k online steps."""
    from jaxwm.agents.tdmpc import config as tdmpc_config
    from jaxwm.agents.tdmpc import offline_data
    tdmpc = tdmpc_config.get_config("cpu")
    tdmpc.env.name = "CartpoleSwingup-v1"
    out = str(tmp_path / "datasets")
    offline_data.make_datasets(tdmpc, str(tmp_path / "tdmpc"), out, [1000],
                               kinds=("medium_replay",))
    config = fowm_config.get_config("cpu")
    config.dataset.path = os.path.join(out, "medium_replay.npz")
    summary = train_and_evaluate(config, str(tmp_path / "fowm"))
    assert summary["finetuned_return"] > summary["offline_return"] + 50
