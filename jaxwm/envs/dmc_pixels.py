"""DeepMind Control from pixels: a Python-side batch of dm_control environments ('dmc:walker_walk').

Rendering uses `MUJOCO_GL=egl` (set here unless already set) at 64x64 from camera 0 (quadruped: 2).
Shadows and offscreen multisampling are turned off before the first render
(`model.vis.quality.shadowsize = offsamples = 0`; setting them later has no effect). Measured on
this shared 2-core CPU machine (EGL, one walker env): a bare 64x64 render goes from ~57 to ~470
frames/s; an agent step of this class (2 control steps, render, state copies) from ~38 to ~220
steps/s. Envs are stepped sequentially, so N envs give about the same total steps/s.
"""
import os

import numpy as np

from jaxwm.envs import base
from jaxwm.envs.base import ActionSpace, Space

_CAMERAS = {'quadruped': 2}  # Dreamer's choice; every other domain uses camera 0
_EPISODE_CONTROL_STEPS = 1000  # dm_control's benchmark episodes


def _suite():
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from dm_control import suite
    return suite


def dmc_task_names() -> list:
    """The 'domain_task' names of dm_control's suite, e.g. 'walker_walk', 'ball_in_cup_catch'."""
    return [f'{domain}_{task}' for domain, task in _suite().ALL_TASKS]


class DmcPixelsEnv(base.Env):
    """A batch of `num_envs` dm_control tasks stepped one after the other in Python.

    name: 'dmc:<domain>_<task>'. Observations: 'image' uint8 [N, size, size, 3] (obs='image',
    default) or 'vector' float32 [N, D] (obs='vector': the dm_control observation dict flattened
    in sorted key order, no rendering). Actions float32 [N, A] in [-1, 1] are rescaled to the
    action spec and repeated `action_repeat` times (default 2), summing rewards. Episodes last
    `max_episode_steps` agent steps (default 1000 // action_repeat, i.e. 1000 control steps) unless
    the task terminates (then `is_terminal` if its discount is 0).

    Extra keys, for computing other rewards later: 'physics/<key>' float32 [N, ...] for every raw
    dm_control observation key, and 'physics/state' float32 [N, S] (`physics.get_state()`: qpos,
    qvel, act). `self.physics(i)` is the live dm_control Physics of env i (after an autoreset it
    is already the new episode's).
    """
    OPTIONS = dict([
        ('obs', ('image', ('image', 'vector'))),
        ('size', (64, base.POSITIVE_INT)),  # square image side in pixels
        ('action_repeat', (2, base.POSITIVE_INT)),  # control steps per agent step
        ('camera', (None, base.Check('None or an int >= 0',  # None = 2 for quadruped, else 0
                                     lambda v: v is None or base.NON_NEGATIVE_INT.ok(v)))),
        # agent steps per episode; None = 1000 // action_repeat
        ('max_episode_steps', (None, base.OPTIONAL_POSITIVE_INT)),
        ('shadows', (False, base.BOOL)),  # keep MuJoCo's default shadows (slow; for benchmarks)
    ])

    def __init__(self, name: str, num_envs: int, seed: int = 0, **overrides):
        if not base.POSITIVE_INT.ok(num_envs):
            raise ValueError(f'{name}: num_envs={num_envs!r} must be an int >= 1.')
        if not base.NON_NEGATIVE_INT.ok(seed):
            raise ValueError(f'{name}: seed={seed!r} must be an int >= 0.')
        self.name, self.num_envs = name, int(num_envs)
        self.config = opts = base.resolve_options(name, self.OPTIONS, overrides)
        suite = _suite()
        domain, task = next((d, t) for d, t in suite.ALL_TASKS if f'dmc:{d}_{t}' == name)
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(num_envs)]
        # Infinite dm_control time limit: episodes are cut here, counting control steps exactly.
        self._envs = [suite.load(domain, task, {'random': s, 'time_limit': float('inf')})
                      for s in seeds]
        if not opts['shadows']:
            for env in self._envs:
                env.physics.model.vis.quality.shadowsize = 0
                env.physics.model.vis.quality.offsamples = 0
        self._camera = _CAMERAS.get(domain, 0) if opts['camera'] is None else opts['camera']
        self._repeat = opts['action_repeat']
        steps = opts['max_episode_steps'] or _EPISODE_CONTROL_STEPS // self._repeat
        self._limit = steps * self._repeat  # control steps per episode
        spec = self._envs[0].action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.act_space = ActionSpace(False, int(np.prod(spec.shape)))
        obs_spec = self._envs[0].observation_spec()
        self._keys = sorted(obs_spec)
        size = opts['size']
        self.obs_space = (
            {'image': Space((size, size, 3), np.dtype(np.uint8))} if opts['obs'] == 'image' else
            {'vector': Space((sum(int(np.prod(obs_spec[k].shape)) for k in self._keys),),
                             np.dtype(np.float32))})
        self._steps = np.zeros(num_envs, np.int64)  # control steps in the current episode
        self._ended = None  # bool [N]: env must reset at its next step; None before reset()

    def physics(self, i: int):
        """The dm_control Physics of env `i`."""
        return self._envs[i].physics

    def _observe(self, i: int, raw: dict) -> dict:
        out = {f'physics/{k}': np.asarray(raw[k], np.float32) for k in self._keys}
        out['physics/state'] = self._envs[i].physics.get_state().astype(np.float32)
        if self.config['obs'] == 'image':
            size = self.config['size']
            out['image'] = self._envs[i].physics.render(size, size, camera_id=self._camera)
        else:
            out['vector'] = np.concatenate([out[f'physics/{k}'].reshape(-1) for k in self._keys])
        return out

    def _reset_one(self, i: int) -> dict:
        self._steps[i] = 0
        out = self._observe(i, self._envs[i].reset().observation)
        return {**out, 'reward': np.float32(0), 'is_first': True, 'is_last': False,
                'is_terminal': False}

    def _step_one(self, i: int, action: np.ndarray) -> dict:
        reward = 0.0
        for _ in range(self._repeat):
            ts = self._envs[i].step(action)
            reward += ts.reward or 0.0
            self._steps[i] += 1
            if ts.last() or self._steps[i] >= self._limit:
                break
        terminal = bool(ts.last() and ts.discount == 0)
        last = bool(ts.last() or self._steps[i] >= self._limit)
        out = self._observe(i, ts.observation)
        return {**out, 'reward': np.float32(reward), 'is_first': False, 'is_last': last,
                'is_terminal': terminal}

    def reset(self) -> dict:
        outs = [self._reset_one(i) for i in range(self.num_envs)]
        self._ended = np.zeros(self.num_envs, bool)
        return _stack(outs)

    def step(self, action) -> dict:
        if self._ended is None:
            raise RuntimeError(f'{self.name}: call reset() before step().')
        action = self._low + (self._check_action(action).astype(np.float64) + 1) * 0.5 * (
            self._high - self._low)
        outs = [self._reset_one(i) if self._ended[i] else self._step_one(i, action[i])
                for i in range(self.num_envs)]
        out = _stack(outs)
        self._ended = out['is_last'].copy()
        return out

    def close(self) -> None:
        for env in self._envs:
            env.close()
            env.physics.free()


def _stack(outs: list) -> dict:
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}
