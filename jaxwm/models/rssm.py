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

    def _dist(self, x, key):
        if self.latent == "discrete":
            logits = x.reshape(x.shape[:-1] + (self.stoch, self.classes))
            logits = dists.unimix_logits(logits, self.unimix)
            return {"stoch": dists.straight_through_onehot(key, logits), "logits": logits}
        mean, std = jnp.split(x, 2, -1)
        std = jax.nn.softplus(std) + self.min_std
        return {"stoch": mean + std * jax.random.normal(key, mean.shape), "mean": mean, "std": std}

    def img_step(self, state, action, key):
        act = get_activation(self.act)
        stoch = state["stoch"].reshape(state["stoch"].shape[:len(state["deter"].shape) - 1] + (-1,))
        x = act(self.img_in(jnp.concatenate([stoch, action], -1)))
        deter = self.gru(state["deter"], x)
        return {"deter": deter, **self._dist(self.prior_stats(act(self.img_out(deter))), key)}

    def obs_step(self, prior, embed, key):
        act = get_activation(self.act)
        x = act(self.obs_out(jnp.concatenate([prior["deter"], embed], -1)))
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


def kl_loss(cell: RSSMCell, post: dict, prior: dict, dyn_scale, rep_scale, free, free_avg=True):
    """Balanced KL between posterior and prior states (see `distributions.balanced_kl`)."""
    if cell.latent == "discrete":
        kl_fn = lambda q, p: dists.categorical_kl(q["logits"], p["logits"])  # noqa: E731
        post_p, prior_p = {"logits": post["logits"]}, {"logits": prior["logits"]}
    else:
        kl_fn = lambda q, p: dists.gaussian_kl(q["mean"], q["std"], p["mean"], p["std"])  # noqa: E731
        post_p = {"mean": post["mean"], "std": post["std"]}
        prior_p = {"mean": prior["mean"], "std": prior["std"]}
    return dists.balanced_kl(kl_fn, post_p, prior_p, dyn_scale, rep_scale, free, free_avg)
