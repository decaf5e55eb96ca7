"""Stride-2 convolutions and transposed convolutions with a lowering that is fast on XLA:CPU.

XLA:CPU runs stride-1 convolutions well but strided convolutions, and above all the gradients
of transposed convolutions (convolutions with a dilated input), far below its matmul speed:
measured on the `cpu` preset's decoder, the 13x13 -> 30x30 transposed conv takes 650 ms per
forward + backward at 256 images, 85 ms rewritten as below (`benchmarks/README.md`).

The 'phase' lowering computes exactly the same function with stride-1 convolutions only:
- a k x k stride-2 VALID conv is a ceil(k/2) x ceil(k/2) stride-1 conv on the space-to-depth
  (2x2 blocks -> channels) input, with the kernel's taps regrouped by parity;
- a k x k stride-2 VALID transposed conv (`lax.conv_transpose`, kernel not flipped) is the
  sub-pixel form: one ceil(k/2)-wide stride-1 conv producing the four output phases as channels,
  then depth-to-space and a crop; on a 1x1 input it is a single matmul;
- a stride-1 conv with few input and more output channels is patch extraction + one dot.
The parameters keep the native layout ([k, k, C_in, C_out], same names and initializers as
`flax.linen.Conv`/`ConvTranspose`), so checkpoints and lowerings are interchangeable.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

LOWERINGS = ("auto", "native", "phase")
_DIMS = ("NHWC", "HWIO", "NHWC")


def resolve_lowering(lowering: str) -> str:
    """'auto' -> 'phase' on the CPU backend, 'native' on GPU/TPU; others unchanged."""
    if lowering not in LOWERINGS:
        raise ValueError(f"conv_lowering={lowering!r} is not one of {LOWERINGS}")
    if lowering == "auto":
        return "phase" if jax.default_backend() == "cpu" else "native"
    return lowering


def space_to_depth(x):
    """[N, H, W, C] -> [N, H/2, W/2, 4C], channels ordered (row parity, column parity, C)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, h // 2, w // 2, 4 * c)


def depth_to_space(x):
    """[N, H, W, 4C] -> [N, 2H, 2W, C] (inverse of `space_to_depth`)."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, 2 * h, 2 * w, c // 4)


PATCH_MAX_IN_CHANNELS = 32


def conv_patches(x, kernel):
    """Stride-1 VALID conv as patch extraction + one dot (im2col): x [N, H, W, C], kernel
    [kh, kw, C, O] -> [N, H - kh + 1, W - kw + 1, O]. Patch channels are ordered (i, j, c), as
    in the kernel's reshape to [kh * kw * C, O]."""
    kh, kw, c, o = kernel.shape
    n, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    patches = jnp.concatenate([x[:, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw)],
                              axis=-1)
    return (patches.reshape(-1, kh * kw * c) @ kernel.reshape(kh * kw * c, o)).reshape(
        n, oh, ow, o)


def _conv1(x, kernel):
    """Stride-1 VALID conv: `conv_patches` when it has at most 32 input channels and at least as
    many outputs as inputs, else XLA's conv. Measured on an AVX2 CPU (`benchmarks/README.md`): in
    the cpu preset's world-model step that is the decoder's 13x13 -> 30x30 layer (a 3x3 conv of
    32 -> 64 channels in this form), and the step took 0.64-0.68 s instead of 0.81-1.00 s; the
    im2col form lost for the layers with more input or fewer output channels."""
    _, _, c, o = kernel.shape
    if c <= PATCH_MAX_IN_CHANNELS and o >= c:
        return conv_patches(x, kernel)
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)


def conv_stride2(x, kernel, lowering: str = "phase"):
    """k x k stride-2 VALID convolution. x: [N, H, W, C], kernel: [k, k, C, O] ->
    [N, (H - k) // 2 + 1, (W - k) // 2 + 1, O].

    'phase': output (a, b) reads input rows 2a + i, i < k. Writing i = 2q + p (p the parity),
    that is row a + q of space_to_depth(x) at parity p, so the conv is a stride-1 conv with
    kernel K'[q, r, (p, s, c)] = K[2q + p, 2r + s, c] (taps beyond k are zero).
    """
    if resolve_lowering(lowering) == "native":
        return lax.conv_general_dilated(x, kernel, (2, 2), "VALID", dimension_numbers=_DIMS)
    k, _, c, o = kernel.shape
    half = (k + 1) // 2
    n, h, w, _ = x.shape
    rows, cols = 2 * ((h - k) // 2 + half), 2 * ((w - k) // 2 + half)  # input extent used
    x = jnp.pad(x[:, :rows, :cols], ((0, 0), (0, max(rows - h, 0)), (0, max(cols - w, 0)),
                                     (0, 0)))
    padded = jnp.pad(kernel, ((0, 2 * half - k), (0, 2 * half - k), (0, 0), (0, 0)))
    regrouped = padded.reshape(half, 2, half, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
    return _conv1(space_to_depth(x), regrouped.reshape(half, half, 4 * c, o))


def _phase_taps(k: int) -> np.ndarray:
    """[half, 2] kernel tap of each (window offset u, output parity p) of the sub-pixel form, or
    k (a zero tap) where none: output 2a + p sums x[a - half + 1 + u] * K[2(u - half + 1) - p +
    k - 1], because `lax.conv_transpose` writes x[i] * K[j] to output 2i + k - 1 - j."""
    half = (k + 1) // 2
    taps = np.full((half, 2), k)
    for u in range(half):
        for p in range(2):
            j = 2 * (u - half + 1) - p + k - 1
            if 0 <= j < k:
                taps[u, p] = j
    return taps


def conv_transpose_stride2(x, kernel, lowering: str = "phase"):
    """k x k stride-2 VALID transposed convolution, as `flax.linen.ConvTranspose` (kernel not
    flipped). x: [N, H, W, C], kernel: [k, k, C, O] -> [N, 2(H - 1) + k, 2(W - 1) + k, O]."""
    if resolve_lowering(lowering) == "native":
        return lax.conv_transpose(x, kernel, (2, 2), "VALID", dimension_numbers=_DIMS)
    k, _, c, o = kernel.shape
    n, h, w, _ = x.shape
    if h == w == 1:  # each output pixel is x . K[k - 1 - a, k - 1 - b]: one matmul
        return jnp.einsum("nc,hwco->nhwo", x[:, 0, 0], kernel[::-1, ::-1])
    half = (k + 1) // 2
    taps = _phase_taps(k)
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    # [u, v, p, s, C, O] -> [u, v, C, (p, s, O)]: the four output phases as channels
    phases = padded[taps[:, None, :, None], taps[None, :, None, :]]
    phases = phases.transpose(0, 1, 4, 2, 3, 5).reshape(half, half, c, 4 * o)
    x = jnp.pad(x, ((0, 0), (half - 1, half - 1), (half - 1, half - 1), (0, 0)))
    return depth_to_space(_conv1(x, phases))[:, :2 * (h - 1) + k, :2 * (w - 1) + k]


class Conv2(nn.Module):
    """`flax.linen.Conv(features, (k, k), strides=2, padding='VALID')` with a chosen lowering
    (same parameters)."""
    features: int
    kernel_size: int
    lowering: str = "auto"
    transpose: bool = False   # True: `flax.linen.ConvTranspose` of the same arguments

    @nn.compact
    def __call__(self, x):
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        op = conv_transpose_stride2 if self.transpose else conv_stride2
        return op(x, kernel, self.lowering) + bias
