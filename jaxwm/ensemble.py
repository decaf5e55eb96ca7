"""Parameters stacked on a leading axis: ensembles, Q-ensembles and populations.

A stacked pytree has every leaf shaped `[E, ...]` (ensemble axis first, DESIGN.md). It is built by
`jax.vmap(init_fn)` over E keys and applied by `jax.vmap` over the leading axis, so there is never
a Python loop over members inside jit (e.g. Plan2Explore's E one-step heads, Sekar et al. 2020;
CASCADE's population of explorers, Xu et al. 2022).
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp


def init(init_fn: Callable[[jax.Array], Any], key: jax.Array, size: int) -> Any:
    """Stacked params of `size` members: leaves [size, ...]; member i uses `split(key, size)[i]`."""
    if size < 1:
        raise ValueError(f"ensemble size={size} must be >= 1")
    return jax.vmap(init_fn)(jax.random.split(key, size))


def apply(apply_fn: Callable, params: Any, *inputs, shared: bool = True):
    """Apply every member: `apply_fn(params[i], *inputs)` stacked on a new leading axis [E, ...].

    shared=True: all members see the same inputs; shared=False: every input also has a leading
    [E] axis and member i sees inputs[i] (e.g. a population on its own trajectories).
    """
    in_axes = (0,) + ((None,) if shared else (0,)) * len(inputs)
    return jax.vmap(apply_fn, in_axes=in_axes)(params, *inputs)


def size(params: Any) -> int:
    """Number of members E of a stacked pytree."""
    return jax.tree.leaves(params)[0].shape[0]


def member(params: Any, i) -> Any:
    """Params of member i (leaves [...]), i an int or a traced index."""
    return jax.tree.map(lambda x: x[i], params)


def stack(members: list) -> Any:
    """Inverse of `unstack`: a list of E pytrees with equal structure -> leaves [E, ...]."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def unstack(params: Any) -> list:
    """Stacked pytree -> list of E member pytrees (host-side helper; not for use inside jit)."""
    return [member(params, i) for i in range(size(params))]


def broadcast(params: Any, size: int) -> Any:
    """E copies of one member's params (e.g. identical members, or a population from one init)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape), params)
