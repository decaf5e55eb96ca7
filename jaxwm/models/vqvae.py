"""VQ-VAE frame tokenizer of JOWA, after IRIS and VQ-VAE.

References:
- van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning" (VQ-VAE,
  NeurIPS 2017): nearest-code quantization z_q = e_k, k = argmin_j ||z - e_j||^2, the
  straight-through estimator (gradients of z_q copied to z), the codebook loss
  ||sg(z) - e||^2 and the commitment loss beta ||z - sg(e)||^2 (Eq. 3); App. A.1: the codebook
  as exponential moving averages of the assigned counts and sums instead of the codebook loss.
- Razavi, van den Oord & Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2"
  (2019): VQ-VAE trained with the EMA codebook updates; here the cluster sizes get the usual
  Laplace (add-eps) smoothing so that codes with no vectors keep a finite value.
- Micheli, Alonso & Fleuret, "Transformers are Sample-Efficient World Models" (IRIS, ICLR
  2023): a frame tokenizer trained with L1 reconstruction + codebook + commitment (beta = 1)
  + perceptual (LPIPS) losses, frozen while the transformer models the token sequences.
- Cheng et al., "Scaling Offline Model-Based RL via Jointly-Optimized World-Action Model
  Pretraining" (JOWA, ICLR 2025): IRIS's tokenizer on 84x84 grayscale Atari frames, 36 tokens
  (a 6x6 grid) per frame.

Differences from the papers:
- no LPIPS term: its VGG backbone weights cannot be downloaded here;
- the L1 reconstruction is weighted: pixels with x > 0 count `positive_weight` times (MinAtar
  grids are ~95% zeros, and a plain L1 is then mostly met by predicting empty grids);
- the codebook and commitment losses average over all elements (IRIS's `.pow(2).mean()`), i.e.
  mean over vectors of ||.||^2 / D, so that they are on the scale of the per-pixel L1;
- optional dead-code restarts: codes whose EMA usage falls below `restart_threshold` are set to
  random encoder outputs of the current batch (as in Dhariwal et al., "Jukebox", 2020).

Pure functions on a codebook [K, D]: `quantize`, `ema_update`, `restart_dead_codes`; the
`Tokenizer` module (encoder and decoder; the codebook is not a parameter but lives in a
`VQState`, so that both the EMA and the loss-based updates act on the same array); the loss
`tokenizer_loss`, `train_step`, and `tokenize` / `detokenize` for the frozen tokenizer.

Layouts (all convolutions VALID; stride-2 ones are `jaxwm.nn.conv.Conv2`, fast on XLA:CPU):
- 'minatar' (the `cpu` preset): obs [..., 10, 10, C] in {0, 1} -> 3x3 conv (depth) -> 3x3 conv
  (depth), both SAME -> 2x2 stride-2 conv (2 depth): 10 -> 5 -> 1x1 conv (code_dim): a 5x5 grid,
  25 tokens. Decoder: 1x1 conv (2 depth) -> 2x2 stride-2 transposed conv (depth): 5 -> 10 ->
  3x3 conv (depth) -> 3x3 conv (C), SAME -> sigmoid.
- 'atari' (the `paper` preset): uint8 obs [..., 84, 84, 1] scaled to [0, 1] -> stride-2 convs
  of kernels 4, 3, 4 (widths depth, 2 depth, 4 depth): 84 -> 41 -> 20 -> 9 -> a stride-1 4x4
  conv (4 depth): 9 -> 6 -> 1x1 conv (code_dim): a 6x6 grid, 36 tokens. Decoder mirrors it:
  1x1 conv, stride-1 4x4 transposed conv 6 -> 9, stride-2 transposed convs of kernels 4, 3, 4:
  9 -> 20 -> 41 -> 84 -> sigmoid.
ELU activations between layers; none on the encoder output z.
"""
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxwm.nn.blocks import get_activation
from jaxwm.nn.conv import Conv2

KINDS = ("minatar", "atari")
FRAME_SIZE = {"minatar": 10, "atari": 84}   # frames are FRAME_SIZE x FRAME_SIZE pixels
GRID_SIZE = {"minatar": 5, "atari": 6}      # tokens per frame: GRID_SIZE^2
DEFAULT_CHANNELS = {"minatar": 7, "atari": 1}


# ------------------------------------------------------------------------------------------------
# Vector quantization
# ------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class VQState:
    """Codebook and its usage statistics.

    codebook [K, D]: the codes e_k.
    cluster_size [K]: EMA of the number of batch vectors assigned to each code (the usage that
      dead-code restarts look at; tracked in both codebook modes).
    embed_sum [K, D]: EMA of the sums of the vectors assigned to each code (EMA mode only; the
      codebook is embed_sum / smoothed cluster_size).
    """
    codebook: jax.Array
    cluster_size: jax.Array
    embed_sum: jax.Array


def init_vq_state(key: jax.Array, num_codes: int, code_dim: int) -> VQState:
    """Codebook ~ U(-1/K, 1/K) (IRIS's embedding init); cluster_size = 1 and embed_sum = codebook,
    so that the EMA codebook embed_sum / cluster_size starts at the codebook and an unused code
    keeps its value while both statistics decay at the same rate."""
    bound = 1.0 / num_codes
    codebook = jax.random.uniform(key, (num_codes, code_dim), jnp.float32, -bound, bound)
    return VQState(codebook=codebook, cluster_size=jnp.ones((num_codes,), jnp.float32),
                   embed_sum=codebook)


def nearest_code(codebook: jax.Array, z: jax.Array) -> jax.Array:
    """argmin_k ||z - e_k||^2 (the first on ties). codebook [K, D], z [..., D] -> int32 [...]."""
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 is the same for every k.
    dist = jnp.sum(jnp.square(codebook), -1) - 2.0 * z @ codebook.T
    return jnp.argmin(dist, axis=-1).astype(jnp.int32)


def quantize(codebook: jax.Array, z: jax.Array
             ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Vector quantization with the straight-through estimator (van den Oord et al. 2017).

    codebook [K, D], z [..., D] -> (z_q [..., D], indices int32 [...], losses).
    z_q = z + sg(e - z): its value is the nearest code e, its gradient goes to z unchanged and
    nothing reaches the codebook. losses (unweighted; the caller multiplies the commitment by
    beta), means over all elements:
      'codebook'   = mean (sg(z) - e)^2   (moves the codes towards the encoder outputs),
      'commitment' = mean (z - sg(e))^2   (keeps the encoder outputs near their codes).
    """
    if z.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"quantize: z has dim {z.shape[-1]}, the codebook {codebook.shape[-1]}")
    indices = nearest_code(codebook, z)
    e = codebook[indices]
    z_q = z + jax.lax.stop_gradient(e - z)
    losses = {"codebook": jnp.mean(jnp.square(jax.lax.stop_gradient(z) - e)),
              "commitment": jnp.mean(jnp.square(z - jax.lax.stop_gradient(e)))}
    return z_q, indices, losses


def ema_update(state: VQState, z: jax.Array, indices: jax.Array, decay: float,
               eps: float = 1e-5) -> VQState:
    """EMA codebook update (van den Oord et al. 2017 App. A.1; Razavi et al. 2019).

    z [..., D] (treated as constant), indices int32 [...] of their codes. With n_k the number of
    vectors assigned to code k and s_k their sum:
      N_k <- decay N_k + (1 - decay) n_k,    S_k <- decay S_k + (1 - decay) s_k,
      Laplace smoothing N'_k = (N_k + eps) / (n + K eps) n, n = sum_k N_k (keeps N'_k > 0 and
      sum_k N'_k = n),
      e_k = S_k / N'_k.
    """
    z = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1])
    num_codes = state.codebook.shape[0]
    one_hot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=z.dtype)    # [N, K]
    cluster_size = decay * state.cluster_size + (1.0 - decay) * jnp.sum(one_hot, 0)
    embed_sum = decay * state.embed_sum + (1.0 - decay) * one_hot.T @ z
    total = jnp.sum(cluster_size)
    smoothed = (cluster_size + eps) / (total + num_codes * eps) * total
    return VQState(codebook=embed_sum / smoothed[:, None], cluster_size=cluster_size,
                   embed_sum=embed_sum)


def restart_dead_codes(state: VQState, z: jax.Array, key: jax.Array, threshold: float
                       ) -> tuple[VQState, jax.Array]:
    """Re-initializes the codes with cluster_size < threshold to encoder outputs of the batch.

    z [..., D]: the batch's encoder outputs (N vectors); each dead code gets a different one of
    them when N >= K (drawn without replacement), random ones otherwise. A restarted code counts
    as one use: cluster_size = 1, embed_sum = the new code. -> (state, number restarted int32 []).
    threshold <= 0 restarts nothing.
    """
    z = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1])
    num, num_codes = z.shape[0], state.codebook.shape[0]
    dead = state.cluster_size < threshold
    fresh = z[jax.random.choice(key, num, (num_codes,), replace=num < num_codes)]
    new = VQState(codebook=jnp.where(dead[:, None], fresh, state.codebook),
                  cluster_size=jnp.where(dead, 1.0, state.cluster_size),
                  embed_sum=jnp.where(dead[:, None], fresh, state.embed_sum))
    return new, jnp.sum(dead).astype(jnp.int32)


def code_usage(indices: jax.Array, num_codes: int) -> tuple[jax.Array, jax.Array]:
    """Codebook use in a batch: indices int32 [...] -> (perplexity exp(-sum_k p_k log p_k) of the
    code frequencies p_k (1 .. K; K when uniform), fraction of the K codes used at least once)."""
    counts = jnp.bincount(indices.reshape(-1), length=num_codes)
    p = counts / indices.size
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy), jnp.mean(counts > 0)


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
def _is_int(value, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def check_tokenizer(tok: "Tokenizer") -> None:
    """Raises ValueError naming the bad field and its allowed values."""
    if tok.kind not in KINDS:
        raise ValueError(f"Tokenizer.kind={tok.kind!r} is not one of {KINDS}")
    for field in ("num_codes", "code_dim", "depth"):
        if not _is_int(getattr(tok, field), 1):
            raise ValueError(f"Tokenizer.{field}={getattr(tok, field)!r} must be a positive int")
    if tok.channels is not None and not _is_int(tok.channels, 1):
        raise ValueError(f"Tokenizer.channels={tok.channels!r} must be a positive int or None")
    if not isinstance(tok.ema, bool):
        raise ValueError(f"Tokenizer.ema={tok.ema!r} must be True or False")
    if not 0.0 <= tok.ema_decay < 1.0:
        raise ValueError(f"Tokenizer.ema_decay={tok.ema_decay!r} must be in [0, 1)")
    for field in ("beta", "ema_eps", "restart_threshold"):
        if not getattr(tok, field) >= 0:
            raise ValueError(f"Tokenizer.{field}={getattr(tok, field)!r} must be >= 0")
    if not tok.positive_weight > 0:
        raise ValueError(f"Tokenizer.positive_weight={tok.positive_weight!r} must be > 0")


class Tokenizer(nn.Module):
    """Conv encoder/decoder of a VQ frame tokenizer (layouts in the module docstring).

    encode: obs [..., S, S, C] -> z float32 [..., G*G, D] (continuous; row-major grid order)
    decode: z_q [..., G*G, D] -> reconstruction float32 in [0, 1] [..., S, S, C]
    __call__(obs) = decode(encode(obs)) without quantization: `init` through it builds all
      parameters. Call the parts with `tok.apply(params, x, method=Tokenizer.encode)` / `.decode`.
    obs: 'minatar' any dtype with values in {0, 1} (S = 10, G = 5); 'atari' uint8 (S = 84,
    G = 6), scaled by 1/255.

    The remaining fields configure the quantizer and the loss (`tokenizer_loss`, `train_step`).
    """
    kind: str = "minatar"
    channels: int | None = None    # C; None: 7 for 'minatar' (games padded to 7), 1 for 'atari'
    num_codes: int = 512           # K
    code_dim: int = 64             # D
    depth: int = 32                # conv width multiplier
    beta: float = 1.0              # commitment weight (IRIS)
    ema: bool = False              # True: EMA codebook; False: learned by the codebook loss (IRIS)
    ema_decay: float = 0.99
    ema_eps: float = 1e-5          # Laplace smoothing of the cluster sizes
    restart_threshold: float = 0.0  # restart codes with EMA usage below this (0: never)
    positive_weight: float = 1.0   # L1 weight of the pixels with x > 0
    act: str = "elu"
    lowering: str = "auto"         # stride-2 conv lowering, see `jaxwm.nn.conv`

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        size = FRAME_SIZE[self.kind]
        return (size, size, self.channels or DEFAULT_CHANNELS[self.kind])

    @property
    def grid_size(self) -> int:
        return GRID_SIZE[self.kind]

    @property
    def num_tokens(self) -> int:
        """Tokens per frame, G*G: 25 ('minatar') or 36 ('atari')."""
        return self.grid_size ** 2

    def setup(self):
        check_tokenizer(self)
        d = self.depth
        conv = lambda w, k, pad="VALID": nn.Conv(w, (k, k), padding=pad)
        if self.kind == "minatar":
            self.enc_layers = [conv(d, 3, "SAME"), conv(d, 3, "SAME"),
                               Conv2(2 * d, 2, self.lowering)]
            self.dec_layers = [conv(2 * d, 1), Conv2(d, 2, self.lowering, transpose=True),
                               conv(d, 3, "SAME")]
            self.dec_out = conv(self.obs_shape[-1], 3, "SAME")
        else:
            self.enc_layers = [Conv2(d, 4, self.lowering), Conv2(2 * d, 3, self.lowering),
                               Conv2(4 * d, 4, self.lowering), conv(4 * d, 4)]
            self.dec_layers = [conv(4 * d, 1), nn.ConvTranspose(4 * d, (4, 4), padding="VALID"),
                               Conv2(2 * d, 4, self.lowering, transpose=True),
                               Conv2(d, 3, self.lowering, transpose=True)]
            self.dec_out = Conv2(self.obs_shape[-1], 4, self.lowering, transpose=True)
        self.enc_out = conv(self.code_dim, 1)

    def encode(self, obs):
        x = preprocess(self, obs)
        lead = x.shape[:-3]
        x = x.reshape((-1,) + self.obs_shape)
        act = get_activation(self.act)
        for layer in self.enc_layers:
            x = act(layer(x))
        z = self.enc_out(x)                                     # [N, G, G, D]
        return z.reshape(lead + (self.num_tokens, self.code_dim))

    def decode(self, z_q):
        if z_q.shape[-2:] != (self.num_tokens, self.code_dim):
            raise ValueError(f"Tokenizer.decode: z_q must be [..., {self.num_tokens}, "
                             f"{self.code_dim}], got {tuple(z_q.shape)}")
        lead = z_q.shape[:-2]
        g = self.grid_size
        x = z_q.reshape((-1, g, g, self.code_dim))
        act = get_activation(self.act)
        for layer in self.dec_layers:
            x = act(layer(x))
        return nn.sigmoid(self.dec_out(x)).reshape(lead + self.obs_shape)

    def __call__(self, obs):
        return self.decode(self.encode(obs))


def preprocess(tok: Tokenizer, obs: jax.Array) -> jax.Array:
    """obs [..., S, S, C] -> float32 in [0, 1]: 'minatar' cast, 'atari' (uint8) divided by 255."""
    if tuple(obs.shape[-3:]) != tok.obs_shape:
        raise ValueError(f"Tokenizer(kind={tok.kind!r}): obs must be [..., "
                         f"{', '.join(map(str, tok.obs_shape))}], got {tuple(obs.shape)}")
    if tok.kind == "atari":
        if obs.dtype != jnp.uint8:
            raise ValueError(f"Tokenizer(kind='atari'): obs must be uint8, got {obs.dtype}")
        return obs.astype(jnp.float32) / 255.0
    return obs.astype(jnp.float32)


def init(tok: Tokenizer, key: jax.Array) -> tuple[Any, VQState]:
    """(encoder/decoder params, VQState of `tok.num_codes` codes)."""
    check_tokenizer(tok)
    k_net, k_codes = jax.random.split(key)
    dtype = jnp.uint8 if tok.kind == "atari" else jnp.float32
    params = tok.init(k_net, jnp.zeros((1,) + tok.obs_shape, dtype))
    return params, init_vq_state(k_codes, tok.num_codes, tok.code_dim)


# ------------------------------------------------------------------------------------------------
# Loss and training
# ------------------------------------------------------------------------------------------------
def weighted_l1(x: jax.Array, recon: jax.Array, positive_weight: float) -> jax.Array:
    """sum w |x - recon| / sum w, w = positive_weight where x > 0 and 1 elsewhere. -> []."""
    w = jnp.where(x > 0, positive_weight, 1.0)
    return jnp.sum(w * jnp.abs(x - recon)) / jnp.sum(w)


def _forward(tok: Tokenizer, params: Any, codebook: jax.Array, obs: jax.Array):
    """Loss, metrics, encoder outputs z [..., G*G, D] and their codes [..., G*G]."""
    z = tok.apply(params, obs, method=Tokenizer.encode)
    z_q, indices, vq_losses = quantize(codebook, z)
    recon = tok.apply(params, z_q, method=Tokenizer.decode)
    l1 = weighted_l1(preprocess(tok, obs), recon, tok.positive_weight)
    loss = l1 + tok.beta * vq_losses["commitment"]
    if not tok.ema:
        loss = loss + vq_losses["codebook"]
    perplexity, usage = code_usage(indices, tok.num_codes)
    metrics = {"loss": loss, "l1": l1, "commitment": vq_losses["commitment"],
               "codebook": vq_losses["codebook"], "perplexity": perplexity, "usage": usage}
    return loss, (metrics, z, indices)


def tokenizer_loss(tok: Tokenizer, params: Any, codebook: jax.Array, obs: jax.Array
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """IRIS/JOWA tokenizer loss without LPIPS (see the module docstring) of a batch obs
    [..., S, S, C]:
      loss = weighted L1(x, decode(z_q)) + [codebook loss, when not tok.ema]
             + tok.beta * commitment.
    Differentiable in `params` and (loss-based codebook) `codebook`.
    -> (loss [], metrics {'loss', 'l1', 'commitment', 'codebook', 'perplexity' (of the codes
    used in the batch), 'usage' (fraction of the K codes used in the batch)}).
    """
    loss, (metrics, _, _) = _forward(tok, params, codebook, obs)
    return loss, metrics


@flax.struct.dataclass
class TokenizerState:
    """params: encoder/decoder; vq: codebook and usage; opt_state: the optimizer's state of
    `trainable(tok, params, vq)`; step: int32 []."""
    params: Any
    vq: VQState
    opt_state: Any
    step: jax.Array


def trainable(tok: Tokenizer, params: Any, vq: VQState) -> dict:
    """What the optimizer updates: {'net': params}, plus 'codebook' when not `tok.ema`."""
    return {"net": params} if tok.ema else {"net": params, "codebook": vq.codebook}


def create_state(tok: Tokenizer, optimizer: optax.GradientTransformation, key: jax.Array
                 ) -> TokenizerState:
    """Fresh TokenizerState (`init` + the optimizer's state). Jit it with `tok` and `optimizer`
    static (e.g. `jax.jit(create_state, static_argnums=(0, 1))`)."""
    params, vq = init(tok, key)
    opt_state = optimizer.init(trainable(tok, params, vq))
    return TokenizerState(params=params, vq=vq, opt_state=opt_state, step=jnp.zeros((), jnp.int32))


def train_step(tok: Tokenizer, optimizer: optax.GradientTransformation, state: TokenizerState,
               key: jax.Array, obs: jax.Array) -> tuple[TokenizerState, dict[str, jax.Array]]:
    """One tokenizer update on a batch obs [..., S, S, C]:
    1. a gradient step of `optimizer` on `tokenizer_loss` (encoder, decoder, and the codebook
       when not `tok.ema`);
    2. the usage statistics (and with `tok.ema` the codebook) by `ema_update` on the batch's
       encoder outputs and codes (computed before the gradient step);
    3. `restart_dead_codes` with `tok.restart_threshold` (`key` picks the new codes).
    -> (state, metrics of `tokenizer_loss` + 'restarted').

    Jit it with `tok` and `optimizer` bound, e.g. `functools.partial(train_step, tok, opt)`.
    On the CPU backend run the steps in a host loop (`jaxwm.runtime.steps.repeat_steps`, loop
    'auto' or 'host'): XLA:CPU computes conv gradients inside `lax.scan` ~25x slower.
    """
    variables = trainable(tok, state.params, state.vq)

    def objective(variables):
        codebook = variables.get("codebook", state.vq.codebook)
        return _forward(tok, variables["net"], codebook, obs)

    grads, (metrics, z, indices) = jax.grad(objective, has_aux=True)(variables)
    updates, opt_state = optimizer.update(grads, state.opt_state, variables)
    variables = optax.apply_updates(variables, updates)
    vq = ema_update(state.vq, z, indices, tok.ema_decay, tok.ema_eps)
    if not tok.ema:   # only the usage statistics; the codebook is the optimizer's
        vq = vq.replace(codebook=variables["codebook"], embed_sum=state.vq.embed_sum)
    vq, restarted = restart_dead_codes(vq, z, key, tok.restart_threshold)
    metrics = dict(metrics, restarted=restarted)
    return TokenizerState(params=variables["net"], vq=vq, opt_state=opt_state,
                          step=state.step + 1), metrics


# ------------------------------------------------------------------------------------------------
# Frozen tokenizer
# ------------------------------------------------------------------------------------------------
def tokenize(tok: Tokenizer, params: Any, vq: VQState, obs: jax.Array) -> jax.Array:
    """obs [..., S, S, C] -> tokens int32 [..., G*G] (row-major over the G x G grid)."""
    z = tok.apply(params, obs, method=Tokenizer.encode)
    return nearest_code(vq.codebook, z)


def detokenize(tok: Tokenizer, params: Any, vq: VQState, tokens: jax.Array) -> jax.Array:
    """tokens int32 [..., G*G] -> reconstruction float32 in [0, 1] [..., S, S, C]."""
    if tokens.shape[-1:] != (tok.num_tokens,):
        raise ValueError(f"detokenize: tokens must be [..., {tok.num_tokens}], got "
                         f"{tuple(tokens.shape)}")
    return tok.apply(params, vq.codebook[tokens], method=Tokenizer.decode)
