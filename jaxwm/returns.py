"""Discounted returns, lambda-returns and running return normalizers.

Core maths in the style of rlax: functions take *unbatched* sequences `[H]`, open with chex
checks, and are `jax.vmap`ped by callers over batch axes (see `batched_lambda_returns`).

Conventions (one imagined or real trajectory of H transitions):
  rewards   [H]      r_t, received on the transition s_t -> s_{t+1}
  discounts [H]      gamma_t = gamma * (1 - terminal(s_{t+1})), applied to what follows s_{t+1}
  values    [H + 1]  v(s_0), ..., v(s_H); v(s_H) bootstraps the tail

References: Sutton & Barto (2018), Sec. 12.1 (lambda-return); Hafner et al., "Dream to Control"
(DreamerV1, 2020), Eq. 6 and "Mastering Atari with Discrete World Models" (DreamerV2, 2021),
Eq. 4; Hafner et al., "Mastering Diverse Domains through World Models" (DreamerV3, 2023),
Sec. 3 (return normalization by the 5th-95th percentile range).
"""
import chex
import flax.struct
import jax
import jax.numpy as jnp


def discounted_returns(rewards: jax.Array, discounts: jax.Array,
                       bootstrap: jax.Array) -> jax.Array:
    """Discounted Monte-Carlo returns G_t = r_t + gamma_t * G_{t+1}, with G_H = bootstrap.

    rewards [H], discounts [H], bootstrap [] -> returns [H].
    """
    chex.assert_rank([rewards, discounts, bootstrap], [1, 1, 0])
    chex.assert_equal_shape([rewards, discounts])
    chex.assert_type([rewards, discounts], float)

    def step(acc, inputs):
        r, g = inputs
        acc = r + g * acc
        return acc, acc

    _, returns = jax.lax.scan(step, bootstrap.astype(rewards.dtype), (rewards, discounts),
                              reverse=True)
    return returns


def lambda_returns(rewards: jax.Array, discounts: jax.Array, values: jax.Array,
                   lambda_: float) -> jax.Array:
    """TD(lambda) returns (DreamerV2 Eq. 4):

        R_t = r_t + gamma_t * ((1 - lambda) * v(s_{t+1}) + lambda * R_{t+1}),   R_H = v(s_H).

    lambda = 1 gives discounted Monte-Carlo returns bootstrapped by v(s_H); lambda = 0 gives
    one-step TD targets r_t + gamma_t * v(s_{t+1}).
    rewards [H], discounts [H], values [H + 1] (v(s_0) is unused) -> returns [H].
    """
    chex.assert_rank([rewards, discounts, values], 1)
    chex.assert_equal_shape([rewards, discounts])
    chex.assert_shape(values, (rewards.shape[0] + 1,))
    chex.assert_type([rewards, discounts, values], float)
    next_values = values[1:]

    def step(acc, inputs):
        r, g, v = inputs
        acc = r + g * ((1.0 - lambda_) * v + lambda_ * acc)
        return acc, acc

    _, returns = jax.lax.scan(step, values[-1], (rewards, discounts, next_values), reverse=True)
    return returns


def batched_lambda_returns(rewards, discounts, values, lambda_: float) -> jax.Array:
    """`lambda_returns` vmapped over a trailing batch axis: [H, N], [H, N], [H + 1, N] -> [H, N]."""
    fn = jax.vmap(lambda r, d, v: lambda_returns(r, d, v, lambda_), in_axes=1, out_axes=1)
    return fn(rewards, discounts, values)


def discount_weights(discounts: jax.Array) -> jax.Array:
    """Cumulative discount of reaching each state: w_0 = 1, w_t = prod_{k < t} gamma_k.

    DreamerV2 weights every imagined step's actor and critic loss by w_t, so steps after a
    predicted episode end count less. discounts [H] -> weights [H + 1].
    """
    chex.assert_rank(discounts, 1)
    return jnp.concatenate([jnp.ones((1,), discounts.dtype), jnp.cumprod(discounts)])


# --- running normalizers ---------------------------------------------------------------------

@flax.struct.dataclass
class PercentileState:
    """Exponential moving averages of a low and a high percentile of a signal (DreamerV3)."""
    low: jax.Array      # [] EMA of the `low_q` percentile
    high: jax.Array     # [] EMA of the `high_q` percentile
    count: jax.Array    # int32 [] number of updates (0: not yet initialized)


def percentile_init() -> PercentileState:
    return PercentileState(low=jnp.zeros(()), high=jnp.zeros(()),
                           count=jnp.zeros((), jnp.int32))


def percentile_update(state: PercentileState, x: jax.Array, decay: float = 0.99,
                      low_q: float = 5.0, high_q: float = 95.0) -> PercentileState:
    """Fold the `low_q`/`high_q` percentiles of all entries of x [...] into the EMAs.

    The first update sets the EMAs to the batch percentiles instead of decaying from zero.
    """
    x = jax.lax.stop_gradient(x).reshape(-1).astype(jnp.float32)
    lo, hi = jnp.percentile(x, low_q), jnp.percentile(x, high_q)
    first = state.count == 0
    mix = lambda old, new: jnp.where(first, new, decay * old + (1 - decay) * new)  # noqa: E731
    return PercentileState(low=mix(state.low, lo), high=mix(state.high, hi),
                           count=state.count + 1)


def percentile_scale(state: PercentileState, minimum: float = 1.0) -> jax.Array:
    """DreamerV3's return scale S = max(minimum, P_high - P_low): returns are divided by S, so
    large returns are squashed to a unit range while small ones are left as they are."""
    return jnp.maximum(minimum, state.high - state.low)


@flax.struct.dataclass
class MomentState:
    """Exponential moving average of the second moment of a signal (a running RMS scale)."""
    sq: jax.Array       # [] EMA of mean(x ** 2)
    count: jax.Array    # int32 []


def moment_init() -> MomentState:
    return MomentState(sq=jnp.zeros(()), count=jnp.zeros((), jnp.int32))


def moment_update(state: MomentState, x: jax.Array, decay: float = 0.99) -> MomentState:
    """Fold mean(x ** 2) over all entries of x [...] into the EMA (first update: set)."""
    sq = jnp.mean(jnp.square(jax.lax.stop_gradient(x).astype(jnp.float32)))
    new = jnp.where(state.count == 0, sq, decay * state.sq + (1 - decay) * sq)
    return MomentState(sq=new, count=state.count + 1)


def moment_scale(state: MomentState, eps: float = 1e-8) -> jax.Array:
    """Running RMS sqrt(E[x^2]) + eps: dividing by it gives a unit-scale signal (e.g. to make
    two intrinsic reward terms comparable before mixing them)."""
    return jnp.sqrt(state.sq) + eps
