"""Latent distributions and losses of the Dreamer family (distrax based).

- Straight-through one-hot samples and unimix (DreamerV2 Sec. 2.1, DreamerV3 Sec. 3).
- KL balancing (DreamerV2 Eq. 2 / Algorithm 2) and its DreamerV3 dyn/rep form.
- symlog / symexp and two-hot encodings over symlog bins (DreamerV3 Sec. 3, TD-MPC2 Sec. 3).
Core functions are written for arrays with explicit trailing axes and work under vmap.
"""
import chex
import distrax
import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


def unimix_logits(logits: jax.Array, unimix: float) -> jax.Array:
    """Logits of probs = (1 - unimix) * softmax(logits) + unimix / classes.  [..., C] -> [..., C]."""
    if unimix <= 0.0:
        return logits
    probs = jax.nn.softmax(logits, -1)
    probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return jnp.log(probs)


def straight_through_onehot(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One-hot sample whose gradient is that of the probabilities: sample + probs - sg(probs).

    logits: [..., C] -> one-hot float32 [..., C] (DreamerV2 Algorithm 1).
    """
    probs = jax.nn.softmax(logits, -1)
    sample = distrax.OneHotCategorical(logits=logits, dtype=jnp.float32).sample(seed=key)
    return sample + probs - sg(probs)


def categorical_kl(lhs_logits: jax.Array, rhs_logits: jax.Array) -> jax.Array:
    """KL(lhs || rhs) for independent categoricals, summed over the variables.

    lhs_logits, rhs_logits: [..., S, C] -> [...].
    """
    chex.assert_equal_shape([lhs_logits, rhs_logits])
    kl = distrax.Categorical(logits=lhs_logits).kl_divergence(
        distrax.Categorical(logits=rhs_logits))
    return kl.sum(-1)


def gaussian_kl(lhs_mean, lhs_std, rhs_mean, rhs_std) -> jax.Array:
    """KL(lhs || rhs) for diagonal Gaussians, summed over the last axis.  [..., S] -> [...]."""
    return distrax.Normal(lhs_mean, lhs_std).kl_divergence(distrax.Normal(rhs_mean, rhs_std)).sum(-1)


def balanced_kl(kl_fn, post, prior, dyn_scale: float, rep_scale: float, free: float,
                free_avg: bool = True):
    """KL balancing: dyn_scale * KL(sg(q) || p) + rep_scale * KL(q || sg(p)), each clipped at `free`.

    DreamerV2 (Eq. 2) uses dyn_scale = beta * alpha, rep_scale = beta * (1 - alpha), alpha = 0.8,
    free nats on the batch average (free_avg=True). DreamerV3 uses dyn 0.5, rep 0.1, free = 1
    per sample (free_avg=False).

    kl_fn(lhs_params, rhs_params) -> [...]; post, prior: pytrees of distribution params.
    Returns (loss scalar, unclipped KL(q || p) [...] for logging).
    """
    dyn = kl_fn(sg(post), prior)
    rep = kl_fn(post, sg(prior))
    if free_avg:
        dyn_loss = jnp.maximum(dyn.mean(), free)
        rep_loss = jnp.maximum(rep.mean(), free)
    else:
        dyn_loss = jnp.maximum(dyn, free).mean()
        rep_loss = jnp.maximum(rep, free).mean()
    return dyn_scale * dyn_loss + rep_scale * rep_loss, sg(rep)


def symlog(x):
    """sign(x) * log(1 + |x|)  (DreamerV3 Eq. 9)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x):
    """Inverse of symlog: sign(x) * (exp(|x|) - 1)."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def symlog_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> jax.Array:
    """Equally spaced bin centres in symlog space: [num_bins]."""
    return jnp.linspace(low, high, num_bins)


def two_hot(x: jax.Array, bins: jax.Array) -> jax.Array:
    """Two-hot encoding of scalars over sorted bins: weights on the two nearest bins.

    x: [...] (already in bin space, e.g. symlog(r)) -> [..., K]; values outside the range clip to
    the end bins. The encoding's mean over the bins equals x for x inside the range.
    """
    x = jnp.clip(x, bins[0], bins[-1])
    above = jnp.clip(jnp.searchsorted(bins, x, side="right"), 1, bins.shape[0] - 1)
    below = above - 1
    width = bins[above] - bins[below]
    w_above = (x - bins[below]) / width
    k = bins.shape[0]
    return (jax.nn.one_hot(below, k) * (1.0 - w_above)[..., None]
            + jax.nn.one_hot(above, k) * w_above[..., None])


def two_hot_loss(logits: jax.Array, target: jax.Array, bins: jax.Array) -> jax.Array:
    """Cross-entropy of bin logits [..., K] against two_hot(symlog(target)) [...] -> [...]."""
    labels = two_hot(symlog(target), bins)
    return -(labels * jax.nn.log_softmax(logits, -1)).sum(-1)


def two_hot_mean(logits: jax.Array, bins: jax.Array) -> jax.Array:
    """Expected value symexp(sum_k softmax(logits)_k * bins_k).  [..., K] -> [...]."""
    return symexp((jax.nn.softmax(logits, -1) * bins).sum(-1))
