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


def adam(lr: float, eps: float = 1e-5, clip: float = 100.0, weight_decay: float = 0.0):
    """DreamerV2 optimizer: global-norm clipping then Adam(W)."""
    opt = (optax.adamw(lr, eps=eps, weight_decay=weight_decay) if weight_decay
           else optax.adam(lr, eps=eps))
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
