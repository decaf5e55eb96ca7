"""`make(name, num_envs, seed, **overrides)`: the suite is inferred from the name.

- Atari:          envpool ids '<Game>-v5' (e.g. 'Pong-v5')                 -> AtariEnv
- DMC states:     envpool ids '<Domain><Task>-v1' (e.g. 'WalkerWalk-v1')   -> DmcStateEnv
- Classic control: envpool ids 'CartPole-v1', 'Acrobot-v1', ...           -> ClassicControlEnv
- MiniGrid:       envpool ids 'MiniGrid-*' (e.g. 'MiniGrid-FourRooms-v0')  -> MiniGridEnv
- Craftax Classic: 'Craftax-Classic-Pixels-v1', 'Craftax-Classic-Symbolic-v1' -> CraftaxClassicEnv
- DMC pixels:     'dmc:<domain>_<task>' (e.g. 'dmc:walker_walk')           -> DmcPixelsEnv
- JAX-native:     'Turf-v0', 'Sokoban-v0', 'MinAtar-<Game>-v0' (Breakout, SpaceInvaders, Freeway,
                  Asterix); with the jax-envs extra 'xminigrid:MiniGrid-*',
                  'craftax:Craftax-Classic-Symbolic-v1' (jax_native.py)    -> JaxNativeEnv
"""
import difflib
import functools

from jaxwm.envs import base, envpool_envs, jax_native

_ENVPOOL_SUITES = {
    'envpool.atari': envpool_envs.AtariEnv,
    'envpool.mujoco.dmc': envpool_envs.DmcStateEnv,
    'envpool.minigrid': envpool_envs.MiniGridEnv,
    'envpool.classic_control': envpool_envs.ClassicControlEnv,
}
_CRAFTAX = ('Craftax-Classic-Pixels-v1', 'Craftax-Classic-Symbolic-v1')
CRAFTAX_ENVPOOL = '1.2.7'   # first envpool with Craftax; its wheels need Python >= 3.12


@functools.cache
def craftax_available() -> bool:
    """Whether the installed envpool has Craftax Classic."""
    from envpool.registration import registry
    return all(name in registry.specs for name in _CRAFTAX)


@functools.cache
def _envpool_ids() -> dict:
    """Supported envpool id -> env class."""
    from envpool.registration import registry
    ids = {name: _ENVPOOL_SUITES[spec[0]] for name, spec in registry.specs.items()
           if spec[0] in _ENVPOOL_SUITES}
    ids = {name: cls for name, cls in ids.items() if '/' not in name}   # not envpool's phys2d/
    native = {name: jax_native.JaxNativeEnv for name in jax_native.names()}
    return ids | {name: envpool_envs.CraftaxClassicEnv for name in _CRAFTAX} | native


@functools.cache
def _dmc_ids() -> tuple:
    from jaxwm.envs import dmc_pixels
    return tuple(f'dmc:{name}' for name in dmc_pixels.dmc_task_names())


def supported_ids() -> list:
    """Every name `make` accepts."""
    return sorted(_envpool_ids()) + list(_dmc_ids())


def env_class(name: str) -> type:
    """The suite class that builds `name`; ValueError for an unknown name (listing close
    matches) or a Craftax id on an envpool without Craftax."""
    if name.startswith('dmc:'):
        if name in _dmc_ids():
            from jaxwm.envs import dmc_pixels
            return dmc_pixels.DmcPixelsEnv
    elif name in _envpool_ids():
        if name in _CRAFTAX and not craftax_available():
            import envpool
            raise ValueError(f'{name} needs envpool >= {CRAFTAX_ENVPOOL} (installed: '
                             f'{envpool.__version__}), whose wheels need Python >= 3.12: '
                             'rebuild .venv with python3.12')
        return _envpool_ids()[name]
    elif jax_native.missing_package(name):
        jax_native.core(name)    # raises: names the missing optional package
    candidates = _dmc_ids() if name.startswith('dmc:') else supported_ids()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f' Close matches: {close}.' if close else ''
    raise ValueError(f'Unknown environment name {name!r}.{hint} See '
                     f'jaxwm.envs.supported_ids() for all {len(supported_ids())} names.')


def check(name: str, **overrides) -> None:
    """ValueError for what `make(name, ..., **overrides)` would refuse (the name or a suite
    option), without building an environment."""
    cls = env_class(name)
    options = cls.options(name) if hasattr(cls, 'options') else cls.OPTIONS
    base.resolve_options(name, options, overrides)


def make(name: str, num_envs: int, seed: int = 0, **overrides) -> base.Env:
    """Builds a batch of `num_envs` environments `name` (see the module docstring) seeded by
    `seed`. `overrides` are suite options (e.g. size=64, action_repeat=2, obs='image'|'vector',
    max_episode_steps=...); each suite class documents its own in `OPTIONS`.
    Raises ValueError for an unknown name (listing close matches) or a bad override."""
    return env_class(name)(name, num_envs, seed, **overrides)
