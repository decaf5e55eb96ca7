"""Temporal precedence estimation for reversibility-aware RL (Grinsztajn et al., "There is no
turning back: a self-supervised approach for reversibility-aware reinforcement learning",
NeurIPS 2021).

psi(s_i, s_j) ~ P(s_j comes after s_i) is learned by binary classification of the order of two
states drawn from the same trajectory at most `window` steps apart (Sec. 3). A transition
s_t -> s_{t+1} whose order psi is confident about (sigmoid(psi) > beta) is one the agent
cannot undo, since a reversible step is as likely to appear in either order.

- `Precedence`: psi as a logit built antisymmetric, logit(a, b) = h(g(a), g(b)) - h(g(b), g(a)),
  so that P(b after a) + P(a after b) = 1 holds for every pair, trained or not, and psi(s, s) =
  1/2 (the authors' code uses an unconstrained head on [g(a), g(b)] and only approaches the
  symmetry through pairs drawn in both orders).
- `sample_pairs` / `precedence_loss` / `train_step`: the self-supervised task.
- `rae_reward`: RAE's shaped reward r - w * max(sigmoid(psi(s_t, s_{t+1})) - beta, 0) (Eq. 4).
- `Irreversibility` (phi(s, a) logits, one per discrete action) / `phi_loss`: RAC's distillation
  of psi(s, s') onto the action that led from s to s' (Sec. 4.2; cross-entropy against the soft
  target sigmoid(psi), as in the authors' code), so that an action is judged before it is taken;
  `rac_action` takes the best action with sigmoid(phi) <= beta, or else the least irreversible.

Shapes: states [..., D] float32 (vector observations); trajectories are time-major [T, B, D].
"""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxwm.nn.blocks import MLP
from jaxwm.types import TrainState


class Precedence(nn.Module):
    """psi logit: a [..., D], b [..., D] -> [...]; sigmoid = P(b after a). Antisymmetric by
    construction: logit(a, b) = -logit(b, a)."""
    hidden: tuple = (64, 64)
    embed: int = 32
    act: str = "relu"

    @nn.compact
    def __call__(self, a, b):
        encoder = MLP(self.hidden, self.embed, act=self.act, name="encoder")
        head = MLP(self.hidden, 1, act=self.act, name="head")
        ga, gb = encoder(a), encoder(b)
        forward = head(jnp.concatenate([ga, gb], -1))[..., 0]
        backward = head(jnp.concatenate([gb, ga], -1))[..., 0]
        return forward - backward


class Irreversibility(nn.Module):
    """phi: s [..., D] -> logits [..., A]; sigmoid = the predicted sigmoid(psi(s, s')) of each
    action's outcome."""
    num_actions: int
    hidden: tuple = (64, 64)
    act: str = "relu"

    @nn.compact
    def __call__(self, s):
        return MLP(self.hidden, self.num_actions, act=self.act)(s)


def sample_pairs(key: jax.Array, states: jax.Array, episode: jax.Array, window: int,
                 num_pairs: int) -> tuple:
    """Training pairs of the order classifier from a batch of trajectories.

    states [T, B, D], episode int [T, B] (an id that changes when an episode starts, so pairs
    never straddle two episodes; -1 marks empty slots) -> (a [P, D], b [P, D], label float [P],
    weight float [P]):
    draws i, then j = i + k with k uniform in [1, window], and swaps the pair with probability 1/2
    (label 1 = b is the later state). weight = 0 for pairs that left the batch or the episode.
    """
    states, episode = jnp.asarray(states), jnp.asarray(episode)
    chex.assert_rank([states, episode], [3, 2])
    t, b = episode.shape
    k_t, k_k, k_b, k_swap = jax.random.split(key, 4)
    col = jax.random.randint(k_b, (num_pairs,), 0, b)
    first = jax.random.randint(k_t, (num_pairs,), 0, max(t - 1, 1))
    second = first + jax.random.randint(k_k, (num_pairs,), 1, window + 1)
    valid = second < t
    second = jnp.minimum(second, t - 1)
    valid &= (episode[first, col] == episode[second, col]) & (episode[first, col] >= 0)
    earlier, later = states[first, col], states[second, col]
    swap = jax.random.bernoulli(k_swap, 0.5, (num_pairs,))
    a = jnp.where(swap[:, None], later, earlier)
    b_ = jnp.where(swap[:, None], earlier, later)
    return a, b_, (~swap).astype(jnp.float32), valid.astype(jnp.float32)


def precedence_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted mean binary cross-entropy of psi logits [P] against order labels [P] in {0, 1}."""
    chex.assert_equal_shape([logits, labels, weights])
    bce = optax.sigmoid_binary_cross_entropy(logits, labels)
    return jnp.sum(bce * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def train_step(net: Precedence, tx: optax.GradientTransformation, psi: TrainState,
               states: jax.Array, episode: jax.Array, window: int, num_pairs: int,
               key: jax.Array) -> tuple:
    """One psi gradient step on `num_pairs` pairs of `sample_pairs(states [T, B, D], episode
    [T, B])`: (psi, {'psi_loss', 'psi_accuracy'} (the share of valid pairs ordered right))."""
    a, b, label, weight = sample_pairs(key, states, episode, window, num_pairs)

    def loss_fn(params):
        logits = net.apply(params, a, b)
        return precedence_loss(logits, label, weight), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(psi.params)
    correct = ((logits > 0) == (label > 0.5)) * weight
    accuracy = correct.sum() / jnp.maximum(weight.sum(), 1.0)
    return psi.apply_gradients(tx, grads), {"psi_loss": loss, "psi_accuracy": accuracy}


def rae_reward(reward: jax.Array, irreversibility: jax.Array, weight: float,
               beta: float) -> jax.Array:
    """RAE (Eq. 4): r - w * max(p - beta, 0) with p = sigmoid(psi(s_t, s_{t+1})); any shape."""
    chex.assert_equal_shape([reward, irreversibility])
    return reward - weight * jnp.maximum(irreversibility - beta, 0.0)


def phi_loss(phi_logits: jax.Array, action: jax.Array, target: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of phi logits [N, A] at the taken actions int [N] against the
    soft targets sigmoid(psi(s, s')) [N] (psi frozen); minimized where sigmoid(phi) = target."""
    chex.assert_rank([phi_logits, action, target], [2, 1, 1])
    taken = jnp.take_along_axis(phi_logits, action[:, None], 1)[:, 0]
    return jnp.mean(optax.sigmoid_binary_cross_entropy(taken, jax.lax.stop_gradient(target)))


def rac_action(preference: jax.Array, phi: jax.Array, beta: float) -> jax.Array:
    """RAC's choice for one state: the preferred action (argmax of `preference` [A], e.g. Q-values
    or a policy's logits) among those with irreversibility phi [A] (probabilities) <= beta; if no
    action is safe, the one with the lowest phi. Returns int32 []."""
    chex.assert_rank([preference, phi], 1)
    chex.assert_equal_shape([preference, phi])
    safe = phi <= beta
    best_safe = jnp.argmax(jnp.where(safe, preference, -jnp.inf))
    return jnp.where(safe.any(), best_safe, jnp.argmin(phi)).astype(jnp.int32)
