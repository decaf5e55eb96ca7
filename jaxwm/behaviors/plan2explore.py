"""Plan2Explore's latent disagreement (Sekar et al., "Planning to Explore via Self-Supervised
World Models", ICML 2020, Sec. 3; DreamerV2's expl.py variant that CASCADE builds on).

An ensemble of E one-step heads f_k([feat(s_t), a_t]) -> z_{t+1} (flattened next stochastic
latent), trained on replay with sg(features) and a unit-variance Gaussian NLL (squared error),
with params stacked on a leading axis [E, ...] and applied with `jax.vmap` (`jaxwm.ensemble`).
The intrinsic reward of (s_t, a_t) is the disagreement of the members' predictions,

    r_int = mean_d std_k f_k(s_t, a_t)_d        (optionally log r_int, DreamerV2's disag_log),

which is zero when all members agree (e.g. share parameters) and largest where the model has
seen little data.
"""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm import ensemble
from jaxwm.models import rssm
from jaxwm.nn import MLP
from jaxwm.types import TrainState, adam

sg = jax.lax.stop_gradient


def disagreement(preds: jax.Array) -> jax.Array:
    """Mean over dimensions of the std over members: preds [E, D] -> []."""
    chex.assert_rank(preds, 2)
    return jnp.std(preds, axis=0).mean()


class Disagreement:
    """Static description of the ensemble. config: the `disag` ConfigDict
    (`jaxwm.agents.plan2explore.config.disag_config`); feat_size F, action_size A, target_size
    S * C (flattened stochastic latent)."""

    def __init__(self, config: ml_collections.ConfigDict, feat_size: int, action_size: int,
                 target_size: int):
        if config.members < 2:
            raise ValueError(f"disag.members={config.members!r} must be an int >= 2 "
                             "(disagreement needs at least two members)")
        self.config = config
        self.feat_size, self.action_size = int(feat_size), int(action_size)
        self.target_size = int(target_size)
        self.net = MLP((config.units,) * config.layers, out=self.target_size, act=config.act)
        self.optimizer = adam(config.lr, config.eps, config.clip, config.weight_decay)

    def init(self, key) -> dict:
        """Stacked params: every leaf [E, ...]."""
        dummy = jnp.zeros((1, self.feat_size + self.action_size))
        return ensemble.init(lambda k: self.net.init(k, dummy), key, self.config.members)

    def init_state(self, key) -> TrainState:
        return TrainState.create(self.init(key), self.optimizer)

    def predict(self, params, feat, action) -> jax.Array:
        """Every member's prediction: feat [..., F], action [..., A] -> [E, ..., S * C]."""
        inputs = jnp.concatenate([feat, action.astype(feat.dtype)], -1)
        return ensemble.apply(self.net.apply, params, inputs)

    def loss(self, params, feat, action, next_stoch, mask=None):
        """Sum over members of the mean squared-error NLL 0.5 * ||f_k(s_t, a_t) - z_{t+1}||^2.

        feat [T, B, F], action [T, B, A] (taken in s_t), next_stoch [T, B, S * C] (z_{t+1});
        mask [T, B] (optional) zeroes pairs that cross an episode boundary. Inputs and targets
        are stop-gradient. Returns (loss, metrics).
        """
        chex.assert_equal_shape_prefix([feat, action, next_stoch], 2)
        preds = self.predict(params, sg(feat), sg(action))                 # [E, T, B, D]
        nll = 0.5 * jnp.square(preds - sg(next_stoch)[None]).sum(-1)      # [E, T, B]
        if mask is None:
            mask = jnp.ones(feat.shape[:2])
        mask = mask.astype(nll.dtype)
        per_member = (nll * mask).sum((1, 2)) / jnp.maximum(mask.sum(), 1.0)
        return per_member.sum(), {"disag_loss": per_member.mean()}

    def intrinsic_reward(self, params, feat, action) -> jax.Array:
        """r_int for feat [..., F], action [..., A] -> [...] (times `intr_scale`, optional log)."""
        preds = self.predict(params, feat, action)                         # [E, ..., D]
        flat = preds.reshape(preds.shape[0], -1, preds.shape[-1])           # [E, M, D]
        disag = jax.vmap(disagreement, in_axes=1)(flat).reshape(preds.shape[1:-1])
        if self.config.log_reward:
            disag = jnp.log(disag + 1e-8)
        return self.config.intr_scale * disag

    def train_step(self, state: TrainState, feat, action, next_stoch, mask=None):
        """One Adam step on `loss`. Returns (state, metrics)."""
        grads, metrics = jax.grad(self.loss, has_aux=True)(state.params, feat, action,
                                                           next_stoch, mask)
        metrics["disag_grad_norm"] = optax.global_norm(grads)
        return state.apply_gradients(self.optimizer, grads), metrics


def one_step_pairs(posts, action_features, is_first):
    """Training pairs of a replay batch: (feat_t, a_t) -> z_{t+1} for t < T - 1.

    posts: RSSM posteriors [T, B, ...]; action_features [T, B, A] (a_t taken after o_t);
    is_first [T, B]. Returns feat [T-1, B, F], action [T-1, B, A], next_stoch [T-1, B, S*C],
    mask [T-1, B] (0 where o_{t+1} starts a new episode).
    """
    feat = rssm.features(posts)
    stoch = posts["stoch"].reshape(posts["stoch"].shape[:2] + (-1,))
    mask = 1.0 - is_first[1:].astype(jnp.float32)
    return sg(feat[:-1]), action_features[:-1], sg(stoch[1:]), mask
