"""DINO-WM agent: every stage end to end on the smoke preset, resume, workdir contract, and the
teacher-forced loss decreasing on a small Wall dataset."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.agents.dino_wm import config as dwm_config
from jaxwm.agents.dino_wm import train as dwm_train
from jaxwm.data import datasets
from jaxwm.envs import goal_tasks
from jaxwm.runtime import steps as steps_lib
from jaxwm.runtime.workdir import UserError


@pytest.fixture(scope="module")
def wall_dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "wall.npz")
    arrays = goal_tasks.collect("Wall-v0", "scripted", episodes=8, length=12, seed=0)
    datasets.save(path, arrays, {"env": "Wall-v0", "kind": "scripted"})
    return path


def smoke(variant, path, **eval_overrides):
    c = dwm_config.get_config("smoke")
    c.variant, c.dataset.paths = variant, (path,)
    c.eval.update(eval_overrides)
    return c


def test_gather_windows_frameskip():
    # Rows hold their own index: a window from row 1 with h = 2, k = 2 takes frames 1, 3, 5
    # and the action pairs (1, 2), (3, 4), (5, 6).
    images = jnp.broadcast_to(jnp.arange(8, dtype=jnp.uint8)[:, None, None, None, None],
                              (8, 1, 2, 2, 3))
    actions = jnp.broadcast_to(jnp.arange(8.0)[:, None, None], (8, 1, 1))
    frames, acts = dwm_train.gather_windows(images, actions, jnp.array([[1, 0]]),
                                            jnp.array([0]), history=2, frameskip=2)
    np.testing.assert_array_equal(frames[0, :, 0, 0, 0], [1, 3, 5])
    np.testing.assert_array_equal(acts[0], [[1, 2], [3, 4], [5, 6]])


def test_dino_variant_all_stages_and_resume(wall_dataset, tmp_path):
    workdir = str(tmp_path / "dino")
    result = dwm_train.train_and_evaluate(smoke("dino", wall_dataset), workdir)
    assert 0.0 <= result["success_rate"] <= 1.0 and len(result["successes"]) == 4
    assert result["plan_seconds_per_decision"] > 0
    assert os.path.exists(os.path.join(workdir, "plots", "rollout.png"))
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    keys = set().union(*records)
    assert {"dino/loss", "train/pred_loss", "train/dec_loss", "eval/success_rate"} <= keys
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)
    # A finished run is not run again: same result, nothing logged twice.
    again = dwm_train.train_and_evaluate(smoke("dino", wall_dataset), workdir)
    assert again == json.load(open(os.path.join(workdir, "eval.json")))
    assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == len(records)
    # Another config in the same workdir is refused, nothing on disk changes.
    other = smoke("dino", wall_dataset)
    other.predictor.dim = 32
    with pytest.raises(UserError, match="predictor.dim"):
        dwm_train.train_and_evaluate(other, workdir)


@pytest.mark.slow   # kept out of `make test` for time; `make test-slow` runs it
def test_resume_after_the_world_model_stage_matches(wall_dataset, tmp_path):
    # A run stopped after stage 2 (eval.json removed: killed during the evaluation) resumes
    # from its last checkpoint and evaluates to the same result as the uninterrupted run.
    # Records logged after the last checkpoint (here a fake one, then the evaluation's) are
    # dropped on resume and logged once again: no step is recorded twice.
    workdir = str(tmp_path / "random")
    first = dwm_train.train_and_evaluate(smoke("random", wall_dataset), workdir)
    metrics = os.path.join(workdir, "metrics.jsonl")
    before = open(metrics).read()
    with open(metrics, "a") as f:
        f.write(json.dumps({"step": 999, "train/pred_loss": 1.0}) + "\n")
    os.remove(os.path.join(workdir, "eval.json"))
    second = dwm_train.train_and_evaluate(smoke("random", wall_dataset), workdir)
    for k in ("successes", "final_goal_cost"):
        assert first[k] == pytest.approx(second[k], rel=1e-5)
    records = [json.loads(line) for line in open(metrics)]
    assert len(records) == len(before.splitlines()) and 999 not in [r["step"] for r in records]


@pytest.mark.parametrize("variant", ["bc", "reconstruction"])
def test_other_variants_smoke(wall_dataset, tmp_path, variant):
    result = dwm_train.train_and_evaluate(smoke(variant, wall_dataset), str(tmp_path / variant))
    assert len(result["successes"]) == 4
    assert ("plan_seconds_per_decision" in result) == (variant != "bc")


def test_bad_values_name_the_field_and_write_nothing(wall_dataset, tmp_path):
    workdir = str(tmp_path / "bad")
    for field, value, match in (("variant", "dino3", "variant='dino3' is not one of"),
                                ("task", "Maze-v0", "task='Maze-v0'"),
                                ("planner.kind", "mpc", "planner.kind"),
                                ("planner.replan_every", 9, "planner.replan_every=9")):
        c = smoke("dino", wall_dataset)
        block, _, name = field.rpartition(".")
        (c[block] if block else c)[name] = value
        with pytest.raises(UserError, match=match):
            dwm_train.train_and_evaluate(c, workdir)
    c = smoke("dinov2", wall_dataset)
    with pytest.raises(UserError, match="encoder.checkpoint"):
        dwm_train.train_and_evaluate(c, workdir)
    c = smoke("dino", str(tmp_path / "missing.npz"))
    with pytest.raises(UserError, match="does not exist"):
        dwm_train.train_and_evaluate(c, workdir)
    assert not os.path.exists(workdir)


def test_teacher_forced_loss_decreases(wall_dataset):
    # 150 steps of the predictor on frozen random-encoder features of the Wall data: the
    # mean prediction loss of the last 50 steps is below 80% of the first 50 steps'.
    c = smoke("random", wall_dataset)
    c.train.lr = 3e-3
    data = dwm_train.load_data(c)
    models = dwm_train.Models(c, data["action"].shape[-1])
    enc = models.vit.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    z = dwm_train.encode_dataset(models.vit, enc, data["image"])
    device = {"images": jnp.asarray(data["image"]), "actions": jnp.asarray(data["action"]),
              "z": jnp.asarray(z / z.std()),
              "starts": jnp.asarray(datasets.window_starts(data["is_first"], 1))}
    state = models.init(jax.random.key(1), enc)
    train = steps_lib.repeat_steps(models.train_step, "scan")
    losses = []
    for i in range(3):
        state, metrics = train(state, jax.random.key(10 + i), 50, device)
        losses.append(float(metrics["pred_loss"].mean()))
    assert losses[-1] < 0.8 * losses[0], losses
