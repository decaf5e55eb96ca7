"""MiniGrid layouts as a JAX-native core, through XLand-MiniGrid (`xminigrid`, Nikulin et al.,
2024; optional: `pip install -e '.[jax-envs]'`), with the observations, actions, rewards and
extra keys of the envpool suite (`envpool_envs.MiniGridEnv`, obs='vector'), so that a training
loop can keep MiniGrid inside one compiled program.

Names: 'xminigrid:<envpool id>' for the MiniGrid layouts xminigrid implements, e.g.
'xminigrid:MiniGrid-FourRooms-v0', 'xminigrid:MiniGrid-Empty-5x5-v0' (`names()`).

What matches envpool: the 7 MiniGrid actions (0 left, 1 right, 2 forward, 3 pickup, 4 drop,
5 toggle, 6 done = a no-op step); the 7x7 egocentric view with MiniGrid's visibility mask, encoded
as MiniGrid's (object, color, state) and one-hot to 'vector' float32 [980] (`minigrid_vector`'s
layout); reward 1 - 0.9 * steps / max_steps at the goal; the step limit (4 * H * W for Empty,
100 for FourRooms); extra keys 'agent_pos' (x, y) and 'direction' (0 right, 1 down, 2 left, 3 up).
Tested step by step against envpool on the deterministic layouts (Empty). What differs: the
random layouts (FourRooms' doors, starts and goals) come from xminigrid's generator, so the same
seed gives other rooms; objects xminigrid lacks (boxes, lava) do not occur; 'image' observations
are not offered (render the vector on the host if needed).
"""
import functools
import importlib.util
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.envs import base

PREFIX = 'xminigrid:'
NUM_ACTIONS = 7
DONE = 6
# MiniGrid action -> xminigrid action (0 forward, 1 turn right, 2 turn left, 3 pick up,
# 4 put down, 5 toggle); 'done' (6) is handled here as a step that changes nothing.
_ACTIONS = np.array([2, 1, 0, 3, 4, 5, 0], np.int32)
NUM_OBJECTS, NUM_COLORS, NUM_STATES = 11, 6, 3   # MiniGrid's encoding sizes
VIEW = 7
OPTIONS = {'obs': ('vector', ('vector',)),
           'max_episode_steps': (None, base.OPTIONAL_POSITIVE_INT)}


def available() -> bool:
    return importlib.util.find_spec('xminigrid') is not None


@functools.cache
def names() -> tuple:
    """Every 'xminigrid:<envpool MiniGrid id>' this backend serves (empty without xminigrid)."""
    if not available():
        return ()
    import xminigrid
    return tuple(f'{PREFIX}{n}-v0' for n in xminigrid.registered_environments()
                 if n.startswith('MiniGrid-'))


class XMiniGridConfig(NamedTuple):
    name: str                    # xminigrid's id, e.g. 'MiniGrid-FourRooms'
    max_episode_steps: int | None


def make_config(options: dict, name: str) -> XMiniGridConfig:
    cfg = XMiniGridConfig(name[len(PREFIX):].removesuffix('-v0'), options['max_episode_steps'])
    _env(cfg)   # import and build outside any trace: xminigrid makes arrays at import time
    return cfg


@functools.cache
def _env(cfg: XMiniGridConfig):
    import xminigrid
    env, params = xminigrid.make(cfg.name)
    if cfg.max_episode_steps:
        params = params.replace(max_steps=cfg.max_episode_steps)
    return env, params


@functools.cache
def _tables() -> tuple:
    """(object, color, state) of MiniGrid for every xminigrid (tile, color) pair, as lookup
    arrays [13, 12]."""
    from xminigrid.core.constants import Colors, Tiles
    obj = np.zeros((13, 12), np.int32)
    col = np.zeros((13, 12), np.int32)
    state = np.zeros((13, 12), np.int32)
    objects = {Tiles.EMPTY: 0, Tiles.FLOOR: 1, Tiles.WALL: 2, Tiles.BALL: 6, Tiles.SQUARE: 7,
               Tiles.PYRAMID: 7, Tiles.GOAL: 8, Tiles.KEY: 5, Tiles.DOOR_LOCKED: 4,
               Tiles.DOOR_CLOSED: 4, Tiles.DOOR_OPEN: 4, Tiles.HEX: 7, Tiles.STAR: 7}
    doors = {Tiles.DOOR_OPEN: 0, Tiles.DOOR_CLOSED: 1, Tiles.DOOR_LOCKED: 2}
    colors = {Colors.RED: 0, Colors.GREEN: 1, Colors.BLUE: 2, Colors.PURPLE: 3,
              Colors.YELLOW: 4, Colors.GREY: 5}
    for tile, o in objects.items():
        obj[tile, :] = o
        state[tile, :] = doors.get(tile, 0)
        if o > 1:   # MiniGrid encodes unseen and empty cells with color 0
            for c, mc in colors.items():
                col[tile, c] = mc
    return obj, col, state


def _encode(view: jax.Array) -> jax.Array:
    """xminigrid view uint8 [7, 7, 2] (tile, color; rows = depth, agent at the bottom centre)
    -> MiniGrid one-hot 'vector' float32 [980] in [y, x] cell order."""
    tile, color = view[..., 0].astype(jnp.int32), view[..., 1].astype(jnp.int32)
    parts = [jax.nn.one_hot(jnp.asarray(t)[tile, color], k) for t, k in zip(
        _tables(), (NUM_OBJECTS, NUM_COLORS, NUM_STATES))]
    return jnp.concatenate(parts, -1).reshape(-1)


def obs_size(cfg: XMiniGridConfig) -> int:
    return VIEW * VIEW * (NUM_OBJECTS + NUM_COLORS + NUM_STATES)


def reset(key: jax.Array, cfg: XMiniGridConfig):
    env, params = _env(cfg)
    return env.reset(params, key)


def _view(timestep) -> jax.Array:
    """The 7x7 view uint8 [7, 7, 2] as envpool's MiniGrid builds it: rotated so the agent looks
    up from the bottom centre, cells of the grid hidden behind walls unseen (xminigrid's port of
    MiniGrid's visibility rule), cells beyond the grid always grey walls (xminigrid: unseen),
    the agent's own cell empty or the carried object (xminigrid: the tile under the agent)."""
    from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles
    from xminigrid.core.grid import align_with_up
    from xminigrid.core.observation import generate_viz_mask_minigrid
    grid, agent = timestep.state.grid, timestep.state.agent
    h, w = grid.shape[:2]
    wall = jnp.asarray(TILES_REGISTRY[Tiles.WALL, Colors.GREY], grid.dtype)
    padded = jnp.broadcast_to(wall, (h + 2 * VIEW, w + 2 * VIEW, 2))
    padded = padded.at[VIEW:VIEW + h, VIEW:VIEW + w].set(grid)
    inside = jnp.zeros(padded.shape[:2] + (1,), grid.dtype).at[VIEW:VIEW + h, VIEW:VIEW + w].set(1)
    padded = jnp.concatenate([padded, inside], -1)
    row, col = agent.position[0] + VIEW, agent.position[1] + VIEW
    half = VIEW // 2
    # top-left corner of the view facing up / right / down / left (rows = depth ahead)
    corners = jnp.array([[row - VIEW + 1, col - half], [row - half, col],
                         [row, col - half], [row - half, col - VIEW + 1]])
    top, left = corners[agent.direction]
    view = jax.lax.dynamic_slice(padded, (top, left, 0), (VIEW, VIEW, 3))
    view = align_with_up(view, agent.direction)
    view, inside = view[..., :2], view[..., 2] > 0
    visible = generate_viz_mask_minigrid(view) | ~inside
    view = jnp.where(visible[..., None], view, jnp.asarray(Tiles.EMPTY, view.dtype))
    floor = jnp.asarray(TILES_REGISTRY[Tiles.FLOOR, Colors.BLACK], view.dtype)
    own = jnp.where(agent.pocket[0] != Tiles.EMPTY, agent.pocket.astype(view.dtype), floor)
    return view.at[VIEW - 1, half].set(own)   # MiniGrid: the carried object, or empty


def observe(timestep, cfg: XMiniGridConfig) -> jax.Array:
    return _encode(_view(timestep))


def step(timestep, action: jax.Array, cfg: XMiniGridConfig) -> tuple:
    """(timestep, reward, terminal, truncated, irreversible = False)."""
    env, params = _env(cfg)
    moved = env.step(params, timestep, jnp.asarray(_ACTIONS)[action])
    done = action == DONE
    step_num = timestep.state.step_num + 1
    idle = timestep.replace(state=timestep.state.replace(step_num=step_num))
    timestep = jax.tree.map(lambda i, m: jnp.where(done, i, m), idle, moved)
    terminal = ~done & (moved.discount == 0.0)
    truncated = (step_num >= params.max_steps) & ~terminal
    reward = jnp.where(terminal, moved.reward, 0.0).astype(jnp.float32)
    return timestep, reward, terminal, truncated, jnp.zeros((), bool)


def info(timestep) -> dict:
    """'agent_pos' int32 [2] (x, y) and 'direction' int32 [] (0 right, 1 down, 2 left, 3 up)."""
    agent = timestep.state.agent
    return {'agent_pos': agent.position[::-1].astype(jnp.int32),
            'direction': ((agent.direction - 1) % 4).astype(jnp.int32)}
