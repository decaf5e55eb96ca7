"""One batched environment protocol over real environments (see `base` for the protocol and
`registry.make` for the supported names)."""
from jaxwm.envs.base import ActionSpace, Env, Space
from jaxwm.envs.registry import check, make, supported_ids

__all__ = ['ActionSpace', 'Env', 'Space', 'check', 'make', 'supported_ids']
