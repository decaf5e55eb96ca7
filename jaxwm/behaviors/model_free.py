"""Compact model-free learners for discrete actions, the base learners of reversibility-aware
RL (Grinsztajn et al., NeurIPS 2021: RAE on PPO, RAC on DQN).

- PPO (Schulman et al., 2017): `ActorCritic`, `gae` (GAE(lambda) advantages through
  `returns.lambda_returns`: A_t = R^lambda_t - v(s_t)), `ppo_loss` (clipped surrogate + value
  MSE - entropy bonus), `ppo_batch` (a rollout's flat batch) and `ppo_update` (epochs of
  shuffled minibatches), shared by RAE and JOWA's data-generating agent.
- DQN (Mnih et al., 2015): `QNetwork`, `dqn_loss` (Huber TD error against a target network's
  max_a' Q(s', a')).

Time-limit truncation ends the bootstrap like a termination (discount 0), as in common PPO
implementations: the tasks here have short, fixed limits.
"""
import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxwm import returns
from jaxwm.nn.blocks import MLP


class ActorCritic(nn.Module):
    """obs [..., D] -> (logits [..., A], value [...]); separate torsos."""
    num_actions: int
    hidden: tuple = (64, 64)
    act: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        logits = MLP(self.hidden, self.num_actions, act=self.act, out_init_scale=0.01,
                     name="policy")(obs)
        value = MLP(self.hidden, 1, act=self.act, name="value")(obs)[..., 0]
        return logits, value


class QNetwork(nn.Module):
    """obs [..., D] -> Q-values [..., A]."""
    num_actions: int
    hidden: tuple = (64, 64)
    act: str = "relu"

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden, self.num_actions, act=self.act)(obs)


def gae(rewards: jax.Array, discounts: jax.Array, values: jax.Array, lambda_: float) -> tuple:
    """(advantages [H], value targets [H]) of one trajectory: rewards [H], discounts [H] (gamma
    times not-done), values [H + 1] (the last bootstraps the tail)."""
    targets = returns.lambda_returns(rewards, discounts, values, lambda_)
    return targets - values[:-1], targets


def ppo_loss(logits: jax.Array, values: jax.Array, batch: dict, clip: float, value_coef: float,
             entropy_coef: float) -> tuple:
    """PPO's loss on a minibatch. logits [M, A], values [M] from the current params; batch:
    'action' int [M], 'logp' [M] (behaviour log-probabilities), 'advantage' [M] (normalized here),
    'target' [M]. Returns (loss, metrics)."""
    chex.assert_rank([logits, values], [2, 1])
    dist = distrax.Categorical(logits=logits)
    logp = dist.log_prob(batch["action"])
    adv = batch["advantage"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = jnp.exp(logp - batch["logp"])
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip, 1 + clip) * adv)
    policy_loss = -surrogate.mean()
    value_loss = 0.5 * jnp.mean((values - batch["target"]) ** 2)
    entropy = dist.entropy().mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                  "clip_fraction": jnp.mean(jnp.abs(ratio - 1) > clip)}


def ppo_batch(apply_fn, params, rollout: dict, last_obs: jax.Array, rewards: jax.Array,
              gamma: float, gae_lambda: float) -> dict:
    """The flat PPO batch [T * N, ...] of a rollout (obs, action, logp, value, done [T, N, ...])
    with GAE(lambda) advantages and value targets for `rewards` [T, N] (the env's or shaped),
    bootstrapped from the value of `last_obs` [N, ...]; `done` ends the bootstrap."""
    _, last_value = apply_fn(params, last_obs)
    values = jnp.concatenate([rollout["value"], last_value[None]])
    discounts = gamma * (1.0 - rollout["done"])
    advantage, target = jax.vmap(gae, (1, 1, 1, None), 1)(rewards, discounts, values,
                                                          gae_lambda)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return dict(obs=flat(rollout["obs"]), action=flat(rollout["action"]),
                logp=flat(rollout["logp"]), advantage=flat(advantage), target=flat(target))


def ppo_update(apply_fn, tx, policy, batch: dict, key, *, epochs: int, minibatches: int,
               clip: float, value_coef: float, entropy_coef: float) -> tuple:
    """`epochs` passes of `ppo_loss` over the flat batch, each in `minibatches` shuffled
    minibatches (one gradient step each): (policy TrainState, mean metrics)."""
    size = jax.tree.leaves(batch)[0].shape[0]

    def epoch(policy, key):
        order = jax.random.permutation(key, size)
        parts = jax.tree.map(
            lambda x: x[order].reshape((minibatches, size // minibatches) + x.shape[1:]), batch)

        def minibatch(policy, mb):
            def loss_fn(params):
                logits, values = apply_fn(params, mb["obs"])
                return ppo_loss(logits, values, mb, clip, value_coef, entropy_coef)
            (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(policy.params)
            return policy.apply_gradients(tx, grads), metrics

        return jax.lax.scan(minibatch, policy, parts)

    policy, metrics = jax.lax.scan(epoch, policy, jax.random.split(key, epochs))
    return policy, jax.tree.map(jnp.mean, metrics)


def dqn_loss(q: jax.Array, q_next_target: jax.Array, action: jax.Array, reward: jax.Array,
             discount: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean Huber TD error: q [M, A] (online net at s), q_next_target [M, A] (target
    net at s'), action int [M], reward [M], discount [M] (gamma times not-terminal), weight [M]
    (0 drops a sample, e.g. an unfilled replay slot)."""
    chex.assert_rank([q, q_next_target, action, reward, discount, weight], [2, 2, 1, 1, 1, 1])
    target = reward + discount * jax.lax.stop_gradient(q_next_target.max(-1))
    taken = jnp.take_along_axis(q, action[:, None], 1)[:, 0]
    return jnp.sum(optax.huber_loss(taken, target) * weight) / jnp.maximum(weight.sum(), 1.0)
