"""ViT: shapes, attention masks, position-embedding resizing, preprocessing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.nn import vit as vit_lib
from jaxwm.nn.vit import TransformerBlock, ViT, preprocess, resize_pos_embed


def _images(key, n, size):
    return jax.random.normal(jax.random.PRNGKey(key), (n, size, size, 3))


def _init(module, *args):
    """Random params of `module` from numpy (std 0.5): no compile of the initializers."""
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), jnp.float32),
                        shapes)


def _apply(module, params, *args):
    return jax.jit(module.apply)(params, *args)   # one compile instead of many eager ops


@pytest.mark.parametrize("registers", [0, 3])
def test_vit_output_shapes(registers):
    vit = ViT(image_size=32, patch_size=8, dim=32, depth=2, heads=4, layer_scale=1e-5,
              num_registers=registers)
    x = _images(0, 2, 32)
    params = jax.eval_shape(vit.init, jax.random.PRNGKey(1), x)   # shapes only: no compile
    out = jax.eval_shape(vit.apply, params, x)
    assert out["cls"].shape == (2, 32)
    assert out["patches"].shape == (2, vit.num_patches, 32) == (2, 16, 32)
    assert params["params"]["pos_embed"].shape == (1, 17, 32)   # no positions for registers
    if registers:
        assert params["params"]["register_tokens"].shape == (1, registers, 32)
    else:
        assert "register_tokens" not in params["params"]
    # extra leading axes are flattened and restored
    out = jax.eval_shape(vit.apply, params, x.reshape(1, 2, 32, 32, 3))
    assert out["patches"].shape == (1, 2, 16, 32)


def test_vit_registers_change_outputs_but_not_parameters_of_blocks():
    x = _images(0, 2, 16)
    plain = ViT(16, 8, 16, 1, 2)
    regs = ViT(16, 8, 16, 1, 2, num_registers=2)
    params = _init(regs, x)
    no_reg = {"params": {k: v for k, v in params["params"].items() if k != "register_tokens"}}
    a, b = _apply(plain, no_reg, x), _apply(regs, params, x)
    assert a["patches"].shape == b["patches"].shape
    assert not np.allclose(a["cls"], b["cls"])   # registers are attended to


def test_block_causal_mask_blocks_information_flow():
    length, j = 5, 2
    block = TransformerBlock(dim=16, heads=2, layer_scale=0.5)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, length, 16))
    mask = jnp.tril(jnp.ones((length, length), bool))   # query i sees keys <= i
    params = _init(block, x, mask)
    x2 = x.at[:, j].add(jax.random.normal(jax.random.PRNGKey(2), (16,)))  # not a constant: LN
    apply = jax.jit(block.apply)
    y, y2 = apply(params, x, mask), apply(params, x2, mask)
    np.testing.assert_array_equal(y[:, :j], y2[:, :j])             # cannot see token j
    changed = np.abs(np.asarray(y2 - y)).max(axis=(0, 2))
    assert np.all(changed[j:] > 1e-4)                               # can see it
    # an all-True mask equals no mask, a [B, L, L] mask equals the broadcast [L, L] one
    full = jnp.ones((length, length), bool)
    np.testing.assert_allclose(apply(params, x, full), _apply(block, params, x),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(apply(params, x, jnp.broadcast_to(mask, (2, 5, 5))), y)
    with pytest.raises(ValueError, match=r"mask must be bool \[L, L\].*L=5.*\(4, 4\)"):
        block.apply(params, x, mask[:4, :4])


def test_block_without_layer_scale_has_no_gamma():
    block = TransformerBlock(dim=8, heads=2)
    params = jax.eval_shape(block.init, jax.random.PRNGKey(0), jnp.zeros((1, 3, 8)))["params"]
    assert sorted(params) == ["attn_proj", "attn_qkv", "mlp_fc1", "mlp_fc2", "norm1", "norm2"]
    assert params["mlp_fc1"]["kernel"].shape == (8, 32)


def test_pos_embed_resize_at_smaller_input():
    big = ViT(image_size=32, patch_size=8, dim=16, depth=1, heads=2)
    params = _init(big, _images(0, 1, 32))
    small_x = _images(1, 2, 16)
    out = _apply(big, params, small_x)                                # 2 x 2 grid of a 4 x 4 model
    assert out["patches"].shape == (2, 4, 16)
    # the same as a 16-px model holding the resized embedding
    small = ViT(image_size=16, patch_size=8, dim=16, depth=1, heads=2)
    resized = dict(params["params"], pos_embed=resize_pos_embed(params["params"]["pos_embed"],
                                                                (2, 2)))
    ref = _apply(small, {"params": resized}, small_x)
    np.testing.assert_allclose(out["patches"], ref["patches"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["cls"], ref["cls"], rtol=1e-6, atol=1e-6)
    # full size: the plain path; the bicubic resize at scale 1 is the identity
    pos = params["params"]["pos_embed"]
    assert resize_pos_embed(pos, (4, 4)) is pos
    same = jax.image.resize(pos[0, 1:].reshape(4, 4, 16), (4, 4, 16), "bicubic-pytorch",
                            antialias=False)
    np.testing.assert_allclose(same.reshape(16, 16), pos[0, 1:], atol=1e-6)
    # a smaller grid keeps the cls position and changes the patch positions
    small_pos = resize_pos_embed(pos, (2, 3))
    assert small_pos.shape == (1, 7, 16)
    np.testing.assert_array_equal(small_pos[:, 0], pos[:, 0])


def test_vit_rejects_sizes_off_the_patch_grid():
    vit = ViT(16, 8, 32, 1, 4)
    params = jax.eval_shape(vit.init, jax.random.PRNGKey(0), _images(0, 1, 16))
    with pytest.raises(ValueError, match=r"image size 12x12 is not a multiple of patch_size=8"):
        jax.eval_shape(vit.apply, params, _images(0, 1, 12))
    with pytest.raises(ValueError, match=r"ViT.dim=30 is not divisible by ViT.heads=4"):
        jax.eval_shape(ViT(16, 8, 30, 1, 4).init, jax.random.PRNGKey(0), _images(0, 1, 16))


def test_preprocess_and_sizes():
    images = jnp.array([[[[0, 255, 124]]]], jnp.uint8)            # [1, 1, 1, 3]
    out = preprocess(images)
    assert out.dtype == jnp.float32
    expected = (np.array([0, 1, 124 / 255]) - np.array(vit_lib.IMAGENET_MEAN)) / np.array(
        vit_lib.IMAGENET_STD)
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)
    assert vit_lib.vit_config("small") == dict(dim=384, depth=12, heads=6)
    with pytest.raises(ValueError, match=r"vit size='huge' is not one of"):
        vit_lib.vit_config("huge")


def test_patch_mask_replaces_patch_embeddings():
    # Two images that differ only inside patch 0 give identical outputs once patch 0 is
    # masked (both see the mask token there), and different outputs unmasked.
    vit = ViT(image_size=16, patch_size=8, dim=16, depth=1, heads=2)
    x = _images(0, 1, 16)
    y = x.at[:, :8, :8].add(1.0)
    params = _init(vit, x)
    token = jnp.full((16,), 0.3)
    mask = jnp.array([[True, False, False, False]])
    fx = _apply(vit, params, x, mask, token)
    fy = _apply(vit, params, y, mask, token)
    np.testing.assert_allclose(fx["patches"], fy["patches"], atol=1e-6)
    assert np.abs(_apply(vit, params, x)["patches"] - _apply(vit, params, y)["patches"]).max() > 1e-3
