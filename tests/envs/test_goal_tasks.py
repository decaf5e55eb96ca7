"""Goal-reaching pixel tasks (DINO-WM): Wall's dynamics on hand-worked moves, rendering, the
batched task interface, evaluation pairs and offline collection; Push-T through gym-pusht."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.data import datasets
from jaxwm.envs import goal_tasks, wall

OBS_SPEC = {'image': (np.uint8, (64, 64, 3)), 'proprio': (np.float32, (2,)),
            'goal_image': (np.uint8, (64, 64, 3)), 'goal_proprio': (np.float32, (2,)),
            'success': (np.bool_, ()), 'ever_success': (np.bool_, ())}


def move(pos, action, door_y=0.5):
    return np.asarray(jax.jit(wall.move)(jnp.array(pos, jnp.float32),
                                         jnp.array(action, jnp.float32), jnp.float32(door_y)))


def assert_obs(obs, n):
    assert set(obs) == set(OBS_SPEC)
    for key, (dtype, shape) in OBS_SPEC.items():
        assert isinstance(obs[key], np.ndarray) and obs[key].dtype == dtype, key
        assert obs[key].shape == (n, *shape), key


# ----------------------------------------------------------------------------- Wall dynamics

@pytest.mark.parametrize('pos,action,door_y,expected', [
    # Door y in [0.4, 0.6]: moving right by 0.075 from x = 0.46 passes through the doorway.
    ((0.46, 0.5), (1, 0), 0.5, (0.535, 0.5)),
    # The same move at y = 0.2 (below the door) stops at the wall's left face x = 0.47.
    ((0.46, 0.2), (1, 0), 0.5, (0.47, 0.2)),
    # From the right side, blocked at the right face x = 0.53.
    ((0.55, 0.9), (-1, 0), 0.5, (0.53, 0.9)),
    # A blocked diagonal move slides along the face: y moves by 0.075 * 0.5.
    ((0.46, 0.2), (1, 0.5), 0.5, (0.47, 0.2375)),
    # Inside the doorway, moving up is stopped by the door's top edge y = 0.6.
    ((0.5, 0.55), (0, 1), 0.5, (0.5, 0.6)),
    # Borders clamp: (0.02, 0.97) + 0.075 * (-1, 1) -> (0, 1).
    ((0.02, 0.97), (-1, 1), 0.5, (0.0, 1.0)),
    # An exact free move: (0.2, 0.3) + 0.075 * (0.5, -1) = (0.2375, 0.225).
    ((0.2, 0.3), (0.5, -1), 0.5, (0.2375, 0.225)),
    # Actions are clipped to [-1, 1].
    ((0.2, 0.3), (3, 0), 0.5, (0.275, 0.3)),
    # A door at y = 0.3 lets the y = 0.2 move pass (door [0.2, 0.4], touching its edge is free).
    ((0.46, 0.25), (1, 0), 0.3, (0.535, 0.25)),
])
def test_wall_moves_hand_worked(pos, action, door_y, expected):
    np.testing.assert_allclose(move(pos, action, door_y), expected, atol=1e-6)


def test_wall_cannot_tunnel_and_a_blocked_agent_can_leave_the_face():
    # Starting on the face below the door and pushing right for many steps never crosses.
    pos = np.array([0.3, 0.1], np.float32)
    for _ in range(10):
        pos = move(pos, (1, 0))
    np.testing.assert_allclose(pos, (0.47, 0.1), atol=1e-6)
    np.testing.assert_allclose(move(pos, (-1, 0)), (0.395, 0.1), atol=1e-6)
    np.testing.assert_allclose(move(pos, (0, 1)), (0.47, 0.175), atol=1e-6)   # slides up


def test_wall_render_shape_colours_and_agent_pixel():
    state = wall.WallState(pos=jnp.array([0.2, 0.7], jnp.float32), door_y=jnp.float32(0.5))
    image = np.asarray(jax.jit(wall.render)(state))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    row, col = wall.pixel_of((0.2, 0.7))
    assert tuple(image[row, col]) == wall.AGENT_COLOUR
    assert tuple(image[0, 0]) == wall.BACKGROUND
    wall_col = wall.pixel_of((0.5, 0.0))[1]
    assert tuple(image[wall.pixel_of((0.5, 0.1))[0], wall_col]) == wall.WALL_COLOUR
    assert tuple(image[wall.pixel_of((0.5, 0.5))[0], wall_col]) == wall.BACKGROUND   # the door
    # The agent disc (radius 0.05 = 3.2 px) covers about pi * 3.2^2 ~ 32 pixels.
    agent_pixels = np.all(image == np.array(wall.AGENT_COLOUR, np.uint8), -1).sum()
    assert 24 <= agent_pixels <= 40


def test_wall_success_threshold():
    goal = jnp.array([0.5, 0.5])
    assert bool(wall.success(jnp.array([0.5 + 0.074, 0.5]), goal))
    assert not bool(wall.success(jnp.array([0.5 + 0.076, 0.5]), goal))
    assert not bool(wall.success(jnp.array([0.56, 0.56]), goal))   # 0.0849 away


# -------------------------------------------------------------------------- the task interface

def test_make_goal_task_rejects_a_bad_name():
    with pytest.raises(ValueError, match=r"'Wall-v1'.*allowed: \['Wall-v0', 'PushT-v0'\]"):
        goal_tasks.make_goal_task('Wall-v1', 2, 0)
    with pytest.raises(ValueError, match='num_envs=0'):
        goal_tasks.make_goal_task('Wall-v0', 0, 0)


def test_wall_eval_pairs_deterministic_and_on_opposite_sides():
    task = goal_tasks.make_goal_task('Wall-v0', 3, 0)
    assert (task.action_size, task.image_shape, task.proprio_size, task.max_steps) == (
        2, (64, 64, 3), 2, 30)
    starts, goals = task.eval_pairs(50, seed=3)
    again = task.eval_pairs(50, seed=3)
    np.testing.assert_array_equal(starts, again[0])
    np.testing.assert_array_equal(goals, again[1])
    assert not np.array_equal(starts, task.eval_pairs(50, seed=4)[0])
    assert starts.shape == goals.shape == (50, 3) and starts.dtype == np.float32
    assert (starts[:, 0] <= 0.4 + 1e-6).all() and (starts[:, 0] >= 0.1 - 1e-6).all()
    assert (goals[:, 0] >= 0.6 - 1e-6).all() and (goals[:, 0] <= 0.9 + 1e-6).all()
    assert ((starts[:, 1] >= 0.1 - 1e-6) & (starts[:, 1] <= 0.9 + 1e-6)).all()
    np.testing.assert_array_equal(starts[:, 2], goals[:, 2])   # same door


def test_wall_task_reset_step_and_ever_success():
    task = goal_tasks.make_goal_task('Wall-v0', 2, 0)
    with pytest.raises(RuntimeError, match='reset_to'):
        task.step(np.zeros((2, 2), np.float32))
    # env 0: the goal is one right-step away through the door; env 1: goal == start.
    starts = np.array([[0.46, 0.5, 0.5], [0.2, 0.2, 0.4]], np.float32)
    goals = np.array([[0.535, 0.5, 0.5], [0.2, 0.2, 0.4]], np.float32)
    obs = task.reset_to(starts, goals)
    assert_obs(obs, 2)
    np.testing.assert_array_equal(obs['success'], [False, True])
    np.testing.assert_allclose(obs['goal_proprio'], goals[:, :2])
    np.testing.assert_array_equal(obs['goal_image'][1], obs['image'][1])
    obs = task.step(np.array([[1, 0], [0, 1]], np.float32))
    assert_obs(obs, 2)
    np.testing.assert_allclose(obs['proprio'], [[0.535, 0.5], [0.2, 0.275]], atol=1e-6)
    np.testing.assert_array_equal(obs['success'], [True, False])
    np.testing.assert_array_equal(obs['ever_success'], [True, True])   # env 1 stays True
    np.testing.assert_array_equal(obs['image'][0], obs['goal_image'][0])
    with pytest.raises(ValueError, match='starts must be finite'):
        task.reset_to(starts[:1], goals[:1])   # exactly num_envs pairs
    with pytest.raises(ValueError, match=r'action must be float32 \(2, 2\)'):
        task.step(np.zeros((3, 2)))


@pytest.mark.parametrize('kind', goal_tasks.KINDS)
def test_wall_collect_shapes_flags_and_saves(kind, tmp_path):
    arrays = goal_tasks.collect('Wall-v0', kind, episodes=6, length=12, seed=0)
    assert arrays['image'].shape == (12, 6, 64, 64, 3) and arrays['image'].dtype == np.uint8
    assert arrays['vector'].shape == (12, 6, 2) and arrays['action'].shape == (12, 6, 2)
    assert arrays['is_first'][0].all() and not arrays['is_first'][1:].any()
    assert arrays['is_last'][-1].all() and not arrays['is_last'][:-1].any()
    assert not arrays['is_terminal'].any() and not arrays['reward'].any()
    assert np.abs(arrays['action']).max() <= 1.0
    # Row t's image shows the agent at row t's proprio, and the next row is the dynamics of
    # row t's action (replay convention).
    row, col = wall.pixel_of(arrays['vector'][3, 2])
    assert tuple(arrays['image'][3, 2, row, col]) == wall.AGENT_COLOUR
    # Moves that stay on one side of the wall are free: row t+1 = clip(row t + 0.075 a_t, 0, 1).
    pos, act, nxt = arrays['vector'][:-1], arrays['action'][:-1], arrays['vector'][1:]
    free = np.clip(pos + wall.MAX_STEP * act, 0, 1)
    same_side = ((np.maximum(pos[..., 0], free[..., 0]) <= wall.WALL_LO)
                 | (np.minimum(pos[..., 0], free[..., 0]) >= wall.WALL_HI))
    assert same_side.mean() > 0.5
    np.testing.assert_allclose(nxt[same_side], free[same_side], atol=1e-6)
    np.testing.assert_array_equal(
        arrays['vector'], goal_tasks.collect('Wall-v0', kind, 6, 12, seed=0)['vector'])
    datasets.save(str(tmp_path / f'{kind}.npz'), arrays, {'env': 'Wall-v0', 'kind': kind})


def test_wall_scripted_data_crosses_the_door():
    arrays = goal_tasks.collect('Wall-v0', 'scripted', episodes=16, length=40, seed=1)
    side = np.sign(arrays['vector'][..., 0] - wall.WALL_X)
    assert (side[0] != side[-1]).mean() >= 0.75


def test_collect_rejects_a_bad_kind():
    with pytest.raises(ValueError, match=r"'expert'.*allowed: \['random', 'scripted'\]"):
        goal_tasks.collect('Wall-v0', 'expert', 2, 5)


# -------------------------------------------------------------------------------------- Push-T

@pytest.fixture(scope='module')
def pusht_task():
    pytest.importorskip('gym_pusht')
    task = goal_tasks.make_goal_task('PushT-v0', 2, 0)
    yield task
    task.close()


@pytest.fixture(scope='module')
def pusht_pairs(pusht_task):
    return pusht_task.eval_pairs(4, seed=0)


def test_pusht_reset_to_reproduces_the_state(pusht_task):
    from jaxwm.envs import pusht
    states = np.array([[100., 200., 300., 250., 1.0], [400., 100., 200., 300., 5.0]])
    obs = pusht_task.reset_to(states, states)
    assert_obs(obs, 2)
    np.testing.assert_allclose(pusht_task.states(), states, atol=1e-6)
    np.testing.assert_allclose(obs['proprio'], states[:, :2] / 512, atol=1e-6)
    np.testing.assert_array_equal(obs['success'], [True, True])   # goal == start
    # gym-pusht's own reset_to_state keeps the T's centre of gravity, not its origin: the
    # compensated vector is what puts the origin where asked.
    env = pusht_task.envs[0]
    env.env.reset(options={'reset_to_state': states[0]})
    assert np.linalg.norm(env.state()[2:4] - states[0, 2:4]) > 10
    env.env.reset(options={'reset_to_state': pusht.legacy_reset_vector(states[0])})
    np.testing.assert_allclose(env.state(), states[0], atol=1e-6)


def test_pusht_relative_action_moves_towards_the_target(pusht_task):
    states = np.array([[100., 200., 300., 250., 1.0], [400., 100., 200., 300., 5.0]])
    pusht_task.reset_to(states, states)
    for _ in range(3):
        obs = pusht_task.step(np.array([[1.0, 0.0], [0.0, -1.0]], np.float32))
    agent = obs['proprio'] * 512
    assert agent[0, 0] - 100 > 20 and abs(agent[0, 1] - 200) < 1e-3   # right
    assert 100 - agent[1, 1] > 20 and abs(agent[1, 0] - 400) < 1e-3    # down (to y = 0)
    # A target 40 px away is not overshot: the PD controller reaches at most the target.
    assert agent[0, 0] - 100 < 3 * 40


def test_pusht_success_and_its_wrapped_angle():
    from jaxwm.envs import pusht
    goal = np.array([0., 0., 200., 200., 0.1])
    near = np.array([50., 50., 210., 210., 2 * np.pi - 0.2])   # 14 px, 0.3 rad (wrapped)
    assert pusht.success(near, goal)
    assert not pusht.success(near + [0, 0, 10, 10, 0], goal)   # 28 px
    assert not pusht.success(goal + [0, 0, 0, 0, np.pi / 9 + 0.01], goal)


def test_pusht_eval_pairs_have_moved_blocks_and_goal_images(pusht_task, pusht_pairs):
    starts, goals = pusht_pairs
    assert starts.shape == goals.shape == (4, 5)
    moved = np.linalg.norm(goals[:, 2:4] - starts[:, 2:4], axis=-1)
    from jaxwm.envs import pusht
    turned = np.abs(pusht.wrap_angle(goals[:, 4] - starts[:, 4]))
    assert ((moved >= 30) | (turned >= np.pi / 12)).all()
    again = goal_tasks.pusht_eval_pairs(2, seed=0, env=pusht_task.envs[0])
    np.testing.assert_array_equal(again[0], starts[:2])
    np.testing.assert_array_equal(again[1], goals[:2])
    obs = pusht_task.reset_to(starts[:2], goals[:2])
    np.testing.assert_allclose(pusht_task.states(), starts[:2], atol=1e-6)
    assert not obs['success'].any() and not np.array_equal(obs['image'], obs['goal_image'])
    assert pusht_task.max_steps == 40


def test_pusht_collect_shapes(pusht_task):
    arrays = goal_tasks.collect('PushT-v0', 'scripted', episodes=2, length=6, seed=0)
    assert arrays['image'].shape == (6, 2, 64, 64, 3) and arrays['image'].dtype == np.uint8
    assert arrays['vector'].shape == (6, 2, 2) and (arrays['vector'] <= 1).all()
    assert arrays['is_first'][0].all() and arrays['is_last'][-1].all()
    random = goal_tasks.collect('PushT-v0', 'random', episodes=2, length=6, seed=0)
    a = random['action']
    assert np.abs(a).max() <= 1 and not np.array_equal(a[1], a[2])
    datasets.validate(random)
