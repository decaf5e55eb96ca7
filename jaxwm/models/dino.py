"""DINO self-distillation: pretrain a ViT on unlabeled frames (the DINO-WM encoder, offline).

Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO,
ICCV 2021), Alg. 1 and Sec. 3.1; used here to pretrain the encoder of DINO-WM (Zhou et al.,
"DINO-WM: World Models on Pre-trained Visual Features enable Zero-shot Planning", 2024) when
DINOv2 weights are not available (those load with `jaxwm.models.dinov2_loader`).

A student g_s (ViT + DINO head) and a teacher g_t of the same architecture see multi-crop views
of each image: `global_crops` crops at the ViT's image_size go to both, `local_crops` smaller
crops to the student only. With P_t = softmax((g_t(x) - c) / tau_t) (centered, sharpened,
stop-gradient) and log P_s = log_softmax(g_s(x') / tau_s), the loss (Eq. 3) averages the
cross-entropy -P_t . log P_s over all pairs of a teacher (global) view and a different student
view. The teacher is an EMA of the student, theta_t <- m theta_t + (1 - m) theta_s, m following a
cosine from `ema_start` to 1; the center c is an EMA (`center_momentum`) of the teacher's batch
mean output (Eq. 4). Downstream, the teacher's backbone is the encoder (`teacher_backbone`).

Deviations from the paper, all for small models on CPU: smaller head (`out_dim`, `head_hidden`,
`head_bottleneck`), fewer local crops, constant weight decay (the paper ramps 0.04 -> 0.4), no
frozen last layer in the first epoch, no stochastic depth. Augmentations: see `augment_view`.
"""
import functools
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxwm.nn.vit import IMAGENET_MEAN, IMAGENET_STD, ViT

sg = jax.lax.stop_gradient
CENTERINGS = ("center", "sinkhorn")


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
def default_config() -> ml_collections.ConfigDict:
    """DINO defaults scaled for small encoders (the paper's values in the comments)."""
    c = ml_collections.ConfigDict()
    c.out_dim = 256                    # K: prototypes of the head output (paper 65536)
    c.head_hidden = 256                # hidden width of the head MLP (paper 2048)
    c.head_bottleneck = 64             # bottleneck before the weight-normed layer (paper 256)
    c.head_layers = 3                  # Dense layers of the head MLP incl. the bottleneck (paper 3)
    c.norm_last_layer = True           # weight-norm gain fixed to 1 (paper default True)
    c.student_temp = 0.1               # tau_s (paper 0.1)
    c.teacher_temp = 0.04              # tau_t after warmup (paper 0.04 .. 0.07)
    c.warmup_teacher_temp = 0.04       # tau_t at step 0, linear to teacher_temp (paper 0.04)
    c.warmup_teacher_temp_steps = 0    # steps of the tau_t warmup (paper 30 epochs)
    c.centering = "sinkhorn"           # teacher targets: 'center' (DINO: EMA center, Eq. 4) or
                                       #   'sinkhorn' (DINOv2's Sinkhorn-Knopp; DINO's center
                                       #   collapses to uniform on near-identical frames)
    c.center_momentum = 0.9            # m of the center EMA (paper 0.9)
    c.patch_loss_weight = 1.0          # iBOT masked-patch loss of DINOv2 (0: DINO only); keeps
                                       #   patch features local, which DINO-WM plans on
    c.mask_ratio = (0.1, 0.5)          # per-view masked fraction of the student's global views
    c.ema_start = 0.996                # teacher momentum at step 0, cosine to 1.0 at `steps`
    c.global_crops = 2                 # global views, at the ViT's image_size (paper 2)
    c.global_crop_scale = (0.4, 1.0)   # area fraction of global crops (paper (0.4, 1.0))
    c.local_crops = 4                  # local views, student only (paper 8 or 10)
    c.local_crop_scale = (0.05, 0.4)   # area fraction of local crops (paper (0.05, 0.4))
    c.local_crop_size = 0.5            # local crop side / image_size (paper 96/224); the pixel
                                       #   size must be a multiple of the patch size
    c.crop_ratio = (3 / 4, 4 / 3)      # aspect-ratio range of the random resized crops
    c.flip_prob = 0.5                  # horizontal flip probability (paper 0.5)
    c.jitter_prob = 0.8                # probability of brightness/contrast jitter (paper 0.8)
    c.brightness = 0.4                 # brightness factor range 1 +- brightness (paper 0.4)
    c.contrast = 0.4                   # contrast factor range 1 +- contrast (paper 0.4)
    c.lr = 5e-4                        # peak AdamW learning rate (paper 5e-4 * batch / 256)
    c.min_lr = 1e-6                    # learning rate at the end of the cosine (paper 1e-6)
    c.warmup_steps = 0                 # linear learning-rate warmup steps (paper 10 epochs)
    c.weight_decay = 0.04              # AdamW decay of matrices, not biases/norms (paper 0.04)
    c.grad_clip = 3.0                  # global-norm gradient clip (paper 3.0)
    c.steps = 1000                     # training steps: cosine horizon of lr and momentum
    c.batch_size = 64                  # images per step for the data pipeline (paper 1024);
                                       #   train_step takes any batch B
    return c


def _positive(name, value, integer):
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"dino.{name}={value!r} must be a positive "
                         f"{'int' if integer else 'number'}")


def _interval(name, value, low, high):
    if len(value) != 2 or not low <= value[0] <= value[1] <= high or value[0] <= 0:
        raise ValueError(f"dino.{name}={tuple(value)!r} must be (a, b) with {low} < a <= b <= "
                         f"{high}")


def local_crop_pixels(config: ml_collections.ConfigDict, vit: ViT) -> int:
    """Side of the local crops in pixels: local_crop_size * vit.image_size, validated to be an
    integer multiple of vit.patch_size."""
    pixels = config.local_crop_size * vit.image_size
    rounded = int(round(pixels))
    if abs(pixels - rounded) > 1e-6 or rounded <= 0 or rounded % vit.patch_size:
        raise ValueError(f"dino.local_crop_size={config.local_crop_size!r} gives "
                         f"{pixels:g} px of vit.image_size={vit.image_size}: it must be a "
                         f"positive multiple of vit.patch_size={vit.patch_size} (e.g. "
                         f"{vit.patch_size * max(1, vit.grid_size // 2) / vit.image_size:g})")
    return rounded


def check_config(config: ml_collections.ConfigDict, vit: ViT) -> None:
    """Raises ValueError naming the bad field of a DINO config and what it must be."""
    for name in ("out_dim", "head_hidden", "head_bottleneck", "head_layers", "global_crops",
                 "steps", "batch_size"):
        _positive(name, config[name], integer=True)
    for name in ("student_temp", "teacher_temp", "warmup_teacher_temp", "lr", "grad_clip"):
        _positive(name, config[name], integer=False)
    if config.centering not in CENTERINGS:
        raise ValueError(f"dino.centering={config.centering!r} is not one of {CENTERINGS}")
    if config.head_layers < 2:
        raise ValueError(f"dino.head_layers={config.head_layers!r} must be >= 2 (hidden + "
                         f"bottleneck)")
    if config.global_crops < 2:
        raise ValueError(f"dino.global_crops={config.global_crops!r} must be >= 2 (each teacher "
                         f"view is compared with the other views)")
    for name in ("local_crops", "warmup_teacher_temp_steps", "warmup_steps"):
        if isinstance(config[name], bool) or not isinstance(config[name], int) or config[name] < 0:
            raise ValueError(f"dino.{name}={config[name]!r} must be an int >= 0")
    for name in ("center_momentum", "ema_start", "flip_prob", "jitter_prob"):
        if not 0.0 <= config[name] <= 1.0:
            raise ValueError(f"dino.{name}={config[name]!r} must be in [0, 1]")
    for name in ("brightness", "contrast"):
        if not 0.0 <= config[name] < 1.0:
            raise ValueError(f"dino.{name}={config[name]!r} must be in [0, 1)")
    for name in ("min_lr", "weight_decay"):
        if config[name] < 0:
            raise ValueError(f"dino.{name}={config[name]!r} must be >= 0")
    _interval("global_crop_scale", config.global_crop_scale, 0.0, 1.0)
    _interval("local_crop_scale", config.local_crop_scale, 0.0, 1.0)
    _interval("crop_ratio", config.crop_ratio, 0.0, float("inf"))
    if config.local_crops:
        local_crop_pixels(config, vit)


# ------------------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------------------
def ema_momentum(config: ml_collections.ConfigDict, step) -> jax.Array:
    """Teacher momentum m at `step`: 1 - (1 - ema_start) (cos(pi step / steps) + 1) / 2, from
    ema_start at step 0 to 1.0 at config.steps (held after)."""
    frac = jnp.minimum(jnp.asarray(step, jnp.float32) / config.steps, 1.0)
    return 1.0 - (1.0 - config.ema_start) * (jnp.cos(jnp.pi * frac) + 1.0) / 2.0


def teacher_temperature(config: ml_collections.ConfigDict, step) -> jax.Array:
    """tau_t at `step`: linear from warmup_teacher_temp to teacher_temp over
    warmup_teacher_temp_steps, then constant."""
    if config.warmup_teacher_temp_steps == 0:
        return jnp.asarray(config.teacher_temp, jnp.float32)
    frac = jnp.minimum(jnp.asarray(step, jnp.float32) / config.warmup_teacher_temp_steps, 1.0)
    return config.warmup_teacher_temp + frac * (config.teacher_temp - config.warmup_teacher_temp)


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to lr over warmup_steps, then cosine decay to min_lr at steps."""
    return optax.warmup_cosine_decay_schedule(
        0.0 if config.warmup_steps else config.lr, config.lr, config.warmup_steps,
        max(config.steps, config.warmup_steps + 1), config.min_lr)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clip, then AdamW with the `learning_rate` schedule; weight decay on params of
    rank >= 2 only (DINO exempts biases and norm scales)."""
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(learning_rate(config), weight_decay=config.weight_decay, mask=decay_mask))


# ------------------------------------------------------------------------------------------------
# Loss (Eq. 3)
# ------------------------------------------------------------------------------------------------
def dino_loss(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array,
              student_temp: float, teacher_temp) -> jax.Array:
    """DINO's multi-crop cross-entropy.

    student_logits: [V_s, B, K] (the first V_t views are the teacher's views, in order);
    teacher_logits: [V_t, B, K]; center: [K] -> scalar: the mean over pairs (i, j), i < V_t,
    j < V_s, i != j, of mean_b -sum_k softmax((t_i - center) / teacher_temp)_k
    log_softmax(s_j / student_temp)_k. The teacher side is stop-gradient.
    """
    chex.assert_rank([student_logits, teacher_logits, center], [3, 3, 1])
    v_t, v_s = teacher_logits.shape[0], student_logits.shape[0]
    chex.assert_equal_shape_suffix([student_logits, teacher_logits], 2)
    if v_s < v_t:
        raise ValueError(f"dino_loss: {v_s} student views < {v_t} teacher views")
    targets = jax.nn.softmax((teacher_logits - center) / teacher_temp, axis=-1)
    return distillation_loss(student_logits, targets, student_temp)


def distillation_loss(student_logits: jax.Array, targets: jax.Array, student_temp: float
                      ) -> jax.Array:
    """Mean over view pairs (i, j), i != j, of mean_b -sum_k targets[i, b, k]
    log_softmax(s_j / student_temp)_k. student_logits [V_s, B, K], targets [V_t, B, K]
    (probabilities, stop-gradient) -> scalar."""
    chex.assert_rank([student_logits, targets], [3, 3])
    v_t, v_s = targets.shape[0], student_logits.shape[0]
    log_probs = jax.nn.log_softmax(student_logits / student_temp, axis=-1)
    ce = -jnp.einsum("tbk,sbk->tsb", sg(targets), log_probs).mean(-1)     # [V_t, V_s]
    pairs = 1.0 - jnp.eye(v_t, v_s)
    return jnp.sum(ce * pairs) / jnp.sum(pairs)


def sinkhorn_targets(teacher_logits: jax.Array, teacher_temp, iterations: int = 3
                     ) -> jax.Array:
    """DINOv2's Sinkhorn-Knopp centering (Oquab et al. 2023, after SwAV, Caron et al. 2020):
    Q = exp(t / tau_t) over all N = V_t * B teacher outputs, rescaled alternately so that every
    prototype holds 1/K of the mass and every output 1/N, then each output's row is returned as
    its target distribution. teacher_logits [V_t, B, K] -> probabilities [V_t, B, K].

    Unlike the EMA center, the equipartition keeps targets apart when all outputs are alike
    (near-identical frames of one simulated scene), where centering collapses to uniform."""
    chex.assert_rank(teacher_logits, 3)
    shape = teacher_logits.shape
    n, k = shape[0] * shape[1], shape[2]
    x = teacher_logits.reshape(n, k) / teacher_temp
    q = jnp.exp(x - x.max())
    q = q / q.sum()
    for _ in range(iterations):
        q = q / (q.sum(0, keepdims=True) * k)    # each prototype: 1/K
        q = q / (q.sum(1, keepdims=True) * n)    # each output: 1/N
    return (q * n).reshape(shape)


# ------------------------------------------------------------------------------------------------
# Augmentations (per image, jittable)
# ------------------------------------------------------------------------------------------------
def random_resized_crop(key: jax.Array, image: jax.Array, size: int,
                        scale: tuple[float, float], ratio: tuple[float, float]) -> jax.Array:
    """A random crop of area fraction ~ U(scale) and aspect ratio w/h log-uniform in `ratio`,
    clipped to the image, resized (bilinear, antialiased) to size x size.

    image: float [H, W, C] -> [size, size, C]. (torchvision retries out-of-bounds draws ten
    times; here the side is clipped instead.)
    """
    chex.assert_rank(image, 3)
    height, width = image.shape[0], image.shape[1]
    k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
    area = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1]) * height * width
    log_ratio = jax.random.uniform(k_ratio, (), minval=np.log(ratio[0]), maxval=np.log(ratio[1]))
    aspect = jnp.exp(log_ratio)
    crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
    crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
    y0 = jax.random.uniform(k_y, ()) * (height - crop_h)
    x0 = jax.random.uniform(k_x, ()) * (width - crop_w)
    # output = input * scale + translation maps [y0, y0 + crop_h] onto [0, size]
    scales = jnp.stack([size / crop_h, size / crop_w])
    return jax.image.scale_and_translate(image, (size, size, image.shape[2]), (0, 1), scales,
                                         -jnp.stack([y0, x0]) * scales, "linear")


def augment_view(key: jax.Array, image: jax.Array, size: int, scale: tuple[float, float],
                 config: ml_collections.ConfigDict) -> jax.Array:
    """One DINO view of one image: random resized crop, horizontal flip (flip_prob), with
    probability jitter_prob brightness then contrast jitter (factors ~ U(1 +- brightness),
    U(1 +- contrast); contrast blends with the mean grey level), clip to [0, 1], ImageNet
    standardization.

    image: uint8 [H, W, 3] -> float32 [size, size, 3]. Omitted from DINO's recipe: saturation
    and hue jitter, random grayscale, Gaussian blur and solarization (cheap to add, but costly
    to vectorize well on CPU and not needed for small simulated frames).
    """
    k_crop, k_flip, k_jit, k_b, k_c = jax.random.split(key, 5)
    x = random_resized_crop(k_crop, image.astype(jnp.float32) / 255.0, size, scale,
                            tuple(config.crop_ratio))
    x = jnp.where(jax.random.bernoulli(k_flip, config.flip_prob), x[:, ::-1], x)
    bright = jax.random.uniform(k_b, (), minval=1 - config.brightness, maxval=1 + config.brightness)
    contrast = jax.random.uniform(k_c, (), minval=1 - config.contrast, maxval=1 + config.contrast)
    jittered = jnp.clip(x * bright, 0.0, 1.0)
    grey = jnp.mean(jittered @ jnp.array([0.299, 0.587, 0.114]))
    jittered = jnp.clip((jittered - grey) * contrast + grey, 0.0, 1.0)
    x = jnp.where(jax.random.bernoulli(k_jit, config.jitter_prob), jittered, jnp.clip(x, 0, 1))
    return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def multi_crop(key: jax.Array, images: jax.Array, config: ml_collections.ConfigDict, vit: ViT
               ) -> tuple[jax.Array, jax.Array | None]:
    """images: uint8 [B, H, W, 3] -> (global views float [global_crops, B, S, S, 3] with
    S = vit.image_size, local views [local_crops, B, s, s, 3] with s = `local_crop_pixels`, or
    None without local crops); every (view, image) has its own key."""
    batch = images.shape[0]
    key_g, key_l = jax.random.split(key)

    def views(k, n, size, scale):
        keys = jax.random.split(k, (n, batch))
        one = lambda kk, im: augment_view(kk, im, size, tuple(scale), config)
        return jax.vmap(jax.vmap(one, in_axes=(0, 0)), in_axes=(0, None))(keys, images)

    glob = views(key_g, config.global_crops, vit.image_size, config.global_crop_scale)
    if not config.local_crops:
        return glob, None
    loc = views(key_l, config.local_crops, local_crop_pixels(config, vit), config.local_crop_scale)
    return glob, loc


# ------------------------------------------------------------------------------------------------
# Head and state
# ------------------------------------------------------------------------------------------------
def _l2_normalize(x, axis):
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis, keepdims=True), 1e-24))


class DinoHead(nn.Module):
    """DINO projection head: (head_layers - 1) Dense + GELU layers of width `hidden`, Dense to
    `bottleneck`, L2 normalization, then a weight-normalized linear layer to `out_dim` without
    bias (each output unit's weight vector has norm g; g == 1 fixed when norm_last_layer).

    x: [..., D] -> logits [..., out_dim].
    """
    out_dim: int
    hidden: int
    bottleneck: int
    layers: int = 3
    norm_last_layer: bool = True

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.truncated_normal(0.02)
        for i in range(self.layers - 1):
            x = nn.gelu(nn.Dense(self.hidden, kernel_init=init, name=f"mlp_{i}")(x),
                        approximate=False)
        x = nn.Dense(self.bottleneck, kernel_init=init, name=f"mlp_{self.layers - 1}")(x)
        x = _l2_normalize(x, -1)
        v = self.param("last_layer_v", init, (self.bottleneck, self.out_dim))
        w = _l2_normalize(v, 0)
        if not self.norm_last_layer:
            w = w * self.param("last_layer_g", nn.initializers.ones_init(), (self.out_dim,))
        return x @ w


def make_head(config: ml_collections.ConfigDict) -> DinoHead:
    """The DinoHead of a config."""
    return DinoHead(config.out_dim, config.head_hidden, config.head_bottleneck,
                    config.head_layers, config.norm_last_layer)


@flax.struct.dataclass
class DinoState:
    """student/teacher: {'backbone': ViT variables, 'head': DinoHead variables}; opt_state of
    the student's optimizer (`make_optimizer`); center: [out_dim] (c of Eq. 4); step: int32."""
    student: Any
    teacher: Any
    opt_state: Any
    center: jax.Array
    step: jax.Array


def init(key: jax.Array, config: ml_collections.ConfigDict, vit: ViT) -> DinoState:
    """Student from `key`, teacher a copy of it (as in DINO), zero center, step 0."""
    check_config(config, vit)
    return jax.jit(functools.partial(_init, config, vit))(key)   # one compile, not op by op


def _init(config, vit, key):
    key_vit, key_head = jax.random.split(key)
    backbone = vit.init(key_vit, jnp.zeros((1, vit.image_size, vit.image_size, 3)))
    head = make_head(config).init(key_head, jnp.zeros((1, vit.dim)))
    student = {"backbone": backbone, "head": head,
               "mask_token": jnp.zeros((vit.dim,), jnp.float32)}   # iBOT's [MASK] embedding
    teacher = jax.tree.map(jnp.array, student)   # a copy: no buffer shared with the student
    return DinoState(student=student, teacher=teacher,
                     opt_state=make_optimizer(config).init(student),
                     center=jnp.zeros((config.out_dim,), jnp.float32),
                     step=jnp.zeros((), jnp.int32))


def embed(config: ml_collections.ConfigDict, vit: ViT, params, views: jax.Array) -> jax.Array:
    """Head logits of the cls token. views: float [..., s, s, 3] (any multiple of the patch
    size) -> [..., out_dim]."""
    cls = vit.apply(params["backbone"], views)["cls"]
    return make_head(config).apply(params["head"], cls)


def embed_tokens(config: ml_collections.ConfigDict, vit: ViT, params, views: jax.Array,
                 patch_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Head logits of the cls token [..., K] and of every patch token [..., P, K]; patches
    where patch_mask [..., P] is True are replaced by params['mask_token'] at the input."""
    out = vit.apply(params["backbone"], views, patch_mask, params.get("mask_token"))
    head = make_head(config)
    return head.apply(params["head"], out["cls"]), head.apply(params["head"], out["patches"])


def train_step(config: ml_collections.ConfigDict, vit: ViT, state: DinoState,
               images: jax.Array, key: jax.Array) -> tuple[DinoState, dict[str, jax.Array]]:
    """One DINO step on uint8 images [B, H, W, 3]: multi-crop, loss (Eq. 3) and AdamW step of
    the student, teacher EMA with momentum `ema_momentum(step)`, center EMA of the teacher's
    mean output over the global views. Jit with config and vit static (`make_train_step`).

    Metrics: loss; teacher_entropy (mean entropy of P_t, low = sharp); teacher_kl_uniform
    (KL of the batch-mean P_t to uniform: high = collapse onto few prototypes; teacher_entropy
    near log K = collapse to uniform); student_entropy; momentum; teacher_temp; lr; grad_norm;
    center_norm.
    """
    chex.assert_rank(images, 4)
    if images.shape[-1] != 3:
        raise ValueError(f"dino.train_step: images must be [B, H, W, 3], got {images.shape}")
    key_crop, key_ratio, key_mask = jax.random.split(key, 3)
    glob, loc = multi_crop(key_crop, images, config, vit)
    n_glob, batch = glob.shape[:2]
    teacher_temp = teacher_temperature(config, state.step)
    teacher_logits, teacher_patches = jax.tree.map(sg, embed_tokens(config, vit, state.teacher,
                                                                    glob))   # [G, B, (P,) K]
    if config.centering == "sinkhorn":
        targets = sinkhorn_targets(teacher_logits, teacher_temp)
    else:
        targets = jax.nn.softmax((teacher_logits - state.center) / teacher_temp, axis=-1)
    num_patches = teacher_patches.shape[2]
    ratio = jax.random.uniform(key_ratio, (n_glob, batch, 1), minval=config.mask_ratio[0],
                               maxval=config.mask_ratio[1])
    mask = jax.random.bernoulli(key_mask, ratio, (n_glob, batch, num_patches))
    patch_targets = sinkhorn_targets(
        teacher_patches.reshape(n_glob, batch * num_patches, -1), teacher_temp).reshape(
            teacher_patches.shape)

    def loss_fn(student):
        weight = config.patch_loss_weight
        logits, patches = embed_tokens(config, vit, student, glob, mask if weight else None)
        if loc is not None:
            logits = jnp.concatenate([logits, embed(config, vit, student, loc)], axis=0)
        loss = distillation_loss(logits, targets, config.student_temp)
        if weight:
            ce = -jnp.sum(patch_targets * jax.nn.log_softmax(patches / config.student_temp),
                          -1)                                              # [G, B, P]
            per_view = jnp.sum(ce * mask, -1) / jnp.maximum(mask.sum(-1), 1)
            loss = loss + weight * per_view.mean()
        return loss, logits

    (loss, student_logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.student)
    tx = make_optimizer(config)
    updates, opt_state = tx.update(grads, state.opt_state, state.student)
    student = optax.apply_updates(state.student, updates)
    momentum = ema_momentum(config, state.step)
    teacher = jax.tree.map(lambda t, s: momentum * t + (1.0 - momentum) * s, state.teacher, student)
    m_c = config.center_momentum
    center = m_c * state.center + (1.0 - m_c) * teacher_logits.mean(axis=(0, 1))

    p_t = targets
    p_s = jax.nn.softmax(student_logits / config.student_temp, axis=-1)
    entropy = lambda p: -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), -1).mean()
    mean_t = p_t.mean(axis=(0, 1))
    metrics = {
        "loss": loss,
        "teacher_entropy": entropy(p_t),
        "teacher_kl_uniform": jnp.sum(mean_t * jnp.log(jnp.maximum(mean_t * config.out_dim,
                                                                   1e-12))),
        "student_entropy": entropy(p_s),
        "momentum": momentum,
        "teacher_temp": teacher_temp,
        "lr": learning_rate(config)(state.step),
        "grad_norm": optax.global_norm(grads),
        "center_norm": jnp.linalg.norm(center),
    }
    state = state.replace(student=student, teacher=teacher, opt_state=opt_state, center=center,
                          step=state.step + 1)
    return state, metrics


def make_train_step(config: ml_collections.ConfigDict, vit: ViT, donate: bool = True):
    """jax.jit of `train_step` with config and vit bound: (state, images, key) -> (state,
    metrics); the state is donated unless donate=False."""
    check_config(config, vit)
    return jax.jit(functools.partial(train_step, config, vit),
                   donate_argnums=(0,) if donate else ())


def teacher_backbone(state: DinoState):
    """ViT variables ({'params': ...}) of the teacher: the encoder used downstream."""
    return state.teacher["backbone"]
