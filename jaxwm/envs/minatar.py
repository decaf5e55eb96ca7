"""MinAtar (Young & Tian, 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and
Reproducible Reinforcement Learning Experiments"), JAX-native: Breakout, Space Invaders, Freeway
and Asterix with the rules of the reference package (`minatar` 1.0.15, numpy), written as pure
functions of a state pytree so that whole rollouts compile into one `lax.scan`.

Names: 'MinAtar-Breakout-v0', 'MinAtar-SpaceInvaders-v0', 'MinAtar-Freeway-v0',
'MinAtar-Asterix-v0' (`NAMES`). Every game has MinAtar's full action set of 6: 0 no-op, 1 left,
2 up, 3 right, 4 down, 5 fire (each game ignores the ones it has no use for). Observation
'vector' float32 [10 * 10 * C]: MinAtar's binary `state()` [10, 10, C] flattened row-major,
so `obs.reshape(10, 10, C)` is the reference's state with its channel order (`CHANNELS`).
Reward: +1 per brick / alien / crossing / treasure. Terminal: the game's own end (the ball is
missed; the cannon is hit or reached; Freeway's 2500-step clock runs out, which MinAtar treats
as the end of the game; an enemy is touched). Difficulty ramps as in MinAtar where the game has
a ramp (Space Invaders: faster aliens after each cleared wave; Asterix: faster spawns and
moves every 102 steps), option 'ramping'.

Options: 'sticky' (MinAtar's sticky-action probability, default 0.1: with it the previous
action is repeated instead of the chosen one), 'ramping' (default True) and
'max_episode_steps' (None: MinAtar has no time limit but Freeway's; else a truncation).
Randomness (sticky actions, Breakout's serve side, Freeway's car speeds, Asterix's spawns) comes
from a `jax.random` key in the state: `step` draws it (`step_draws`) and applies `step_with`,
which takes the draws explicitly (the tests feed it the reference's draws).
One difference from the reference: its sticky-action memory survives a reset, here each
episode starts with the previous action = no-op. Info: 'score' (the episode's summed reward)
and 'ramp' (the difficulty level; 0 for games without a ramp). `irreversible` is always False.
A core of `jaxwm.envs.jax_native`.
"""
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.envs import base

NAMES = {'MinAtar-Breakout-v0': 'breakout', 'MinAtar-SpaceInvaders-v0': 'space_invaders',
         'MinAtar-Freeway-v0': 'freeway', 'MinAtar-Asterix-v0': 'asterix'}
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)
NUM_ACTIONS = 6
SIZE = 10
CHANNELS = {
    'breakout': ('paddle', 'ball', 'trail', 'brick'),
    'space_invaders': ('cannon', 'alien', 'alien_left', 'alien_right', 'friendly_bullet',
                       'enemy_bullet'),
    'freeway': ('chicken', 'car', 'speed1', 'speed2', 'speed3', 'speed4', 'speed5'),
    'asterix': ('player', 'enemy', 'trail', 'gold'),
}
OPTIONS = {
    'obs': ('vector', ('vector',)),
    'sticky': (0.1, base.PROBABILITY),
    'ramping': (True, base.BOOL),
    'max_episode_steps': (None, base.OPTIONAL_POSITIVE_INT),
}


class MinAtarConfig(NamedTuple):
    game: str = 'breakout'           # a value of NAMES
    sticky: float = 0.1
    ramping: bool = True
    max_episode_steps: int | None = None


def make_config(options: dict, name: str) -> MinAtarConfig:
    return MinAtarConfig(NAMES[name], float(options['sticky']), bool(options['ramping']),
                         options['max_episode_steps'])


def obs_size(cfg: MinAtarConfig) -> int:
    return SIZE * SIZE * len(CHANNELS[cfg.game])


_ROWS = np.arange(SIZE)[:, None]   # numpy: importing must not start a JAX backend
_COLS = np.arange(SIZE)[None, :]


def _cells(rows, cols, mask=True) -> jax.Array:
    """bool [10, 10]: the cells (rows[k], cols[k]) where mask[k] (scalars or [K]); cells off the
    grid are left out."""
    rows, cols, mask = (jnp.atleast_1d(jnp.asarray(v)) for v in (rows, cols, mask))
    mask = jnp.broadcast_to(mask, rows.shape)
    hit = (_ROWS == rows[:, None, None]) & (_COLS == cols[:, None, None]) & mask[:, None, None]
    return hit.any(0)


def _horizontal(action: jax.Array) -> jax.Array:
    return (action == RIGHT).astype(jnp.int32) - (action == LEFT).astype(jnp.int32)


def _vertical(action: jax.Array) -> jax.Array:
    return (action == DOWN).astype(jnp.int32) - (action == UP).astype(jnp.int32)


# ------------------------------------------------------------------------------------ Breakout
# The ball moves diagonally, one cell a step: direction 0 up-left, 1 up-right, 2 down-right,
# 3 down-left. Walls and bricks reflect it; at row 9 the paddle reflects it if the ball was above
# the paddle, reverses it if it reaches the paddle's cell diagonally; else the game ends. A broken
# brick gives +1; a second brick right after a strike is passed into without breaking (MinAtar's
# `strike` flag). When the ball reaches the bottom row with no bricks left, 3 rows come back.
_DX = np.array([-1, 1, 1, -1], np.int32)
_DY = np.array([-1, -1, 1, 1], np.int32)
_FLIP_X = np.array([1, 0, 3, 2], np.int32)
_FLIP_Y = np.array([3, 2, 1, 0], np.int32)
_FLIP_XY = np.array([2, 3, 0, 1], np.int32)
_BRICKS = np.zeros((SIZE, SIZE), bool)
_BRICKS[1:4] = True


@flax.struct.dataclass
class BreakoutState:
    paddle: jax.Array     # int32 [] column of the paddle (row 9)
    ball_x: jax.Array     # int32 []
    ball_y: jax.Array     # int32 []
    ball_dir: jax.Array   # int32 [] 0 up-left, 1 up-right, 2 down-right, 3 down-left
    last_x: jax.Array     # int32 [] the ball's previous cell (the trail)
    last_y: jax.Array     # int32 []
    bricks: jax.Array     # bool [10, 10]
    strike: jax.Array     # bool [] a brick was hit on the previous step


def _breakout_reset_draws(key: jax.Array) -> dict:
    return {'serve_left': jax.random.bernoulli(key)}


def _breakout_init(draws: dict) -> BreakoutState:
    """The ball starts in row 3, at the left wall going down-right or at the right wall going
    down-left (MinAtar's `randint(2)`: 0 left)."""
    left = draws['serve_left']
    x = jnp.where(left, 0, 9).astype(jnp.int32)
    return BreakoutState(paddle=jnp.int32(4), ball_x=x, ball_y=jnp.int32(3),
                         ball_dir=jnp.where(left, 2, 3).astype(jnp.int32), last_x=x,
                         last_y=jnp.int32(3), bricks=jnp.asarray(_BRICKS),
                         strike=jnp.bool_(False))


def _breakout_step(g: BreakoutState, action, draws, cfg) -> tuple:
    paddle = jnp.clip(g.paddle + _horizontal(action), 0, SIZE - 1)
    new_x = g.ball_x + jnp.asarray(_DX)[g.ball_dir]
    new_y = g.ball_y + jnp.asarray(_DY)[g.ball_dir]
    side = (new_x < 0) | (new_x > SIZE - 1)
    new_x = jnp.clip(new_x, 0, SIZE - 1)
    direction = jnp.where(side, jnp.asarray(_FLIP_X)[g.ball_dir], g.ball_dir)
    top = new_y < 0
    row = jnp.clip(new_y, 0, SIZE - 1)
    brick = ~top & g.bricks[row, new_x]
    breaks = brick & ~g.strike
    bottom = ~top & ~brick & (new_y == SIZE - 1)
    bricks = g.bricks.at[row, new_x].set(g.bricks[row, new_x] & ~breaks)
    bricks = bricks | ((bottom & ~bricks.any()) & jnp.asarray(_BRICKS))
    above = bottom & (g.ball_x == paddle)            # from straight above: back up
    edge = bottom & ~above & (new_x == paddle)       # onto the paddle from beside: reversed
    terminal = bottom & ~above & ~edge
    direction = jnp.where(top | breaks | above, jnp.asarray(_FLIP_Y)[direction],
                          jnp.where(edge, jnp.asarray(_FLIP_XY)[direction], direction))
    new_y = jnp.where(top, 0, jnp.where(breaks | above | edge, g.ball_y, new_y))
    g = BreakoutState(paddle=paddle, ball_x=new_x, ball_y=new_y, ball_dir=direction,
                      last_x=g.ball_x, last_y=g.ball_y, bricks=bricks, strike=brick)
    return g, breaks.astype(jnp.float32), terminal


def _breakout_render(g: BreakoutState) -> list:
    return [_cells(SIZE - 1, g.paddle), _cells(g.ball_y, g.ball_x), _cells(g.last_y, g.last_x),
            g.bricks]


# ------------------------------------------------------------------------------ Space Invaders
# The cannon (row 9) moves left/right or fires (one shot every 5 steps); its bullets rise one row
# a step, the aliens' fall one row a step. The alien block (4 x 6 at the start) steps sideways
# every `move_interval` steps (every n steps when n < that aliens are left), and down one row
# with a turn at a wall; the alien nearest the cannon's column (its lowest) fires every 10 steps.
# +1 per alien shot. Terminal: an enemy bullet or an alien on the cannon, or aliens moving down
# from the bottom row. A cleared wave comes back, with ramping one step faster (down to 6).
SHOT_COOL_DOWN, ALIEN_MOVE_INTERVAL, ALIEN_SHOT_INTERVAL = 5, 12, 10
_ALIENS = np.zeros((SIZE, SIZE), bool)
_ALIENS[0:4, 2:8] = True


@flax.struct.dataclass
class SpaceInvadersState:
    pos: jax.Array              # int32 [] the cannon's column
    f_bullets: jax.Array        # bool [10, 10] the cannon's bullets
    e_bullets: jax.Array        # bool [10, 10] the aliens' bullets
    aliens: jax.Array           # bool [10, 10]
    alien_dir: jax.Array        # int32 [] -1 left, +1 right
    move_interval: jax.Array    # int32 [] MinAtar's enemy_move_interval (ramps 12 -> 6)
    alien_move_timer: jax.Array  # int32 []
    alien_shot_timer: jax.Array  # int32 []
    shot_timer: jax.Array       # int32 [] steps until the cannon can fire again
    ramp_index: jax.Array       # int32 []


def _space_invaders_init(draws: dict) -> SpaceInvadersState:
    empty = jnp.zeros((SIZE, SIZE), bool)
    return SpaceInvadersState(
        pos=jnp.int32(5), f_bullets=empty, e_bullets=empty, aliens=jnp.asarray(_ALIENS),
        alien_dir=jnp.int32(-1), move_interval=jnp.int32(ALIEN_MOVE_INTERVAL),
        alien_move_timer=jnp.int32(ALIEN_MOVE_INTERVAL),
        alien_shot_timer=jnp.int32(ALIEN_SHOT_INTERVAL), shot_timer=jnp.int32(0),
        ramp_index=jnp.int32(0))


def _space_invaders_step(g: SpaceInvadersState, action, draws, cfg) -> tuple:
    fire = (action == FIRE) & (g.shot_timer == 0)
    f_bullets = g.f_bullets.at[SIZE - 1, g.pos].set(g.f_bullets[SIZE - 1, g.pos] | fire)
    shot_timer = jnp.where(fire, SHOT_COOL_DOWN, g.shot_timer)
    pos = jnp.where(fire, g.pos, jnp.clip(g.pos + _horizontal(action), 0, SIZE - 1))
    f_bullets = jnp.roll(f_bullets, -1, 0).at[SIZE - 1].set(False)
    e_bullets = jnp.roll(g.e_bullets, 1, 0).at[0].set(False)
    terminal = e_bullets[SIZE - 1, pos] | g.aliens[SIZE - 1, pos]
    # the alien block
    move = g.alien_move_timer == 0
    turn = ((g.aliens[:, 0].any() & (g.alien_dir < 0))
            | (g.aliens[:, SIZE - 1].any() & (g.alien_dir > 0)))
    sideways = jnp.where(g.alien_dir > 0, jnp.roll(g.aliens, 1, 1), jnp.roll(g.aliens, -1, 1))
    aliens = jnp.where(move, jnp.where(turn, jnp.roll(g.aliens, 1, 0), sideways), g.aliens)
    alien_dir = jnp.where(move & turn, -g.alien_dir, g.alien_dir)
    terminal |= move & turn & g.aliens[SIZE - 1].any()
    terminal |= move & aliens[SIZE - 1, pos]
    alien_move_timer = jnp.where(move, jnp.minimum(g.aliens.sum(), g.move_interval),
                                 g.alien_move_timer)
    # the alien nearest the cannon's column (ties: the left one), its lowest, fires
    shoot = g.alien_shot_timer == 0
    occupied = aliens.any(0)
    cols = jnp.arange(SIZE)
    col = jnp.argmin(jnp.where(occupied, jnp.abs(cols - pos) * SIZE + cols, SIZE * SIZE))
    row = SIZE - 1 - jnp.argmax(aliens[::-1, col])
    e_bullets = e_bullets.at[row, col].set(e_bullets[row, col] | (shoot & occupied.any()))
    alien_shot_timer = jnp.where(shoot, ALIEN_SHOT_INTERVAL, g.alien_shot_timer)
    kills = aliens & f_bullets
    aliens, f_bullets = aliens & ~kills, f_bullets & ~kills
    # a cleared wave comes back (faster, with ramping)
    cleared = ~aliens.any()
    ramp = cleared & (g.move_interval > 6) & cfg.ramping
    g = SpaceInvadersState(
        pos=pos, f_bullets=f_bullets, e_bullets=e_bullets,
        aliens=aliens | (cleared & jnp.asarray(_ALIENS)), alien_dir=alien_dir,
        move_interval=g.move_interval - ramp, alien_move_timer=alien_move_timer - 1,
        alien_shot_timer=alien_shot_timer - 1, shot_timer=shot_timer - (shot_timer > 0),
        ramp_index=g.ramp_index + ramp)
    return g, kills.sum().astype(jnp.float32), terminal


def _space_invaders_render(g: SpaceInvadersState) -> list:
    left = g.alien_dir < 0
    return [_cells(SIZE - 1, g.pos), g.aliens, g.aliens & left, g.aliens & ~left, g.f_bullets,
            g.e_bullets]


# ----------------------------------------------------------------------------------- Freeway
# The chicken (column 4) crosses 8 lanes of cars (rows 1-8, one car each) from row 9 to row 0;
# it can move up or down once every 3 steps. Reaching row 0 gives +1, sends it back to row 9 and
# redraws every car's speed and direction; a car on the chicken sends it back to row 9. A car
# with speed s moves one cell every s + 1 steps, wrapping around. The game ends on step 2501.
PLAYER_SPEED, TIME_LIMIT = 3, 2500


@flax.struct.dataclass
class FreewayState:
    pos: jax.Array          # int32 [] the chicken's row
    car_x: jax.Array        # int32 [8] the car of row i + 1's column
    car_timer: jax.Array    # int32 [8] steps until it moves
    car_speed: jax.Array    # int32 [8] signed: > 0 right, < 0 left, |speed| in 1..5
    move_timer: jax.Array   # int32 [] steps until the chicken can move
    time_left: jax.Array    # int32 [] MinAtar's terminate_timer


def _freeway_draws(key: jax.Array) -> dict:
    """MinAtar's `_randomize_cars`: speeds `randint(1, 6, 8)`, direction left where
    `rand(8) < 0.5`."""
    k_speed, k_dir = jax.random.split(key)
    return {'speeds': jax.random.randint(k_speed, (8,), 1, 6),
            'negative': jax.random.bernoulli(k_dir, 0.5, (8,))}


def _freeway_speeds(draws: dict) -> jax.Array:
    return jnp.where(draws['negative'], -draws['speeds'], draws['speeds']).astype(jnp.int32)


def _freeway_init(draws: dict) -> FreewayState:
    speed = _freeway_speeds(draws)
    return FreewayState(pos=jnp.int32(SIZE - 1), car_x=jnp.zeros(8, jnp.int32),
                        car_timer=jnp.abs(speed), car_speed=speed,
                        move_timer=jnp.int32(PLAYER_SPEED), time_left=jnp.int32(TIME_LIMIT))


def _freeway_step(g: FreewayState, action, draws, cfg) -> tuple:
    can_move = g.move_timer == 0
    up, down = can_move & (action == UP), can_move & (action == DOWN)
    pos = jnp.clip(g.pos + down.astype(jnp.int32) - up.astype(jnp.int32), 0, SIZE - 1)
    move_timer = jnp.where(up | down, PLAYER_SPEED, g.move_timer)
    crossed = pos == 0
    speed = jnp.where(crossed, _freeway_speeds(draws), g.car_speed)
    timer = jnp.where(crossed, jnp.abs(speed), g.car_timer)
    pos = jnp.where(crossed, SIZE - 1, pos)
    # cars: each lane has one car, so at most the chicken's lane can hit it (before or after its
    # car moves); MinAtar's sequential loop is the same as this `any`
    lane = jnp.arange(1, 9) == pos
    hit = (lane & (g.car_x == 4)).any()
    moving = timer == 0
    car_x = jnp.where(moving, (g.car_x + jnp.sign(speed)) % SIZE, g.car_x)
    hit |= (lane & moving & (car_x == 4)).any()
    pos = jnp.where(hit, SIZE - 1, pos)
    g = FreewayState(pos=pos, car_x=car_x.astype(jnp.int32),
                     car_timer=jnp.where(moving, jnp.abs(speed), timer - 1), car_speed=speed,
                     move_timer=move_timer - (move_timer > 0), time_left=g.time_left - 1)
    return g, crossed.astype(jnp.float32), g.time_left < 0


def _freeway_render(g: FreewayState) -> list:
    rows = jnp.arange(1, 9)
    back = (g.car_x - jnp.sign(g.car_speed)) % SIZE
    trails = [_cells(rows, back, jnp.abs(g.car_speed) == s) for s in range(1, 6)]
    return [_cells(g.pos, 4), _cells(rows, g.car_x)] + trails


# ----------------------------------------------------------------------------------- Asterix
# The player moves in rows 1-8; enemies and treasure (gold) cross the rows sideways, at most one
# per row, spawned every `spawn_speed` steps in a random free row, from a random side, gold with
# probability 1/3; all of them move one cell every `move_speed` steps. Touching gold: +1 (it is
# taken); touching an enemy: terminal. With ramping, every 102 steps the spawns get faster (down
# to every step) and every second time the moves too (down to every step).
RAMP_INTERVAL, INIT_SPAWN_SPEED, INIT_MOVE_INTERVAL = 100, 10, 5


@flax.struct.dataclass
class AsterixState:
    player_x: jax.Array     # int32 []
    player_y: jax.Array     # int32 [] in 1..8
    active: jax.Array       # bool [8] slot i holds an entity in row i + 1
    x: jax.Array            # int32 [8] its column (0 where inactive)
    right: jax.Array        # bool [8] it moves right (False where inactive)
    gold: jax.Array         # bool [8] it is treasure (False where inactive)
    spawn_speed: jax.Array  # int32 []
    spawn_timer: jax.Array  # int32 []
    move_speed: jax.Array   # int32 []
    move_timer: jax.Array   # int32 []
    ramp_timer: jax.Array   # int32 []
    ramp_index: jax.Array   # int32 []


def _asterix_draws(key: jax.Array) -> dict:
    """MinAtar's `_spawn_entity`: from the left where `rand() < 1/2`, gold where
    `rand() < 1/3`, the `floor(slot * free)`-th free slot."""
    k_side, k_gold, k_slot = jax.random.split(key, 3)
    return {'right': jax.random.bernoulli(k_side, 0.5),
            'gold': jax.random.bernoulli(k_gold, 1 / 3),
            'slot': jax.random.uniform(k_slot)}


def _asterix_init(draws: dict) -> AsterixState:
    i32 = jnp.int32
    return AsterixState(player_x=i32(5), player_y=i32(5), active=jnp.zeros(8, bool),
                        x=jnp.zeros(8, jnp.int32), right=jnp.zeros(8, bool),
                        gold=jnp.zeros(8, bool), spawn_speed=i32(INIT_SPAWN_SPEED),
                        spawn_timer=i32(INIT_SPAWN_SPEED), move_speed=i32(INIT_MOVE_INTERVAL),
                        move_timer=i32(INIT_MOVE_INTERVAL), ramp_timer=i32(RAMP_INTERVAL),
                        ramp_index=i32(0))


def _asterix_touch(active, x, gold, px, py) -> tuple:
    """(active without the gold taken, reward, an enemy touched) at the player's cell."""
    touch = active & (x == px) & (jnp.arange(1, 9) == py)
    return active & ~(touch & gold), (touch & gold).sum(), (touch & ~gold).any()


def _asterix_step(g: AsterixState, action, draws, cfg) -> tuple:
    spawn = g.spawn_timer == 0
    free = ~g.active
    n_free = free.sum()
    index = jnp.minimum(jnp.floor(draws['slot'] * n_free).astype(jnp.int32), n_free - 1)
    new = spawn & free & (jnp.cumsum(free) - 1 == index)
    active = g.active | new
    x = jnp.where(new, jnp.where(draws['right'], 0, SIZE - 1), g.x)
    right = jnp.where(new, draws['right'], g.right)
    gold = jnp.where(new, draws['gold'], g.gold)
    spawn_timer = jnp.where(spawn, g.spawn_speed, g.spawn_timer)
    px = jnp.clip(g.player_x + _horizontal(action), 0, SIZE - 1)
    py = jnp.clip(g.player_y + _vertical(action), 1, 8)
    active, reward, terminal = _asterix_touch(active, x, gold, px, py)
    move = g.move_timer == 0
    move_timer = jnp.where(move, g.move_speed, g.move_timer)
    x = jnp.where(move & active, x + jnp.where(right, 1, -1), x)
    active &= (x >= 0) & (x <= SIZE - 1)
    active, reward2, terminal2 = _asterix_touch(active, x, gold, px, py)
    reward, terminal = reward + move * reward2, terminal | (move & terminal2)
    # difficulty ramp
    ramps = cfg.ramping & ((g.spawn_speed > 1) | (g.move_speed > 1))
    level = ramps & (g.ramp_timer < 0)
    ramp_timer = jnp.where(level, RAMP_INTERVAL, g.ramp_timer - (ramps & ~level))
    g = AsterixState(
        player_x=px, player_y=py, active=active, x=jnp.where(active, x, 0).astype(jnp.int32),
        right=right & active, gold=gold & active, spawn_speed=g.spawn_speed - (
            level & (g.spawn_speed > 1)), spawn_timer=spawn_timer - 1,
        move_speed=g.move_speed - (level & (g.move_speed > 1) & (g.ramp_index % 2 == 1)),
        move_timer=move_timer - 1, ramp_timer=ramp_timer, ramp_index=g.ramp_index + level)
    return g, reward.astype(jnp.float32), terminal


def _asterix_render(g: AsterixState) -> list:
    rows = jnp.arange(1, 9)
    back = g.x - jnp.where(g.right, 1, -1)
    return [_cells(g.player_y, g.player_x), _cells(rows, g.x, g.active & ~g.gold),
            _cells(rows, back, g.active), _cells(rows, g.x, g.active & g.gold)]


# ------------------------------------------------------------------------------------- core
class Game(NamedTuple):
    init: Callable          # reset draws -> game state
    reset_draws: Callable   # key -> draws of `init`
    step: Callable          # (game state, action, draws, cfg) -> (game state, reward, terminal)
    step_draws: Callable    # key -> draws of `step` (besides 'sticky')
    render: Callable        # game state -> [C] bool [10, 10] channels


def _none(key: jax.Array) -> dict:
    return {}


GAMES = {
    'breakout': Game(_breakout_init, _breakout_reset_draws, _breakout_step, _none,
                     _breakout_render),
    'space_invaders': Game(_space_invaders_init, _none, _space_invaders_step, _none,
                           _space_invaders_render),
    'freeway': Game(_freeway_init, _freeway_draws, _freeway_step, _freeway_draws,
                    _freeway_render),
    'asterix': Game(_asterix_init, _none, _asterix_step, _asterix_draws, _asterix_render),
}


@flax.struct.dataclass
class MinAtarState:
    game: Any                # the game's state (BreakoutState, ...)
    key: jax.Array           # the key of the next step's draws
    last_action: jax.Array   # int32 [] the action applied last (sticky actions repeat it)
    t: jax.Array             # int32 [] steps taken in the episode
    score: jax.Array         # float32 [] reward summed over the episode


def reset(key: jax.Array, cfg: MinAtarConfig) -> MinAtarState:
    game = GAMES[cfg.game]
    key, k_init = jax.random.split(key)
    return MinAtarState(game=game.init(game.reset_draws(k_init)), key=key,
                        last_action=jnp.int32(NOOP), t=jnp.int32(0), score=jnp.float32(0))


def step_draws(key: jax.Array, cfg: MinAtarConfig) -> dict:
    """The random draws of one step: 'sticky' (bool [], repeat the last action) and the game's
    (`Game.step_draws`; used only on the steps where MinAtar draws, e.g. a spawn)."""
    k_sticky, k_game = jax.random.split(key)
    return {'sticky': jax.random.bernoulli(k_sticky, cfg.sticky),
            **GAMES[cfg.game].step_draws(k_game)}


def step_with(state: MinAtarState, action: jax.Array, draws: dict, cfg: MinAtarConfig) -> tuple:
    """`step` with explicit `draws` (`step_draws`' structure); `state.key` is left as is."""
    action = jnp.where(draws['sticky'], state.last_action, action).astype(jnp.int32)
    game, reward, terminal = GAMES[cfg.game].step(state.game, action, draws, cfg)
    t = state.t + 1
    truncated = jnp.bool_(False)
    if cfg.max_episode_steps:
        truncated = (t >= cfg.max_episode_steps) & ~terminal
    state = state.replace(game=game, last_action=action, t=t, score=state.score + reward)
    return state, reward, terminal, truncated, jnp.zeros((), bool)


def step(state: MinAtarState, action: jax.Array, cfg: MinAtarConfig) -> tuple:
    """One step (sticky actions included). Returns (state, reward float32 [], terminal bool []
    (the game's end), truncated bool [] (max_episode_steps), irreversible = False)."""
    key, k_draws = jax.random.split(state.key)
    state, *out = step_with(state, action, step_draws(k_draws, cfg), cfg)
    return (state.replace(key=key), *out)


def render(state: MinAtarState, cfg: MinAtarConfig) -> jax.Array:
    """bool [10, 10, C]: MinAtar's `state()`."""
    return jnp.stack(GAMES[cfg.game].render(state.game), -1)


def observe(state: MinAtarState, cfg: MinAtarConfig) -> jax.Array:
    """float32 [10 * 10 * C]: `render` flattened (row, column, channel)."""
    return render(state, cfg).astype(jnp.float32).reshape(-1)


def info(state: MinAtarState) -> dict:
    """'score' float32 [] (the episode's reward so far) and 'ramp' int32 [] (difficulty level,
    0 in games without a ramp)."""
    ramp = getattr(state.game, 'ramp_index', jnp.zeros((), jnp.int32))
    return {'score': state.score, 'ramp': ramp.astype(jnp.int32)}
