"""MLPs, the 64x64 CNN encoder/decoder of DreamerV2 and its layer-normed GRU cell.

References: Hafner et al., "Mastering Atari with Discrete World Models" (DreamerV2, 2021), App. C;
Hansen et al., "TD-MPC2" (2024) for LayerNorm+Mish MLPs and SimNorm.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


CNN_IMPLS = ("strided", "space_to_depth")


def space_to_depth(x):
    """[N, H, W, C] -> [N, H/2, W/2, 4C]."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, h // 2, w // 2, 4 * c)


def depth_to_space(x):
    """[N, H, W, 4C] -> [N, 2H, 2W, C] (inverse of `space_to_depth`)."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, 2 * h, 2 * w, c // 4)


def _check_impl(impl):
    if impl not in CNN_IMPLS:
        raise ValueError(f"cnn_impl={impl!r} is not one of {CNN_IMPLS}")


class ConvEncoder(nn.Module):
    """Image encoder with 4 stride-2 stages of widths depth * (1, 2, 4, 8).

    impl='strided': DreamerV2's convs (kernel 4, stride 2, VALID) -> [..., 2 * 2 * 8 * depth].
    impl='space_to_depth': 2x2 space-to-depth then a 3x3 stride-1 conv per stage -> [..., 4 * 4 *
    8 * depth]; same downsampling without strided-conv gradients, which are slow on XLA:CPU
    (~4x faster training here).
    image: uint8 or float [..., 64, 64, C]; pixels are scaled to [-0.5, 0.5].
    """
    depth: int = 48
    act: str = "elu"
    impl: str = "strided"

    @nn.compact
    def __call__(self, image):
        _check_impl(self.impl)
        act = get_activation(self.act)
        lead = image.shape[:-3]
        x = image.reshape((-1,) + image.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for mult in (1, 2, 4, 8):
            if self.impl == "strided":
                x = nn.Conv(self.depth * mult, (4, 4), strides=(2, 2), padding="VALID")(x)
            else:
                x = nn.Conv(self.depth * mult, (3, 3), padding="SAME")(space_to_depth(x))
            x = act(x)
        return x.reshape(lead + (-1,))


class ConvDecoder(nn.Module):
    """Image decoder mirroring `ConvEncoder`: features [..., F] -> mean [..., 64, 64, channels].

    impl='strided': DreamerV2's dense to 32 * depth and transposed convs (kernels 5, 5, 6, 6).
    impl='space_to_depth': dense to 4x4x(8 * depth), then per stage a 3x3 conv to 4x the width
    and depth-to-space. Output in the [-0.5, 0.5] pixel scale.
    """
    channels: int = 3
    depth: int = 48
    act: str = "elu"
    impl: str = "strided"

    @nn.compact
    def __call__(self, features):
        _check_impl(self.impl)
        act = get_activation(self.act)
        lead = features.shape[:-1]
        flat = features.reshape((-1, features.shape[-1]))
        widths = (self.depth * 4, self.depth * 2, self.depth, self.channels)
        if self.impl == "strided":
            x = nn.Dense(32 * self.depth)(flat).reshape((-1, 1, 1, 32 * self.depth))
            for i, (width, kernel) in enumerate(zip(widths, (5, 5, 6, 6))):
                x = nn.ConvTranspose(width, (kernel, kernel), strides=(2, 2), padding="VALID")(x)
                x = act(x) if i < 3 else x
        else:
            x = nn.Dense(4 * 4 * 8 * self.depth)(flat).reshape((-1, 4, 4, 8 * self.depth))
            for i, width in enumerate(widths):
                x = depth_to_space(nn.Conv(4 * width, (3, 3), padding="SAME")(x))
                x = act(x) if i < 3 else x
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
