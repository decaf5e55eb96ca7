"""Latent Diffusion Planning agent: every variant end to end on the smoke preset."""
import json
import os
import shutil

import pytest

from jaxwm.agents.ldp import config as ldp_config
from jaxwm.agents.ldp import train as ldp_train
from jaxwm.data import datasets
from jaxwm.envs import goal_tasks
from jaxwm.runtime.workdir import UserError


@pytest.fixture(scope="module")
def wall_dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "wall.npz")
    arrays = goal_tasks.collect("Wall-v0", "scripted", episodes=6, length=10, seed=0)
    datasets.save(path, arrays, {"env": "Wall-v0", "kind": "scripted"})
    return path


def smoke(variant, path):
    c = ldp_config.get_config("smoke")
    c.variant, c.dataset.demos, c.dataset.suboptimal = variant, path, path
    return c


@pytest.mark.parametrize("variant", [v if v == "ldp" else pytest.param(v, marks=pytest.mark.slow)
                                     for v in ldp_config.VARIANTS])   # 'ldp' runs every model
def test_every_variant_smoke(wall_dataset, tmp_path, variant):
    workdir = str(tmp_path / variant)
    result = ldp_train.train_and_evaluate(smoke(variant, wall_dataset), workdir)
    assert len(result["successes"]) == 4 and 0 <= result["success_rate"] <= 1
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    keys = set().union(*records)
    assert "vae/loss" in keys and "eval/success_rate" in keys
    assert ("train/planner_loss" in keys) == variant.startswith("ldp")
    # A finished run is reused as is.
    assert ldp_train.train_and_evaluate(smoke(variant, wall_dataset), workdir) == result
    if variant == "ldp":
        check_resumes(smoke(variant, wall_dataset), workdir, result)


def check_resumes(c, workdir, first):
    """A run killed in its evaluation (after the model checkpoint) or in stage 2 (after the VAE
    checkpoint) ends with the same evaluation, and logs no (step, key) twice."""
    same = lambda r: {k: v for k, v in r.items() if not k.startswith(("plan_", "decisions", "sec"))}
    checkpoints = os.path.join(workdir, "checkpoints")
    vae_end = c.vae.steps
    for kill_after in (vae_end + c.train.steps, vae_end):
        os.remove(os.path.join(workdir, ldp_train.EVAL_FILE))
        for step in os.listdir(checkpoints):
            if step.isdigit() and int(step) > kill_after:
                shutil.rmtree(os.path.join(checkpoints, step))
        assert same(ldp_train.train_and_evaluate(c, workdir)) == same(first)
        assert sorted(os.listdir(checkpoints)) == [str(vae_end), str(vae_end + c.train.steps)]
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    logged = [(r["step"], k) for r in records for k in r if k != "step"]
    assert len(logged) == len(set(logged))


def test_bad_values_name_the_field(wall_dataset, tmp_path):
    c = smoke("ldp", wall_dataset)
    c.train.execute = 9
    with pytest.raises(UserError, match="train.execute=9"):
        ldp_train.train_and_evaluate(c, str(tmp_path / "bad"))
    c = smoke("ldp", wall_dataset)
    c.dataset.labelled_demos = 7          # the dataset has 6 episodes
    with pytest.raises(UserError, match=r"dataset.labelled_demos=7 must be in \[0, 6\]"):
        ldp_train.train_and_evaluate(c, str(tmp_path / "bad"))
    c = smoke("planner", wall_dataset)
    with pytest.raises(UserError, match="variant='planner' is not one of"):
        ldp_train.train_and_evaluate(c, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")
