"""MLPs, the 64x64 CNN encoder/decoder of DreamerV2 and its layer-normed GRU cell.

References: Hafner et al., "Mastering Atari with Discrete World Models" (DreamerV2, 2021), App. C;
Hansen et al., "TD-MPC2" (2024) for LayerNorm+Mish MLPs and SimNorm.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.nn.conv import Conv2

ACTIVATIONS: dict[str, Callable] = {
    "elu": nn.elu,
    "relu": nn.relu,
    "silu": nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
}


def get_activation(name: str) -> Callable:
    """Activation by name; raises ValueError listing the allowed names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"act={name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def simnorm(x: jax.Array, group: int = 8) -> jax.Array:
    """TD-MPC2 simplicial normalization: softmax over consecutive groups of `group` units.

    x: [..., D] with D divisible by `group` -> [..., D].
    """
    shape = x.shape
    if shape[-1] % group:
        raise ValueError(f"simnorm: last dim {shape[-1]} is not divisible by group={group}")
    x = x.reshape(*shape[:-1], shape[-1] // group, group)
    return jax.nn.softmax(x, axis=-1).reshape(shape)


class MLP(nn.Module):
    """Dense layers with an activation (and optional LayerNorm) after each hidden layer.

    x: [..., D_in] -> [..., out] (or [..., hidden[-1]] when out is None: last layer activated).
    """
    hidden: Sequence[int]
    out: int | None = None
    act: str = "elu"
    layer_norm: bool = False
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        act = get_activation(self.act)
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.out is not None:
            init = nn.initializers.variance_scaling(
                max(self.out_init_scale, 1e-10), "fan_avg", "uniform")
            x = nn.Dense(self.out, kernel_init=init)(x)
        return x


class ConvEncoder(nn.Module):
    """DreamerV2's image encoder: 4 convs (kernel 4, stride 2, VALID) of widths depth * (1, 2, 4,
    8). image: uint8 or float [..., 64, 64, C], pixels scaled to [-0.5, 0.5] -> [..., 2 * 2 * 8 *
    depth]. `lowering`: how the convs are computed ('auto': the stride-1 'phase' form on CPU,
    native convs on GPU/TPU; same function and parameters, see `jaxwm.nn.conv`). layer_norm:
    LayerNorm over channels before each activation (DreamerV3).
    """
    depth: int = 48
    act: str = "elu"
    lowering: str = "auto"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, image):
        act = get_activation(self.act)
        lead = image.shape[:-3]
        x = image.reshape((-1,) + image.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for i, mult in enumerate((1, 2, 4, 8)):
            x = Conv2(self.depth * mult, 4, self.lowering, name=f"Conv_{i}")(x)
            x = act(nn.LayerNorm()(x) if self.layer_norm else x)
        return x.reshape(lead + (-1,))


class ConvDecoder(nn.Module):
    """DreamerV2's image decoder: features [..., F] -> dense to 32 * depth at 1x1, then
    transposed convs (kernels 5, 5, 6, 6, stride 2) -> mean [..., 64, 64, channels] in the
    [-0.5, 0.5] pixel scale; `lowering` and `layer_norm` (hidden layers) as in `ConvEncoder`.
    """
    channels: int = 3
    depth: int = 48
    act: str = "elu"
    lowering: str = "auto"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, features):
        act = get_activation(self.act)
        lead = features.shape[:-1]
        x = nn.Dense(32 * self.depth)(features.reshape((-1, features.shape[-1])))
        x = x.reshape((-1, 1, 1, 32 * self.depth))
        widths = (self.depth * 4, self.depth * 2, self.depth, self.channels)
        for i, (width, kernel) in enumerate(zip(widths, (5, 5, 6, 6))):
            x = Conv2(width, kernel, self.lowering, transpose=True, name=f"ConvTranspose_{i}")(x)
            if i < 3:
                x = act(nn.LayerNorm()(x) if self.layer_norm else x)
        return x.reshape(lead + x.shape[1:])


class LayerNormGRUCell(nn.Module):
    """GRU with LayerNorm on the joint gate pre-activations (DreamerV2 App. C, update bias -1).

    state: [..., H], inputs: [..., I] -> new state [..., H].
    """
    size: int

    @nn.compact
    def __call__(self, state, inputs):
        parts = nn.Dense(3 * self.size, use_bias=False)(jnp.concatenate([inputs, state], -1))
        parts = nn.LayerNorm()(parts)
        reset, cand, update = jnp.split(parts, 3, axis=-1)
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * state
