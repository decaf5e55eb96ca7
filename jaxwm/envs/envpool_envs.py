"""envpool-backed suites: Atari, DMC from states, classic control, MiniGrid, Craftax Classic.

All use envpool's gymnasium interface in sync mode, which autoresets like Dreamer: the step after
`terminated | truncated` ignores the action and returns a reset observation with
`info['elapsed_step'] == 0`; that is how `is_first` is detected.
"""
import envpool
import numpy as np

from jaxwm.envs import base
from jaxwm.envs.base import ActionSpace, Space

# envpool worker threads; 0 = envpool's choice
_THREADS = ('num_threads', (0, base.NON_NEGATIVE_INT))
# agent steps per episode; None = the suite's default
_TIME_LIMIT = ('max_episode_steps', (None, base.OPTIONAL_POSITIVE_INT))


class EnvpoolEnv(base.Env):
    """A batch of `num_envs` envpool environments behind the `base.Env` protocol.

    Subclasses define `options(name)` (override name -> (default, allowed)), `_pool_id`,
    `_pool_kwargs`, `_obs_space` and `_convert` (envpool obs/info -> obs and extra keys).
    `self._repeat > 1` repeats each action in Python, summing rewards and stepping only envs whose
    episode is still running (via envpool's `env_id` subsets), so episodes end exactly.
    """
    OPTIONS: dict = {}
    _repeat = 1

    @classmethod
    def options(cls, name: str) -> dict:
        return cls.OPTIONS

    def __init__(self, name: str, num_envs: int, seed: int = 0, **overrides):
        if not base.POSITIVE_INT.ok(num_envs):
            raise ValueError(f'{name}: num_envs={num_envs!r} must be an int >= 1.')
        if not base.NON_NEGATIVE_INT.ok(seed) or seed >= 2**31:
            raise ValueError(f'{name}: seed={seed!r} must be an int in [0, 2**31).')
        self.name, self.num_envs = name, int(num_envs)
        self.config = opts = base.resolve_options(name, self.options(name), overrides)
        self._pool = envpool.make_gymnasium(
            self._pool_id(name, opts), num_envs=self.num_envs, batch_size=self.num_envs,
            seed=int(seed), num_threads=opts['num_threads'], **self._pool_kwargs(opts))
        space = self._pool.action_space
        if hasattr(space, 'n'):
            self.act_space = ActionSpace(True, int(space.n))
        else:
            self.act_space = ActionSpace(False, int(np.prod(space.shape)))
            self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_space = self._obs_space(opts)
        self._started = False

    def _pool_id(self, name, opts):
        return name

    def _pool_kwargs(self, opts) -> dict:
        raise NotImplementedError

    def _obs_space(self, opts) -> dict:
        raise NotImplementedError

    def _convert(self, obs, info) -> dict:
        """envpool obs/info of B envs -> dict of obs and extra keys with leading axis [B]."""
        raise NotImplementedError

    def _pool_action(self, action):
        if self.act_space.discrete:
            return action
        return self._low + (action.astype(np.float64) + 1.0) * 0.5 * (self._high - self._low)

    def reset(self) -> dict:
        obs, info = self._pool.reset()
        order = np.argsort(info['env_id'])
        self._started = True
        return base.first_step(_take(self._convert(obs, info), order), self.num_envs)

    def _pool_step(self, action, env_id=None):
        """Steps envs `env_id` (sorted; None = all). Returns outputs sorted by env_id and
        `running` bool [B] (episode neither just reset nor ended)."""
        obs, reward, term, trunc, info = self._pool.step(action, env_id)
        order = np.argsort(info['env_id'])
        first = info['elapsed_step'][order] == 0
        term, trunc = term[order] & ~first, trunc[order] & ~first
        out = _take(self._convert(obs, info), order)
        out.update(reward=np.where(first, 0.0, reward[order]).astype(np.float32), is_first=first,
                   is_last=term | trunc, is_terminal=term.copy())
        return out, ~(first | term | trunc)

    def step(self, action) -> dict:
        if not self._started:
            raise RuntimeError(f'{self.name}: call reset() before step().')
        action = self._pool_action(self._check_action(action))
        out, running = self._pool_step(action)
        for _ in range(self._repeat - 1):
            ids = np.flatnonzero(running).astype(np.int32)
            if not len(ids):
                break
            sub, running[ids] = self._pool_step(action[ids], ids)
            for key, value in sub.items():
                if key == 'reward':
                    out[key][ids] += value
                elif key != 'is_first':
                    out[key][ids] = value
        return out

    def close(self) -> None:
        self._pool.close()


def _take(tree: dict, order: np.ndarray) -> dict:
    return {k: np.ascontiguousarray(np.asarray(v)[order]) for k, v in tree.items()}


class AtariEnv(EnvpoolEnv):
    """Atari 2600 (envpool ids like 'Pong-v5'), DreamerV2 settings by default: 64x64 grayscale
    ('image' uint8 [N, 64, 64, 1]), action repeat 4 with max-pooling of the last two frames,
    sticky actions 0.25, no noop starts (`noop_max=1`; envpool crashes on 0), no fire reset, no
    life-loss termination, no reward clipping, no frame stacking, 108000 frames per episode
    (`max_episode_steps` counts agent steps, default 108000 // action_repeat).
    Extra keys: 'lives' int32 [N]."""
    OPTIONS = dict([
        ('obs', ('image', ('image',))),
        ('size', (64, base.at_least(8))),  # square image side in pixels
        ('gray', (True, base.BOOL)),  # grayscale (C=1) or RGB (C=3)
        ('action_repeat', (4, base.POSITIVE_INT)),  # envpool frame_skip
        ('sticky', (0.25, base.PROBABILITY)),  # repeat_action_probability
        ('noop_max', (1, base.POSITIVE_INT)),  # envpool samples noops in [0, noop_max)
        _TIME_LIMIT, _THREADS])

    def _pool_kwargs(self, o):
        return dict(
            img_height=o['size'], img_width=o['size'], gray_scale=o['gray'], stack_num=1,
            frame_skip=o['action_repeat'], repeat_action_probability=float(o['sticky']),
            noop_max=o['noop_max'], episodic_life=False, zero_discount_on_life_loss=False,
            reward_clip=False, use_fire_reset=False,
            max_episode_steps=o['max_episode_steps'] or 108000 // o['action_repeat'])

    def _obs_space(self, o):
        return {'image': Space((o['size'], o['size'], 1 if o['gray'] else 3), np.dtype(np.uint8))}

    def _convert(self, obs, info):
        return {'image': obs.transpose(0, 2, 3, 1), 'lives': info['lives'].astype(np.int32)}


class DmcStateEnv(EnvpoolEnv):
    """DeepMind Control from states (envpool ids like 'WalkerWalk-v1'): 'vector' float32 [N, D],
    the observation dict flattened and concatenated in sorted key order.

    envpool's DMC `frame_skip` is the number of physics substeps per control step (walker: 10, the
    native 0.025 s), its reward is that of the last substep only, and its `max_episode_steps`
    counts envpool steps whatever `frame_skip` is. So the native frame_skip is kept and actions
    are repeated here (`action_repeat`, default 2), summing rewards like Dreamer; envpool's time
    limit is set to `max_episode_steps * action_repeat` control steps, with `max_episode_steps`
    in agent steps (default 1000 // action_repeat: 1000 control steps = 500 agent steps)."""
    OPTIONS = dict([('obs', ('vector', ('vector',))),
                    ('action_repeat', (2, base.POSITIVE_INT)), _TIME_LIMIT, _THREADS])

    def __init__(self, name, num_envs, seed=0, **overrides):
        super().__init__(name, num_envs, seed, **overrides)
        self._repeat = self.config['action_repeat']

    def _pool_kwargs(self, o):
        repeat = o['action_repeat']
        limit = (o['max_episode_steps'] or 1000 // repeat) * repeat
        if limit >= 2**31:   # envpool's time limit is a C int
            raise ValueError(f"{self.name}: overrides max_episode_steps={o['max_episode_steps']} "
                             f"* action_repeat={repeat} = {limit} control steps must be < 2**31.")
        return dict(max_episode_steps=limit)

    def _obs_space(self, o):
        spaces = self._pool.observation_space.spaces
        size = sum(int(np.prod(s.shape)) for s in spaces.values())
        return {'vector': Space((size,), np.dtype(np.float32))}

    def _convert(self, obs, info):
        n = len(info['env_id'])
        vec = [np.asarray(obs[k], np.float32).reshape(n, -1) for k in sorted(obs)]
        return {'vector': np.concatenate(vec, 1)}


class ClassicControlEnv(EnvpoolEnv):
    """Gym's classic control tasks (envpool ids like 'CartPole-v1'): 'vector' float32 [N, D],
    the task's own time limit unless `max_episode_steps` is given. CartPole's `is_terminal` is a
    fall (pole beyond 12 degrees or cart beyond 2.4), its `is_last` without it the time limit."""
    OPTIONS = dict([('obs', ('vector', ('vector',))), _TIME_LIMIT, _THREADS])

    def _pool_kwargs(self, o):
        return {} if o['max_episode_steps'] is None else dict(
            max_episode_steps=o['max_episode_steps'])

    def _obs_space(self, o):
        return {'vector': Space((int(np.prod(self._pool.observation_space.shape)),),
                                np.dtype(np.float32))}

    def _convert(self, obs, info):
        return {'vector': np.asarray(obs, np.float32).reshape(len(info['env_id']), -1)}


# MiniGrid symbolic encoding: object, color and state indices of each cell.
_OBJECTS = ('unseen', 'empty', 'wall', 'floor', 'door', 'key', 'ball', 'box', 'goal', 'lava',
            'agent')
_COLORS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (112, 39, 195), (255, 255, 0),
                    (100, 100, 100)], np.float64)  # red, green, blue, purple, yellow, grey
_NUM_STATES = 3  # door open, closed, locked
_AGENT_RGB = np.array([255, 255, 255], np.float64)


def minigrid_tiles(tile: int = 9) -> np.ndarray:
    """Tile palette uint8 [11 objects, 6 colors, 3 states, tile, tile, 3]: a distinct picture per
    (object, color, state) that MiniGrid can produce; shapes tell objects apart, colors their
    color; doors show open as a frame, closed with a handle, locked with a bar."""
    y, x = (np.mgrid[:tile, :tile] + 0.5) / tile  # cell-centre coordinates in (0, 1)
    frame = (np.minimum(np.minimum(x, 1 - x), np.minimum(y, 1 - y)) < 1.5 / tile)
    box = (np.maximum(np.abs(x - 0.5), np.abs(y - 0.5)) < 0.4) & (
        np.maximum(np.abs(x - 0.5), np.abs(y - 0.5)) > 0.4 - 1.5 / tile)
    ball = (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.33 ** 2
    key = ((np.abs(x - 0.5) < 0.1) & (y > 0.35) & (y < 0.9)) | (  # shaft, ring, bit
        (x - 0.5) ** 2 + (y - 0.25) ** 2 < 0.2 ** 2) | (
        (x > 0.5) & (x < 0.75) & (np.abs(y - 0.75) < 0.07))
    bar = np.abs(y - 0.5) < 0.12
    handle = (np.abs(x - 0.75) < 0.12) & (np.abs(y - 0.5) < 0.12)
    lut = np.zeros((len(_OBJECTS), len(_COLORS), _NUM_STATES, tile, tile, 3))
    for c, rgb in enumerate(_COLORS):
        lut[0, c] = 40  # unseen: dark grey, distinct from empty black
        lut[2, c] = 100 + 0.3 * rgb  # wall (MiniGrid walls are grey)
        lut[3, c] = 0.5 * rgb  # floor
        lut[4, c, 0] = frame[..., None] * rgb  # door open
        lut[4, c, 1] = np.where(handle[..., None], 0.3 * rgb, rgb)  # door closed
        lut[4, c, 2] = np.where(bar[..., None], 0.3 * rgb, rgb)  # door locked
        lut[5, c] = key[..., None] * rgb
        lut[6, c] = ball[..., None] * rgb
        lut[7, c] = box[..., None] * rgb
        lut[8, c] = 0.7 * rgb + 20  # goal
        wave = (np.sin(x * 12.6) * 0.1 + 0.5 > y)[..., None]
        lut[9, c] = np.where(wave, (255, 128, 0), (255, 60, 0))  # lava
        lut[10, c] = 200  # agent: never in MiniGrid views, drawn by render_minigrid
    return np.round(lut).astype(np.uint8)


def _agent_marker(tile: int) -> np.ndarray:
    """bool [tile, tile]: an upward triangle (the egocentric view always faces up)."""
    y, x = (np.mgrid[:tile, :tile] + 0.5) / tile
    return (y > 0.2) & (y < 0.85) & (np.abs(x - 0.5) < 0.45 * (y - 0.2) / 0.65)


def render_minigrid(view: np.ndarray, size: int = 64, tiles: np.ndarray | None = None
                    ) -> np.ndarray:
    """Renders symbolic egocentric views uint8 [B, 7, 7, 3] (indexed [x, y, (object, color,
    state)], agent at x=3, y=6 facing -y) to RGB uint8 [B, size, size, 3]: tiles of
    size // 7 pixels with rows = y, the agent drawn as a white upward triangle over its cell
    (whose symbol is the carried object, if any), zero-padded at the bottom/right."""
    b, w, h, _ = view.shape
    tile = size // max(w, h)
    tiles = minigrid_tiles(tile) if tiles is None else tiles
    v = np.swapaxes(view, 1, 2).astype(np.int64)  # [B, y, x, 3]
    o = np.clip(v[..., 0], 0, tiles.shape[0] - 1)
    c = np.clip(v[..., 1], 0, tiles.shape[1] - 1)
    s = np.clip(v[..., 2], 0, tiles.shape[2] - 1)
    img = tiles[o, c, s]  # [B, y, x, tile, tile, 3]
    img[:, h - 1, w // 2][:, _agent_marker(tile)] = _AGENT_RGB.astype(np.uint8)
    img = img.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * tile, w * tile, 3)
    return np.pad(img, ((0, 0), (0, size - h * tile), (0, size - w * tile), (0, 0)))


def minigrid_vector(view: np.ndarray) -> np.ndarray:
    """Symbolic views uint8 [B, 7, 7, 3] -> float32 [B, 7 * 7 * 20]: per cell one-hot object
    (11), color (6) and state (3), cells in [y, x] order."""
    v = np.swapaxes(view, 1, 2).astype(np.int64)
    parts = [np.eye(k, dtype=np.float32)[np.clip(v[..., i], 0, k - 1)]
             for i, k in enumerate((len(_OBJECTS), len(_COLORS), _NUM_STATES))]
    return np.concatenate(parts, -1).reshape(len(view), -1)


class MiniGridEnv(EnvpoolEnv):
    """MiniGrid (envpool ids like 'MiniGrid-FourRooms-v0') from the 7x7 egocentric symbolic view:
    obs='image' (default) renders it to 'image' uint8 [N, size, size, 3] (`render_minigrid`),
    obs='vector' gives 'vector' float32 [N, 980] (`minigrid_vector`). The episode limit is
    envpool's MiniGrid default unless `max_episode_steps` is given.
    Extra keys: 'agent_pos' int32 [N, 2] (x, y grid cell), 'direction' int32 [N] (0 right, 1 down,
    2 left, 3 up). Missions (BabyAI ids) are not exposed."""
    OPTIONS = dict([('obs', ('image', ('image', 'vector'))),
                    ('size', (64, base.at_least(7))),  # rendered image side in pixels
                    _TIME_LIMIT, _THREADS])

    def __init__(self, name, num_envs, seed=0, **overrides):
        super().__init__(name, num_envs, seed, **overrides)
        self._tiles = minigrid_tiles(self.config['size'] // 7)

    def _pool_kwargs(self, o):
        return {'max_episode_steps': o['max_episode_steps']} if o['max_episode_steps'] else {}

    def _obs_space(self, o):
        if o['obs'] == 'image':
            return {'image': Space((o['size'], o['size'], 3), np.dtype(np.uint8))}
        return {'vector': Space((7 * 7 * 20,), np.dtype(np.float32))}

    def _convert(self, obs, info):
        view = obs['image']
        out = ({'image': render_minigrid(view, self.config['size'], self._tiles)}
               if self.config['obs'] == 'image' else {'vector': minigrid_vector(view)})
        out.update(agent_pos=info['agent_pos'].astype(np.int32),
                   direction=obs['direction'].astype(np.int32))
        return out


class CraftaxClassicEnv(EnvpoolEnv):
    """Craftax Classic ('Craftax-Classic-Pixels-v1' / 'Craftax-Classic-Symbolic-v1'; obs='image'
    or 'vector' picks the envpool variant, default from the name): 'image' uint8 [N, 64, 64, 3]
    (envpool's 63x63 float [0, 1] image scaled to 255 and zero-padded bottom/right) or 'vector'
    float32 [N, 1345]. Episodes end on death or after 10000 steps (`max_episode_steps`).
    Extra key: 'achievements' float32 [N, 22] (`ACHIEVEMENTS` order), 1 where the episode that
    ends at this step (`is_last`) unlocked the achievement, else 0 (envpool reports them only
    on the last step of an episode)."""
    ACHIEVEMENTS = (
        'collect_coal', 'collect_diamond', 'collect_drink', 'collect_iron', 'collect_sapling',
        'collect_stone', 'collect_wood', 'defeat_skeleton', 'defeat_zombie', 'eat_cow',
        'eat_plant', 'make_iron_pickaxe', 'make_iron_sword', 'make_stone_pickaxe',
        'make_stone_sword', 'make_wood_pickaxe', 'make_wood_sword', 'place_furnace',
        'place_plant', 'place_stone', 'place_table', 'wake_up')

    @classmethod
    def options(cls, name):
        default = 'vector' if 'Symbolic' in name else 'image'
        return dict([('obs', (default, ('image', 'vector'))), _TIME_LIMIT, _THREADS])

    def _pool_id(self, name, o):
        return 'Craftax-Classic-Pixels-v1' if o['obs'] == 'image' else 'Craftax-Classic-Symbolic-v1'

    def _pool_kwargs(self, o):
        return {'max_episode_steps': o['max_episode_steps']} if o['max_episode_steps'] else {}

    def _obs_space(self, o):
        if o['obs'] == 'image':
            return {'image': Space((64, 64, 3), np.dtype(np.uint8))}
        return {'vector': Space(tuple(self._pool.observation_space.shape), np.dtype(np.float32))}

    def _convert(self, obs, info):
        achievements = np.stack([info[f'Achievements/{a}'] for a in self.ACHIEVEMENTS], 1)
        extra = {'achievements': (achievements > 0).astype(np.float32)}
        if self.config['obs'] == 'vector':
            return {'vector': np.asarray(obs, np.float32), **extra}
        img = np.round(np.clip(obs, 0, 1) * 255).astype(np.uint8)
        pad = 64 - img.shape[1], 64 - img.shape[2]
        return {'image': np.pad(img, ((0, 0), (0, pad[0]), (0, pad[1]), (0, 0))), **extra}
