"""Binary Tree MDPs and a Dirichlet posterior over their transitions (CASCADE paper, App. D).

Modeling choices (our concrete reading of the Binary Tree MDP lemma of Xu et al., NeurIPS 2022,
"Learning General World Models in a Handful of Reward-Free Deployments", App. D):

- A full binary tree of depth `d`. States are its nodes in heap order: node `s` has children
  `2s + 1` (left) and `2s + 2` (right); the `S = 2^d - 1` internal nodes are `0..S-1`, the `2^d`
  leaves `S..N-1` with `N = 2^(d+1) - 1` are terminal. An episode is a root-to-leaf path of
  `d` steps.
- Two actions per internal node. Transitions are deterministic and each node's two actions lead
  to its two distinct children, but which action leads to which child is a hidden random bit per
  node. The agent does not know this structure: it models every (s, a) independently.
- The model is represented by `left_prob: f32[S, 2]`, the probability that (s, a) goes to the left
  child (the true MDP has entries in {0, 1}). Rewards play no role (reward-free exploration).
- Posterior: a symmetric Beta(alpha0, alpha0) prior (a two-child Dirichlet) per (s, a), updated with
  real transition counts `counts: f32[S, 2, 2]` indexed (state, action, child in {left, right}).
- Accuracy: the posterior-mean model's error at (s, a) is the total-variation distance between its
  next-state distribution and the true one; the model is learned to accuracy eps when the maximum
  error over all internal (s, a) is <= eps. With deterministic truth the error after n visits is
  alpha0 / (2 alpha0 + n), so eps fixes a visit requirement n(eps) per (s, a)
  (`visits_for_accuracy`).
  The defaults alpha0 = eps = 0.1 give n(eps) = 1: one visit of every (s, a) -- the lemma's regime,
  in which repeating a known path brings no information.
"""
import math

import chex
import jax
import jax.numpy as jnp

# Tolerance of the accuracy test: alpha0 / (2 alpha0 + n) can equal eps exactly up to rounding.
_ACCURACY_TOL = 1e-6


def num_internal(depth: int) -> int:
    """S = 2^depth - 1, the number of internal (decision) nodes of a depth-`depth` tree."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return 2**depth - 1


def num_nodes(depth: int) -> int:
    """N = 2^(depth + 1) - 1, all nodes including the 2^depth leaves."""
    return 2 * num_internal(depth) + 1


def node_depth(depth: int) -> jax.Array:
    """i32[N]: the level of every node (root 0, leaves `depth`)."""
    return jnp.floor(jnp.log2(jnp.arange(num_nodes(depth)) + 1.0)).astype(jnp.int32)


def sample_mdp(key: jax.Array, depth: int) -> jax.Array:
    """A random Binary Tree MDP: f32[S, 2] true left-child probabilities in {0, 1}.

    Action 0 leads to the left child unless the node's hidden swap bit is set; action 1 leads to
    the other child.
    """
    swap = jax.random.bernoulli(key, 0.5, (num_internal(depth),)).astype(jnp.float32)
    return jnp.stack([1.0 - swap, swap], axis=-1)


def prior_counts(depth: int) -> jax.Array:
    """f32[S, 2, 2] zero transition counts (state, action, child)."""
    return jnp.zeros((num_internal(depth), 2, 2), jnp.float32)


def update_counts(counts: jax.Array, visits: jax.Array, true_left: jax.Array) -> jax.Array:
    """Adds observed transitions to the counts.

    Args:
        counts: f32[S, 2, 2] (state, action, child) counts.
        visits: f32[S, 2] number of real executions of each (s, a).
        true_left: f32[S, 2] true left-child probabilities; deterministic (in {0, 1}), so every
            visit of (s, a) is a transition to the same child.
    Returns:
        f32[S, 2, 2] updated counts.
    """
    chex.assert_rank(counts, 3)
    chex.assert_shape(visits, counts.shape[:2])
    chex.assert_equal_shape([visits, true_left])
    return counts + visits[..., None] * jnp.stack([true_left, 1.0 - true_left], axis=-1)


def visit_counts(counts: jax.Array) -> jax.Array:
    """f32[S, 2] number of times each (s, a) was executed."""
    chex.assert_rank(counts, 3)
    return counts.sum(-1)


def posterior_mean(counts: jax.Array, alpha0: float) -> jax.Array:
    """f32[S, 2] posterior mean left-child probability (alpha0 + n_left) / (2 alpha0 + n)."""
    chex.assert_rank(counts, 3)
    return (alpha0 + counts[..., 0]) / (2.0 * alpha0 + counts.sum(-1))


def _log_gamma(key: jax.Array, shape: jax.Array) -> jax.Array:
    """Exact log Gamma(shape) samples, f32[...] -> f32[...], for any shape > 0.

    Marsaglia & Tsang (2000) rejection for Gamma(shape + 1), then the boost
    Gamma(shape) = Gamma(shape + 1) U^(1 / shape), taken in log space so that shapes << 1 do not
    underflow. One `while_loop` redraws only the rejected entries of the whole array (about five
    rounds for 1e5 entries); on CPU this is ~10x faster than `jax.random.gamma`, which runs a
    separate loop with its own key splits per entry.
    """
    d = shape + 2.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    tiny = jnp.finfo(shape.dtype).tiny
    key_boost, key_reject = jax.random.split(key)

    def propose(state):
        i, done, log_v = state
        key_x, key_u = jax.random.split(jax.random.fold_in(key_reject, i))
        x = jax.random.normal(key_x, shape.shape, shape.dtype)
        u = jax.random.uniform(key_u, shape.shape, shape.dtype, minval=tiny)
        v = jnp.maximum(1.0 + c * x, tiny) ** 3
        accept = (1.0 + c * x > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * jnp.log(v))
        return i + 1, done | accept, jnp.where(accept & ~done, jnp.log(v), log_v)

    init = (jnp.int32(0), jnp.zeros(shape.shape, bool), jnp.zeros_like(shape))
    _, _, log_v = jax.lax.while_loop(lambda state: ~jnp.all(state[1]), propose, init)
    u = jax.random.uniform(key_boost, shape.shape, shape.dtype, minval=tiny)
    return jnp.log(d) + log_v + jnp.log(u) / shape


def sample_beta(key: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Exact Beta(a, b) samples G_a / (G_a + G_b) = sigmoid(log G_a - log G_b), f32[...]."""
    chex.assert_equal_shape([a, b])
    key_a, key_b = jax.random.split(key)
    return jax.nn.sigmoid(_log_gamma(key_a, a) - _log_gamma(key_b, b))


def sample_model(key: jax.Array, counts: jax.Array, alpha0: float) -> jax.Array:
    """Thompson sample of a model: f32[S, 2] left-child probs ~ Beta(alpha0 + n_L, alpha0 + n_R)."""
    chex.assert_rank(counts, 3)
    return sample_beta(key, alpha0 + counts[..., 0], alpha0 + counts[..., 1])


def model_error(counts: jax.Array, true_left: jax.Array, alpha0: float) -> jax.Array:
    """f32[S, 2] TV distance between the posterior-mean and true next-state distributions."""
    chex.assert_shape(true_left, counts.shape[:2])
    return jnp.abs(posterior_mean(counts, alpha0) - true_left)


def is_learned(counts: jax.Array, true_left: jax.Array, alpha0: float, eps: float) -> jax.Array:
    """bool[]: whether every internal (s, a) has model error <= eps."""
    return jnp.max(model_error(counts, true_left, alpha0)) <= eps + _ACCURACY_TOL


def visits_for_accuracy(eps: float, alpha0: float) -> int:
    """n(eps): visits of a deterministic (s, a) needed for error alpha0 / (2 alpha0 + n) <= eps."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5) (the prior's error is 0.5), got {eps}")
    if alpha0 <= 0.0:
        raise ValueError(f"alpha0 must be > 0, got {alpha0}")
    return max(0, math.ceil(alpha0 / (eps + _ACCURACY_TOL) - 2.0 * alpha0))
