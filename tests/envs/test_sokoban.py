"""Sokoban rules, rewards and the corner-deadlock ground truth on hand-made levels."""
import jax.numpy as jnp
import numpy as np

from jaxwm import envs
from jaxwm.envs import sokoban

UP, RIGHT, DOWN, LEFT = range(4)


def _state(level):
    walls, targets, boxes, agent = sokoban.parse(level)
    return sokoban.SokobanState(pos=jnp.array(agent, jnp.int32), walls=jnp.asarray(walls),
                                targets=jnp.asarray(targets), boxes=jnp.asarray(boxes),
                                t=jnp.int32(0))


def _play(level, actions, limit=50):
    cfg = sokoban.SokobanConfig(1, limit)
    state, outs = _state(level), []
    for a in actions:
        state, reward, solved, truncated, irreversible = sokoban.step(state, jnp.int32(a), cfg)
        outs.append((round(float(reward), 4), bool(solved), bool(truncated), bool(irreversible)))
    return state, outs


LEVEL = ("#######",
         "#     #",
         "# @$ .#",
         "#     #",
         "#    $#",
         "#   . #",
         "#######")


def test_push_onto_target_and_solve():
    # right: box (2,3) -> (2,4): -0.1; right: box onto the target (2,5): -0.1 + 1. The second
    # box (4,5) is still off its target (5,4), so the level is not solved.
    state, outs = _play(LEVEL, [RIGHT, RIGHT])
    assert outs == [(-0.1, False, False, False), (0.9, False, False, False)]
    assert bool(state.boxes[2, 5]) and tuple(np.asarray(state.pos)) == (2, 4)


def test_a_box_cannot_be_pushed_into_a_wall_or_pulled():
    # the box at (2,5) (after two pushes) sits against the right wall: pushing right again
    # leaves everything in place; walking left away does not pull it.
    state, outs = _play(LEVEL, [RIGHT, RIGHT, RIGHT, LEFT])
    assert outs[2] == (-0.1, False, False, False)
    assert bool(state.boxes[2, 5]) and tuple(np.asarray(state.pos)) == (2, 3)


def test_corner_push_is_irreversible_and_off_target_push_costs():
    # The box at (4,5) is against the right wall. Agent from (2,2): down to (3,2), right to
    # (3,3), (3,4), (3,5); pushing down moves the box to (5,5): a corner (walls below and right),
    # not a target: irreversible. No reward change for an off-target to off-target push.
    _, outs = _play(LEVEL, [DOWN, RIGHT, RIGHT, RIGHT, DOWN])
    assert outs[-1] == (-0.1, False, False, True)
    assert not any(o[3] for o in outs[:-1])


def test_solving_ends_the_episode_with_the_bonus():
    level = ("#######",
             "#     #",
             "# @$.  ",
             "#     #",
             "#     #",
             "#     #",
             "#######")
    # one push right: box onto the only target: -0.1 + 1 + 10
    _, outs = _play(level, [RIGHT])
    assert outs == [(10.9, True, False, False)]


def test_pushing_off_a_target_costs_one():
    level = ("#######",
             "#     #",
             "# @*  #",
             "#   . #",
             "#     #",
             "#     #",
             "#######")
    # the box starts on a target (2,3); pushing it right takes it off: -0.1 - 1
    _, outs = _play(level, [RIGHT])
    assert outs == [(-1.1, False, False, False)]


def test_batched_env_levels_and_time_limit():
    env = envs.make("Sokoban-v0", 8, seed=3, max_episode_steps=2)
    out = env.reset()
    assert out["vector"].shape == (8, 4 * 49)
    walls = out["vector"][:, :49].reshape(8, 7, 7)
    assert walls[:, 0].all() and walls[:, -1].all()      # every level is walled
    env.step(np.full(8, LEFT, np.int32))        # no level is solved by two moves left
    out = env.step(np.full(8, LEFT, np.int32))
    assert out["is_last"].all() and not out["is_terminal"].any()
    for level in sokoban.LEVELS:
        walls, targets, boxes, _ = sokoban.parse(level)
        assert targets.sum() == boxes.sum() >= 1
