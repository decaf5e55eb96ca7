"""Push-T (Chi et al. 2023, the pushing task of DINO-WM, Zhou et al. 2024): a thin wrapper of
gym-pusht (`gym_pusht/PushT-v0`, obs_type 'pixels_agent_pos', 64 x 64 images) with relative
actions and goal states. gym-pusht is optional: `pip install -e '.[pusht]'`.

Coordinates are gym-pusht's pixels of the 512 x 512 table. The agent is a kinematic disc
(radius 15) driven by a PD controller towards a target point; the block is a T.

- Action: float32 [2] in [-1, 1], RELATIVE: target = clip(agent_pos + action * ACTION_SCALE,
  0, 512) with ACTION_SCALE = 40 px (gym-pusht itself takes the absolute target).
- State: float64 [5] = [agent_x, agent_y, block_x, block_y, block_angle], as gym-pusht's
  obs_type='state' reports it (`block.position` is the T's body origin, the middle of the top
  edge of its bar; the angle wrapped to [0, 2 pi)).
- Proprio: agent_pos / 512, float32 [2].
- Success: the block within SUCCESS_DISTANCE = 20 px and SUCCESS_ANGLE = pi / 9 (wrapped) of the
  goal's block pose.

Resetting to a state: `reset(options={'reset_to_state': s})` sets the agent to s[:2], then the
block's position to s[2:4] while the block still has angle 0, then its angle to s[4], then runs
one 0.01 s physics step. pymunk keeps the block's centre of gravity fixed when the angle is set,
and the T's centre of gravity is not its origin (it is at BLOCK_COG = (0, 45) in body
coordinates), so the origin read back afterwards is s[2:4] + (I - R(s[4])) BLOCK_COG, not
s[2:4] (gym-pusht's docstring warns of this legacy behaviour). `reset_to` passes the
pre-compensated vector (`legacy_reset_vector`) so that the state read back is the one asked for;
the physics step leaves it unchanged unless the agent overlaps the block (then the block is
pushed out of it).
"""
import numpy as np

ENV_ID = 'gym_pusht/PushT-v0'
NAME = 'PushT-v0'
IMAGE_SIZE = 64
TABLE = 512.0
ACTION_SCALE = 40.0
SUCCESS_DISTANCE = 20.0
SUCCESS_ANGLE = np.pi / 9
BLOCK_COG = np.array([0.0, 45.0])   # the T's centre of gravity in its body coordinates
AGENT_RADIUS = 15.0
INSTALL_HINT = "Push-T needs gym-pusht: pip install -e '.[pusht]'"


def _gym_pusht():
    """Imports gym-pusht (registers its env ids) or raises ImportError with the install hint."""
    try:
        import gym_pusht   # noqa: F401  (registers gym_pusht/PushT-v0)
        import gymnasium
    except ImportError as err:
        raise ImportError(f'{INSTALL_HINT} ({err})') from err
    return gymnasium


def available() -> bool:
    """Whether gym-pusht is installed."""
    try:
        _gym_pusht()
    except ImportError:
        return False
    return True


def rotation(angle: float) -> np.ndarray:
    """float64 [2, 2]: pymunk's rotation by `angle` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def legacy_reset_vector(state: np.ndarray) -> np.ndarray:
    """The 'reset_to_state' vector that makes gym-pusht's block origin land on state[2:4] (module
    docstring): s[2:4] - (I - R(angle)) BLOCK_COG. state float [5]; returns float64 [5]."""
    state = np.asarray(state, np.float64)
    out = state.copy()
    out[2:4] = state[2:4] - (BLOCK_COG - rotation(state[4]) @ BLOCK_COG)
    return out


def wrap_angle(angle):
    """Angles mapped to (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(angle), 2 * np.pi)


def success(state: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """bool [...]: block within SUCCESS_DISTANCE px and SUCCESS_ANGLE (wrapped) of the goal's
    block pose. state, goal float [..., 5]."""
    state, goal = np.asarray(state), np.asarray(goal)
    distance = np.linalg.norm(state[..., 2:4] - goal[..., 2:4], axis=-1)
    angle = np.abs(wrap_angle(state[..., 4] - goal[..., 4]))
    return (distance < SUCCESS_DISTANCE) & (angle < SUCCESS_ANGLE)


class PushT:
    """One gym-pusht env with relative actions, state resets and 64 x 64 pixel observations.
    `observe()` returns (image uint8 [64, 64, 3], proprio float32 [2]); `state()` float64 [5]."""

    def __init__(self, seed: int = 0):
        gymnasium = _gym_pusht()
        self.env = gymnasium.make(ENV_ID, obs_type='pixels_agent_pos',
                                  observation_width=IMAGE_SIZE, observation_height=IMAGE_SIZE)
        self.sim = self.env.unwrapped
        self._image = None
        self._seed = int(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> tuple:
        """A random gym-pusht start (agent in [50, 450)^2, block in [100, 400)^2, any angle);
        `seed` reseeds the env's generator (the first reset uses the constructor's seed)."""
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        obs, _ = self.env.reset(seed=seed)
        self._image = obs['pixels']
        return self.observe()

    def reset_to(self, state: np.ndarray) -> tuple:
        """Sets the env to `state` float [5] (module docstring); returns `observe()`."""
        state = np.asarray(state, np.float64)
        if state.shape != (5,) or not np.isfinite(state).all():
            raise ValueError(f'Push-T state must be 5 finite floats [agent_x, agent_y, block_x, '
                             f'block_y, block_angle]; got {state!r}')
        obs, _ = self.env.reset(options={'reset_to_state': legacy_reset_vector(state)})
        self._image = obs['pixels']
        return self.observe()

    def step(self, action: np.ndarray) -> tuple:
        """Moves towards agent_pos + action * ACTION_SCALE (action float [2], clipped to
        [-1, 1]); returns `observe()`."""
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        target = np.clip(self.agent_pos() + action * ACTION_SCALE, 0.0, TABLE)
        obs, *_ = self.env.step(target)
        self._image = obs['pixels']
        return self.observe()

    def agent_pos(self) -> np.ndarray:
        """float64 [2] in table pixels."""
        return np.array(self.sim.agent.position, np.float64)

    def block_cog(self) -> np.ndarray:
        """float64 [2]: the block's centre of gravity in table pixels (what pushing moves)."""
        return np.array(self.sim.block.local_to_world(self.sim.block.center_of_gravity))

    def state(self) -> np.ndarray:
        """float64 [5] = [agent_x, agent_y, block_x, block_y, block_angle mod 2 pi], as
        gym-pusht's obs_type='state'."""
        block = self.sim.block
        return np.array([*self.sim.agent.position, *block.position,
                         block.angle % (2 * np.pi)], np.float64)

    def observe(self) -> tuple:
        """(image uint8 [64, 64, 3], proprio float32 [2] = agent_pos / 512)."""
        return self._image, (self.agent_pos() / TABLE).astype(np.float32)

    def close(self) -> None:
        self.env.close()
