"""Host-loop helpers: episode statistics, coverage, replay spec and config validation."""
import numpy as np
import pytest

from jaxwm.envs.base import ActionSpace, Space
from jaxwm.data import replay
from jaxwm.runtime import online


def out(reward, first, last, pos=None, label=None):
    o = {"reward": np.array(reward, np.float32), "is_first": np.array(first),
         "is_last": np.array(last)}
    if pos is not None:
        o["agent_pos"] = np.array(pos)
    if label is not None:
        o["reward/stand"] = np.array(label, np.float32)
    return o


def test_episode_stats_returns_labels_and_coverage():
    stats = online.EpisodeStats(2)
    stats.observe(out([0, 0], [True, True], [False, False], [[1, 1], [1, 1]], [0, 0]))
    stats.observe(out([1, 2], [False, False], [False, True], [[1, 2], [2, 1]], [0.5, 1]))
    stats.observe(out([3, 0], [False, True], [True, False], [[1, 3], [1, 1]], [1, 0]))
    m = stats.pop()
    # env 1 ended first with return 2 (label 1), then env 0 with 1 + 3 = 4 (label 1.5).
    assert m["episode/count"] == 2 and m["episode/return"] == 3.0
    assert m["episode/return_stand"] == 1.25 and m["episode/length"] == 1.5  # 2 and 1 steps
    assert m["coverage/cells"] == 4.0                  # (1,1) (1,2) (2,1) (1,3)
    assert stats.history == [2.0, 4.0] and "episode/count" not in stats.pop()


def test_replay_spec():
    class Env:
        obs_space = {"vector": Space((3,), np.dtype(np.float32))}
        act_space = ActionSpace(False, 2)
    spec = replay.env_spec(Env(), ["reward/walk"])
    assert spec["action"] == ((2,), np.float32) and spec["vector"] == ((3,), np.float32)
    assert spec["reward/walk"] == ((), np.float32) and spec["is_first"] == ((), np.bool_)


@pytest.mark.parametrize("field,value", [("policy", "greedy"), ("steps", 0), ("prefill", -1),
                                         ("seq_len", 10**7)])
def test_check_run_config(field, value):
    c = online.run_config()
    c[field] = value
    with pytest.raises(ValueError, match=f"run.{field}"):
        online.check_run_config(c)
