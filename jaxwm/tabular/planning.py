"""Finite-horizon planning in a tabular Binary Tree model (see `binary_tree` for the layout).

A model is `left_prob: f32[S, 2]` (probability that (s, a) leads to the left child `2s + 1`,
else to the right child `2s + 2`), rewards are `reward: f32[S, 2]` on internal (s, a), leaves are
terminal with value 0 and episodes are undiscounted root-to-leaf paths of `depth` steps. Because
the children of `s = 0..S-1` are `1..N-1` in order, `values[1:].reshape(S, 2)` holds each node's
(left, right) children.
"""
import chex
import jax
import jax.numpy as jnp

from jaxwm.tabular import binary_tree


def _children(values: jax.Array) -> jax.Array:
    """f32[N] node values -> f32[S, 2] (left child, right child) values of each internal node."""
    return values[1:].reshape(-1, 2)


def _q_values(left_prob: jax.Array, reward: jax.Array, values: jax.Array) -> jax.Array:
    """Bellman backup Q(s, a) = r(s, a) + p(s, a) V(left) + (1 - p(s, a)) V(right): f32[S, 2]."""
    child = _children(values)
    return reward + left_prob * child[:, :1] + (1.0 - left_prob) * child[:, 1:]


def value_iteration(left_prob: jax.Array, reward: jax.Array, depth: int):
    """Optimal finite-horizon values by `depth` synchronous Bellman backups (a `lax.scan`).

    After k backups the values of nodes within k levels of the leaves are exact, so `depth`
    backups solve the tree.

    Args:
        left_prob: f32[S, 2] model, S = 2^depth - 1.
        reward: f32[S, 2] reward of each internal (s, a).
        depth: tree depth d.
    Returns:
        q: f32[S, 2] optimal action values.
        values: f32[N] optimal state values (0 at the leaves).
    """
    num_states = binary_tree.num_internal(depth)
    chex.assert_shape([left_prob, reward], (num_states, 2))

    def backup(values, _):
        q = _q_values(left_prob, reward, values)
        return values.at[:num_states].set(q.max(-1)), None

    values, _ = jax.lax.scan(
        backup, jnp.zeros(binary_tree.num_nodes(depth), reward.dtype), None, length=depth)
    return _q_values(left_prob, reward, values), values


def greedy_policy(q: jax.Array) -> jax.Array:
    """i32[S] argmax_a Q(s, a); ties go to action 0."""
    chex.assert_rank(q, 2)
    return jnp.argmax(q, axis=-1).astype(jnp.int32)


def occupancy(left_prob: jax.Array, policy: jax.Array, depth: int) -> jax.Array:
    """Expected visits of every (s, a) in one episode of `policy` from the root (a `lax.scan`).

    In the true (deterministic) model this is the indicator of the executed path; in a sampled
    model it is the policy's imaginary visitation.

    Args:
        left_prob: f32[S, 2] model.
        policy: i32[S] action at every internal node.
        depth: tree depth d.
    Returns:
        f32[S, 2] expected visit counts; each level's entries sum to 1.
    """
    num_states = binary_tree.num_internal(depth)
    chex.assert_shape(left_prob, (num_states, 2))
    chex.assert_shape(policy, (num_states,))
    chosen = jax.nn.one_hot(policy, 2, dtype=left_prob.dtype)
    go_left = (left_prob * chosen).sum(-1)

    def step(mass, _):
        # mass: f32[N] probability of being at each node at this step.
        internal = mass[:num_states]
        children = jnp.stack([internal * go_left, internal * (1.0 - go_left)], -1).reshape(-1)
        return jnp.concatenate([jnp.zeros(1, mass.dtype), children]), internal

    root = jnp.zeros(binary_tree.num_nodes(depth), left_prob.dtype).at[0].set(1.0)
    _, per_step = jax.lax.scan(step, root, None, length=depth)
    return per_step.sum(0)[:, None] * chosen


def greedy_path(left_prob: jax.Array, policy: jax.Array, depth: int) -> jax.Array:
    """i32[depth + 1] nodes visited by `policy` in a deterministic model, root first."""
    chex.assert_shape(policy, (binary_tree.num_internal(depth),))
    left_prob, policy = jnp.asarray(left_prob), jnp.asarray(policy)

    def step(node, _):
        nxt = 2 * node + 2 - (left_prob[node, policy[node]] > 0.5).astype(jnp.int32)
        return nxt, nxt

    _, nodes = jax.lax.scan(step, jnp.int32(0), None, length=depth)
    return jnp.concatenate([jnp.zeros(1, jnp.int32), nodes])
