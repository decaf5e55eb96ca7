"""JAX-native environments: pure functions of a state pytree, so that a training loop can run
whole rollouts inside one compiled `lax.scan` (no host round trip per step), and
`JaxNativeEnv`, which serves the same functions through the batched `base.Env` protocol.

A core module (`turf`, `sokoban`, `minatar` for the four 'MinAtar-*' games; `xminigrid_env` for
the 'xminigrid:' names and `craftax_env` for 'craftax:', with the optional packages) defines
NUM_ACTIONS, OPTIONS (option -> (default, allowed)), `make_config(options, name)` (a static,
hashable NamedTuple), `obs_size(cfg)`, and pure functions
  reset(key, cfg) -> state (a pytree)
  step(state, action, cfg) -> (state, reward, terminal, truncated, irreversible)
  observe(state, cfg) -> float32 [obs_size(cfg)]
  info(state) -> {extra key: array} (e.g. 'agent_pos')
where `irreversible` is the core's ground truth that this step cannot be undone (always False
where it is unknown).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.envs import base, craftax_env, minatar, sokoban, turf, xminigrid_env
from jaxwm.envs.base import ActionSpace, Space

CORES = {turf.NAME: turf, sokoban.NAME: sokoban, **dict.fromkeys(minatar.NAMES, minatar)}
# optional backends: name prefix -> (core module with `available()` and `names()`, package)
OPTIONAL = {xminigrid_env.PREFIX: (xminigrid_env, 'xminigrid'),
            craftax_env.PREFIX: (craftax_env, 'craftax')}


def missing_package(name: str) -> str | None:
    """The optional package `name`'s backend needs and lacks ('xminigrid:...' without
    xminigrid), else None."""
    for prefix, (module, package) in OPTIONAL.items():
        if name.startswith(prefix) and not module.available():
            return package
    return None


def names() -> list:
    """Every JAX-native name: the cores' and those of the installed optional backends."""
    return sorted(CORES) + [n for module, _ in OPTIONAL.values() for n in module.names()]


def core(name: str):
    """The core module of `name`; ValueError naming a missing optional package, or listing the
    JAX-native names."""
    if name in CORES:
        return CORES[name]
    package = missing_package(name)
    if package:
        raise ValueError(f"{name} needs {package}: pip install -e '.[jax-envs]'")
    for prefix, (module, _) in OPTIONAL.items():
        if name.startswith(prefix) and name in module.names():
            return module
    raise ValueError(f'{name!r} is not a JAX-native environment; allowed: {names()}')


def _reset_where(module, cfg, key: jax.Array, done: jax.Array, state):
    """`state` with the envs where `done` [N] replaced by fresh ones; the resets are computed
    only on steps where some env is done (worlds can be costly to generate, e.g. Craftax)."""
    def fresh():
        return select(done, reset_batch(module, cfg, key, done.shape[0])[0], state)
    return jax.lax.cond(jnp.any(done), fresh, lambda: state)


def make_config(name: str, **options):
    """The core's static config from suite options (ValueError naming a bad option)."""
    module = core(name)
    return module.make_config(base.resolve_options(name, module.OPTIONS, options), name)


def select(done: jax.Array, fresh, moved):
    """Per env, `fresh` where done [N] else `moved` (pytrees with a leading [N] axis)."""
    return jax.tree.map(lambda f, m: jnp.where(
        done.reshape((-1,) + (1,) * (m.ndim - 1)), f, m), fresh, moved)


def step_batch(module, cfg, state, action: jax.Array, key: jax.Array) -> tuple:
    """One step of N envs with autoreset of the finished ones (gymnax style: the new episode's
    first observation replaces the last one). Returns (state, obs [N, D] after the reset,
    final_obs [N, D] (before it), reward, terminal, truncated, irreversible [N])."""
    moved, reward, terminal, truncated, irreversible = jax.vmap(module.step, (0, 0, None))(
        state, action, cfg)
    final_obs = jax.vmap(module.observe, (0, None))(moved, cfg)
    state = _reset_where(module, cfg, key, terminal | truncated, moved)
    obs = jax.vmap(module.observe, (0, None))(state, cfg)
    return state, obs, final_obs, reward, terminal, truncated, irreversible


def reset_batch(module, cfg, key: jax.Array, n: int) -> tuple:
    """(state, obs [N, D]) of N fresh envs."""
    state = jax.vmap(module.reset, (0, None))(jax.random.split(key, n), cfg)
    return state, jax.vmap(module.observe, (0, None))(state, cfg)


def protocol_reset(module, cfg, key: jax.Array, n: int) -> tuple:
    """(state, outputs) of N fresh envs in the `base.Env` protocol: obs keys, the reset flags,
    reward 0, 'irreversible' False and the core's `info` keys, all [N, ...] (jittable)."""
    state, obs = reset_batch(module, cfg, key, n)
    out = dict(vector=obs, reward=jnp.zeros(n), is_first=jnp.ones(n, bool),
               is_last=jnp.zeros(n, bool), is_terminal=jnp.zeros(n, bool),
               irreversible=jnp.zeros(n, bool), **jax.vmap(module.info)(state))
    return state, out


def protocol_step(module, cfg, state, action: jax.Array, last: jax.Array, key: jax.Array):
    """One step of N envs in the `base.Env` protocol (Dreamer autoreset: where `last` [N] (the
    previous output's is_last) the action is ignored and a new episode's first output comes
    back with reward 0). Returns (state, outputs as `protocol_reset`); jittable, so a whole
    rollout can be one `lax.scan` (`JaxNativeEnv.step` is this function jitted)."""
    moved, reward, terminal, truncated, irreversible = jax.vmap(module.step, (0, 0, None))(
        state, action, cfg)
    state = _reset_where(module, cfg, key, last, moved)
    out = dict(vector=jax.vmap(module.observe, (0, None))(state, cfg),
               reward=jnp.where(last, 0.0, reward), is_first=last,
               is_last=~last & (terminal | truncated), is_terminal=~last & terminal,
               irreversible=~last & irreversible, **jax.vmap(module.info)(state))
    return state, out


class JaxNativeEnv(base.Env):
    """`num_envs` envs of a JAX-native core behind the `base.Env` protocol (Dreamer autoreset:
    after `is_last` the next step returns a first observation with reward 0). Extra keys:
    'irreversible' bool [N] (the core's ground truth for this step) and the core's `info`
    (e.g. 'agent_pos' int32 [N, 2]). One jitted, vmapped call per step."""

    @classmethod
    def options(cls, name: str) -> dict:
        return core(name).OPTIONS

    def __init__(self, name: str, num_envs: int, seed: int = 0, **overrides):
        if not base.POSITIVE_INT.ok(num_envs):
            raise ValueError(f'{name}: num_envs={num_envs!r} must be an int >= 1.')
        self.module = core(name)
        self.ACHIEVEMENTS = getattr(self.module, 'ACHIEVEMENTS', ())   # Crafter-like games
        self.config = base.resolve_options(name, self.module.OPTIONS, overrides)
        self.name, self.num_envs = name, int(num_envs)
        self.cfg = self.module.make_config(self.config, name)
        self.obs_space = {'vector': Space((self.module.obs_size(self.cfg),), np.dtype(np.float32))}
        self.act_space = ActionSpace(True, self.module.NUM_ACTIONS)
        self._key = jax.random.PRNGKey(seed)
        self._state = None
        self._last = np.zeros(self.num_envs, bool)

    @functools.partial(jax.jit, static_argnums=0)
    def _reset(self, key):
        return protocol_reset(self.module, self.cfg, key, self.num_envs)

    @functools.partial(jax.jit, static_argnums=0)
    def _step(self, state, action, last, key):
        return protocol_step(self.module, self.cfg, state, action, last, key)

    def next_key(self) -> jax.Array:
        """The key of the next reset or step (advances the env's key chain)."""
        self._key, key = jax.random.split(self._key)
        return key

    @property
    def key_chain(self) -> jax.Array:
        """The chain's current key: step t's key is the second half of its t-th split."""
        return self._key

    def device_reset(self) -> tuple:
        """(state, outputs) of a reset, left on device (the next key of the chain), for loops
        that then step the core themselves (`protocol_step`)."""
        return self._reset(self.next_key())

    def reset(self) -> dict:
        self._state, out = self.device_reset()
        out = {k: np.asarray(v) for k, v in out.items()}
        self._last = out['is_last']
        return out

    def step(self, action) -> dict:
        if self._state is None:
            raise RuntimeError(f'{self.name}: call reset() before step().')
        action = self._check_action(action)
        self._state, out = self._step(self._state, jnp.asarray(action),
                                      jnp.asarray(self._last), self.next_key())
        out = {k: np.asarray(v) for k, v in out.items()}
        self._last = out['is_last']
        return out
