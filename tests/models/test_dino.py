"""DINOv2 checkpoint loading/export and DINO self-distillation (loss, schedules, train_step)."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import dino
from jaxwm.models import dinov2_loader as loader
from jaxwm.models.dinov2_loader import CheckpointError
from jaxwm.nn.vit import ViT, resize_pos_embed

# a tiny DINOv2-reg layout: LayerScale, 2 registers, 2 x 2 patch grid
VIT = ViT(image_size=16, patch_size=8, dim=16, depth=2, heads=2, layer_scale=1e-5,
          num_registers=2)


def _params(vit, seed=0):
    """Params of `vit` with random values everywhere (LayerScale gammas and norms are constant
    at init); numpy draws, so no compile."""
    x = jnp.zeros((1, vit.image_size, vit.image_size, 3))
    shapes = jax.eval_shape(vit.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), jnp.float32), shapes)


@pytest.fixture(scope="module")
def params():
    return _params(VIT)


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory, params):
    path = str(tmp_path_factory.mktemp("ckpt") / "vit.npz")
    loader.save_dinov2_layout(path, params, VIT)
    return path


def _write_npz(path, tensors):
    np.savez(path, **tensors)
    return str(path)


# ------------------------------------------------------------------------------------------------
# Loader
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_loader_round_trip(tmp_path, params, ext):
    path = str(tmp_path / f"vit.{ext}")
    loader.save_dinov2_layout(path, params, VIT)
    loaded = loader.load_dinov2(path, VIT)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 16, 16, 3))
    apply = jax.jit(VIT.apply)
    jax.tree.map(np.testing.assert_array_equal, apply(loaded, x), apply(params, x))


def test_every_param_is_mapped_with_official_names_and_layouts(params, npz_path):
    tensors = loader.read_checkpoint(npz_path)
    assert len(tensors) == len(jax.tree.leaves(params)) == len(loader.dinov2_names(VIT))
    d = VIT.dim
    assert tensors["cls_token"].shape == (1, 1, d)
    assert tensors["pos_embed"].shape == (1, 1 + 4, d)
    assert tensors["register_tokens"].shape == (1, 2, d)
    assert tensors["patch_embed.proj.weight"].shape == (d, 3, 8, 8)
    assert tensors["blocks.1.attn.qkv.weight"].shape == (3 * d, d)
    assert tensors["blocks.1.mlp.fc1.weight"].shape == (4 * d, d)
    assert tensors["blocks.0.ls2.gamma"].shape == (d,)
    assert tensors["norm.weight"].shape == (d,)
    p = params["params"]
    # torch Linear [out, in] is the Flax kernel transposed; conv [O, I, kh, kw] -> [kh, kw, I, O]
    np.testing.assert_array_equal(tensors["blocks.1.attn.qkv.weight"],
                                  p["blocks_1"]["attn_qkv"]["kernel"].T)
    np.testing.assert_array_equal(tensors["patch_embed.proj.weight"][5, 2, 1, 7],
                                  p["patch_embed"]["kernel"][1, 7, 2, 5])
    # a DINOv2 file also holds mask_token (ignored), and training checkpoints chunk the blocks
    chunked = {k.replace("blocks.1.", "blocks.1.1.").replace("blocks.0.", "blocks.0.0."): v
               for k, v in tensors.items()}
    chunked["mask_token"] = np.zeros((1, d), np.float32)
    loaded = loader.from_dinov2_layout(chunked, VIT)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_safetensors_reader_half_and_bfloat16(tmp_path):
    values = np.array([[1.5, -2.0], [0.15625, 3.0]], np.float32)   # exact in f16 and bf16
    bf16 = (values.view("<u4") >> 16).astype("<u2").tobytes()
    f16 = values.astype("<f2").tobytes()
    header = {"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
              "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]},
              "__metadata__": {"format": "pt"}}
    raw = json.dumps(header).encode()
    path = tmp_path / "half.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bf16 + f16)
    tensors = loader.read_safetensors(str(path))
    assert tensors["a"].dtype == np.float32
    np.testing.assert_array_equal(tensors["a"], values)
    np.testing.assert_array_equal(tensors["b"].astype(np.float32), values)
    header["b"]["data_offsets"] = [8, 18]
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bf16 + f16)
    with pytest.raises(CheckpointError, match=r"'b'.*data offsets"):
        loader.read_safetensors(str(path))


def test_missing_key_is_named(tmp_path, npz_path):
    tensors = loader.read_checkpoint(npz_path)
    del tensors["blocks.1.mlp.fc2.bias"]
    path = _write_npz(tmp_path / "missing.npz", tensors)
    with pytest.raises(CheckpointError, match=r"missing key 'blocks.1.mlp.fc2.bias'"):
        loader.load_dinov2(path, VIT)


def test_misshaped_tensor_names_key_and_both_shapes(tmp_path, npz_path):
    tensors = loader.read_checkpoint(npz_path)
    tensors["blocks.0.mlp.fc1.weight"] = np.zeros((32, 16), np.float32)   # expected (64, 16)
    path = _write_npz(tmp_path / "bad.npz", tensors)
    with pytest.raises(ValueError, match=r"'blocks.0.mlp.fc1.weight' has shape \(32, 16\) but "
                                         r"\(64, 16\) was expected"):
        loader.load_dinov2(path, VIT)


def test_extra_block_patch_size_and_width_mismatches(tmp_path):
    deeper = VIT.clone(depth=3)
    path = str(tmp_path / "deep.safetensors")
    loader.save_dinov2_layout(path, _params(deeper), deeper)
    with pytest.raises(CheckpointError, match=r"unexpected key 'blocks.2.*3 blocks, vit.depth=2"):
        loader.load_dinov2(path, VIT)
    with pytest.raises(CheckpointError, match=r"patch size is 8x8 .* vit.patch_size=4"):
        loader.load_dinov2(path, deeper.clone(patch_size=4))
    with pytest.raises(CheckpointError, match=r"width is 16 .* vit.dim=32"):
        loader.load_dinov2(path, deeper.clone(dim=32))
    with pytest.raises(ValueError, match=r"extension '.pt' is not one of"):
        loader.load_dinov2(str(tmp_path / "x.pt"), VIT)


def test_pos_embed_of_another_grid_is_resized(tmp_path, params, npz_path):
    big = VIT.clone(image_size=32)                    # 4 x 4 grid; the file has 2 x 2
    loaded = loader.load_dinov2(npz_path, big)["params"]
    src = params["params"]["pos_embed"]
    assert loaded["pos_embed"].shape == (1, 1 + 16, VIT.dim)
    np.testing.assert_array_equal(loaded["pos_embed"][:, 0], src[:, 0])
    np.testing.assert_allclose(loaded["pos_embed"], resize_pos_embed(src, (4, 4)), atol=1e-6)
    np.testing.assert_array_equal(loaded["blocks_1"]["mlp_fc2"]["kernel"],
                                  params["params"]["blocks_1"]["mlp_fc2"]["kernel"])
    out = jax.eval_shape(big.apply, {"params": loaded}, jnp.zeros((1, 32, 32, 3)))
    assert out["patches"].shape == (1, 16, VIT.dim)


# ------------------------------------------------------------------------------------------------
# DINO maths
# ------------------------------------------------------------------------------------------------
def test_dino_loss_hand_worked():
    # K = 2, B = 1, 2 teacher views, 3 student views; teacher_temp 0.5, student_temp 0.1.
    # Teacher (t - c) / 0.5 with c = [0.5, 0.5]: T0 = [1, 0.5] -> [1, 0], P0 = [s, 1 - s] with
    # s = sigmoid(1) = 0.731059; T1 = [0.5, 0.5] -> [0, 0], P1 = [1/2, 1/2].
    # Student s / 0.1: S0 -> [ln 3, 0], log Q0 = [ln 3/4, ln 1/4]; S1 -> [0, 0], log Q1 =
    # [ln 1/2, ln 1/2]; S2 -> [0, ln 3], log Q2 = [ln 1/4, ln 3/4].
    # Pairs i != j: CE(P0, Q1) = ln 2 = 0.693147
    #               CE(P0, Q2) = s ln 4 + (1 - s) ln 4/3 = 1.013462 + 0.077370 = 1.090832
    #               CE(P1, Q0) = CE(P1, Q2) = (ln 4 + ln 4/3) / 2 = 0.836988
    # mean = (0.693147 + 1.090832 + 2 * 0.836988) / 4 = 0.864489
    teacher = jnp.array([[[1.0, 0.5]], [[0.5, 0.5]]])
    ln3 = math.log(3.0)
    student = 0.1 * jnp.array([[[ln3, 0.0]], [[0.0, 0.0]], [[0.0, ln3]]])
    s = 1.0 / (1.0 + math.exp(-1.0))
    ce_01 = math.log(2.0)
    ce_02 = s * math.log(4.0) + (1 - s) * math.log(4 / 3)
    ce_1x = (math.log(4.0) + math.log(4 / 3)) / 2
    expected = (ce_01 + ce_02 + 2 * ce_1x) / 4
    assert abs(expected - 0.864489) < 1e-6
    loss = dino.dino_loss(student, teacher, jnp.array([0.5, 0.5]), 0.1, 0.5)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(dino.dino_loss)(student, teacher, jnp.array([0.5, 0.5]),
                                                       0.1, 0.5), expected, rtol=1e-6)
    # no gradient flows into the teacher
    g = jax.grad(dino.dino_loss, argnums=1)(student, teacher, jnp.zeros(2), 0.1, 0.5)
    np.testing.assert_array_equal(g, 0.0)


def test_sinkhorn_targets_hand_worked():
    # Balanced case: exp(x) = [[2, 1], [1, 2]] has equal row and column sums, so Sinkhorn
    # only normalizes each output: [[2/3, 1/3], [1/3, 2/3]].
    x = jnp.log(jnp.array([[[2.0, 1.0], [1.0, 2.0]]]))
    np.testing.assert_allclose(dino.sinkhorn_targets(x, 1.0), [[[2 / 3, 1 / 3], [1 / 3, 2 / 3]]],
                               rtol=1e-6)
    # Identical outputs exp(x) = [[3, 1], [3, 1]]: equipartition over the 2 prototypes makes
    # both targets uniform (plain softmax would give [3/4, 1/4] to both).
    x = jnp.log(jnp.array([[[3.0, 1.0], [3.0, 1.0]]]))
    np.testing.assert_allclose(dino.sinkhorn_targets(x, 1.0), 0.5, rtol=1e-6)
    # Rows are distributions; the prototypes' total mass is equal (N / K each).
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 4))
    q = dino.sinkhorn_targets(x, 0.5, iterations=20)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(q.reshape(16, 4).sum(0), 4.0, rtol=1e-3)


def test_ema_and_teacher_temperature_schedules():
    c = dino.default_config()
    c.steps, c.ema_start = 100, 0.996
    np.testing.assert_allclose(dino.ema_momentum(c, 0), 0.996, rtol=1e-7)
    np.testing.assert_allclose(dino.ema_momentum(c, 50), 0.998, rtol=1e-7)   # cosine midpoint
    np.testing.assert_allclose(dino.ema_momentum(c, 100), 1.0, rtol=1e-7)
    np.testing.assert_allclose(dino.ema_momentum(c, 500), 1.0, rtol=1e-7)
    c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_steps = 0.04, 0.07, 10
    np.testing.assert_allclose(dino.teacher_temperature(c, 0), 0.04, rtol=1e-6)
    np.testing.assert_allclose(dino.teacher_temperature(c, 5), 0.055, rtol=1e-6)
    np.testing.assert_allclose(dino.teacher_temperature(c, 20), 0.07, rtol=1e-6)


def test_random_resized_crop_full_area_is_identity_and_views_have_sizes():
    image = jax.random.uniform(jax.random.PRNGKey(0), (8, 8, 3))
    crop = jax.jit(dino.random_resized_crop, static_argnums=(2, 3, 4))(
        jax.random.PRNGKey(1), image, 8, (1.0, 1.0), (1.0, 1.0))
    np.testing.assert_allclose(crop, image, atol=1e-6)
    c = _tiny_config()
    images = jax.random.randint(jax.random.PRNGKey(2), (3, 24, 20, 3), 0, 256).astype(jnp.uint8)
    glob, loc = jax.eval_shape(lambda k, x: dino.multi_crop(k, x, c, TINY), jax.random.PRNGKey(3),
                               images)
    assert glob.shape == (2, 3, 16, 16, 3) and loc.shape == (2, 3, 8, 8, 3)


def test_config_errors_name_the_field():
    c = _tiny_config()
    c.local_crop_size = 0.3                              # 4.8 px of 16
    with pytest.raises(ValueError, match=r"dino.local_crop_size=0.3 gives 4.8 px .* multiple of "
                                         r"vit.patch_size=8"):
        dino.check_config(c, TINY)
    c = _tiny_config()
    c.global_crop_scale = (0.5, 0.2)
    with pytest.raises(ValueError, match=r"dino.global_crop_scale=\(0.5, 0.2\)"):
        dino.check_config(c, TINY)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
TINY = ViT(image_size=16, patch_size=8, dim=16, depth=1, heads=2)


def _tiny_config():
    c = dino.default_config()
    c.out_dim, c.head_hidden, c.head_bottleneck = 32, 32, 16
    c.local_crops, c.local_crop_size = 2, 0.5            # 8-px local crops: one patch
    c.steps, c.batch_size, c.lr = 10, 4, 1e-3
    return c


@pytest.mark.slow   # the EMA-centering path (not the default); `make test-slow` runs it
def test_train_steps_ema_center_and_finite_loss():
    c = _tiny_config()
    state = dino.init(jax.random.PRNGKey(0), c, TINY)
    jax.tree.map(np.testing.assert_array_equal, state.teacher, state.student)
    step = dino.make_train_step(c, TINY, donate=False)
    images = jax.random.randint(jax.random.PRNGKey(1), (4, 20, 20, 3), 0, 256).astype(jnp.uint8)

    new, metrics = step(state, images, jax.random.PRNGKey(2))
    # teacher_1 = m_0 teacher_0 + (1 - m_0) student_1, with teacher_0 == student_0
    m0 = float(dino.ema_momentum(c, 0))
    jax.tree.map(lambda t, t0, s1: np.testing.assert_allclose(t, m0 * t0 + (1 - m0) * s1,
                                                              rtol=1e-5, atol=1e-7),
                 new.teacher, state.teacher, new.student)
    np.testing.assert_allclose(metrics["momentum"], m0, rtol=1e-7)
    assert int(new.step) == 1
    # The iBOT patch loss trains the mask token (zero at init) through the masked patches.
    assert float(jnp.abs(new.student["mask_token"]).max()) > 0.0
    assert np.isfinite(float(metrics["loss"]))

    for i in range(2):
        new, metrics = step(new, images, jax.random.PRNGKey(3 + i))
        assert np.isfinite(float(metrics["loss"]))
    assert set(metrics) >= {"loss", "teacher_entropy", "teacher_kl_uniform"}
    assert 0.0 <= float(metrics["teacher_entropy"]) <= math.log(c.out_dim) + 1e-4
    assert float(jnp.abs(new.center).max()) > 0.0        # the center moved from zero
    diffs = jax.tree.leaves(jax.tree.map(lambda t, s: float(jnp.abs(t - s).max()),
                                         new.teacher, new.student))
    assert max(diffs) > 1e-6                              # the teacher lags the student
    backbone = dino.teacher_backbone(new)
    assert jax.tree.structure(backbone) == jax.tree.structure(state.student["backbone"])
