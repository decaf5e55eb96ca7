"""Recurrent State-Space Model (PlaNet Sec. 3, DreamerV2 Sec. 2.1) with time scans outside Flax.

State pytree (batch dims `...`):
  deter  [..., D]        deterministic GRU state h
  stoch  [..., S, C]     one-hot sample z (discrete) or [..., S] Gaussian sample
  logits [..., S, C]     (discrete)   |  mean, std [..., S] (gaussian)
feat(s) = concat(h, flatten(z)): [..., D + S * C] (or D + S).

The per-step maths lives in `RSSMCell` (a linen Module used through `apply`); `observe` and
`imagine` are `lax.scan`s over plain functions of the params (flax's nn.scan closing over outer
submodules leaks tracers on flax 0.12).
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm import distributions as dists
from jaxwm.nn import LayerNormGRUCell, get_activation

LATENTS = ("discrete", "gaussian")


class RSSMCell(nn.Module):
    """One RSSM step. `img_step`: prior p(z_t | h_t); `obs_step`: posterior q(z_t | h_t, e_t)."""
    deter: int = 600
    stoch: int = 32
    classes: int = 32        # ignored for gaussian latents
    hidden: int = 600
    latent: str = "discrete"
    unimix: float = 0.0      # DreamerV3: 0.01
    min_std: float = 0.1     # PlaNet / DreamerV1
    act: str = "elu"
    layer_norm: bool = False  # DreamerV3: LayerNorm before the activation of hidden layers

    def setup(self):
        if self.latent not in LATENTS:
            raise ValueError(f"rssm.latent={self.latent!r} is not one of {LATENTS}")
        stats = self.stoch * (self.classes if self.latent == "discrete" else 2)
        self.img_in = nn.Dense(self.hidden)
        self.gru = LayerNormGRUCell(self.deter)
        self.img_out = nn.Dense(self.hidden)
        self.prior_stats = nn.Dense(stats)
        self.obs_out = nn.Dense(self.hidden)
        self.post_stats = nn.Dense(stats)
        if self.layer_norm:
            self.norms = {k: nn.LayerNorm() for k in ("img_in", "img_out", "obs_out")}

    def _hidden(self, name, x):
        """act(LayerNorm(Dense(x))) of the hidden layer `name` (no norm unless layer_norm)."""
        x = getattr(self, name)(x)
        return get_activation(self.act)(self.norms[name](x) if self.layer_norm else x)

    def _dist(self, x, key):
        if self.latent == "discrete":
            logits = x.reshape(x.shape[:-1] + (self.stoch, self.classes))
            logits = dists.unimix_logits(logits, self.unimix)
            return {"stoch": dists.straight_through_onehot(key, logits), "logits": logits}
        mean, std = jnp.split(x, 2, -1)
        std = jax.nn.softplus(std) + self.min_std
        return {"stoch": mean + std * jax.random.normal(key, mean.shape), "mean": mean, "std": std}

    def img_step(self, state, action, key):
        stoch = state["stoch"].reshape(state["stoch"].shape[:len(state["deter"].shape) - 1] + (-1,))
        x = self._hidden("img_in", jnp.concatenate([stoch, action], -1))
        deter = self.gru(state["deter"], x)
        return {"deter": deter, **self._dist(self.prior_stats(self._hidden("img_out", deter)), key)}

    def obs_step(self, prior, embed, key):
        x = self._hidden("obs_out", jnp.concatenate([prior["deter"], embed], -1))
        return {"deter": prior["deter"], **self._dist(self.post_stats(x), key)}

    def __call__(self, state, action, embed, key):
        """Used for `init` only: prior and posterior of one step."""
        k1, k2 = jax.random.split(key)
        prior = self.img_step(state, action, k1)
        return prior, self.obs_step(prior, embed, k2)


def initial_state(cell: RSSMCell, batch_shape: tuple) -> dict:
    """Zero state (DreamerV2) for the given batch shape."""
    state = {"deter": jnp.zeros(batch_shape + (cell.deter,))}
    if cell.latent == "discrete":
        state["stoch"] = jnp.zeros(batch_shape + (cell.stoch, cell.classes))
        state["logits"] = jnp.zeros(batch_shape + (cell.stoch, cell.classes))
    else:
        state["stoch"] = jnp.zeros(batch_shape + (cell.stoch,))
        state["mean"] = jnp.zeros(batch_shape + (cell.stoch,))
        state["std"] = jnp.ones(batch_shape + (cell.stoch,))
    return state


def features(state: dict) -> jax.Array:
    """feat(s) = concat(h, flatten(z)): [..., D + S * C]."""
    lead = state["deter"].shape[:-1]
    return jnp.concatenate([state["deter"], state["stoch"].reshape(lead + (-1,))], -1)


def filter_step(cell: RSSMCell, params, prev_state, prev_action, embed, is_first, key):
    """One filtering step: reset where is_first, then prior and posterior.

    prev_state: state [B]; prev_action [B, A] (taken after the previous observation); embed
    [B, E]; is_first [B] zeroes the state and previous action. Returns (post, prior) [B].
    """
    keep = 1.0 - is_first.astype(jnp.float32)
    prev_state = jax.tree.map(lambda x: x * keep.reshape(keep.shape + (1,) * (x.ndim - 1)),
                              prev_state)
    prev_action = prev_action * keep[:, None]
    k_prior, k_post = jax.random.split(key)
    prior = cell.apply(params, prev_state, prev_action, k_prior, method=RSSMCell.img_step)
    post = cell.apply(params, prior, embed, k_post, method=RSSMCell.obs_step)
    return post, prior


def observe(cell: RSSMCell, params, embeds, actions, is_first, state0, key):
    """Filter a sequence: posteriors and priors for every step (scan over T).

    embeds [T, B, E]; actions [T, B, A] where actions[t] was taken after observing o_t (so step t
    uses actions[t-1]); is_first [T, B] resets the state and previous action to zero;
    state0: state [B] carried from an earlier segment (or `initial_state`).
    Returns (posts, priors), each a state with leading [T, B].
    """
    prev_actions = jnp.concatenate([jnp.zeros_like(actions[:1]), actions[:-1]], 0)
    keys = jax.random.split(key, embeds.shape[0])

    def step(prev, inputs):
        post, prior = filter_step(cell, params, prev, *inputs)
        return post, (post, prior)

    _, (posts, priors) = jax.lax.scan(step, state0, (prev_actions, embeds, is_first, keys))
    return posts, priors


def imagine(cell: RSSMCell, params, policy: Callable, start: dict, horizon: int, key):
    """Roll the prior forward under `policy(state, key) -> action [N, A]` (scan over H).

    start: state [N]. Returns (states [H + 1, N] incl. the start, actions [H, N, A]):
    actions[t] is taken in states[t] and leads to states[t + 1].
    """
    def step(state, k):
        k_act, k_img = jax.random.split(k)
        action = policy(state, k_act)
        nxt = cell.apply(params, state, action, k_img, method=RSSMCell.img_step)
        return nxt, (nxt, action)

    _, (states, actions) = jax.lax.scan(step, start, jax.random.split(key, horizon))
    states = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x], 0), start, states)
    return states, actions


def rollout(cell: RSSMCell, params, start: dict, actions, key):
    """Open-loop prior states under given actions (scan over H).

    start: state [N]; actions [H, N, A] -> states [H, N] (states[t] follows actions[t]).
    """
    def step(state, inputs):
        action, k = inputs
        nxt = cell.apply(params, state, action, k, method=RSSMCell.img_step)
        return nxt, nxt

    _, states = jax.lax.scan(step, start, (actions, jax.random.split(key, actions.shape[0])))
    return states


def distribution(cell: RSSMCell, state: dict) -> dict:
    """The distribution parameters of a state: {'logits'} or {'mean', 'std'}."""
    keys = ("logits",) if cell.latent == "discrete" else ("mean", "std")
    return {k: state[k] for k in keys}


def kl(cell: RSSMCell, lhs: dict, rhs: dict) -> jax.Array:
    """KL(lhs || rhs) of two states' latent distributions, summed over latents: [...]."""
    if cell.latent == "discrete":
        return dists.categorical_kl(lhs["logits"], rhs["logits"])
    return dists.gaussian_kl(lhs["mean"], lhs["std"], rhs["mean"], rhs["std"])


def kl_loss(cell: RSSMCell, post: dict, prior: dict, dyn_scale, rep_scale, free, free_avg=True):
    """Balanced KL between posterior and prior states (see `distributions.balanced_kl`)."""
    return dists.balanced_kl(lambda q, p: kl(cell, q, p), distribution(cell, post),
                             distribution(cell, prior), dyn_scale, rep_scale, free, free_avg)


def _free_nats(kl_value, free, free_avg, mask=None):
    """mean KL clipped below at `free`: of the (masked) batch average (free_avg) or per sample."""
    mask = jnp.ones_like(kl_value) if mask is None else mask.astype(kl_value.dtype)
    count = jnp.maximum(mask.sum(), 1.0)
    if free_avg:
        return jnp.maximum((kl_value * mask).sum() / count, free)
    return (jnp.maximum(kl_value, free) * mask).sum() / count


def plain_kl_loss(cell: RSSMCell, post: dict, prior: dict, scale, free, free_avg=True):
    """scale * max(KL(q || p), free) with gradients into both (PlaNet, DreamerV1). Returns
    (loss, sg(KL) [...] for logging)."""
    value = kl(cell, distribution(cell, post), distribution(cell, prior))
    return scale * _free_nats(value, free, free_avg), jax.lax.stop_gradient(value)


def overshooting_kl(cell: RSSMCell, params, posts: dict, priors: dict, actions, is_first,
                    distance: int, key, free, free_avg=True):
    """Latent overshooting (PlaNet, Hafner et al. ICML 2019, Sec. 4 / Eq. 7): the KL from the
    posterior q(s_t | o_<=t) to the d-step open-loop prior p(s_t | s_{t-d}) for d = 2 .. n,
    n = min(distance, T); the posterior is a fixed target (stop-gradient) for d > 1, so the
    multi-step predictions are trained towards it and not vice versa.

    posts, priors: states [T, B] of `observe` (priors[t] is the 1-step prior from posts[t-1]);
    actions [T, B, A] (features; actions[t] is taken after o_t); is_first [T, B]. A d-step prior
    at t is valid when t >= d and no episode starts in (t - d, t]; each distance's KL is averaged
    over its valid (t, b) and clipped at `free` like the one-step term.
    Returns (sum over d = 2..n of those clipped means, unclipped mean KL per distance [n], d = 1
    first). The caller averages the one-step term and this sum over n distances.
    """
    steps = actions.shape[0]
    n = min(distance, steps)
    target = jax.tree.map(jax.lax.stop_gradient, distribution(cell, posts))
    first = is_first.astype(bool)
    prev_actions = jnp.concatenate([actions[:1], actions[:-1]], 0)  # [t] = actions[t - 1]
    shift = lambda x: jnp.concatenate([x[:1], x[:-1]], 0)  # noqa: E731  [t] = x[t - 1]
    valid = (jnp.arange(steps)[:, None] >= 1) & ~first          # the 1-step priors
    one_step = kl(cell, target, distribution(cell, priors))

    def step(carry, k):
        states, valid = carry
        states = cell.apply(params, jax.tree.map(shift, states), prev_actions, k,
                            method=RSSMCell.img_step)
        valid = jnp.concatenate([jnp.zeros_like(valid[:1]), valid[:-1]], 0) & ~first
        value = kl(cell, target, distribution(cell, states))
        mean = (value * valid).sum() / jnp.maximum(valid.sum(), 1)
        return (states, valid), (_free_nats(value, free, free_avg, valid), mean)

    _, (losses, means) = jax.lax.scan(step, (priors, valid), jax.random.split(key, n - 1))
    one = (one_step * valid).sum() / jnp.maximum(valid.sum(), 1)
    return losses.sum(), jnp.concatenate([one[None], means])
