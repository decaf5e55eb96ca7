"""The xminigrid backend of MiniGrid against envpool's MiniGrid, step by step on the
deterministic Empty layouts, and its (object, color, state) encoding on hand-picked tiles."""
import numpy as np
import pytest

pytest.importorskip("xminigrid")

from jaxwm import envs  # noqa: E402
from jaxwm.envs import xminigrid_env  # noqa: E402

KEYS = ("vector", "reward", "is_first", "is_last", "is_terminal", "agent_pos", "direction")


@pytest.mark.parametrize("layout, steps", [
    ("MiniGrid-Empty-5x5-v0", 120),
    pytest.param("MiniGrid-Empty-8x8-v0", 300, marks=pytest.mark.slow)])
def test_matches_envpool_on_the_same_actions(layout, steps):
    # Same start, goal and rules: every output of every step must agree, through goals,
    # time limits, autoresets and the no-op 'done' / pickup / drop / toggle actions.
    reference = envs.make(layout, 2, seed=0, obs="vector")
    native = envs.make("xminigrid:" + layout, 2, seed=0)
    assert (native.obs_space, native.act_space) == (reference.obs_space, reference.act_space)
    actions = np.random.default_rng(0).choice(7, size=(steps, 2), p=[.2, .2, .45, .04, .04,
                                                                     .04, .03])
    actions[:12, 0] = [2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2]     # env 0 walks to the goal
    outs = [(reference.reset(), native.reset())]
    outs += [(reference.step(a), native.step(a)) for a in actions]
    for t, (ref, nat) in enumerate(outs):
        for key in KEYS:
            np.testing.assert_allclose(nat[key], ref[key], atol=1e-6, err_msg=f"{key} @ {t}")
    assert any(ref["is_terminal"].any() for ref, _ in outs)       # a goal was reached


def test_encoding_of_tiles():
    from xminigrid.core.constants import Colors, Tiles
    obj, col, state = xminigrid_env._tables()
    # MiniGrid ids: objects unseen 0, empty 1, wall 2, door 4, key 5, ball 6, goal 8;
    # colors red 0, green 1, blue 2, purple 3, yellow 4, grey 5; door states open 0,
    # closed 1, locked 2.
    cases = {(Tiles.EMPTY, Colors.EMPTY): (0, 0, 0), (Tiles.FLOOR, Colors.BLACK): (1, 0, 0),
             (Tiles.WALL, Colors.GREY): (2, 5, 0), (Tiles.GOAL, Colors.GREEN): (8, 1, 0),
             (Tiles.KEY, Colors.RED): (5, 0, 0), (Tiles.BALL, Colors.BLUE): (6, 2, 0),
             (Tiles.DOOR_OPEN, Colors.PURPLE): (4, 3, 0),
             (Tiles.DOOR_CLOSED, Colors.YELLOW): (4, 4, 1),
             (Tiles.DOOR_LOCKED, Colors.YELLOW): (4, 4, 2)}
    for (tile, color), expected in cases.items():
        assert (obj[tile, color], col[tile, color], state[tile, color]) == expected


def test_random_layouts_and_unknown_names():
    env = envs.make("xminigrid:MiniGrid-FourRooms-v0", 3, seed=1)
    out = env.reset()
    assert out["vector"].shape == (3, 980) and out["agent_pos"].shape == (3, 2)
    cells = out["vector"].reshape(3, 7, 7, 20)
    np.testing.assert_array_equal(cells.sum(-1), 3.0)   # one object, color and state per cell
    with pytest.raises(ValueError, match="Unknown environment name .xminigrid:MiniGrid-NoSuch"):
        envs.make("xminigrid:MiniGrid-NoSuchRoom-v0", 1)
