"""Sokoban, JAX-native, on a fixed set of small hand-made levels: the standard rules (push one
box at a time, never pull; a box cannot move into a wall or another box) and gym-sokoban's
rewards (-0.1 per step, +1 for a box pushed onto a target, -1 for one pushed off, +10 when every
box is on a target, which ends the episode). The setting of "There is no turning back"
(Grinsztajn et al., NeurIPS 2021, Sec. 5.3), where pushes that can never be undone are what RAE
learns to avoid.

Irreversible step (the ground truth reported by `step`): a push that leaves the box off-target in
a corner (a wall above or below it and a wall left or right of it): it can never move again, so
the level is lost. Other dead-ends (boxes stuck together or along a wall without a target) are
not counted. Levels are 7 x 7 with 1 or 2 boxes (`LEVELS`; the boxoban levels of the paper's
10 x 10 rooms would have to be downloaded), one drawn uniformly at every reset.
Actions: 0 up, 1 right, 2 down, 3 left. Observation 'vector' float32 [4 * 7 * 7]: walls, targets,
boxes, agent. A core of `jaxwm.envs.jax_native`.
"""
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.envs import base

NAME = 'Sokoban-v0'
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], np.int32)
NUM_ACTIONS = len(MOVES)
# '#' wall, '.' target, '$' box, '*' box on a target, '@' agent, ' ' floor
LEVELS = (
    ("#######",
     "#.    #",
     "#     #",
     "#  $  #",
     "#  @  #",
     "#     #",
     "#######"),
    ("#######",
     "#     #",
     "# @$ .#",
     "#     #",
     "#     #",
     "#     #",
     "#######"),
    ("#######",
     "#     #",
     "#  .  #",
     "#     #",
     "#  $  #",
     "#  @  #",
     "#######"),
    ("#######",
     "#    .#",
     "#     #",
     "# $   #",
     "#   @ #",
     "#     #",
     "#######"),
    ("#######",
     "#.   .#",
     "#     #",
     "# $ $ #",
     "#  @  #",
     "#     #",
     "#######"),
    ("#######",
     "#     #",
     "# .$@ #",
     "#     #",
     "#  $. #",
     "#     #",
     "#######"),
)
OPTIONS = {
    'obs': ('vector', ('vector',)),
    'levels': (len(LEVELS), base.Check(f'an int in [1, {len(LEVELS)}]',
                                       lambda v: base.POSITIVE_INT.ok(v) and v <= len(LEVELS))),
    'max_episode_steps': (120, base.POSITIVE_INT),   # gym-sokoban's default
}
STEP_REWARD, BOX_ON, BOX_OFF, SOLVED = -0.1, 1.0, -1.0, 10.0


class SokobanConfig(NamedTuple):
    levels: int = len(LEVELS)        # the first `levels` of LEVELS are drawn
    max_episode_steps: int = 120


@flax.struct.dataclass
class SokobanState:
    pos: jax.Array        # int32 [2]
    walls: jax.Array      # bool [7, 7]
    targets: jax.Array    # bool [7, 7]
    boxes: jax.Array      # bool [7, 7]
    t: jax.Array          # int32 []


def make_config(options: dict, name: str) -> SokobanConfig:
    return SokobanConfig(options['levels'], options['max_episode_steps'])


def parse(level) -> tuple:
    """(walls, targets, boxes bool [H, W], agent (row, col)) of a level's strings."""
    grid = np.array([list(row) for row in level])
    agent = tuple(int(i) for i in np.argwhere(grid == '@')[0])
    return grid == '#', np.isin(grid, ['.', '*']), np.isin(grid, ['$', '*']), agent


def _level_arrays(count: int) -> tuple:
    parsed = [parse(level) for level in LEVELS[:count]]
    return tuple(np.stack(x) for x in zip(*parsed))


def obs_size(cfg: SokobanConfig) -> int:
    return 4 * 7 * 7


def reset(key: jax.Array, cfg: SokobanConfig) -> SokobanState:
    walls, targets, boxes, agents = _level_arrays(cfg.levels)
    i = jax.random.randint(key, (), 0, cfg.levels)
    return SokobanState(pos=jnp.asarray(agents, jnp.int32)[i], walls=jnp.asarray(walls)[i],
                        targets=jnp.asarray(targets)[i], boxes=jnp.asarray(boxes)[i],
                        t=jnp.int32(0))


def observe(state: SokobanState, cfg: SokobanConfig) -> jax.Array:
    agent = jnp.zeros(state.walls.shape).at[state.pos[0], state.pos[1]].set(1.0)
    return jnp.concatenate([x.astype(jnp.float32).ravel() for x in (
        state.walls, state.targets, state.boxes, agent)])


def in_corner(walls: jax.Array, cell: jax.Array) -> jax.Array:
    """Whether `cell` has a wall above or below it and one to its left or right."""
    r, c = cell[0], cell[1]
    return (walls[r - 1, c] | walls[r + 1, c]) & (walls[r, c - 1] | walls[r, c + 1])


def step(state: SokobanState, action: jax.Array, cfg: SokobanConfig) -> tuple:
    """One move or push. Returns (state, reward, terminal (solved), truncated (time limit),
    irreversible (a box pushed into an off-target corner))."""
    d = jnp.asarray(MOVES)[action]
    ahead, beyond = state.pos + d, state.pos + 2 * d
    size = jnp.array(state.walls.shape) - 1
    beyond = jnp.clip(beyond, 0, size)   # only read when `ahead` holds a box: never a border
    box_ahead = state.boxes[ahead[0], ahead[1]]
    blocked = state.walls[beyond[0], beyond[1]] | state.boxes[beyond[0], beyond[1]]
    push = box_ahead & ~blocked
    move = ~state.walls[ahead[0], ahead[1]] & (~box_ahead | push)
    boxes = jnp.where(push, state.boxes.at[ahead[0], ahead[1]].set(False)
                      .at[beyond[0], beyond[1]].set(True), state.boxes)
    pos = jnp.where(move, ahead, state.pos).astype(jnp.int32)
    onto = push & state.targets[beyond[0], beyond[1]]
    off = push & state.targets[ahead[0], ahead[1]]
    solved = jnp.all(boxes <= state.targets)
    reward = STEP_REWARD + BOX_ON * onto + BOX_OFF * off + SOLVED * solved
    irreversible = push & ~state.targets[beyond[0], beyond[1]] & in_corner(state.walls, beyond)
    t = state.t + 1
    truncated = (t >= cfg.max_episode_steps) & ~solved
    return (state.replace(pos=pos, boxes=boxes, t=t), reward.astype(jnp.float32), solved,
            truncated, irreversible)


def info(state) -> dict:
    """Extra keys of the batched env: 'agent_pos' int32 [2] (row, column)."""
    return {'agent_pos': state.pos}
