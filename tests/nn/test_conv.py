"""The 'phase' lowering of stride-2 convs equals the native convolution (values and gradients)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.nn import ConvDecoder, ConvEncoder, conv


def _grads(fn, x, kernel):
    loss = lambda x, k: jnp.sum(jnp.sin(fn(x, k)))  # a non-trivial cotangent
    return jax.value_and_grad(loss, argnums=(0, 1))(x, kernel)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


# the encoder's and decoder's layers (odd sizes crop a row) plus a 1x1 input and odd kernels
# (12, 4, 2, 16): a phase conv of 8 -> 16 channels, taken as im2col (`conv._conv1`)
@pytest.mark.parametrize("size,k,c,o", [(64, 4, 1, 3), (31, 4, 3, 5), (6, 4, 4, 2), (9, 3, 2, 3),
                                        (8, 5, 2, 2), (12, 4, 2, 16)])
def test_conv_stride2_phase_equals_native(size, k, c, o):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size + 1, c))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, c, o)) / k
    native = _grads(lambda x, w: conv.conv_stride2(x, w, "native"), x, kernel)
    phase = _grads(lambda x, w: conv.conv_stride2(x, w, "phase"), x, kernel)
    assert phase[0].shape == native[0].shape
    jax.tree.map(_close, phase, native)


@pytest.mark.parametrize("size,k,c,o", [(1, 5, 6, 3), (5, 5, 4, 3), (13, 6, 3, 2), (4, 6, 2, 1),
                                        (3, 3, 2, 2), (2, 4, 1, 2)])
def test_conv_transpose_stride2_phase_equals_native(size, k, c, o):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, c))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, c, o)) / k
    native = _grads(lambda x, w: conv.conv_transpose_stride2(x, w, "native"), x, kernel)
    phase = _grads(lambda x, w: conv.conv_transpose_stride2(x, w, "phase"), x, kernel)
    jax.tree.map(_close, phase, native)


def test_transpose_on_one_pixel_is_flipped_kernel():
    # a 1x1 input x = [1] writes x * K[j] to output 2 * 0 + k - 1 - j: the kernel flipped
    kernel = jnp.arange(9.0).reshape(3, 3, 1, 1)
    out = conv.conv_transpose_stride2(jnp.ones((1, 1, 1, 1)), kernel, "phase")
    np.testing.assert_array_equal(out[0, :, :, 0], kernel[::-1, ::-1, 0, 0])


def test_conv2_matches_flax_modules_and_parameters():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 13, 13, 3))
    for transpose, ref in ((False, nn.Conv(4, (4, 4), strides=(2, 2), padding="VALID")),
                           (True, nn.ConvTranspose(4, (6, 6), strides=(2, 2), padding="VALID"))):
        mine = conv.Conv2(4, 6 if transpose else 4, "phase", transpose=transpose)
        params = ref.init(jax.random.PRNGKey(2), x)
        mine_params = mine.init(jax.random.PRNGKey(2), x)
        # same names, shapes and initial values: checkpoints are interchangeable
        jax.tree.map(_close, mine_params, params)
        _close(mine.apply(params, x), ref.apply(params, x))


def test_dreamer_cnn_lowerings_agree():
    image = jax.random.randint(jax.random.PRNGKey(0), (2, 64, 64, 1), 0, 255).astype(jnp.uint8)
    enc = {lw: ConvEncoder(depth=4, lowering=lw) for lw in ("native", "phase")}
    params = enc["native"].init(jax.random.PRNGKey(1), image)
    feats = {lw: e.apply(params, image) for lw, e in enc.items()}
    _close(feats["phase"], feats["native"])
    dec = {lw: ConvDecoder(channels=1, depth=4, lowering=lw) for lw in ("native", "phase")}
    dparams = dec["native"].init(jax.random.PRNGKey(2), feats["native"])
    outs = {lw: d.apply(dparams, feats["native"]) for lw, d in dec.items()}
    assert outs["phase"].shape == (2, 64, 64, 1)
    _close(outs["phase"], outs["native"])


def test_bad_lowering_names_allowed_values():
    with pytest.raises(ValueError, match=r"conv_lowering='im2col' is not one of \('auto'"):
        conv.resolve_lowering("im2col")


def test_conv_patches_equals_the_stride1_conv():
    # values and gradients of the im2col form vs XLA's conv, non-square kernel and input
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 3, 4))
    native = _grads(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")), x, kernel)
    patches = _grads(conv.conv_patches, x, kernel)
    assert patches[0].shape == native[0].shape
    jax.tree.map(_close, patches, native)
    # by hand: a 2x2 all-ones kernel on x[h, w] = 10 h + w sums a 2x2 window; at (0, 0) that is
    # 0 + 1 + 10 + 11 = 22, at (1, 1) 11 + 12 + 21 + 22 = 66
    grid = (10.0 * jnp.arange(3)[:, None] + jnp.arange(3)[None, :])[None, :, :, None]
    out = conv.conv_patches(grid, jnp.ones((2, 2, 1, 1)))
    assert out.shape == (1, 2, 2, 1)
    assert float(out[0, 0, 0, 0]) == 22.0 and float(out[0, 1, 1, 0]) == 66.0
