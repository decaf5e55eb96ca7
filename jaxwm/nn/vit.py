"""Vision Transformer laid out like DINOv2's `DinoVisionTransformer`, for DINO-WM encoders.

References: Dosovitskiy et al., "An Image is Worth 16x16 Words" (ViT, 2021); Oquab et al.,
"DINOv2: Learning Robust Visual Features without Supervision" (2023: LayerScale, eps-1e-6
LayerNorms, bicubic position-embedding interpolation); Darcet et al., "Vision Transformers Need
Registers" (2024: register tokens without position embedding); Zhou et al., "DINO-WM: World
Models on Pre-trained Visual Features enable Zero-shot Planning" (2024).

Submodule and parameter names follow DINOv2's state_dict (`norm1`, `attn.qkv` -> `attn_qkv`,
`ls1.gamma` -> `ls1/gamma`, `mlp.fc1` -> `mlp_fc1`, ...) so that
`jaxwm.models.dinov2_loader` is a one-to-one renaming plus transposes. The fused qkv projection
has DINOv2's output layout [3, heads, head_dim].
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics DINO/DINOv2 normalize with (per RGB channel, pixels in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Widths of the standard ViTs (DINOv2 builds ViT-S/14, ViT-B/14, ...; patch size is separate).
VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(dim=192, depth=12, heads=3),
    "small": dict(dim=384, depth=12, heads=6),
    "base": dict(dim=768, depth=12, heads=12),
    "large": dict(dim=1024, depth=24, heads=16),
}

_LN_EPS = 1e-6
_dense_init = nn.initializers.truncated_normal(0.02)   # timm / DINOv2 Linear init


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 (or 0..255 float) images [..., H, W, 3] -> float32 [..., H, W, 3], standardized
    with the ImageNet mean and std after scaling to [0, 1] (DINO/DINOv2's input transform)."""
    if images.shape[-1] != 3:
        raise ValueError(f"preprocess: images must have 3 (RGB) channels last, got shape "
                         f"{tuple(images.shape)}")
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


def vit_config(size: str) -> dict[str, int]:
    """dim, depth and heads of a named ViT size; raises ValueError listing the sizes."""
    if size not in VIT_SIZES:
        raise ValueError(f"vit size={size!r} is not one of {sorted(VIT_SIZES)}")
    return dict(VIT_SIZES[size])


def resize_pos_embed(pos_embed: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Position embeddings of a square G x G patch grid resized to `grid` = (h, w).

    pos_embed: [1, 1 + G * G, D] (cls position first, then the grid row-major) ->
    [1, 1 + h * w, D]. The cls position is kept; the patch part is resized bicubically on the
    grid (`jax.image.resize`, PyTorch's cubic kernel, no antialiasing: as DINOv2's
    `interpolate_pos_encoding`, without its +0.1 scale-factor offset). Same grid: returned as is.
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape [1, 1 + G*G, D], got {tuple(pos_embed.shape)}")
    n, dim = pos_embed.shape[1] - 1, pos_embed.shape[2]
    side = int(round(np.sqrt(n)))
    if side * side != n:
        raise ValueError(f"pos_embed has {n} patch positions ({tuple(pos_embed.shape)}), not a "
                         f"square grid")
    h, w = grid
    if (h, w) == (side, side):
        return pos_embed
    patch = pos_embed[0, 1:].reshape(side, side, dim).astype(jnp.float32)
    patch = jax.image.resize(patch, (h, w, dim), "bicubic-pytorch", antialias=False)
    patch = patch.astype(pos_embed.dtype).reshape(1, h * w, dim)
    return jnp.concatenate([pos_embed[:, :1], patch], axis=1)


class LayerScale(nn.Module):
    """Per-channel scale gamma (CaiT/DINOv2 LayerScale). x: [..., D] -> [..., D]."""
    dim: int
    init_value: float

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", nn.initializers.constant(self.init_value), (self.dim,))
        return x * gamma


class TransformerBlock(nn.Module):
    """Pre-norm transformer block of DINOv2:
        x <- x + ls1 * proj(attention(qkv(norm1(x))))
        x <- x + ls2 * fc2(gelu(fc1(norm2(x))))
    LayerNorm eps 1e-6, exact (erf) GELU, hidden width int(dim * mlp_ratio); ls1/ls2 are
    LayerScale (gamma initialized to `layer_scale`) or absent when layer_scale is None.

    x: [B, L, dim]; mask: bool [L, L] (or [B, L, L]) or None, mask[i, j] True = query i may
    attend key j (every query needs at least one visible key) -> [B, L, dim].
    """
    dim: int
    heads: int
    mlp_ratio: float = 4.0
    layer_scale: float | None = None

    @nn.compact
    def __call__(self, x, mask=None):
        if self.dim % self.heads:
            raise ValueError(f"TransformerBlock: dim={self.dim} is not divisible by "
                             f"heads={self.heads}")
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"TransformerBlock: x must be [B, L, dim={self.dim}], got "
                             f"{tuple(x.shape)}")
        b, length, _ = x.shape
        head_dim = self.dim // self.heads
        if mask is not None:
            mask = jnp.asarray(mask, bool)
            if mask.shape not in ((length, length), (b, length, length)):
                raise ValueError(f"TransformerBlock: mask must be bool [L, L] or [B, L, L] with "
                                 f"L={length}, got {tuple(mask.shape)}")
            mask = mask[None, None] if mask.ndim == 2 else mask[:, None]   # -> [B|1, 1, T, S]

        def scale(y, name):
            if self.layer_scale is None:
                return y
            return LayerScale(self.dim, self.layer_scale, name=name)(y)

        h = nn.LayerNorm(epsilon=_LN_EPS, name="norm1")(x)
        qkv = nn.Dense(3 * self.dim, kernel_init=_dense_init, name="attn_qkv")(h)
        q, k, v = jnp.moveaxis(qkv.reshape(b, length, 3, self.heads, head_dim), 2, 0)
        h = jax.nn.dot_product_attention(q, k, v, mask=mask)           # [B, L, heads, head_dim]
        h = nn.Dense(self.dim, kernel_init=_dense_init, name="attn_proj")(
            h.reshape(b, length, self.dim))
        x = x + scale(h, "ls1")
        h = nn.LayerNorm(epsilon=_LN_EPS, name="norm2")(x)
        h = nn.Dense(int(self.dim * self.mlp_ratio), kernel_init=_dense_init, name="mlp_fc1")(h)
        h = nn.gelu(h, approximate=False)
        h = nn.Dense(self.dim, kernel_init=_dense_init, name="mlp_fc2")(h)
        return x + scale(h, "ls2")


class ViT(nn.Module):
    """DINOv2-style ViT: patch embedding, cls token, learned position embeddings, optional
    register tokens, `depth` TransformerBlocks, final LayerNorm.

    image_size: side of the square training resolution; the position embeddings cover its
    G x G grid (G = image_size // patch_size) plus the cls token. Inputs of another size (sides
    multiples of patch_size, e.g. DINO's local crops) get the patch embeddings resized to their
    grid on the fly (`resize_pos_embed`). Registers (DINOv2-reg) are inserted after the cls token
    without position embedding and dropped from the output.

    patch_mask: bool [..., P'] (P' patches of this input) or None; where True, the patch
    embedding is replaced by `mask_token` [dim] (a parameter of the caller, e.g. the DINO
    student) before the position embeddings, as in iBOT / DINOv2.
    x: float [..., H, W, 3] (already `preprocess`ed) -> {'cls': [..., dim],
    'patches': [..., (H // patch_size) * (W // patch_size), dim]} (after the final LayerNorm,
    patches row-major); P = G * G at the training size.
    Parameters: patch_embed/{kernel [p, p, 3, dim], bias}, cls_token [1, 1, dim], pos_embed
    [1, 1 + G * G, dim], register_tokens [1, R, dim] (R > 0 only), blocks_{i}/..., norm/...
    """
    image_size: int
    patch_size: int
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    layer_scale: float | None = None
    num_registers: int = 0

    @property
    def grid_size(self) -> int:
        """G: patches per side at image_size."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """P = G * G."""
        return self.grid_size ** 2

    def _check(self):
        for name in ("image_size", "patch_size", "dim", "depth", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ViT.{name}={value!r} must be a positive int")
        if self.image_size % self.patch_size:
            raise ValueError(f"ViT.image_size={self.image_size} is not a multiple of "
                             f"ViT.patch_size={self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"ViT.dim={self.dim} is not divisible by ViT.heads={self.heads}")
        if self.num_registers < 0:
            raise ValueError(f"ViT.num_registers={self.num_registers!r} must be >= 0")

    @nn.compact
    def __call__(self, x, patch_mask=None, mask_token=None):
        self._check()
        if x.ndim < 4:
            raise ValueError(f"ViT: x must be [..., H, W, C], got shape {tuple(x.shape)}")
        lead = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
        n, height, width, _ = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"ViT: image size {height}x{width} is not a multiple of "
                             f"patch_size={p}")
        tokens = nn.Conv(self.dim, (p, p), strides=(p, p), padding="VALID",
                         name="patch_embed")(x)                       # [n, H/p, W/p, dim]
        grid = tokens.shape[1:3]
        tokens = tokens.reshape(n, grid[0] * grid[1], self.dim)
        if patch_mask is not None:   # iBOT/DINOv2 masked image modelling: [..., P] bool
            masked = patch_mask.reshape(n, -1, 1)
            tokens = jnp.where(masked, mask_token.astype(tokens.dtype), tokens)
        cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, self.dim))
        pos = self.param("pos_embed", _dense_init, (1, 1 + self.num_patches, self.dim))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.dim)), tokens], axis=1)
        tokens = tokens + resize_pos_embed(pos, grid)
        if self.num_registers:
            regs = self.param("register_tokens", nn.initializers.normal(1e-6),
                              (1, self.num_registers, self.dim))
            tokens = jnp.concatenate(
                [tokens[:, :1], jnp.broadcast_to(regs, (n,) + regs.shape[1:]), tokens[:, 1:]],
                axis=1)
        for i in range(self.depth):
            tokens = TransformerBlock(self.dim, self.heads, self.mlp_ratio, self.layer_scale,
                                      name=f"blocks_{i}")(tokens)
        tokens = nn.LayerNorm(epsilon=_LN_EPS, name="norm")(tokens)
        patches = tokens[:, 1 + self.num_registers:]
        return {"cls": tokens[:, 0].reshape(lead + (self.dim,)),
                "patches": patches.reshape(lead + patches.shape[1:])}
