"""The JAX-native MinAtar games against the reference package (`minatar`, numpy) step by step,
and the batched env protocol.

Reference comparison (`test_matches_the_reference_step_by_step`): the reference env runs with
its own seeded RandomState, wrapped to record every draw. Each step, the reference acts first;
its draws (the sticky-action coin, Freeway's car speeds and directions, Asterix's spawn side,
kind and slot) are converted to our draw structure and fed to `minatar.step_with` with the same
action. Every step is then compared exactly: the observation (`state()`), the reward, the
terminal flag and the whole internal game state (converted from the reference's attributes).
At a terminal step both reset: the reference's reset draws (Breakout's serve side, Freeway's
cars) feed `Game.init`, and the fresh states must agree too. There is no re-syncing from the
reference except (1) our sticky-action memory is taken from the reference at a reset (the
reference keeps it across episodes; ours restarts at no-op) and (2) at each reset the reference
is perturbed first (random bricks and paddle in Breakout, a thinned alien block in Space
Invaders, random chicken row, cars and clock in Freeway, random spawn / move speeds, ramp level
and ramp clock in Asterix) and that perturbed state is copied into ours, to reach rare events
(brick refills, cleared waves and ramps, crossings and the time limit, every ramp level) in a
few hundred steps; the test asserts these events occurred. What is not compared: the
distribution of our own `jax.random` draws (checked separately on their supports).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import envs
from jaxwm.envs import jax_native, minatar

GAMES = {'breakout': 'MinAtar-Breakout-v0', 'space_invaders': 'MinAtar-SpaceInvaders-v0',
         'freeway': 'MinAtar-Freeway-v0', 'asterix': 'MinAtar-Asterix-v0'}


class _Recorder(np.random.RandomState):
    """A RandomState that logs every rand / randint call: (method, args, a copy of the value:
    the games change the drawn arrays in place)."""

    def __init__(self, seed):
        super().__init__(seed)
        self.log = []

    def rand(self, *args):
        value = super().rand(*args)
        self.log.append(('rand', args, np.copy(value)))
        return value

    def randint(self, *args):
        value = super().randint(*args)
        self.log.append(('randint', args, np.copy(value)))
        return value


def _to_jax(game: str, e):
    """Our game state from the reference game `e`'s attributes."""
    i32 = functools.partial(np.asarray, dtype=np.int32)
    if game == 'breakout':
        return minatar.BreakoutState(
            paddle=i32(e.pos), ball_x=i32(e.ball_x), ball_y=i32(e.ball_y),
            ball_dir=i32(e.ball_dir), last_x=i32(e.last_x), last_y=i32(e.last_y),
            bricks=e.brick_map.astype(bool), strike=np.asarray(bool(e.strike)))
    if game == 'space_invaders':
        return minatar.SpaceInvadersState(
            pos=i32(e.pos), f_bullets=e.f_bullet_map.astype(bool),
            e_bullets=e.e_bullet_map.astype(bool), aliens=e.alien_map.astype(bool),
            alien_dir=i32(e.alien_dir), move_interval=i32(e.enemy_move_interval),
            alien_move_timer=i32(e.alien_move_timer), alien_shot_timer=i32(e.alien_shot_timer),
            shot_timer=i32(e.shot_timer), ramp_index=i32(e.ramp_index))
    if game == 'freeway':
        cars = np.array(e.cars, np.int32)
        return minatar.FreewayState(
            pos=i32(e.pos), car_x=cars[:, 0], car_timer=cars[:, 2], car_speed=cars[:, 3],
            move_timer=i32(e.move_timer), time_left=i32(e.terminate_timer))
    slots = e.entities
    return minatar.AsterixState(
        player_x=i32(e.player_x), player_y=i32(e.player_y),
        active=np.array([s is not None for s in slots]),
        x=i32([s[0] if s else 0 for s in slots]),
        right=np.array([bool(s[2]) if s else False for s in slots]),
        gold=np.array([bool(s[3]) if s else False for s in slots]),
        spawn_speed=i32(e.spawn_speed), spawn_timer=i32(e.spawn_timer),
        move_speed=i32(e.move_speed), move_timer=i32(e.move_timer),
        ramp_timer=i32(e.ramp_timer), ramp_index=i32(e.ramp_index))


def _freeway_draws(log) -> dict:
    (_, _, speeds), (_, _, signs) = log      # randint(1, 6, 8), rand(8)
    return {'speeds': jnp.asarray(speeds, jnp.int32), 'negative': jnp.asarray(signs < 0.5)}


def _game_draws(game: str, log) -> dict:
    """Our step draws (besides 'sticky') from the reference's draws of one `act`; fillers where
    it drew nothing (then the game does not use them)."""
    if game == 'freeway':
        return _freeway_draws(log) if log else {'speeds': jnp.ones(8, jnp.int32),
                                                'negative': jnp.zeros(8, bool)}
    if game == 'asterix':
        draws = {'right': jnp.bool_(False), 'gold': jnp.bool_(False), 'slot': jnp.float32(0)}
        if log:
            draws['right'] = jnp.bool_(log[0][2] < 1 / 2)
            draws['gold'] = jnp.bool_(log[1][2] < 1 / 3)
            if len(log) == 3:    # randint(n) over the free slots; no call when none is free
                (n,), k = log[2][1], log[2][2]
                draws['slot'] = jnp.float32((k + 0.5) / n)
        return draws
    assert not log
    return {}


def _reset_draws(game: str, log) -> dict:
    if game == 'breakout':
        return {'serve_left': jnp.bool_(log[0][2] == 0)}    # randint(2)
    if game == 'freeway':
        return _freeway_draws(log)
    assert not log
    return {}


def _perturb(game: str, e, rng):
    """Moves the freshly reset reference game `e` to a random nearby state (module docstring)."""
    if game == 'breakout':   # also the ball anywhere, e.g. inside the bricks
        e.pos = int(rng.integers(10))
        e.brick_map[1:4] = rng.random((3, 10)) < rng.choice([0.03, 0.3, 0.7, 1.0])
        if rng.random() < 0.5:
            e.ball_x, e.ball_y, e.ball_dir = (int(v) for v in rng.integers((0, 0, 0), (10, 9, 4)))
            e.last_x, e.last_y = e.ball_x, e.ball_y
            e.brick_map[e.ball_y, e.ball_x] = 0
    elif game == 'space_invaders':    # a few aliens (maybe lower), a bullet of ours below each
        e.pos = int(rng.integers(10))
        if rng.random() < 0.3:    # or two aliens as far left as right of the cannon, to fire
            d = int(rng.integers(1, 4))
            e.pos, e.alien_shot_timer = int(rng.integers(d, 10 - d)), 0
            e.alien_map[:] = 0
            e.alien_map[rng.integers(4), e.pos - d] = e.alien_map[rng.integers(4), e.pos + d] = 1
        elif rng.random() < 0.8:
            e.alien_map[0:4, 2:8] = rng.random((4, 6)) < 0.2
            e.alien_map[rng.integers(4), rng.integers(2, 8)] = 1
            e.alien_map[:] = np.roll(e.alien_map, rng.choice([0, 0, 3, 6]), 0)   # or lower
            for row, col in zip(*np.nonzero(e.alien_map)):
                e.f_bullet_map[min(row + rng.integers(1, 4), 9), col] = 1
    elif game == 'freeway':
        e.pos = int(rng.integers(1, 6))
        e.move_timer = int(rng.integers(4))
        e.terminate_timer = int(rng.integers(150))
        for car in e.cars:
            car[0], car[2] = int(rng.integers(10)), int(rng.integers(abs(car[3]) + 1))
    elif game == 'asterix':
        e.spawn_speed = e.spawn_timer = int(rng.integers(1, 11))
        e.move_speed = e.move_timer = int(rng.integers(1, 6))
        e.ramp_index, e.ramp_timer = int(rng.integers(0, 20)), int(rng.integers(-1, 30))


def _assert_same(ours, theirs, what):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg=f'{what}{jax.tree_util.keystr(path)}')


@pytest.mark.parametrize('game, ramping', [('breakout', True), ('space_invaders', True),
                                           ('space_invaders', False), ('freeway', True),
                                           ('asterix', True), ('asterix', False)])
def test_matches_the_reference_step_by_step(game, ramping):
    from minatar import Environment
    ref = Environment(game, sticky_action_prob=0.1, difficulty_ramping=ramping)
    ref.random = ref.env.random = recorder = _Recorder(7)
    cfg = minatar.make_config({'sticky': 0.1, 'ramping': ramping, 'max_episode_steps': None},
                              GAMES[game])
    step = jax.jit(minatar.step_with, static_argnums=3)
    observe = jax.jit(minatar.observe, static_argnums=1)
    init = jax.jit(minatar.GAMES[game].init)
    fresh = minatar.reset(jax.random.PRNGKey(0), cfg)
    rng = np.random.default_rng(1)
    weights = np.full(6, 1 / 6) if game != 'freeway' else np.array([1, 1, 15, 1, 1, 1]) / 20

    def start():
        recorder.log = []
        ref.reset()
        ours = init(_reset_draws(game, recorder.log))
        _assert_same(ours, _to_jax(game, ref.env), 'reset ')   # the rules' own start state
        _perturb(game, ref.env, rng)
        return fresh.replace(game=_to_jax(game, ref.env), last_action=jnp.int32(ref.last_action))

    def ramp(state):
        return int(getattr(state.game, 'ramp_index', 0))

    state = start()
    events = {'reward': 0, 'terminal': 0, 'sticky': 0, 'draws': 0, 'ramps': 0, 'refills': 0}
    for t in range(600 if game in ('breakout', 'space_invaders') else 1000):  # rarer events
        level, bricks = ramp(state), getattr(ref.env, 'brick_map', np.zeros(1)).sum()
        action = int(rng.choice(6, p=weights))
        recorder.log = []
        reward, terminal = ref.act(action)
        (_, _, coin), *log = recorder.log
        draws = {'sticky': jnp.bool_(coin < 0.1), **_game_draws(game, log)}
        state, our_reward, our_terminal, truncated, irreversible = step(
            state, jnp.int32(action), draws, cfg)
        where = f'{game} step {t}: '
        np.testing.assert_array_equal(np.asarray(observe(state, cfg)),
                                      ref.state().reshape(-1).astype(np.float32), err_msg=where)
        assert (float(our_reward), bool(our_terminal)) == (reward, terminal), where
        assert not truncated and not irreversible
        _assert_same(state.game, _to_jax(game, ref.env), where)
        assert int(state.last_action) == ref.last_action
        events['reward'] += reward
        events['terminal'] += terminal
        events['sticky'] += bool(coin < 0.1)
        events['draws'] += bool(log)
        events['ramps'] += ramp(state) > level
        events['refills'] += getattr(ref.env, 'brick_map', np.zeros(1)).sum() > bricks
        if terminal:
            state = start()
    assert events['terminal'] >= 2 and events['reward'] >= 3 and events['sticky'] >= 10, events
    if game in ('freeway', 'asterix'):    # crossings (redrawn cars), spawns
        assert events['draws'] >= 5, events
    if game == 'breakout':                # the bricks came back
        assert events['refills'] >= 1, events
    if game in ('space_invaders', 'asterix'):      # the difficulty went up (only) with ramping
        assert (events['ramps'] >= 2) == ramping and (ramping or not events['ramps']), events


def test_freeway_time_limit_is_terminal():
    # MinAtar: the game ends on the 2501st step (terminate_timer 2500 -> -1), as a terminal.
    cfg = minatar.make_config({'sticky': 0.0, 'ramping': True, 'max_episode_steps': None},
                              'MinAtar-Freeway-v0')
    state = minatar.reset(jax.random.PRNGKey(0), cfg)
    state = state.replace(game=state.game.replace(time_left=jnp.int32(1)))
    terminals = []
    for _ in range(2):
        state, _, terminal, truncated, _ = minatar.step(state, jnp.int32(0), cfg)
        terminals.append((bool(terminal), bool(truncated)))
    assert terminals == [(False, False), (True, False)]


def test_reset_and_step_draws_cover_the_reference_choices():
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    serves = jax.vmap(minatar._breakout_reset_draws)(keys)['serve_left']
    assert 0 < int(serves.sum()) < 64
    cars = jax.vmap(minatar._freeway_draws)(keys)
    assert set(np.unique(cars['speeds'])) == {1, 2, 3, 4, 5} and 0 < cars['negative'].mean() < 1
    spawn = jax.vmap(minatar._asterix_draws)(keys)
    assert 0.15 < float(spawn['gold'].mean()) < 0.55 and 0.3 < float(spawn['right'].mean()) < 0.7
    cfg = minatar.make_config({'sticky': 0.25, 'ramping': True, 'max_episode_steps': None},
                              'MinAtar-Asterix-v0')
    sticky = jax.vmap(minatar.step_draws, (0, None))(keys, cfg)['sticky']
    assert 0.1 < float(sticky.mean()) < 0.45


def test_sticky_actions_repeat_the_last_action():
    cfg = minatar.make_config({'sticky': 1.0, 'ramping': True, 'max_episode_steps': None},
                              'MinAtar-Breakout-v0')
    state = minatar.reset(jax.random.PRNGKey(0), cfg)
    for _ in range(3):    # always sticky: the episode's first "last action" (no-op) repeats
        state, *_ = minatar.step(state, jnp.int32(minatar.RIGHT), cfg)
    assert int(state.game.paddle) == 4 and int(state.last_action) == minatar.NOOP
    cfg = cfg._replace(sticky=0.0)
    state, *_ = minatar.step(state, jnp.int32(minatar.RIGHT), cfg)
    assert int(state.game.paddle) == 5


def test_batched_protocol_autoresets_and_truncates():
    env = envs.make('MinAtar-Breakout-v0', 4, seed=0, sticky=0.0)
    assert env.act_space == envs.base.ActionSpace(True, 6)
    assert env.obs_space['vector'].shape == (400,)
    out = env.reset()
    envs.base.check_outputs(env, out)
    assert out['is_first'].all() and out['score'].dtype == np.float32
    grid = out['vector'].reshape(4, 10, 10, 4)
    np.testing.assert_array_equal(grid[:, 9, 4, 0], 1)             # paddle at column 4
    np.testing.assert_array_equal(grid[..., 3].sum((1, 2)), 30)     # three rows of bricks
    rng, seen_reset = np.random.default_rng(0), False
    for _ in range(60):
        last = out['is_last']
        out = env.step(rng.integers(0, 6, 4).astype(np.int32))
        envs.base.check_outputs(env, out)
        np.testing.assert_array_equal(out['is_first'], last)
        assert (out['reward'][last] == 0).all() and (out['score'][last] == 0).all()
        seen_reset |= last.any()
    assert seen_reset
    env = envs.make('MinAtar-Freeway-v0', 2, seed=0, max_episode_steps=5)
    env.reset()
    for t in range(5):
        out = env.step(np.zeros(2, np.int32))
    assert out['is_last'].all() and not out['is_terminal'].any()
    assert 'MinAtar-Asterix-v0' in envs.supported_ids() and 'MinAtar-Asterix-v0' in (
        jax_native.names())
    with pytest.raises(ValueError, match='sticky'):
        envs.make('MinAtar-Breakout-v0', 1, sticky=1.5)
    with pytest.raises(ValueError, match='ramping'):
        envs.make('MinAtar-Asterix-v0', 1, ramping='yes')


def test_jit_scan_rollouts_are_deterministic_per_key():
    module, cfg = jax_native.core('MinAtar-Asterix-v0'), jax_native.make_config(
        'MinAtar-Asterix-v0')

    @jax.jit
    def rollout(key):
        k_reset, k_steps = jax.random.split(key)
        state, out = jax_native.protocol_reset(module, cfg, k_reset, 3)

        def body(carry, key):
            state, last = carry
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (3,), 0, 6)
            state, out = jax_native.protocol_step(module, cfg, state, action, last, k_env)
            return (state, out['is_last']), (out['vector'], out['reward'], out['is_last'])

        _, outs = jax.lax.scan(body, (state, out['is_last']), jax.random.split(k_steps, 150))
        return outs

    a, b, c = rollout(jax.random.PRNGKey(0)), rollout(jax.random.PRNGKey(0)), rollout(
        jax.random.PRNGKey(1))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert a[0].shape == (150, 3, 400) and a[0].dtype == jnp.float32
    assert not np.array_equal(a[0], c[0])
    assert a[2].any()       # episodes ended (an enemy was touched) inside the scan
