"""Image VAE giving the small latents of Latent Diffusion Planning.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014): encoder q(z | x) = N(mean,
diag(exp(log_std)^2)), reparameterized sample z = mean + exp(log_std) * eps, decoder to pixels,
loss = reconstruction + kl_weight * KL(q(z | x) || N(0, I)) (kl_weight = beta of Higgins et al.,
"beta-VAE", 2017). Xie et al., "Latent Diffusion Planning for Imitation Learning" (2025) train
such a VAE on the demonstration frames, freeze it and plan over its (16-d) latent means.

Architecture: the 64x64 conv encoder of DreamerV2 (`jaxwm.nn.ConvEncoder`: 4 stride-2 convs)
then a Dense to (mean, log_std) [L] each; a Dense + 4 stride-2 transposed convs
(`jaxwm.nn.ConvDecoder`) and a sigmoid to pixels in [0, 1].
"""
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.nn.blocks import ConvDecoder, ConvEncoder

IMAGE_SHAPE = (64, 64, 3)
# log_std is clipped to this range: exp(-10) ~ 4.5e-5 keeps the KL finite, exp(2) ~ 7.4 is far
# above the prior's 1.
LOG_STD_RANGE = (-10.0, 2.0)


class VAE(nn.Module):
    """Conv VAE for uint8 64x64x3 frames.

    encode: images uint8 (or 0..255 float) [B, 64, 64, 3] -> (mean, log_std) float32 [B, latent_dim]
    decode: z [B, latent_dim] -> images float32 in [0, 1] [B, 64, 64, 3]
    __call__(images, key=None): decode(mean) when key is None, else decode of a reparameterized
      sample -> (reconstruction [B, 64, 64, 3], mean, log_std); `init` through it builds all
      parameters. Call the parts with `vae.apply(params, x, method=VAE.encode)` / `VAE.decode`.
    """
    latent_dim: int = 16
    depth: int = 32            # conv width multiplier (channels depth * (1, 2, 4, 8))
    act: str = "elu"
    lowering: str = "auto"     # conv lowering, see `jaxwm.nn.conv`

    def setup(self):
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, int) or (
                self.latent_dim < 1):
            raise ValueError(f"VAE.latent_dim={self.latent_dim!r} must be a positive int")
        self.encoder = ConvEncoder(depth=self.depth, act=self.act, lowering=self.lowering)
        self.to_stats = nn.Dense(2 * self.latent_dim)
        self.decoder = ConvDecoder(channels=3, depth=self.depth, act=self.act,
                                   lowering=self.lowering)

    def encode(self, images):
        if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"VAE.encode: images must be [B, 64, 64, 3], got "
                             f"{tuple(images.shape)}")
        mean, log_std = jnp.split(self.to_stats(self.encoder(images)), 2, axis=-1)
        return mean, jnp.clip(log_std, *LOG_STD_RANGE)

    def decode(self, z):
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"VAE.decode: z must be [B, latent_dim={self.latent_dim}], got "
                             f"{tuple(z.shape)}")
        return nn.sigmoid(self.decoder(z))

    def __call__(self, images, key=None):
        mean, log_std = self.encode(images)
        z = mean if key is None else reparameterize(mean, log_std, key)
        return self.decode(z), mean, log_std


def reparameterize(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> jax.Array:
    """z = mean + exp(log_std) * eps, eps ~ N(0, I). [B, L] -> [B, L]."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(mean, diag(exp(log_std)^2)) || N(0, I)) summed over the last axis:
    0.5 * sum(mean^2 + exp(2 log_std) - 1 - 2 log_std). [..., L] -> [...]."""
    chex.assert_equal_shape([mean, log_std])
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std, -1)


def init(vae: VAE, key: jax.Array) -> Any:
    """Parameters of `vae` (encoder, latent head and decoder)."""
    return vae.init(key, jnp.zeros((1,) + IMAGE_SHAPE, jnp.uint8))


def vae_loss(vae: VAE, params: Any, images: jax.Array, key: jax.Array, kl_weight: float = 1.0
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Negative beta-ELBO of a batch of frames.

    images: uint8 [B, 64, 64, 3]; pixels are scaled to [0, 1].
    recon = mean over the batch of the squared error summed over the 64*64*3 pixels (a Gaussian
    decoder with variance 1/2, up to a constant); kl = mean over the batch of KL(q(z|x) || N(0, I))
    summed over the latent dims; loss = recon + kl_weight * kl.
    -> (loss [], metrics {'loss', 'recon', 'kl', 'mse' (per-pixel mean), 'std' (mean posterior
    std)}).
    """
    if images.dtype != jnp.uint8:
        raise ValueError(f"vae_loss: images must be uint8 [B, 64, 64, 3], got dtype "
                         f"{images.dtype}")
    if not kl_weight >= 0:
        raise ValueError(f"vae_loss: kl_weight={kl_weight!r} must be >= 0")
    recon, mean, log_std = vae.apply(params, images, key)
    target = images.astype(jnp.float32) / 255.0
    sq = jnp.square(recon - target)
    recon_loss = jnp.mean(jnp.sum(sq, axis=(1, 2, 3)))
    kl = jnp.mean(gaussian_kl(mean, log_std))
    loss = recon_loss + kl_weight * kl
    return loss, {"loss": loss, "recon": recon_loss, "kl": kl, "mse": jnp.mean(sq),
                  "std": jnp.mean(jnp.exp(log_std))}


def encode_mean(vae: VAE, params: Any, images: jax.Array) -> jax.Array:
    """Frozen latents for planning: the posterior means. images uint8 [B, 64, 64, 3] ->
    z float32 [B, latent_dim] (no gradient flows back into the VAE)."""
    mean, _ = vae.apply(params, images, method=VAE.encode)
    return jax.lax.stop_gradient(mean)


def decode(vae: VAE, params: Any, z: jax.Array) -> jax.Array:
    """z [B, latent_dim] -> images float32 in [0, 1] [B, 64, 64, 3]."""
    return vae.apply(params, z, method=VAE.decode)
