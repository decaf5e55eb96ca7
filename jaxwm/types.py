"""Shared pytrees: the training state of one optimized component."""
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Params and optimizer state of one optimized component (world model, actor, critic, ...)."""
    params: Any
    opt_state: Any
    step: jax.Array

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation) -> "TrainState":
        return cls(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))

    def apply_gradients(self, tx: optax.GradientTransformation, grads) -> "TrainState":
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state, step=self.step + 1)


def decoupled_weight_decay(rate: float) -> optax.GradientTransformation:
    """Adds -rate * w to the updates, so the step ends at (1 - rate) w + update: DreamerV2's
    decay (`var.assign((1 - wd) * var)` each step), independent of the learning rate, unlike
    `optax.adamw`'s lr * rate."""
    def update(updates, state, params):
        return jax.tree.map(lambda u, w: u - rate * w, updates, params), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_subtree(name: str, factor: float) -> optax.GradientTransformation:
    """Multiplies the updates of params[name] (a dict of params) by factor: after Adam this is
    a learning rate of lr * factor for that part (TD-MPC2's encoder `enc_lr_scale`)."""
    def update(updates, state, params=None):
        return dict(updates, **{name: jax.tree.map(lambda u: factor * u, updates[name])}), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def adam(lr: float, eps: float = 1e-5, clip: float = 100.0, weight_decay: float = 0.0):
    """DreamerV2 optimizer: global-norm clipping, Adam, then decoupled weight decay."""
    parts = [optax.clip_by_global_norm(clip)] if clip else []
    parts.append(optax.adam(lr, eps=eps))
    if weight_decay:
        parts.append(decoupled_weight_decay(weight_decay))
    return optax.chain(*parts) if len(parts) > 1 else parts[0]
