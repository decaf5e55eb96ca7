"""Proportional prioritized replay (Schaul et al., ICLR 2016) over a `replay.ReplayState`.

TD-MPC (Hansen et al., ICML 2022) and FOWM (Feng et al., CoRL 2023) sample every buffer this way:
a sequence start i is drawn with probability P(i) = p_i^alpha / sum_j p_j^alpha (alpha = 0.6),
its loss is weighted by w_i = (N P(i))^-beta / max_batch w (beta = 0.4, N = valid starts), new
starts enter with the largest priority seen so far, and after every gradient step the sampled
starts get the priorities of their errors (`update`; TD-MPC's official code uses the
rho-weighted L1 TD errors of all Qs over the horizon, plus 1e-6).

Priorities live on device in a sum tree, one leaf per (slot, env) start and every inner node the
sum of its two children, stored as a flat array (root at 1, leaves from L). Drawing B starts
descends log2 L levels for B uniforms in [0, total); an update rewrites B leaves and their
ancestors: both O(B log N), jitted, with no host round trip. A leaf is nonzero only while its
start is valid (the whole sequence written and not crossing the write head): `add` zeroes the
start the new step invalidates and fills the one it completes, so sampling needs no mask.

With a mesh every device keeps the tree of its own envs (tree [devices, 2 L] split on `data`) and
draws batch / devices starts from it, as `replay.sample` does; P(i) is then the stratified
probability p_i^alpha / (devices * its device's total), and the IS weights are normalized by the
maximum over the whole batch.

  pstate = prioritized.init(rstate, seq_len)       # or from_replay(rstate, seq_len) if filled
  add = jax.jit(prioritized.add, donate_argnums=(0, 1))
  rstate, pstate = add(rstate, pstate, step)                      # instead of replay.add
  batch, info = prioritized.sample(rstate, pstate, key, batch_size, beta)
  pstate = prioritized.update(pstate, info.leaves, priorities)     # priorities [batch_size]
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxwm.data import replay
from jaxwm.runtime import sharding as shd

EPS = 1e-6   # added to every updated priority (TD-MPC's buffer), so no start starves


@flax.struct.dataclass
class PriorityState:
    """tree: float32 [devices, 2 L], per device a sum tree of p^alpha over its starts (leaf
    L + slot * local_envs + env); max_priority: float32 [], the largest priority so far;
    static: seq_len, alpha and the replay's mesh."""
    tree: jax.Array
    max_priority: jax.Array
    seq_len: int = flax.struct.field(pytree_node=False)
    alpha: float = flax.struct.field(pytree_node=False)
    mesh: Mesh | None = flax.struct.field(pytree_node=False, default=None)


class SampleInfo(NamedTuple):
    """leaves: int32 [B], the device-local leaf of every sampled start (for `update`);
    weights: float32 [B], importance weights (N P(i))^-beta / max."""
    leaves: jax.Array
    weights: jax.Array


def _num_leaves(capacity: int, local_envs: int) -> int:
    return 1 << max(capacity * local_envs - 1, 0).bit_length()


def _set_leaves(tree: jax.Array, leaves: jax.Array, values: jax.Array) -> jax.Array:
    """One tree [2 L]: leaves [K] <- values [K], then every ancestor <- sum of its children."""
    size = tree.shape[0] // 2
    node = leaves + size
    tree = tree.at[node].set(values)
    for _ in range(size.bit_length() - 1):
        node = node // 2
        tree = tree.at[node].set(tree[2 * node] + tree[2 * node + 1])
    return tree


def _descend(tree: jax.Array, mass: jax.Array) -> jax.Array:
    """One tree [2 L], mass [B] in [0, total): the leaf holding each mass in the prefix-sum
    order. A subtree of zero sum is never entered, even when rounding puts the mass past the
    last nonzero leaf."""
    size = tree.shape[0] // 2
    node = jnp.ones(mass.shape, jnp.int32)
    for _ in range(size.bit_length() - 1):
        left = tree[2 * node]
        right = (mass >= left) & (tree[2 * node + 1] > 0)
        mass = jnp.where(right, mass - left, mass)
        node = 2 * node + right.astype(jnp.int32)
    return node - size


def init(rstate: replay.ReplayState, seq_len: int, alpha: float = 0.6) -> PriorityState:
    """Empty priorities for sequences of `seq_len` from `rstate` (call before any `add`)."""
    if not 1 <= seq_len <= rstate.capacity:
        raise ValueError(f"seq_len={seq_len} must be in [1, capacity={rstate.capacity}].")
    if not alpha >= 0.0:
        raise ValueError(f"alpha={alpha!r} must be >= 0")
    shards = shd.num_shards(rstate.mesh)
    size = _num_leaves(rstate.capacity, rstate.num_envs // shards)
    tree = jnp.zeros((shards, 2 * size), jnp.float32)
    max_priority = jnp.ones((), jnp.float32)
    if rstate.mesh is not None:
        tree = jax.device_put(tree, NamedSharding(rstate.mesh, P(shd.DATA_AXIS)))
        max_priority = jax.device_put(max_priority, shd.replicated(rstate.mesh))
    return PriorityState(tree=tree, max_priority=max_priority, seq_len=seq_len, alpha=alpha,
                         mesh=rstate.mesh)


def from_replay(rstate: replay.ReplayState, seq_len: int, alpha: float = 0.6) -> PriorityState:
    """Priorities of a buffer filled before training (e.g. FOWM's offline data): every valid
    start at priority 1, as if each had been added with an empty history."""
    pstate = init(rstate, seq_len, alpha)
    shards, size = pstate.tree.shape[0], pstate.tree.shape[1] // 2
    local_envs, capacity, count = rstate.num_envs // shards, rstate.capacity, int(rstate.count)
    oldest = (int(rstate.pos) - count) % capacity
    slots = (oldest + np.arange(max(count - seq_len + 1, 0))) % capacity
    leaves = np.zeros(size, np.float32)
    leaves[(slots[:, None] * local_envs + np.arange(local_envs)).ravel()] = 1.0
    levels = [leaves]
    while len(levels[-1]) > 1:                   # parents = sums of child pairs, up to the root
        levels.append(levels[-1][0::2] + levels[-1][1::2])
    tree = np.concatenate([np.zeros(1, np.float32)] + levels[::-1])
    return pstate.replace(tree=jax.device_put(np.broadcast_to(tree, pstate.tree.shape),
                                              pstate.tree.sharding))


def _local(mesh, fn, in_specs, out_specs):
    """fn on each device's block (shard_map over `data`), or on the whole array without a mesh."""
    if mesh is None:
        return fn
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def add(rstate: replay.ReplayState, pstate: PriorityState, step) -> tuple:
    """`replay.add` plus the priorities: the start at the written slot stops being valid (its
    sequence would cross the write head) and the start seq_len - 1 slots back becomes valid with
    max_priority^alpha once the buffer holds seq_len steps. Returns (rstate, pstate); wrap as
    `jax.jit(add, donate_argnums=(0, 1))` to update in place."""
    pos, capacity, seq_len = rstate.pos, rstate.capacity, pstate.seq_len
    rstate = replay.add(rstate, step)
    value = jnp.where(rstate.count >= seq_len, pstate.max_priority ** pstate.alpha, 0.0)

    def local(tree, pos, value):
        envs = jnp.arange(rstate.num_envs // shd.num_shards(rstate.mesh))
        tree = _set_leaves(tree[0], pos * len(envs) + envs, jnp.zeros(len(envs)))
        start = (pos - seq_len + 1) % capacity
        return _set_leaves(tree, start * len(envs) + envs, jnp.full(len(envs), value))[None]

    split = P(shd.DATA_AXIS)
    tree = _local(rstate.mesh, local, (split, P(), P()), split)(pstate.tree, pos, value)
    return rstate, pstate.replace(tree=tree)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _sample(rstate, pstate, key, batch_size: int, beta):
    mesh, seq_len, capacity = rstate.mesh, pstate.seq_len, rstate.capacity
    shards = shd.num_shards(mesh)
    local_batch = batch_size // shards
    valid = rstate.num_envs * jnp.maximum(rstate.count - seq_len + 1, 1)

    def local(data, tree, key, valid, beta):
        tree = tree[0]
        if mesh is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(shd.DATA_AXIS))
        local_envs = next(iter(data.values())).shape[1]
        total = tree[1]
        leaves = _descend(tree, jax.random.uniform(key, (local_batch,)) * total)
        slot, env = leaves // local_envs, leaves % local_envs
        t = (slot[None, :] + jnp.arange(seq_len)[:, None]) % capacity    # [seq_len, B]
        batch = {k: v[t, env[None, :]] for k, v in data.items()}
        prob = tree[leaves + tree.shape[0] // 2] / (total * shards)
        weights = (valid * prob) ** -beta
        top = weights.max()
        if mesh is not None:
            top = jax.lax.pmax(top, shd.DATA_AXIS)
        return batch, SampleInfo(leaves=leaves, weights=weights / top)

    split = P(shd.DATA_AXIS)
    data_specs = {k: P(None, shd.DATA_AXIS) for k in rstate.data}
    return _local(mesh, local, (data_specs, split, P(), P(), P()),
                  (data_specs, SampleInfo(split, split)))(rstate.data, pstate.tree, key, valid,
                                                          jnp.float32(beta))


def sample(rstate: replay.ReplayState, pstate: PriorityState, key: jax.Array, batch_size: int,
           beta: float = 0.4) -> tuple[dict, SampleInfo]:
    """Sequences name -> [seq_len, batch_size, ...] drawn by priority, and their SampleInfo;
    jittable (batch_size static). Requires count >= seq_len (checked when concrete)."""
    replay.check_sample(rstate, batch_size, pstate.seq_len)
    return _sample(rstate, pstate, key, batch_size, beta)


@jax.jit
def update(pstate: PriorityState, leaves: jax.Array, priorities: jax.Array) -> PriorityState:
    """New priorities [B] (>= 0, e.g. TD errors) of the starts sampled as `leaves` [B]
    (SampleInfo.leaves): leaf <- (priority + 1e-6)^alpha, max_priority updated."""
    priorities = priorities.astype(jnp.float32) + EPS

    def local(tree, leaves, priorities):
        return _set_leaves(tree[0], leaves, priorities ** pstate.alpha)[None]

    split = P(shd.DATA_AXIS)
    tree = _local(pstate.mesh, local, (split, split, split), split)(pstate.tree, leaves,
                                                                       priorities)
    return pstate.replace(tree=tree,
                          max_priority=jnp.maximum(pstate.max_priority, priorities.max()))


def probabilities(pstate: PriorityState) -> jax.Array:
    """Host-side view for tests and plots: P(start) per leaf of each device [devices, L]."""
    tree = pstate.tree
    leaves = tree[:, tree.shape[1] // 2:]
    return leaves / leaves.sum(1, keepdims=True)
