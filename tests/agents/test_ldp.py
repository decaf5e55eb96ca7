"""Latent Diffusion Planning agent: every variant end to end on the smoke preset."""
import json
import os
import shutil

import jax
import numpy as np
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
    errors = {"demo_action_var", "policy_action_mse"} | (
        {"idm_action_mse", "plan_mse", "still_mse"} if variant.startswith("ldp") else set())
    assert errors <= set(result) and all(np.isfinite(result[k]) for k in errors)
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


def test_planner_range_and_plans_inside_it():
    # Per dimension: dim 0 spans [-1, 3] -> centre 1, half-width 2; dim 1 spans [2, 4] -> 3, 1.
    z = np.array([[[-1.0, 2.0]], [[3.0, 4.0]], [[0.0, 3.0]]])         # [T, N, L]
    centre, half = ldp_train.plan_range(z)
    np.testing.assert_allclose(centre, [1, 3])
    np.testing.assert_allclose(half, [2, 1])
    # The planner's x0 estimates are clipped to [-1, 1], so an untrained planner's plans (the
    # last DDIM step returns the clipped x0) stay inside the data's range, whatever the input.
    c = smoke("ldp", "unused.npz")
    c.vae.latent_dim = 2
    models = ldp_train.Models(c, action_size=2)
    policy = ldp_train.Policy(models, models.init(jax.random.key(0)), (centre, half))
    inputs = 10 * jax.random.normal(jax.random.key(1), (2, 8, 2))
    plan = np.asarray(policy.plan(inputs[0], inputs[1], jax.random.key(2)))
    assert plan.shape == (8, c.planner.horizon, 2)
    assert (plan >= [-1 - 1e-5, 2 - 1e-5]).all() and (plan <= [3 + 1e-5, 4 + 1e-5]).all()


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
