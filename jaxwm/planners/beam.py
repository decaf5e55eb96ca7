"""Beam search over discrete actions in a learned world model, as a pure jittable function.

JOWA (Cheng et al., ICLR 2025, "Scaling Offline Model-Based RL via Jointly-Optimized World-Action
Model Pretraining") acts by beam search in its world model: from the current model state, each of
the K beams (paper: K = 2-4) is expanded by its best actions under the Q head, every child is
imagined one step by the world model (next observation tokens and reward), and the K children with
the highest discounted return so far are kept; after H steps (paper: H = 2) each leaf adds the
bootstrapped value gamma^H max_a Q(leaf, a), and the agent executes the first action of the best
leaf. With H = 0 this is acting greedily in Q (the "planning off" baseline, `greedy`).

The search, with `expand` = E actions per node (default K) and scores s:
  beams = [root], s = 0
  for d = 0 .. H-1:
      for every beam b: its top-E actions a by q_values(b); child = step(b, a) -> (b', r);
          s(b') = s(b) + gamma^d r
      beams = the K children of highest s (stable: on ties the earlier beam / better-Q action)
  leaf value: s(leaf) + gamma^H max_a q_values(leaf, a); plan = first action of the best leaf.

The root is a single parent: it is expanded once by its top-E actions (E model steps, not K*E).
When there are fewer than K children (E < K at the root, or E^H < K overall) the missing beams are
padded copies of real ones with score -inf: they never win and their children stay at -inf, so
every shape is static (K beams) without duplicating real paths. E larger than the number of
actions A is clipped to A. A NaN score (a diverged imagined step) is treated as -inf.

`plan(config, fns, params, state)` plans from one model state (any pytree without batch axis, e.g.
tokens plus a KV cache); `plan_batch` vmaps it over environments with shared params. Depth 0 is
written out and depths 1..H-1 are a `lax.scan` (every depth has K*E children), so the world
model's step is traced at most twice whatever H.
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from jaxwm.utils import dataclass_from_config


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Beam-search settings (defaults: JOWA's K = 2, H = 2). Static under jit (hashable)."""
    beam_width: int = 2           # K beams kept after every depth (JOWA: 2-4)
    horizon: int = 2              # H imagined steps; 0 = greedy in Q (JOWA: 2)
    gamma: float = 0.99           # discount of rewards (gamma^d at depth d) and leaf value (gamma^H)
    expand: Optional[int] = None  # E top-Q actions expanded per beam; None -> beam_width

    def __post_init__(self):
        if self.expand is None:
            object.__setattr__(self, "expand", self.beam_width)
        for name in ("beam_width", "expand"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"planner.{name}={value!r} must be an int >= 1")
        if not _is_int(self.horizon) or self.horizon < 0:
            raise ValueError(f"planner.horizon={self.horizon!r} must be an int >= 0")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or (
                not 0.0 < self.gamma <= 1.0):
            raise ValueError(f"planner.gamma={self.gamma!r} must be in (0, 1]")

    @classmethod
    def from_config(cls, config, **overrides) -> "BeamConfig":
        """From an ml_collections `planner` ConfigDict (field names as above) plus overrides."""
        return dataclass_from_config(cls, config, "planner", **overrides)


class BeamFns(NamedTuple):
    """The world model as seen by the planner; both act on one state (no batch axis).

    q_values(params, state) -> [A]: expected return of every discrete action at a model state.
    step(params, state, action int32 []) -> (next_state, reward float []): one imagined step (the
        world model generates the next observation tokens and predicts the reward); states are
        arbitrary pytrees with the same structure and shapes before and after.
    """
    q_values: Callable
    step: Callable


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------
def greedy(fns: BeamFns, params: Any, state: Any) -> jax.Array:
    """argmax_a q_values(state) (int32 []): acting without planning."""
    q = fns.q_values(params, state)
    chex.assert_rank(q, 1)
    return jnp.argmax(q).astype(jnp.int32)


def _no_nan(x: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def select_beams(scores: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    """Indices and scores of the `width` best of M candidates (stable on ties): scores [M] ->
    (idx [width] in [0, M), kept [width]). If M < width the rest are -inf copies of the last one."""
    chex.assert_rank(scores, 1)
    num = scores.shape[0]
    if num < width:
        scores = jnp.concatenate([scores, jnp.full((width - num,), -jnp.inf, scores.dtype)])
    kept, idx = jax.lax.top_k(scores, width)
    return jnp.minimum(idx, num - 1), kept


def _expand(fns: BeamFns, params: Any, states: Any, scores: jax.Array, first: jax.Array | None,
            num: int, discount: jax.Array | float):
    """Children of P beams (states pytree [P], scores [P], first actions [P] or None at the root):
    each beam's top-`num` actions by Q, stepped in the model -> (states [P*num], scores [P*num],
    first actions [P*num])."""
    qs = jax.vmap(fns.q_values, in_axes=(None, 0))(params, states)
    chex.assert_rank(qs, 2)
    _, actions = jax.lax.top_k(qs, num)                         # [P, num]
    actions = actions.astype(jnp.int32).reshape(-1)              # [P*num]
    parents = jax.tree.map(lambda x: jnp.repeat(x, num, axis=0), states)
    children, rewards = jax.vmap(fns.step, in_axes=(None, 0, 0))(params, parents, actions)
    chex.assert_shape(rewards, actions.shape)
    scores = jnp.repeat(scores, num) + discount * rewards
    first = actions if first is None else jnp.repeat(first, num)
    return children, _no_nan(scores), first


# ------------------------------------------------------------------------------------------------
# Planner
# ------------------------------------------------------------------------------------------------
def plan(config: BeamConfig, fns: BeamFns, params: Any, state: Any):
    """One beam search from one model state (pytree without batch axis).

    Returns (action int32 [], info dict with 'score' [] of the best leaf (discounted rewards plus
    gamma^H max Q), and 'first_actions' int32 [K] and 'scores' [K] of the final beams, best first;
    beams that do not exist (fewer than K paths) have score -inf). With horizon 0 the beams are
    the K best root actions scored by their Q (action = `greedy`).
    """
    c = config
    width = c.beam_width
    q_root = fns.q_values(params, state)
    chex.assert_rank(q_root, 1)
    num = min(c.expand, q_root.shape[0])

    if c.horizon == 0:
        idx, scores = select_beams(_no_nan(q_root), width)
        first = idx.astype(jnp.int32)
        return first[0], {"score": scores[0], "first_actions": first, "scores": scores}

    # Depth 0: the root is the only parent.
    root = jax.tree.map(lambda x: jnp.asarray(x)[None], state)
    zero = jnp.zeros((1,), q_root.dtype)
    children, scores, first = _expand(fns, params, root, zero, None, num, 1.0)
    idx, scores = select_beams(scores, width)
    beams = jax.tree.map(lambda x: x[idx], children)
    first = first[idx]

    # Depths 1..H-1: K parents, K*E children, keep K.
    def depth(carry, discount):
        beams, scores, first = carry
        children, child_scores, child_first = _expand(fns, params, beams, scores, first, num,
                                                      discount)
        idx, kept = select_beams(child_scores, width)
        return (jax.tree.map(lambda x: x[idx], children), kept, child_first[idx]), None

    if c.horizon > 1:
        discounts = jnp.asarray([c.gamma ** d for d in range(1, c.horizon)], scores.dtype)
        (beams, scores, first), _ = jax.lax.scan(depth, (beams, scores, first), discounts)

    # Leaves: bootstrap with gamma^H max_a Q, then rank.
    leaf_q = jax.vmap(fns.q_values, in_axes=(None, 0))(params, beams)
    scores = _no_nan(scores + c.gamma ** c.horizon * leaf_q.max(-1))
    order = jnp.argsort(-scores, stable=True)
    scores, first = scores[order], first[order]
    return first[0], {"score": scores[0], "first_actions": first, "scores": scores}


def plan_batch(config: BeamConfig, fns: BeamFns, params: Any, states: Any):
    """`plan` vmapped over environments: states pytree with leading [N] (params shared) ->
    (actions int32 [N], info with leading [N])."""
    return jax.vmap(functools.partial(plan, config, fns), in_axes=(None, 0))(params, states)


def greedy_batch(fns: BeamFns, params: Any, states: Any) -> jax.Array:
    """`greedy` vmapped over environments: states pytree with leading [N] -> int32 [N]."""
    return jax.vmap(functools.partial(greedy, fns), in_axes=(None, 0))(params, states)
