"""DDPM / DDIM as pure functions, and the denoisers of Latent Diffusion Planning.

References:
- Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (DDPM, NeurIPS 2020): forward
  process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Eq. 4), epsilon-prediction loss
  (Eq. 14, "L_simple"), ancestral sampling with the posterior variance beta_tilde_t (Eq. 7), the
  linear beta schedule 1e-4 .. 0.02.
- Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models" (ICML 2021), Eq. 17:
  the cosine schedule abar_t = f(t) / f(0), f(t) = cos^2((t / K + s) / (1 + s) * pi / 2),
  s = 0.008, betas clipped at 0.999.
- Song, Meng & Ermon, "Denoising Diffusion Implicit Models" (DDIM, ICLR 2021), Eq. 12 and 16:
  sampling on a sub-sequence of the K steps; eta = 0 is deterministic, eta = 1 is DDPM-like.
- Ho & Salimans, "Classifier-Free Diffusion Guidance" (2022): one network trained with the
  condition dropped (replaced here by zeros) with probability p_uncond; at sampling
  eps = (1 + w) eps(x_t, c) - w eps(x_t, 0) (their Eq. 6, guidance strength w).
- Xie, Chen, Finn et al., "Latent Diffusion Planning for Imitation Learning" (LDP, 2025): a
  planner generating a horizon of future VAE latents conditioned on the current and goal latents
  (`TemporalDenoiser`), and a diffusion inverse-dynamics model a_t ~ p(a | z_t, z_{t+1})
  (`MLPDenoiser`).

Conventions: the K diffusion steps are indexed t = 0 .. K-1 (the papers' 1 .. K); abar_{-1} = 1.
A denoiser is any function `denoise_fn(params, x_t [B, ...], t int32 [B], cond [B, C] | None) ->
[B, ...]`, e.g. `lambda p, x, t, c: module.apply(p, x, t, c)`, predicting per `prediction`
either the noise eps ('eps', DDPM's L_simple) or the data x0 ('x0', as Diffuser's trajectory
planner, Janner et al. 2022). With eps-prediction x0_hat = (x_t - sqrt(1 - abar) eps_hat) /
sqrt(abar) multiplies the denoiser's error by sqrt((1 - abar) / abar): at the cosine schedule's
last step (abar ~ 1e-6 for K = 50) by ~1000, so samplers start from a wild x0_hat unless it is
clipped; x0-prediction has no such factor. Samplers are a `lax.scan` over the denoising steps;
`denoise_fn`, `shape`, the number of DDIM steps, `guidance` (when 0), `clip_x0` and
`prediction` are static (Python values under jit).
"""
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.nn.blocks import MLP
from jaxwm.nn.vit import TransformerBlock

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("eps", "x0")

DenoiseFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]


class Schedule(NamedTuple):
    """Noise schedule of K diffusion steps, float32 [K] each: betas beta_t, alphas = 1 - beta_t,
    alpha_bars abar_t = prod_{s <= t} alpha_s (decreasing, in (0, 1))."""
    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array

    @property
    def num_steps(self) -> int:
        """K."""
        return self.betas.shape[0]


def make_schedule(steps: int, kind: str = "cosine", *, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> Schedule:
    """Schedule of `steps` = K diffusion steps.

    kind 'cosine': Nichol & Dhariwal (2021) Eq. 17 (computed in float64, betas clipped at 0.999).
    kind 'linear': Ho et al. (2020), betas = linspace(beta_start, beta_end, K) (1e-4 .. 0.02 as in
    the paper, which uses K = 1000; with K << 1000 abar_{K-1} stays far from 0).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"make_schedule: steps={steps!r} must be a positive int")
    if kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(steps + 1, dtype=np.float64) / steps + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    elif kind == "linear":
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"make_schedule: need 0 < beta_start={beta_start} <= "
                             f"beta_end={beta_end} < 1")
        betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    else:
        raise ValueError(f"make_schedule: kind={kind!r} is not one of {SCHEDULES}")
    alphas = 1.0 - betas
    return Schedule(betas=jnp.asarray(betas, jnp.float32), alphas=jnp.asarray(alphas, jnp.float32),
                    alpha_bars=jnp.asarray(np.cumprod(alphas), jnp.float32))


def _per_example(values: jax.Array, like: jax.Array) -> jax.Array:
    """[B] -> [B, 1, ..., 1] broadcastable against `like` [B, ...]."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Forward process (Ho et al. Eq. 4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

    x0, noise: float [B, ...]; t: int32 [B] in 0 .. K-1 -> x_t [B, ...].
    """
    chex.assert_equal_shape([x0, noise])
    chex.assert_shape(t, (x0.shape[0],))
    abar = _per_example(schedule.alpha_bars[t], x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def drop_condition(cond: jax.Array, drop_prob: float, key: jax.Array) -> jax.Array:
    """Classifier-free guidance training (Ho & Salimans 2022): each example's condition is
    replaced by zeros with probability `drop_prob`. cond [B, ...] -> [B, ...]."""
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"cond_drop_prob={drop_prob!r} must be in [0, 1]")
    keep = jax.random.bernoulli(key, 1.0 - drop_prob, (cond.shape[0],))
    return jnp.where(_per_example(keep, cond), cond, jnp.zeros_like(cond))


def ddpm_loss(denoise_fn: DenoiseFn, params: Any, schedule: Schedule, x0: jax.Array,
              cond: jax.Array | None, key: jax.Array, cond_drop_prob: float = 0.0,
              prediction: str = "eps") -> jax.Array:
    """L_simple of Ho et al. (2020) Eq. 14: mean over all elements of
    (eps - eps_hat(x_t, t, cond))^2 with t ~ U{0 .. K-1} and eps ~ N(0, I) per example; with
    prediction 'x0', of (x0 - x0_hat(x_t, t, cond))^2.

    x0: float [B, ...]; cond: [B, C] or None; cond_drop_prob: probability of zeroing each
    example's condition (classifier-free guidance training) -> loss [].
    """
    _check_prediction("ddpm_loss", prediction)
    if cond is None and cond_drop_prob > 0:
        raise ValueError(f"ddpm_loss: cond_drop_prob={cond_drop_prob} needs a condition, "
                         f"got cond=None")
    key_t, key_noise, key_drop = jax.random.split(key, 3)
    batch = x0.shape[0]
    t = jax.random.randint(key_t, (batch,), 0, schedule.num_steps, jnp.int32)
    noise = jax.random.normal(key_noise, x0.shape, x0.dtype)
    if cond is not None and cond_drop_prob > 0:
        cond = drop_condition(cond, cond_drop_prob, key_drop)
    out = denoise_fn(params, q_sample(schedule, x0, t, noise), t, cond)
    target = noise if prediction == "eps" else x0
    chex.assert_equal_shape([out, target])
    return jnp.mean(jnp.square(out - target))


def guided_eps(denoise_fn: DenoiseFn, params: Any, x_t: jax.Array, t: jax.Array,
               cond: jax.Array | None, guidance: float = 0.0) -> jax.Array:
    """Classifier-free guided noise prediction (Ho & Salimans 2022, Eq. 6):
    eps = (1 + w) eps(x_t, t, cond) - w eps(x_t, t, 0), w = `guidance`.

    With x0-prediction the same combination applies to the predicted x0.
    x_t [B, ...], t int32 [B], cond [B, C] or None -> [B, ...]. w = 0 (a Python number) costs one
    denoiser call; otherwise both are computed in one call on a doubled batch.
    """
    if isinstance(guidance, (int, float)) and guidance == 0:
        return denoise_fn(params, x_t, t, cond)
    if cond is None:
        raise ValueError(f"guided_eps: guidance={guidance} needs a condition, got cond=None")
    both = denoise_fn(params, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                      jnp.concatenate([cond, jnp.zeros_like(cond)]))
    eps_c, eps_u = both[:x_t.shape[0]], both[x_t.shape[0]:]
    return (1.0 + guidance) * eps_c - guidance * eps_u


def _predict_x0(abar: jax.Array, x_t: jax.Array, out: jax.Array, clip_x0: float | None,
                prediction: str = "eps"):
    """(x0_hat, eps_hat) from the denoiser's output: eps-prediction x0_hat = (x_t - sqrt(1 - abar)
    eps) / sqrt(abar), x0-prediction x0_hat = out; x0_hat optionally clipped to [-c, c]. When
    clipped or predicted, eps_hat = (x_t - sqrt(abar) x0_hat) / sqrt(1 - abar), consistent with
    x0_hat."""
    if prediction == "eps":
        x0, eps = (x_t - jnp.sqrt(1.0 - abar) * out) / jnp.sqrt(abar), out
    else:
        x0 = out
    if clip_x0 is not None:
        x0 = jnp.clip(x0, -clip_x0, clip_x0)
    if clip_x0 is not None or prediction == "x0":
        eps = (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
    return x0, eps


def _check_prediction(name, prediction):
    if prediction not in PREDICTIONS:
        raise ValueError(f"{name}: prediction={prediction!r} is not one of {PREDICTIONS}")


def _check_sampler_args(name, shape, cond, clip_x0, prediction):
    _check_prediction(name, prediction)
    if not shape or any(not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
        raise ValueError(f"{name}: shape={shape!r} must be a tuple of positive ints (B, ...)")
    if cond is not None and cond.shape[0] != shape[0]:
        raise ValueError(f"{name}: cond has batch {cond.shape[0]}, shape={tuple(shape)} has "
                         f"batch {shape[0]}")
    if clip_x0 is not None and not clip_x0 > 0:
        raise ValueError(f"{name}: clip_x0={clip_x0!r} must be a positive float or None")


def ddpm_sample(denoise_fn: DenoiseFn, params: Any, schedule: Schedule, shape: Sequence[int],
                cond: jax.Array | None, key: jax.Array, guidance: float = 0.0,
                clip_x0: float | None = None, prediction: str = "eps") -> jax.Array:
    """Ancestral sampling (Ho et al. 2020, Alg. 2, through x0_hat as in their Eq. 7): from
    x_{K-1} ~ N(0, I), for t = K-1 .. 0
        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)       (eps guided, x0_hat clipped)
        x_{t-1} = mu_tilde_t(x_t, x0_hat) + sqrt(beta_tilde_t) z,  z ~ N(0, I)
    mu_tilde_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat
               + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
    beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t; at t = 0 (abar_{-1} = 1) the output
    is x0_hat with no noise.

    shape: (B, ...) of the samples; cond [B, C] or None -> x_0 float32 [B, ...].
    """
    _check_sampler_args("ddpm_sample", shape, cond, clip_x0, prediction)
    shape = tuple(int(d) for d in shape)
    key_init, key_steps = jax.random.split(key)
    num = schedule.num_steps
    abar_prev_all = jnp.concatenate([jnp.ones((1,), jnp.float32), schedule.alpha_bars[:-1]])

    def step(x, inputs):
        t, step_key = inputs
        abar, abar_prev = schedule.alpha_bars[t], abar_prev_all[t]
        # alpha_t and beta_t recomputed from the stored abar (equal in exact arithmetic): in
        # float32 1 - abar_0 != beta_0, and only this form makes the t = 0 coefficient of x0_hat
        # exactly 1.
        alpha = abar / abar_prev
        beta = 1.0 - alpha
        eps = guided_eps(denoise_fn, params, x, jnp.full((shape[0],), t, jnp.int32), cond,
                         guidance)
        x0, _ = _predict_x0(abar, x, eps, clip_x0, prediction)
        mean = (jnp.sqrt(abar_prev) * beta / (1.0 - abar)) * x0 + (
            jnp.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar)) * x
        var = (1.0 - abar_prev) / (1.0 - abar) * beta
        return mean + jnp.sqrt(var) * jax.random.normal(step_key, shape, jnp.float32), None

    x = jax.random.normal(key_init, shape, jnp.float32)
    ts = jnp.arange(num - 1, -1, -1, dtype=jnp.int32)
    x, _ = jax.lax.scan(step, x, (ts, jax.random.split(key_steps, num)))
    return x


def ddim_timesteps(num_steps: int, steps: int) -> np.ndarray:
    """The DDIM sub-sequence tau (Song et al. 2021, Sec. 4.2): `steps` distinct indices from
    K-1 down to 0, evenly spaced (rounded). int32 [steps] (steps = 1: [K-1])."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not (
            1 <= steps <= num_steps):
        raise ValueError(f"ddim_sample: steps={steps!r} must be an int in 1 .. K={num_steps}")
    return np.round(np.linspace(num_steps - 1, 0, steps)).astype(np.int32)


def ddim_sample(denoise_fn: DenoiseFn, params: Any, schedule: Schedule, shape: Sequence[int],
                cond: jax.Array | None, key: jax.Array, steps: int, eta: float = 0.0,
                guidance: float = 0.0, clip_x0: float | None = None,
                prediction: str = "eps") -> jax.Array:
    """DDIM sampling (Song et al. 2021, Eq. 12 with sigma of Eq. 16) on `ddim_timesteps(K,
    steps)` = tau_1 > ... > tau_S, then to abar = 1: from x ~ N(0, I), for each t with next
    index s (abar_s = 1 after the last)
        x0_hat, eps = prediction at (x, t)                    (eps guided, x0_hat clipped)
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
        x <- sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z.
    eta = 0: deterministic (the probability-flow ODE); eta = 1: DDPM's beta_tilde noise.

    shape: (B, ...); cond [B, C] or None -> x_0 float32 [B, ...].
    """
    _check_sampler_args("ddim_sample", shape, cond, clip_x0, prediction)
    shape = tuple(int(d) for d in shape)
    taus = ddim_timesteps(schedule.num_steps, steps)
    key_init, key_steps = jax.random.split(key)
    abar_next = jnp.concatenate([schedule.alpha_bars[taus[1:]], jnp.ones((1,), jnp.float32)])

    def step(x, inputs):
        t, abar_s, step_key = inputs
        abar = schedule.alpha_bars[t]
        eps = guided_eps(denoise_fn, params, x, jnp.full((shape[0],), t, jnp.int32), cond,
                         guidance)
        x0, eps = _predict_x0(abar, x, eps, clip_x0, prediction)
        sigma = eta * jnp.sqrt((1.0 - abar_s) / (1.0 - abar) * (1.0 - abar / abar_s))
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_s - sigma ** 2, 0.0)) * eps
        noise = jax.random.normal(step_key, shape, jnp.float32)
        return jnp.sqrt(abar_s) * x0 + direction + sigma * noise, None

    x = jax.random.normal(key_init, shape, jnp.float32)
    x, _ = jax.lax.scan(step, x, (jnp.asarray(taus), abar_next,
                                  jax.random.split(key_steps, len(taus))))
    return x


# ------------------------------------------------------------------------------------------------
# Denoisers
# ------------------------------------------------------------------------------------------------
def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of diffusion steps (Vaswani et al. 2017; DDPM's step embedding):
    t [B] (int or float) -> float32 [B, dim] = [cos(t f_i), sin(t f_i)], f_i = max_period^(-i /
    (dim/2)), i < dim/2 (dim even)."""
    if dim % 2:
        raise ValueError(f"timestep_embedding: dim={dim} must be even")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class StepEmbedding(nn.Module):
    """Diffusion-step embedding: sinusoidal(t, dim) -> Dense(4 dim) -> Mish -> Dense(dim)
    (the DDPM / Diffusion Policy step encoder). t [B] -> [B, dim]."""
    dim: int

    @nn.compact
    def __call__(self, t):
        x = nn.Dense(4 * self.dim)(timestep_embedding(t, self.dim))
        return nn.Dense(self.dim)(x * jnp.tanh(jax.nn.softplus(x)))


class TemporalDenoiser(nn.Module):
    """LDP's latent planner denoiser: a non-causal transformer over the H planned latents.

    Tokens: each noisy latent x_t[:, k] projected to `dim` + the diffusion-step embedding +
    a learned position (k < horizon); the condition cond [B, C] is split into `num_cond_tokens`
    equal chunks (LDP: the current latent and the goal latent, C = 2 L), each projected to `dim`
    with its own learned position, and prepended. `depth` TransformerBlocks with full attention,
    a final LayerNorm and a linear head on the H latent tokens.

    x_t [B, H, L] (H <= horizon), t int32 [B], cond [B, C] -> eps_hat [B, H, L].
    """
    horizon: int
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    num_cond_tokens: int = 2

    @nn.compact
    def __call__(self, x_t, t, cond):
        chex.assert_rank([x_t, t, cond], [3, 1, 2])
        b, h, latent = x_t.shape
        if h > self.horizon:
            raise ValueError(f"TemporalDenoiser: x_t has {h} steps, more than "
                             f"horizon={self.horizon}")
        if cond.shape[-1] % self.num_cond_tokens:
            raise ValueError(f"TemporalDenoiser: cond size {cond.shape[-1]} is not divisible by "
                             f"num_cond_tokens={self.num_cond_tokens}")
        chex.assert_shape([t, cond], [(b,), (b, None)])
        init = nn.initializers.normal(0.02)
        step = StepEmbedding(self.dim, name="step_emb")(t)                   # [B, dim]
        x = nn.Dense(self.dim, name="latent_proj")(x_t) + step[:, None]
        x = x + self.param("pos", init, (self.horizon, self.dim))[None, :h]
        c = cond.reshape(b, self.num_cond_tokens, -1)
        c = nn.Dense(self.dim, name="cond_proj")(c)
        c = c + self.param("cond_pos", init, (self.num_cond_tokens, self.dim))[None]
        x = jnp.concatenate([c, x], axis=1)                                  # [B, N + H, dim]
        for i in range(self.depth):
            x = TransformerBlock(self.dim, self.heads, self.mlp_ratio, name=f"block{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, name="norm")(x[:, self.num_cond_tokens:])
        return nn.Dense(latent, name="head")(x)


class MLPDenoiser(nn.Module):
    """LDP's inverse-dynamics denoiser: an MLP on [x_t, step embedding, cond] with LayerNorm and
    `act` (Mish by default) after each hidden layer.

    x_t [B, A] (noisy action), t int32 [B], cond [B, C] (LDP: concat(z_t, z_{t+1}), C = 2 L)
    -> eps_hat [B, A].
    """
    hidden: Sequence[int] = (256, 256, 256)
    step_dim: int = 64
    act: str = "mish"

    @nn.compact
    def __call__(self, x_t, t, cond):
        chex.assert_rank([x_t, t, cond], [2, 1, 2])
        chex.assert_shape([t, cond], [(x_t.shape[0],), (x_t.shape[0], None)])
        step = StepEmbedding(self.step_dim, name="step_emb")(t)
        x = jnp.concatenate([x_t, step, cond], axis=-1)
        return MLP(tuple(self.hidden), out=x_t.shape[-1], act=self.act, layer_norm=True,
                   name="mlp")(x)
