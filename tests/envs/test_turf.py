"""Turf: the pure step function on hand-worked moves, and the batched env protocol."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import envs
from jaxwm.envs import turf

UP, RIGHT, DOWN, LEFT = range(4)


def _walk(cfg, actions):
    state = turf.reset(jax.random.PRNGKey(0), cfg)
    outs = []
    for a in actions:
        state, reward, terminal, truncated, damaged = turf.step(state, jnp.int32(a), cfg)
        outs.append((tuple(np.asarray(state.pos)), float(reward), bool(terminal),
                     bool(truncated), bool(damaged)))
    return state, outs


def test_lawn_layout_5x5():
    # Stone path: left column from the middle row down, the middle row, the right column from
    # the middle row up; everything else grass.
    grass = turf.lawn(turf.TurfConfig(5, 5, 30)).astype(int)
    np.testing.assert_array_equal(grass, [[1, 1, 1, 1, 0],
                                          [1, 1, 1, 1, 0],
                                          [0, 0, 0, 0, 0],
                                          [0, 1, 1, 1, 1],
                                          [0, 1, 1, 1, 1]])


def test_steps_damage_grass_once_and_walls_stop_moves():
    cfg = turf.TurfConfig(5, 5, 30)
    # start (4, 0); right onto grass (4, 1): damaged; left back to stone; right again: the
    # cell is dirt now, no damage; down into the wall: stays at (4, 1).
    state, outs = _walk(cfg, [RIGHT, LEFT, RIGHT, DOWN])
    assert [o[0] for o in outs] == [(4, 1), (4, 0), (4, 1), (4, 1)]
    assert [o[4] for o in outs] == [True, False, False, False]
    assert not bool(state.grass[4, 1]) and int(state.grass.sum()) == 16 - 1


def test_stone_path_reaches_the_goal_without_damage():
    cfg = turf.TurfConfig(5, 5, 30)
    # up 2 to the middle row, right 4, up 2: the shortest route, all stone.
    _, outs = _walk(cfg, [UP, UP] + [RIGHT] * 4 + [UP, UP])
    assert not any(o[4] for o in outs)
    assert outs[-1][:3] == ((0, 4), 1.0, True)
    assert all(o[1] == 0.0 and not o[2] for o in outs[:-1])


def test_time_limit_truncates():
    _, outs = _walk(turf.TurfConfig(5, 5, 3), [LEFT, LEFT, LEFT])
    assert [o[3] for o in outs] == [False, False, True]


def test_batched_env_protocol_autoresets():
    env = envs.make("Turf-v0", 2, seed=0, height=5, width=5, max_episode_steps=2)
    assert env.act_space == envs.base.ActionSpace(True, 4)
    out = env.reset()
    assert out["vector"].shape == (2, 75) and out["is_first"].all()
    out = env.step(np.array([RIGHT, UP]))
    np.testing.assert_array_equal(out["irreversible"], [True, False])
    out = env.step(np.array([UP, UP]))
    assert out["is_last"].all() and not out["is_terminal"].any()
    out = env.step(np.array([RIGHT, RIGHT]))    # ignored: a new episode starts
    assert out["is_first"].all() and (out["reward"] == 0).all()
    np.testing.assert_array_equal(out["agent_pos"], [[4, 0], [4, 0]])
    with pytest.raises(ValueError, match="height"):
        envs.make("Turf-v0", 1, height=2)
