"""JOWA agent: every stage end to end on the smoke preset (datasets of an untrained policy),
windows and masks on a hand-made stream, and clear errors for bad input."""
import json
import os

import jax
import numpy as np
import pytest

from jaxwm.agents.jowa import config as jowa_config
from jaxwm.agents.jowa import data as jowa_data
from jaxwm.agents.jowa import train as jowa_train
from jaxwm.data import datasets
from jaxwm.envs import jax_native
from jaxwm.runtime.workdir import UserError

GAMES = (*jowa_config.MINATAR_PRETRAIN[:2], jowa_config.MINATAR_HELDOUT)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """mixed.npz of every game: 2 x 48 rows of an untrained policy and of random actions."""
    root = tmp_path_factory.mktemp("jowa")
    for i, game in enumerate(GAMES):
        core, env_cfg, _ = jowa_data.env_core(game)
        obs = jax_native.reset_batch(core, env_cfg, jax.random.key(0), 1)[1]
        params = jowa_data.network().init(jax.random.key(0), obs)
        arrays, _ = jowa_data.collect(game, [params], steps_per_policy=96, seed=i,
                                      num_streams=2)
        datasets.save(str(root / game / "mixed.npz"), arrays,
                      {"env": game, "random_return": 0.5, "agent_return": 2.5})
    return str(root)


def smoke(data_dir, variant="jowa"):
    c = jowa_config.get_config("smoke")
    c.data_dir, c.variant = data_dir, variant
    return c


def test_all_stages_smoke(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    result = jowa_train.train_and_evaluate(smoke(data_dir), workdir)
    assert set(result["games"]) == set(jowa_config.MINATAR_PRETRAIN[:2])
    for entry in result["games"].values():
        for mode in ("greedy", "beam"):
            # normalized = (score - 0.5) / (2.5 - 0.5) with the metadata's references
            assert entry[f"{mode}_normalized"] == pytest.approx((entry[mode] - 0.5) / 2.0)
    few = result["fewshot"]
    assert few["game"] == jowa_config.MINATAR_HELDOUT and {"finetuned", "scratch"} <= set(few)
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    keys = set().union(*records)
    assert {"tok/l1", "train/value_loss", "train/obs_loss", "train/cql"} <= keys
    logged = [(r["step"], k) for r in records for k in r if k != "step"]
    assert len(logged) == len(set(logged))                # no value logged twice
    assert jowa_train.train_and_evaluate(smoke(data_dir), workdir) == result   # reused


def test_windows_and_masks_hand_made():
    # One stream of 6 rows: an episode of rows 0-2 (row 2 is its last, terminal) and one from
    # row 3. A window of 3 steps from row 1: steps 0 (row 1) valid; step 1 (row 2) is the last
    # row -> masked, and so is step 2 (row 3, another episode). Reward and done of step 0 come
    # from row 2.
    is_first = np.array([1, 0, 0, 1, 0, 0], bool)[:, None]
    is_last = np.array([0, 0, 1, 0, 0, 0], bool)[:, None]
    arrays = {"action": np.arange(6, dtype=np.int32)[:, None] % 6, "is_first": is_first,
              "is_last": is_last, "is_terminal": is_last.copy(),
              "reward": np.array([0, 0, 1, 0, 0, 0], np.float32)[:, None]}
    tokens = np.arange(6 * 2, dtype=np.int32).reshape(6, 1, 2)
    data = jowa_train.window_data(arrays, tokens, context=3)
    # starts: rows 0 .. 6 - 3 - 1 = 2 that are not last -> rows 0 and 1
    assert data["starts"].tolist() == [[0, 0], [1, 0]]
    data = dict(data, starts=data["starts"][1:])
    w = jowa_train.sample_windows(data, jax.random.key(0), 1, context=3, task=2)
    assert w["mask"].tolist() == [[1, 0, 0]]
    assert w["rewards"].tolist() == [[1, 0, 0]] and w["dones"][0, 0] == 1
    assert w["obs_tokens"][0, 0].tolist() == [2, 3] and w["task"].tolist() == [2]
    # the few-shot subset of 1 transition: only row 0 starts a window, and row 1 counts as a
    # last row (its step is masked)
    sub = jowa_train.window_data(arrays, tokens, context=3, rows=1)
    assert sub["starts"].tolist() == [[0, 0]] and bool(sub["last"][1, 0])


def test_bad_values_name_the_field(data_dir, tmp_path):
    c = smoke(data_dir, "dreamer")
    with pytest.raises(UserError, match="variant='dreamer' is not one of"):
        jowa_train.train_and_evaluate(c, str(tmp_path / "bad"))
    c = smoke(data_dir)
    c.planner.horizon = 3
    with pytest.raises(UserError, match="planner.horizon=3 must be < model.context=3"):
        jowa_train.train_and_evaluate(c, str(tmp_path / "bad"))
    c = smoke(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="mixed.npz"):
        jowa_train.train_and_evaluate(c, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")
