"""Wall: a JAX-native goal-reaching navigation task with pixels (the "Wall" environment of
DINO-WM, Zhou et al. 2024, Sec. 4): a point agent in the unit square [0, 1]^2, split by a
vertical wall at x = 0.5 with one door whose height is fixed and whose centre is drawn per
episode. Planning must find the door to reach a goal on the other side.

Geometry (x to the right, y up): the wall fills x in [WALL_LO, WALL_HI] = [0.47, 0.53] except the
door, y in [door_y - DOOR_HALF, door_y + DOOR_HALF] with DOOR_HALF = 0.1 and door_y in
[0.25, 0.75]. The agent is a point (drawn as a disc of radius AGENT_RADIUS).

Dynamics (`move`): an action a float32 [2] in [-1, 1] proposes p' = clip(p + a * MAX_STEP, 0, 1)
(the square's borders clamp). If the straight segment p -> p' passes through the wall's interior
(outside the door, or tunnelling past a door corner), the move is blocked by the wall face and
slides along it: from the left side x is clamped to WALL_LO, from the right side to WALL_HI, and y
moves as proposed; from inside the doorway y is clamped to the door. Touching a face is not
blocked, so an agent on a face can slide along it or move away.

Pure, jittable functions on unbatched states (vmapped by callers, e.g. `goal_tasks`):
  reset(key) -> WallState                       random side, random door
  move(pos, action, door_y) -> pos              the dynamics above
  step(state, action) -> WallState
  render(state) -> uint8 [64, 64, 3]            row 0 is the top (y = 1)
  success(pos, goal_pos) -> bool []             ||pos - goal_pos|| < SUCCESS_RADIUS
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NAME = 'Wall-v0'
MAX_STEP = 0.075          # displacement of a full action along one axis
WALL_X = 0.5
WALL_HALF = 0.03          # the wall is 0.06 thick
WALL_LO, WALL_HI = WALL_X - WALL_HALF, WALL_X + WALL_HALF
DOOR_HALF = 0.1           # the door is 0.2 high
DOOR_RANGE = (0.25, 0.75)  # door centre y is uniform in this range
SUCCESS_RADIUS = 0.075
AGENT_RADIUS = 0.05
IMAGE_SIZE = 64
# uint8 RGB colours
BACKGROUND = (235, 235, 230)
WALL_COLOUR = (50, 50, 60)
AGENT_COLOUR = (220, 40, 40)


class WallState(NamedTuple):
    pos: jax.Array      # float32 [2] agent (x, y) in [0, 1]^2
    door_y: jax.Array   # float32 [] door centre y in DOOR_RANGE


def to_array(state: WallState) -> np.ndarray:
    """float32 [..., 3] = (x, y, door_y): the numpy form of (batched) states."""
    return np.concatenate([np.asarray(state.pos, np.float32),
                           np.asarray(state.door_y, np.float32)[..., None]], -1)


def from_array(x) -> WallState:
    """The (batched) state of `to_array`'s float32 [..., 3]."""
    x = jnp.asarray(x, jnp.float32)
    return WallState(pos=x[..., :2], door_y=x[..., 2])


def reset(key: jax.Array) -> WallState:
    """A random state: random door, agent uniform on a random side (at least 0.05 from the wall
    faces and borders), door_y uniform in DOOR_RANGE."""
    key_side, key_pos, key_door = jax.random.split(key, 3)
    right = jax.random.bernoulli(key_side)
    u = jax.random.uniform(key_pos, (2,), minval=0.05, maxval=jnp.array([WALL_LO - 0.05, 0.95]))
    x = jnp.where(right, 1.0 - u[0], u[0])
    door_y = jax.random.uniform(key_door, (), minval=DOOR_RANGE[0], maxval=DOOR_RANGE[1])
    return WallState(pos=jnp.stack([x, u[1]]).astype(jnp.float32), door_y=door_y)


def _segment_hits_box(p: jax.Array, d: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Whether the segment p + t d, t in [0, 1], passes through the open box (lo, hi): slab
    test with strict inequalities, so a segment that only touches a face or a corner does not
    hit. p, d, lo, hi float32 [2]; returns bool []."""
    moving = d != 0
    safe_d = jnp.where(moving, d, 1.0)
    t1, t2 = (lo - p) / safe_d, (hi - p) / safe_d
    inside = (p > lo) & (p < hi)   # for a still axis the slab is all t or no t
    t_min = jnp.where(moving, jnp.minimum(t1, t2), jnp.where(inside, -jnp.inf, jnp.inf))
    t_max = jnp.where(moving, jnp.maximum(t1, t2), jnp.where(inside, jnp.inf, -jnp.inf))
    t_enter = jnp.maximum(jnp.max(t_min), 0.0)
    t_exit = jnp.minimum(jnp.min(t_max), 1.0)
    return t_enter < t_exit


def wall_boxes(door_y: jax.Array) -> tuple:
    """(lo, hi) float32 [2, 2] of the wall's two solid parts (below and above the door), each
    extended past the borders so that border points are handled like any other."""
    lo = jnp.stack([jnp.stack([WALL_LO, -1.0]), jnp.stack([WALL_LO, door_y + DOOR_HALF])])
    hi = jnp.stack([jnp.stack([WALL_HI, door_y - DOOR_HALF]), jnp.stack([WALL_HI, 2.0])])
    return lo.astype(jnp.float32), hi.astype(jnp.float32)


def blocked(pos: jax.Array, new_pos: jax.Array, door_y: jax.Array) -> jax.Array:
    """Whether the straight move pos -> new_pos (float32 [2]) passes through the wall."""
    lo, hi = wall_boxes(door_y)
    hits = jax.vmap(_segment_hits_box, (None, None, 0, 0))(pos, new_pos - pos, lo, hi)
    return jnp.any(hits)


def move(pos: jax.Array, action: jax.Array, door_y: jax.Array) -> jax.Array:
    """The agent's next position (module docstring). pos float32 [2], action float32 [2] (clipped
    to [-1, 1]), door_y float32 []; returns float32 [2]."""
    action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
    pos = jnp.asarray(pos, jnp.float32)
    proposed = jnp.clip(pos + action * MAX_STEP, 0.0, 1.0)
    # A blocked move slides along the face the agent came from.
    left = jnp.stack([jnp.minimum(proposed[0], WALL_LO), proposed[1]])
    right = jnp.stack([jnp.maximum(proposed[0], WALL_HI), proposed[1]])
    doorway = jnp.stack([proposed[0], jnp.clip(proposed[1], door_y - DOOR_HALF,
                                               door_y + DOOR_HALF)])
    slid = jnp.where(pos[0] <= WALL_LO, left, jnp.where(pos[0] >= WALL_HI, right, doorway))
    return jnp.where(blocked(pos, proposed, door_y), slid, proposed).astype(jnp.float32)


def step(state: WallState, action: jax.Array) -> WallState:
    """One move of the agent (the door stays)."""
    return state._replace(pos=move(state.pos, action, state.door_y))


def success(pos: jax.Array, goal_pos: jax.Array) -> jax.Array:
    """bool []: ||pos - goal_pos|| < SUCCESS_RADIUS (pos, goal_pos float32 [2])."""
    return jnp.linalg.norm(pos - goal_pos) < SUCCESS_RADIUS


def pixel_centres(size: int = IMAGE_SIZE) -> tuple:
    """(x, y) float32 [size, size] of the pixel centres; row 0 is the top (y near 1)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(1.0 - c[:, None],
                                                                       (size, size))


def pixel_of(pos) -> tuple:
    """(row, column) of the pixel containing position (x, y) in a `render` image."""
    x, y = float(pos[0]), float(pos[1])
    col = min(int(x * IMAGE_SIZE), IMAGE_SIZE - 1)
    row = min(int((1.0 - y) * IMAGE_SIZE), IMAGE_SIZE - 1)
    return row, col


def render(state: WallState) -> jax.Array:
    """uint8 [64, 64, 3]: light background, dark wall with the door gap, the agent as a red disc
    of radius AGENT_RADIUS (drawn over the wall). Row 0 is the top of the square (y = 1)."""
    x, y = pixel_centres()
    wall = ((x >= WALL_LO) & (x <= WALL_HI)
            & (jnp.abs(y - state.door_y) > DOOR_HALF))
    agent = (x - state.pos[0]) ** 2 + (y - state.pos[1]) ** 2 <= AGENT_RADIUS ** 2
    image = jnp.where(wall[..., None], jnp.array(WALL_COLOUR, jnp.uint8),
                      jnp.array(BACKGROUND, jnp.uint8))
    return jnp.where(agent[..., None], jnp.array(AGENT_COLOUR, jnp.uint8), image)
