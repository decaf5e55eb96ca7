"""The batched environment protocol shared by every suite.

An `Env` steps `N = num_envs` environments in lockstep on the host and returns dicts of numpy
arrays with a leading `[N]` axis (Dreamer convention, autoreset):

  obs keys      per `obs_space`: images uint8 [N, H, W, C] (channels last), vectors float32 [N, D]
  'reward'      float32 [N]   (0 at `is_first`)
  'is_first'    bool [N]      first observation of an episode
  'is_last'     bool [N]      last observation (termination or time limit)
  'is_terminal' bool [N]      true termination only (not time-limit truncation)
  plus suite-specific diagnostic keys documented by each suite.

After a step returns `is_last[i]`, the next `step` ignores `action[i]` and returns the first
observation of a new episode for env `i` (`is_first=True`, reward 0).
"""
import abc
from typing import Any, Callable, NamedTuple

import numpy as np


class Space(NamedTuple):
    """Per-env observation space: `shape` excludes the batch axis."""
    shape: tuple
    dtype: np.dtype


class ActionSpace(NamedTuple):
    """`size` = number of actions if `discrete` (actions int32 [N]), else the action dimension
    (actions float32 [N, size] in [-1, 1])."""
    discrete: bool
    size: int


class Check(NamedTuple):
    """An override constraint: `desc` names the allowed values, `ok(value) -> bool`."""
    desc: str
    ok: Callable[[Any], bool]


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


POSITIVE_INT = Check('an int >= 1', lambda v: _is_int(v) and v >= 1)
NON_NEGATIVE_INT = Check('an int >= 0', lambda v: _is_int(v) and v >= 0)
PROBABILITY = Check('a float in [0, 1]', lambda v: (
    isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and 0 <= v <= 1))
BOOL = (False, True)
OPTIONAL_POSITIVE_INT = Check('None or an int >= 1', lambda v: v is None or POSITIVE_INT.ok(v))


def at_least(lo: int) -> Check:
    return Check(f'an int >= {lo}', lambda v: _is_int(v) and v >= lo)


def resolve_options(env_name: str, options: dict, overrides: dict) -> dict:
    """Merges `overrides` into the defaults of `options` (name -> (default, allowed)), where
    allowed is a tuple of values or a `Check`. Raises ValueError naming the bad field and the
    allowed fields or values."""
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(f'{env_name}: unknown override(s) {unknown}; '
                         f'allowed overrides are {sorted(options)}.')
    resolved = {}
    for key, (default, allowed) in options.items():
        value = overrides.get(key, default)
        if isinstance(allowed, Check):
            good, desc = allowed.ok(value), allowed.desc
        else:
            good, desc = value in allowed and type(value) in {type(a) for a in allowed}, allowed
        if not good:
            raise ValueError(f'{env_name}: override {key}={value!r} is invalid; allowed: {desc}.')
        resolved[key] = value
    return resolved


class Env(abc.ABC):
    """A batch of `num_envs` environments. Subclasses set `num_envs`, `obs_space` (dict name ->
    Space) and `act_space` (ActionSpace) in `__init__`."""
    num_envs: int
    obs_space: dict
    act_space: ActionSpace

    @abc.abstractmethod
    def reset(self) -> dict:
        """Resets every env. Returns obs keys [N, ...], reward zeros, is_first all True."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> dict:
        """action: int32 [N] (discrete) or float32 [N, A] in [-1, 1]. Returns the module keys."""

    def close(self) -> None:
        """Releases simulator resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f'{type(self).__name__}(num_envs={self.num_envs}, obs_space={self.obs_space}, '
                f'act_space={self.act_space})')

    def _check_action(self, action) -> np.ndarray:
        """Returns the action as int32 [N] or float32 [N, A] clipped to [-1, 1]; raises ValueError
        on a wrong shape or an out-of-range discrete action."""
        n, space = self.num_envs, self.act_space
        if space.discrete:
            action = np.asarray(action)
            if action.shape != (n,) or not np.issubdtype(action.dtype, np.integer):
                raise ValueError(f'Expected an integer action of shape ({n},), got '
                                 f'{action.dtype} {action.shape}.')
            if action.min() < 0 or action.max() >= space.size:
                raise ValueError(f'Discrete actions must be in [0, {space.size}), got {action}.')
            return action.astype(np.int32)
        action = np.asarray(action, np.float32)
        if action.shape != (n, space.size):
            raise ValueError(f'Expected a float action of shape ({n}, {space.size}), got '
                             f'{action.shape}.')
        return np.clip(action, -1.0, 1.0)


FLAG_KEYS = {'reward': np.float32, 'is_first': bool, 'is_last': bool, 'is_terminal': bool}


def check_outputs(env: Env, out: dict) -> None:
    """Raises ValueError unless `out` (from `env.reset()`/`env.step()`) has every obs key of
    `env.obs_space` and the flag keys with the documented shapes [N, ...] and dtypes."""
    n = env.num_envs
    expected = {k: ((n, *s.shape), s.dtype) for k, s in env.obs_space.items()}
    expected |= {k: ((n,), np.dtype(d)) for k, d in FLAG_KEYS.items()}
    for key, (shape, dtype) in expected.items():
        value = out.get(key)
        if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
            got = None if value is None else (getattr(value, 'dtype', type(value)), np.shape(value))
            raise ValueError(f'Output {key!r}: expected {dtype} {shape}, got {got}.')


def first_step(obs: dict, n: int) -> dict:
    """Adds the reset flags to the converted observations `obs` of `n` envs."""
    return {**obs, 'reward': np.zeros(n, np.float32), 'is_first': np.ones(n, bool),
            'is_last': np.zeros(n, bool), 'is_terminal': np.zeros(n, bool)}
