"""Goal-reaching tasks with pixels for planning to image goals (DINO-WM, Zhou et al. 2024):
'Wall-v0' (`wall`, JAX-native) and 'PushT-v0' (`pusht`, gym-pusht), behind one interface, with
their evaluation start/goal pairs and offline datasets.

`make_goal_task(name, num_envs, seed)` returns a `GoalTask` of N = num_envs envs:
  action_size 2, image_shape (64, 64, 3), proprio_size 2, state_size (Wall 3, Push-T 5),
  max_steps (evaluation episode length: Wall 30, Push-T 40)
  eval_pairs(n, seed) -> (starts, goals)   deterministic numpy states [n, state_size]
  reset_to(starts, goals) -> obs           exactly N pairs
  step(action float32 [N, 2] in [-1, 1]) -> obs
where obs is a dict of numpy arrays:
  'image' uint8 [N, 64, 64, 3]       'proprio' float32 [N, 2]
  'goal_image' uint8 [N, 64, 64, 3]  'goal_proprio' float32 [N, 2]
  'success' bool [N]  (the current state meets the goal)
  'ever_success' bool [N]  (success at some step since `reset_to`; stays True)
States: Wall float32 [3] = (x, y, door_y) (`wall.to_array`); Push-T float64 [5] = [agent_x,
agent_y, block_x, block_y, block_angle] (`pusht`). Proprio: Wall (x, y); Push-T agent_pos / 512.

Evaluation pairs: Wall: start uniform on the left half, goal uniform on the right half (the
agent must find the door), both at least 0.1 from the wall's centre line and the borders, same
door (uniform). Push-T: a random gym-pusht reset with the agent clear of the block (so that
`reset_to` reproduces it exactly), goal = the state after EVAL_PUSH_STEPS = 25 steps of the
scripted pusher (noise-free, pushing towards a random point of the table's middle). Pairs where
the block moved by less than 30 px and turned by less than pi / 12 are resampled, so every goal
needs a real push; so are pairs whose start or goal block is within 10 px of the table's walls.

`collect(name, kind, episodes, length, seed)` writes nothing: it returns the offline arrays of
`jaxwm.data.datasets` (time-major [T, N], N = episodes streams of one episode of T = length rows
each; row t holds o_t, its flags and the action a_t taken at o_t; reward 0, is_terminal False):
'vector' = proprio float32 [T, N, 2], 'action' float32 [T, N, 2], 'image' uint8 [T, N, 64, 64, 3].
Episodes start from random states (Wall: random side and door; Push-T: a gym-pusht reset).
Kinds:
  'random'    temporally correlated noise, an AR(1) process per action dimension:
              a_0 ~ U[-1, 1], a_t = clip(RHO a_{t-1} + sqrt(1 - RHO^2) u_t, -1, 1), u_t ~ U[-1, 1],
              RHO = 0.7: the innovation scale keeps the stationary spread of uniform actions
              (a plain 0.7 a + 0.3 u would shrink actions to a std of 0.24).
  'scripted'  a noisy scripted behaviour (Gaussian action noise of std SCRIPT_NOISE = 0.3):
              Wall: to the door centre, then to a random target on the other side;
              Push-T: to a point behind the block (for a random push direction), then through it.
"""
import abc
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.envs import base, pusht, wall

NAMES = (wall.NAME, pusht.NAME)
KINDS = ('random', 'scripted')
MAX_STEPS = {wall.NAME: 30, pusht.NAME: 40}
IMAGE_SHAPE = (64, 64, 3)
RHO = 0.7
SCRIPT_NOISE = 0.3
# Wall evaluation: distance of starts/goals from the wall's centre line and from the borders.
WALL_EVAL_MARGIN = 0.1
# Push-T evaluation goals
EVAL_PUSH_STEPS = 25
MIN_BLOCK_MOVE = 30.0
MIN_BLOCK_TURN = np.pi / 12
# Push-T scripted pusher: how far behind the block's centre of gravity to start a push, how far
# ahead of it to aim while pushing, when a waypoint counts as reached (table pixels).
BEHIND = 100.0
AHEAD = 60.0
REACHED = 15.0
ORBIT = 110.0             # the T reaches 75 px from its centre of gravity, the agent 15 more
ORBIT_TURN = 0.8          # radians per approach waypoint
BEHIND_CONE = 0.5         # radians: within this of the push's back, head straight behind
CENTRE_LOW, CENTRE_HIGH = 156.0, 356.0   # evaluation pushes head for this middle square


def check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f'Unknown goal task name {name!r}; allowed: {list(NAMES)}')


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f'Unknown dataset kind {kind!r}; allowed: {list(KINDS)}')


def _check_positive(field: str, value) -> int:
    if not base.POSITIVE_INT.ok(value):
        raise ValueError(f'{field}={value!r} must be an int >= 1.')
    return int(value)


def make_goal_task(name: str, num_envs: int, seed: int = 0) -> 'GoalTask':
    """The goal task `name` in NAMES with `num_envs` envs (module docstring). `seed` seeds
    Push-T's gym envs (Wall's dynamics are deterministic). ValueError for a bad name."""
    check_name(name)
    num_envs = _check_positive('num_envs', num_envs)
    return WallTask(num_envs, seed) if name == wall.NAME else PushTTask(num_envs, seed)


class GoalTask(abc.ABC):
    """N goal-reaching envs (module docstring)."""
    name: str
    state_size: int
    action_size = 2
    image_shape = IMAGE_SHAPE
    proprio_size = 2

    def __init__(self, num_envs: int, seed: int):
        self.num_envs, self.seed = num_envs, int(seed)
        self.max_steps = MAX_STEPS[self.name]
        self._ready = False

    @abc.abstractmethod
    def eval_pairs(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(starts, goals) [n, state_size]: n evaluation pairs, a function of (n, seed) only."""

    @abc.abstractmethod
    def reset_to(self, starts: np.ndarray, goals: np.ndarray) -> dict:
        """Sets env i to starts[i] with goal goals[i] (exactly N pairs); returns obs."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> dict:
        """One step of every env with action float32 [N, 2] (clipped to [-1, 1]); returns obs."""

    def close(self) -> None:
        """Releases simulator resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f'{type(self).__name__}(name={self.name!r}, num_envs={self.num_envs})'

    def _check_pairs(self, starts, goals, dtype) -> tuple[np.ndarray, np.ndarray]:
        shape = (self.num_envs, self.state_size)
        out = []
        for field, x in (('starts', starts), ('goals', goals)):
            x = np.asarray(x, dtype)
            if x.shape != shape or not np.isfinite(x).all():
                raise ValueError(f'{self.name}: {field} must be finite {shape} (num_envs pairs '
                                 f'of {self.state_size}-vector states); got shape {x.shape}')
            out.append(x)
        return tuple(out)

    def _check_action(self, action) -> np.ndarray:
        if not self._ready:
            raise RuntimeError(f'{self.name}: call reset_to(starts, goals) before step().')
        action = np.asarray(action, np.float32)
        if action.shape != (self.num_envs, self.action_size):
            raise ValueError(f'{self.name}: action must be float32 '
                             f'{(self.num_envs, self.action_size)}; got shape {action.shape}')
        if not np.isfinite(action).all():
            raise ValueError(f'{self.name}: action has non-finite values')
        return np.clip(action, -1.0, 1.0)


# ---------------------------------------------------------------------------------------- Wall

@jax.jit
def _wall_reset(starts: jax.Array, goals: jax.Array) -> dict:
    """starts, goals float32 [N, 3] -> obs (jnp) of the start states."""
    start, goal = wall.from_array(starts), wall.from_array(goals)
    success = jax.vmap(wall.success)(start.pos, goal.pos)
    return dict(image=jax.vmap(wall.render)(start), proprio=start.pos,
                goal_image=jax.vmap(wall.render)(goal), goal_proprio=goal.pos,
                success=success, ever_success=success)


@jax.jit
def _wall_step(states: wall.WallState, action: jax.Array, goal_pos: jax.Array,
               ever: jax.Array) -> tuple:
    """One batched step: states [N], action float32 [N, 2], goal_pos [N, 2], ever bool [N] ->
    (states, image uint8 [N, 64, 64, 3], proprio [N, 2], success [N], ever [N])."""
    states = jax.vmap(wall.step)(states, action)
    success = jax.vmap(wall.success)(states.pos, goal_pos)
    return states, jax.vmap(wall.render)(states), states.pos, success, ever | success


class WallTask(GoalTask):
    """N Wall envs stepped as one jitted, vmapped call; states stay on device."""
    name = wall.NAME
    state_size = 3

    def eval_pairs(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """float32 [n, 3] starts (left half) and goals (right half), same door (module doc)."""
        n = _check_positive('n', n)
        rng = np.random.default_rng(seed)
        m = WALL_EVAL_MARGIN
        door = rng.uniform(*wall.DOOR_RANGE, n)
        start = np.stack([rng.uniform(m, wall.WALL_X - m, n), rng.uniform(m, 1 - m, n), door], -1)
        goal = np.stack([rng.uniform(wall.WALL_X + m, 1 - m, n), rng.uniform(m, 1 - m, n), door],
                        -1)
        return start.astype(np.float32), goal.astype(np.float32)

    def reset_to(self, starts, goals) -> dict:
        starts, goals = self._check_pairs(starts, goals, np.float32)
        if not np.array_equal(starts[:, 2], goals[:, 2]):
            raise ValueError(f'{self.name}: a start and its goal must share the door (column 2, '
                             f'door_y)')
        out = {k: np.asarray(v) for k, v in _wall_reset(starts, goals).items()}
        self._states = wall.from_array(starts)
        self._goal = {k: out[k] for k in ('goal_image', 'goal_proprio')}
        self._goal_pos = jnp.asarray(goals[:, :2])
        self._ever = jnp.asarray(out['ever_success'])
        self._ready = True
        return out

    def step(self, action) -> dict:
        action = self._check_action(action)
        self._states, image, proprio, success, self._ever = _wall_step(
            self._states, jnp.asarray(action), self._goal_pos, self._ever)
        return dict(image=np.asarray(image), proprio=np.asarray(proprio), **self._goal,
                    success=np.asarray(success), ever_success=np.asarray(self._ever))

    def states(self) -> np.ndarray:
        """float32 [N, 3] current states."""
        return wall.to_array(self._states)


def _ar1(key: jax.Array, previous: jax.Array) -> jax.Array:
    """The 'random' kind's next action (module docstring); previous float32 [2]."""
    u = jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0)
    return jnp.clip(RHO * previous + np.sqrt(1 - RHO ** 2) * u, -1.0, 1.0)


def _wall_episode_setup(key: jax.Array) -> tuple:
    """(start state, scripted final target float32 [2] on the side opposite to the start)."""
    key_reset, key_target = jax.random.split(key)
    state = wall.reset(key_reset)
    u = jax.random.uniform(key_target, (2,), minval=jnp.array([wall.WALL_X + WALL_EVAL_MARGIN,
                                                               0.05]),
                           maxval=jnp.array([0.95, 0.95]))
    x = jnp.where(state.pos[0] < wall.WALL_X, u[0], 1.0 - u[0])
    return state, jnp.stack([x, u[1]])


def _wall_scripted(key, state: wall.WallState, target: jax.Array, passed: jax.Array) -> tuple:
    """(action float32 [2], passed bool []): towards the door centre until through it, then
    towards `target`, plus Gaussian noise of std SCRIPT_NOISE."""
    door = jnp.stack([wall.WALL_X, state.door_y])
    side = jnp.sign(target[0] - wall.WALL_X)
    passed = passed | (jnp.linalg.norm(state.pos - door) < 0.05) | (
        (state.pos[0] - wall.WALL_X) * side > wall.WALL_HALF)
    aim = jnp.where(passed, target, door)
    action = (aim - state.pos) / wall.MAX_STEP + SCRIPT_NOISE * jax.random.normal(key, (2,))
    return jnp.clip(action, -1.0, 1.0), passed


@functools.partial(jax.jit, static_argnames=('kind', 'episodes', 'length'))
def _wall_collect(key: jax.Array, kind: str, episodes: int, length: int) -> dict:
    """Time-major rollouts: 'image' [T, N, 64, 64, 3], 'vector' [T, N, 2], 'action' [T, N, 2]."""
    key_setup, key_first, key_steps = jax.random.split(key, 3)
    states, targets = jax.vmap(_wall_episode_setup)(jax.random.split(key_setup, episodes))
    first = jax.random.uniform(key_first, (episodes, 2), minval=-1.0, maxval=1.0)

    def one(state, previous, passed, target, key, t):
        if kind == 'random':
            action = jnp.where(t == 0, previous, _ar1(key, previous))
        else:
            action, passed = _wall_scripted(key, state, target, passed)
        row = dict(image=wall.render(state), vector=state.pos, action=action)
        return wall.step(state, action), action, passed, row

    def body(carry, t):
        states, previous, passed = carry
        keys = jax.random.split(jax.random.fold_in(key_steps, t), episodes)
        states, previous, passed, row = jax.vmap(one, (0, 0, 0, 0, 0, None))(
            states, previous, passed, targets, keys, t)
        return (states, previous, passed), row

    init = (states, first, jnp.zeros(episodes, bool))
    _, rows = jax.lax.scan(body, init, jnp.arange(length))
    return rows


# -------------------------------------------------------------------------------------- Push-T

class _Pusher:
    """The scripted Push-T pusher of one episode (module docstring). Push direction d: uniform
    from `rng`, or, given `towards_centre_of` (a `pusht.PushT`), towards a uniform point of the
    table's middle [CENTRE_LOW, CENTRE_HIGH]^2 from the block's centre of gravity. Approach: to
    the point BEHIND px behind the centre of gravity along -d, circling the block at ORBIT px
    (steps of at most ORBIT_TURN radians) while the agent is not within BEHIND_CONE of that
    side; then push: aim AHEAD px past the centre of gravity along d. Aims stay on the table."""

    def __init__(self, rng: np.random.Generator, noise: float, towards_centre_of=None):
        if towards_centre_of is None:
            angle = rng.uniform(0, 2 * np.pi)
            self.d = np.array([np.cos(angle), np.sin(angle)])
        else:
            offset = rng.uniform(CENTRE_LOW, CENTRE_HIGH, 2) - towards_centre_of.block_cog()
            self.d = offset / max(np.linalg.norm(offset), 1e-6)
        self.rng, self.noise, self.pushing = rng, noise, False

    def act(self, env: pusht.PushT) -> np.ndarray:
        """float32 [2] in [-1, 1]: the relative action at `env`'s current state."""
        agent, cog = env.agent_pos(), env.block_cog()
        low, high = pusht.AGENT_RADIUS, pusht.TABLE - pusht.AGENT_RADIUS
        behind = np.clip(cog - self.d * BEHIND, low, high)
        if not self.pushing and np.linalg.norm(agent - behind) < REACHED:
            self.pushing = True
        if self.pushing:
            aim = cog + self.d * AHEAD
        else:
            rel = agent - cog
            angle = np.arctan2(rel[1], rel[0])
            turn = float(pusht.wrap_angle(np.arctan2(-self.d[1], -self.d[0]) - angle))
            if abs(turn) < BEHIND_CONE:
                aim = behind
            else:   # circle round the block, outside its reach, towards its back
                angle = angle + np.sign(turn) * min(abs(turn), ORBIT_TURN)
                aim = cog + ORBIT * np.array([np.cos(angle), np.sin(angle)])
        action = (np.clip(aim, low, high) - agent) / pusht.ACTION_SCALE
        if self.noise:
            action = action + self.noise * self.rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _clear_of_block(env: pusht.PushT, margin: float = 5.0) -> bool:
    """Whether the agent's disc is at least `margin` px away from the block."""
    agent = tuple(env.agent_pos())
    distance = min(shape.point_query(agent).distance for shape in env.sim.block.shapes)
    return distance > pusht.AGENT_RADIUS + margin


def _block_inside(env: pusht.PushT, margin: float = 10.0) -> bool:
    """Whether the block's bounding box is at least `margin` px inside the table's edges (clear
    of gym-pusht's walls at 5 and 506 px, so that resetting to the state needs no collision)."""
    boxes = [shape.cache_bb() for shape in env.sim.block.shapes]
    low = min(min(b.left, b.bottom) for b in boxes)
    high = max(max(b.right, b.top) for b in boxes)
    return low >= margin and high <= pusht.TABLE - margin


def pusht_eval_pairs(n: int, seed: int = 0, env: pusht.PushT | None = None) -> tuple:
    """float64 [n, 5] starts and goals of Push-T evaluation (module docstring); uses `env` (or a
    new one) as a scratch simulator."""
    n = _check_positive('n', n)
    scratch = env or pusht.PushT(seed)
    rng = np.random.default_rng(seed)
    starts, goals = [], []
    try:
        while len(starts) < n:
            scratch.reset(seed=int(rng.integers(2 ** 31)))
            if not (_clear_of_block(scratch) and _block_inside(scratch)):
                continue
            start = scratch.state()
            scratch.reset_to(start)
            pusher = _Pusher(rng, noise=0.0, towards_centre_of=scratch)
            for _ in range(EVAL_PUSH_STEPS):
                scratch.step(pusher.act(scratch))
            goal = scratch.state()
            moved = np.linalg.norm(goal[2:4] - start[2:4])
            turned = abs(pusht.wrap_angle(goal[4] - start[4]))
            if (moved >= MIN_BLOCK_MOVE or turned >= MIN_BLOCK_TURN) and _block_inside(scratch):
                starts.append(start)
                goals.append(goal)
    finally:
        if env is None:
            scratch.close()
    return np.stack(starts), np.stack(goals)


class PushTTask(GoalTask):
    """N gym-pusht envs (`pusht.PushT`, env i seeded seed + i) stepped in a Python loop."""
    name = pusht.NAME
    state_size = 5

    def __init__(self, num_envs: int, seed: int):
        super().__init__(num_envs, seed)
        self.envs = [pusht.PushT(self.seed + i) for i in range(num_envs)]

    def eval_pairs(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """float64 [n, 5] starts and goals (module docstring)."""
        return pusht_eval_pairs(n, seed)

    def _obs(self) -> dict:
        images, proprio = zip(*(env.observe() for env in self.envs))
        states = np.stack([env.state() for env in self.envs])
        success = pusht.success(states, self._goals)
        self._ever = self._ever | success
        return dict(image=np.stack(images), proprio=np.stack(proprio), **self._goal,
                    success=success, ever_success=self._ever.copy())

    def reset_to(self, starts, goals) -> dict:
        starts, goals = self._check_pairs(starts, goals, np.float64)
        goal_obs = [env.reset_to(g) for env, g in zip(self.envs, goals)]
        self._goal = dict(goal_image=np.stack([o[0] for o in goal_obs]),
                          goal_proprio=np.stack([o[1] for o in goal_obs]))
        for env, s in zip(self.envs, starts):
            env.reset_to(s)
        self._goals, self._ever = goals, np.zeros(self.num_envs, bool)
        self._ready = True
        return self._obs()

    def step(self, action) -> dict:
        action = self._check_action(action)
        for env, a in zip(self.envs, action):
            env.step(a)
        return self._obs()

    def states(self) -> np.ndarray:
        """float64 [N, 5] current states."""
        return np.stack([env.state() for env in self.envs])

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _pusht_collect(kind: str, episodes: int, length: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    env = pusht.PushT(seed)
    image = np.zeros((length, episodes, *IMAGE_SHAPE), np.uint8)
    vector = np.zeros((length, episodes, 2), np.float32)
    action = np.zeros((length, episodes, 2), np.float32)
    try:
        for n in range(episodes):
            obs = env.reset(seed=int(rng.integers(2 ** 31)))
            pusher = _Pusher(rng, SCRIPT_NOISE)
            a = rng.uniform(-1, 1, 2)
            for t in range(length):
                if kind == 'scripted':
                    a = pusher.act(env)
                elif t > 0:
                    a = np.clip(RHO * a + np.sqrt(1 - RHO ** 2) * rng.uniform(-1, 1, 2), -1, 1)
                image[t, n], vector[t, n], action[t, n] = obs[0], obs[1], a
                if t + 1 < length:
                    obs = env.step(a)
    finally:
        env.close()
    return dict(image=image, vector=vector, action=action)


def collect(name: str, kind: str, episodes: int, length: int, seed: int = 0) -> dict:
    """Offline arrays of `episodes` episodes of `length` rows of task `name` by behaviour `kind`
    (module docstring), ready for `jaxwm.data.datasets.save`:
    'image' uint8 [T, N, 64, 64, 3], 'vector' float32 [T, N, 2], 'action' float32 [T, N, 2],
    'reward' float32 [T, N] (0), 'is_first', 'is_last', 'is_terminal' bool [T, N]."""
    check_name(name)
    check_kind(kind)
    episodes = _check_positive('episodes', episodes)
    length = _check_positive('length', length)
    if length < 2:
        raise ValueError(f'length={length} must be >= 2 (a dataset needs a transition).')
    if name == wall.NAME:
        rows = {k: np.asarray(v) for k, v in _wall_collect(
            jax.random.PRNGKey(seed), kind, episodes, length).items()}
    else:
        rows = _pusht_collect(kind, episodes, length, seed)
    is_first = np.zeros((length, episodes), bool)
    is_first[0] = True
    is_last = np.zeros((length, episodes), bool)
    is_last[-1] = True
    return dict(image=rows['image'].astype(np.uint8), vector=rows['vector'].astype(np.float32),
                action=rows['action'].astype(np.float32),
                reward=np.zeros((length, episodes), np.float32), is_first=is_first,
                is_last=is_last, is_terminal=np.zeros((length, episodes), bool))


def write_datasets(name: str, kinds: tuple, episodes: int, length: int, seed: int,
                   out_dir: str) -> dict:
    """Collects and saves (`jaxwm.data.datasets.save`) `<out_dir>/<kind>.npz` for each kind in
    `kinds` (the i-th kind collected with seed `seed + i`); returns {kind: summary dict} (path,
    sizes, seconds). ValueError for a bad name, kind or size before anything is collected."""
    import time

    from jaxwm.data import datasets

    check_name(name)
    for kind in kinds:
        check_kind(kind)
    _check_positive('episodes', episodes)
    if not base.POSITIVE_INT.ok(length) or length < 2:
        raise ValueError(f'length={length!r} must be an int >= 2.')
    written = {}
    for index, kind in enumerate(kinds):
        start = time.perf_counter()
        arrays = collect(name, kind, episodes, length, seed + index)
        seconds = time.perf_counter() - start
        path = datasets.save(
            f'{out_dir}/{kind}.npz', arrays,
            dict(env=name, kind=kind, episode_length=length, seed=seed + index,
                 sources=[f'jaxwm.envs.goal_tasks.collect({name!r}, {kind!r})']))
        written[kind] = dict(path=path, episodes=episodes, length=length,
                             steps=episodes * length, seconds=round(seconds, 2))
    return written
