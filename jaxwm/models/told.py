"""TOLD: the decoder-free latent world model of TD-MPC, TD-MPC2 and FOWM, and its losses.

Components (Hansen, Wang & Su, "Temporal Difference Learning for Model Predictive Control",
ICML 2022): encoder z = h(s), latent dynamics z' = d(z, a), reward R(z, a), an ensemble of
Q(z, a) and a policy prior pi(z). TD-MPC2 (Hansen, Su & Wang, ICLR 2024) normalizes latents
with SimNorm, uses LayerNorm + Mish MLPs, two-hot symlog reward/Q heads (101 bins), five Qs and a
maximum-entropy Gaussian policy. FOWM (Feng et al., "Finetuning Offline World Models in the Real
World", CoRL 2023) adds a state value V(z) learned by expectile regression (IQL, Kostrikov
et al. 2022), TD targets r + gamma V(z') and an AWR policy (Peng et al. 2019).

Everything is a pure function of parameter pytrees. The Q-ensemble is one parameter tree stacked
on a leading axis E (`jaxwm.ensemble.init`: `jax.vmap(init)(keys)`) applied with `jax.vmap`
(`jaxwm.ensemble.apply`). Batches are time-major
sequences from the replay buffer (Dreamer convention, see `jaxwm.data.replay`):
  'vector' float [H + 1, B, D], 'action' float [H + 1, B, A] (a_t taken after observing o_t; the
  last one is unused), 'reward' float [H + 1, B] (received on arriving at o_t), 'is_first',
  'is_terminal' bool [H + 1, B]. Transition t is (o_t, a_t, reward[t + 1], o_{t + 1}); it and every
  later one are masked out once a reset (is_first[k], 1 <= k <= t + 1) is crossed.
"""
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxwm import distributions as dists
from jaxwm import ensemble
from jaxwm.nn import ACTIVATIONS, MLP, get_activation, simnorm

sg = jax.lax.stop_gradient

LATENT_NORMS = ("none", "simnorm", "sigmoid")
HEADS = ("scalar", "twohot")
POLICIES = ("deterministic", "gaussian")
VALUE_LEARNING = ("td", "iql")
POLICY_OBJECTIVES = ("max_q", "awr")


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
def model_config(variant: str = "tdmpc") -> ml_collections.ConfigDict:
    """Published TOLD defaults: 'tdmpc' (TD-MPC's official config), 'tdmpc2' (TD-MPC2's) or 'fowm'
    (FOWM's TD-MPC with a value head; official cfgs/config.yaml)."""
    variants = ("tdmpc", "tdmpc2", "fowm")
    if variant not in variants:
        raise ValueError(f"model variant={variant!r} is not one of {variants}")
    c = ml_collections.ConfigDict()
    c.latent_dim = 50            # size of z (TD-MPC 50, TD-MPC2 512)
    c.enc_dim = 256              # hidden width of the state encoder
    c.enc_layers = 1             # hidden layers of the encoder
    c.mlp_dim = 512              # hidden width of dynamics, reward, policy, Q and V nets
    c.act = "elu"                # hidden activation: 'elu' (TD-MPC) or 'mish' (TD-MPC2, FOWM)
    c.layer_norm = False         # LayerNorm before every hidden activation (TD-MPC2, FOWM)
    c.latent_norm = "none"       # z normalization: 'none', 'simnorm' (TD-MPC2), 'sigmoid' (FOWM)
    c.simnorm_dim = 8            # SimNorm group size
    c.num_q = 2                  # Q-ensemble size E (TD-MPC 2, TD-MPC2 / FOWM 5)
    c.q_tanh_first = True        # Q/V first layer LayerNorm + tanh (TD-MPC, FOWM)
    c.head = "scalar"            # reward/Q heads: 'scalar' (MSE) or 'twohot' (symlog CE, TD-MPC2)
    c.num_bins = 101             # two-hot bins (TD-MPC2: 101 over symlog [-10, 10])
    c.bin_range = 10.0           # two-hot bins span [-bin_range, bin_range] in symlog space
    c.policy = "deterministic"   # 'deterministic' (tanh mean + fixed noise) or 'gaussian' (TD-MPC2)
    c.log_std_min = -10.0        # Gaussian policy log-std range (TD-MPC2)
    c.log_std_max = 2.0          # Gaussian policy log-std range (TD-MPC2)
    c.value_learning = "td"      # Q targets: 'td' r + gamma Q'(z', pi(z')); 'iql' r + gamma V(z')
    c.policy_objective = "max_q" # 'max_q' maximize Q(z, pi(z)) or 'awr' (FOWM offline)
    c.ema_encoder = True         # consistency targets from the EMA encoder (TD-MPC, FOWM)
    c.horizon = 5                # H: latent rollout length of the loss (TD-MPC 5, TD-MPC2 3)
    c.rho = 0.5                  # temporal weight rho^t of every loss term
    c.gamma = 0.99               # discount
    c.consistency_coef = 2.0     # latent consistency loss weight (TD-MPC 2, TD-MPC2 / FOWM 20)
    c.reward_coef = 0.5          # reward loss weight (TD-MPC / FOWM 0.5, TD-MPC2 0.1)
    c.value_coef = 0.1           # Q (and V) loss weight
    c.entropy_coef = 1e-4        # policy entropy bonus (gaussian policy only, TD-MPC2)
    c.policy_std = 0.05          # noise std of the deterministic policy in targets/planning
    c.expectile = 0.7            # IQL expectile tau of V (FOWM 0.7 D4RL, 0.9 xArm)
    c.awr_scale = 3.0            # AWR inverse temperature ("A_scaling" in FOWM)
    c.awr_max_weight = 100.0     # AWR weight clamp
    c.scale_tau = 0.01           # EMA rate of TD-MPC2's Q percentile scale in the policy loss
    c.tau = 0.01                 # EMA rate of the target encoder / Qs
    c.target_every = 2           # gradient steps between EMA updates (TD-MPC update_freq)
    c.lr = 1e-3                  # Adam learning rate (TD-MPC 1e-3, TD-MPC2 / FOWM 3e-4)
    c.grad_clip = 10.0           # global-norm gradient clip (TD-MPC 10, TD-MPC2 20)
    c.enc_lr_scale = 1.0         # encoder learning rate = lr * enc_lr_scale (TD-MPC2 0.3)
    c.pi_eps = 1e-8              # Adam epsilon of the policy prior (TD-MPC2 1e-5)
    c.dropout = 0.0              # dropout after the Q nets' first layer in training (TD-MPC2 0.01)
    if variant == "tdmpc2":
        c.latent_dim, c.enc_layers, c.act, c.layer_norm = 512, 1, "mish", True
        c.latent_norm, c.num_q, c.q_tanh_first, c.head = "simnorm", 5, False, "twohot"
        c.policy, c.ema_encoder, c.horizon = "gaussian", False, 3
        c.consistency_coef, c.reward_coef, c.lr, c.grad_clip, c.target_every = 20., .1, 3e-4, 20., 1
        c.enc_lr_scale, c.pi_eps, c.dropout = 0.3, 1e-5, 0.01
    elif variant == "fowm":
        c.act, c.layer_norm, c.latent_norm, c.num_q = "mish", True, "sigmoid", 5
        c.value_learning, c.policy_objective = "iql", "awr"
        c.consistency_coef, c.lr = 20.0, 3e-4
    return c


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")


def _check_positive(name, value, integer=True):
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive {'int' if integer else 'number'}")


def check_config(c: ml_collections.ConfigDict, prefix: str = "model") -> None:
    """Raises ValueError naming the bad field of a TOLD config and its allowed values."""
    _check_choice(f"{prefix}.act", c.act, sorted(ACTIVATIONS))
    _check_choice(f"{prefix}.latent_norm", c.latent_norm, LATENT_NORMS)
    _check_choice(f"{prefix}.head", c.head, HEADS)
    _check_choice(f"{prefix}.policy", c.policy, POLICIES)
    _check_choice(f"{prefix}.value_learning", c.value_learning, VALUE_LEARNING)
    _check_choice(f"{prefix}.policy_objective", c.policy_objective, POLICY_OBJECTIVES)
    for name in ("latent_dim", "enc_dim", "enc_layers", "mlp_dim", "num_bins", "horizon",
                 "target_every", "simnorm_dim"):
        _check_positive(f"{prefix}.{name}", c[name])
    for name in ("lr", "grad_clip", "bin_range", "awr_max_weight", "enc_lr_scale", "pi_eps"):
        _check_positive(f"{prefix}.{name}", c[name], integer=False)
    if c.num_q < 2:
        raise ValueError(f"{prefix}.num_q={c.num_q!r} must be an int >= 2 (targets use a min of 2)")
    if c.latent_norm == "simnorm" and c.latent_dim % c.simnorm_dim:
        raise ValueError(f"{prefix}.latent_dim={c.latent_dim} must be divisible by "
                         f"{prefix}.simnorm_dim={c.simnorm_dim} for latent_norm='simnorm'")
    if c.policy_objective == "awr" and c.value_learning != "iql":
        raise ValueError(f"{prefix}.policy_objective='awr' needs {prefix}.value_learning='iql' "
                         f"(advantages use V); got {c.value_learning!r}")
    for name in ("rho", "tau", "scale_tau"):
        if not 0.0 < c[name] <= 1.0:
            raise ValueError(f"{prefix}.{name}={c[name]!r} must be in (0, 1]")
    for name in ("gamma", "expectile", "dropout"):
        if not 0.0 <= c[name] < 1.0:
            raise ValueError(f"{prefix}.{name}={c[name]!r} must be in [0, 1)")


# ------------------------------------------------------------------------------------------------
# Core maths (unbatched-friendly, elementwise)
# ------------------------------------------------------------------------------------------------
def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Asymmetric L2 of IQL (Kostrikov et al. 2022): |tau - 1(u < 0)| u^2, u = Q - V.

    diff: [...] -> [...]. tau > 0.5 pushes V towards an upper expectile of Q.
    """
    chex.assert_type(diff, float)
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * jnp.square(diff)


def awr_weights(q: jax.Array, v: jax.Array, scale: float, max_weight: float) -> jax.Array:
    """Advantage weights min(exp(scale * (Q - V)), max_weight) of AWR (Peng et al. 2019) as
    clamped in FOWM (A_scaling 3, clamp 100).  q, v: [...] -> [...] (no gradient)."""
    chex.assert_equal_shape([q, v])
    return sg(jnp.minimum(jnp.exp(scale * (q - v)), max_weight))


def rho_weights(horizon: int, rho: float) -> jax.Array:
    """Temporal loss weights rho^t, t = 0..H-1: [H]."""
    return rho ** jnp.arange(horizon, dtype=jnp.float32)


def transition_mask(is_first: jax.Array) -> jax.Array:
    """Valid transitions of sequences [H + 1, B]: mask[t] = prod_{k=1}^{t+1} (1 - is_first[k]).

    is_first: bool [H + 1, B] -> float [H, B]. Transition t crosses no episode reset.
    """
    chex.assert_rank(is_first, 2)
    return jnp.cumprod(1.0 - is_first[1:].astype(jnp.float32), axis=0)


def min_of_two(values: jax.Array, key: jax.Array) -> jax.Array:
    """Min over two distinct members drawn at random from an ensemble (TD-MPC2; the
    min of both for E = 2).  values: [E, ...] -> [...]."""
    idx = jax.random.choice(key, values.shape[0], (2,), replace=False)
    return jnp.min(values[idx], axis=0)


def ema(target, online, tau: float):
    """Polyak averaging target <- (1 - tau) target + tau online (pytrees of equal structure)."""
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Log density of a diagonal Gaussian summed over the last axis: [..., A] -> [...]."""
    z = (x - mean) * jnp.exp(-log_std)
    return (-0.5 * jnp.square(z) - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


# ------------------------------------------------------------------------------------------------
# Networks (flax linen, used only through init/apply)
# ------------------------------------------------------------------------------------------------
class LatentNet(nn.Module):
    """MLP to a latent of size `latent_dim`, normalized by `latent_norm`: [..., D] -> [..., L].

    'simnorm': LayerNorm then softmax over groups (TD-MPC2); 'sigmoid': LayerNorm then sigmoid
    (FOWM); 'none': linear output (TD-MPC)."""
    hidden: tuple
    latent_dim: int
    act: str
    layer_norm: bool
    latent_norm: str
    simnorm_dim: int = 8

    @nn.compact
    def __call__(self, x):
        z = MLP(self.hidden, self.latent_dim, self.act, self.layer_norm)(x)
        if self.latent_norm == "simnorm":
            return simnorm(nn.LayerNorm()(z), self.simnorm_dim)
        if self.latent_norm == "sigmoid":
            return jax.nn.sigmoid(nn.LayerNorm()(z))
        return z


class ValueNet(nn.Module):
    """Q(z, a) / V(z) net: [..., I] -> [..., out], zero-initialized output layer.

    tanh_first: first hidden layer is Dense -> LayerNorm -> tanh (TD-MPC, FOWM official code);
    dropout: rate after the first Dense when not `deterministic` (TD-MPC2's Q nets)."""
    hidden: int
    out: int
    act: str
    layer_norm: bool
    tanh_first: bool
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        x = nn.Dense(self.hidden)(x)
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        if self.tanh_first:
            x = jnp.tanh(nn.LayerNorm()(x))
        else:
            x = get_activation(self.act)(nn.LayerNorm()(x) if self.layer_norm else x)
        return MLP((self.hidden,), self.out, self.act, self.layer_norm and not self.tanh_first,
                   out_init_scale=0.0)(x)


def _concat(z, a):
    return jnp.concatenate([z, a], -1)


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
class TOLD:
    """Static description of a TOLD model; every method is a pure function of params.

    Params come in two trees, optimized separately: `params` = {'encoder', 'dynamics', 'reward',
    'q' (stacked [E, ...]), 'v' (iql only)} and `pi_params` (the policy prior).
    config: a `model_config(...)` ConfigDict; obs_size D, action_size A.
    """

    def __init__(self, config: ml_collections.ConfigDict, obs_size: int, action_size: int):
        check_config(config)
        _check_positive("obs_size", obs_size)
        _check_positive("action_size", action_size)
        c = self.config = config
        self.obs_size, self.action_size = obs_size, action_size
        self.bins = (dists.symlog_bins(c.num_bins, -c.bin_range, c.bin_range)
                     if c.head == "twohot" else None)
        head_out = c.num_bins if c.head == "twohot" else 1
        mlp = (c.mlp_dim, c.mlp_dim)
        self.encoder = LatentNet((c.enc_dim,) * c.enc_layers, c.latent_dim, c.act, c.layer_norm,
                                 c.latent_norm, c.simnorm_dim)
        self.dynamics = LatentNet(mlp, c.latent_dim, c.act, c.layer_norm, c.latent_norm,
                                  c.simnorm_dim)
        self.reward_net = MLP(mlp, head_out, c.act, c.layer_norm, out_init_scale=0.0)
        pi_out = 2 * action_size if c.policy == "gaussian" else action_size
        self.pi_net = MLP(mlp, pi_out, c.act, c.layer_norm)
        self.q_net = ValueNet(c.mlp_dim, head_out, c.act, c.layer_norm, c.q_tanh_first, c.dropout)
        self.v_net = ValueNet(c.mlp_dim, 1, c.act, c.layer_norm, c.q_tanh_first)

    # --- parameters ------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[dict, Any]:
        """(params, pi_params); params['q'] has a leading ensemble axis E = num_q."""
        c = self.config
        k_enc, k_dyn, k_rew, k_q, k_v, k_pi = jax.random.split(key, 6)
        obs = jnp.zeros((1, self.obs_size))
        z = jnp.zeros((1, c.latent_dim))
        za = jnp.zeros((1, c.latent_dim + self.action_size))
        params = {
            "encoder": self.encoder.init(k_enc, obs),
            "dynamics": self.dynamics.init(k_dyn, za),
            "reward": self.reward_net.init(k_rew, za),
            "q": ensemble.init(lambda k: self.q_net.init(k, za), k_q, c.num_q),
        }
        if c.value_learning == "iql":
            params["v"] = self.v_net.init(k_v, z)
        return params, self.pi_net.init(k_pi, z)

    def target_params(self, params: dict) -> dict:
        """The EMA-tracked subset: {'encoder', 'q'}."""
        return {"encoder": params["encoder"], "q": params["q"]}

    # --- pieces ----------------------------------------------------------------------------
    def encode(self, params, obs):
        """h: obs [..., D] -> z [..., L]."""
        return self.encoder.apply(params["encoder"], obs)

    def next(self, params, z, a):
        """d: z [..., L], a [..., A] -> z' [..., L]."""
        return self.dynamics.apply(params["dynamics"], _concat(z, a))

    def _decode(self, out):
        return out[..., 0] if self.bins is None else dists.two_hot_mean(out, self.bins)

    def _head_loss(self, out, target):
        """Per-element loss of a reward/Q head output [..., 1 or K] against targets [...]."""
        if self.bins is None:
            return jnp.square(out[..., 0] - target)
        return dists.two_hot_loss(out, target, self.bins)

    def reward(self, params, z, a):
        """R: expected reward [...]."""
        return self._decode(self.reward_net.apply(params["reward"], _concat(z, a)))

    def q_outputs(self, q_params, z, a, dropout_key=None):
        """Raw head outputs of every member: [E, ..., 1 or K] (vmap over the stacked axis).
        dropout_key: train-mode dropout (`config.dropout`), a key per member; None: eval mode
        (TD-MPC2 computes TD targets and plans in eval mode)."""
        za = _concat(z, a)
        if dropout_key is None or not self.config.dropout:
            return ensemble.apply(self.q_net.apply, q_params, za)
        keys = jax.random.split(dropout_key, ensemble.size(q_params))
        train = lambda p, k: self.q_net.apply(p, za, False, rngs={"dropout": k})  # noqa: E731
        return jax.vmap(train)(q_params, keys)

    def q_values(self, q_params, z, a, dropout_key=None):
        """Q_e(z, a) for e = 1..E: [E, ...]."""
        return self._decode(self.q_outputs(q_params, z, a, dropout_key))

    def v_value(self, params, z):
        """V(z): [...] (iql only)."""
        return self.v_net.apply(params["v"], z)[..., 0]

    def pi_dist(self, pi_params, z):
        """(mean, log_std) of pi(.|z) in action space [..., A]. Deterministic: tanh mean, log_std
        of the fixed noise `policy_std`; gaussian: pre-squash mean and a bounded log-std."""
        c = self.config
        out = self.pi_net.apply(pi_params, z)
        if c.policy == "deterministic":
            mean = jnp.tanh(out)
            return mean, jnp.full_like(mean, jnp.log(c.policy_std))
        mean, log_std = jnp.split(out, 2, -1)
        log_std = c.log_std_min + 0.5 * (c.log_std_max - c.log_std_min) * (jnp.tanh(log_std) + 1)
        return mean, log_std

    def pi(self, pi_params, z, key, noise: bool = True):
        """Sample a ~ pi(.|z): ([..., A] in [-1, 1], log-prob [...]).

        deterministic (TD-MPC): tanh(mu) + clip(N(0, policy_std), +-0.3), clipped to [-1, 1];
        log-prob is that of the unclipped Gaussian. gaussian (TD-MPC2): tanh(mu + std eps) with the
        tanh change of variables. noise=False returns the mode.
        """
        c = self.config
        mean, log_std = self.pi_dist(pi_params, z)
        eps = jax.random.normal(key, mean.shape) if noise else jnp.zeros_like(mean)
        if c.policy == "deterministic":
            delta = jnp.clip(jnp.exp(log_std) * eps, -0.3, 0.3)
            return jnp.clip(mean + delta, -1.0, 1.0), gaussian_log_prob(mean + delta, mean, log_std)
        pre = mean + jnp.exp(log_std) * eps
        action = jnp.tanh(pre)
        log_prob = gaussian_log_prob(pre, mean, log_std) - jnp.log(
            jax.nn.relu(1.0 - jnp.square(action)) + 1e-6).sum(-1)
        return action, log_prob

    def pi_log_prob(self, pi_params, z, action):
        """log pi(a | z) of given actions [..., A] -> [...], for AWR.

        deterministic: FOWM's Gaussian around tanh(mu) with unit std (a weighted MSE); gaussian:
        the squashed Gaussian at atanh(a) (a clipped to +-0.999)."""
        mean, log_std = self.pi_dist(pi_params, z)
        if self.config.policy == "deterministic":
            return gaussian_log_prob(action, mean, jnp.zeros_like(log_std))
        a = jnp.clip(action, -0.999, 0.999)
        return gaussian_log_prob(jnp.arctanh(a), mean, log_std) - jnp.log(1.0 - a * a).sum(-1)

    # --- losses ----------------------------------------------------------------------------
    def rollout(self, params, z0, actions):
        """Latent rollout z_{t+1} = d(z_t, a_t) by `lax.scan`.

        z0 [B, L], actions [H, B, A] -> (zs [H + 1, B, L], reward outputs [H, B, 1 or K])."""
        def body(z, a):
            za = _concat(z, a)
            z_next = self.dynamics.apply(params["dynamics"], za)
            return z_next, (z_next, self.reward_net.apply(params["reward"], za))
        _, (zs, rewards) = jax.lax.scan(body, z0, actions)
        return jnp.concatenate([z0[None], zs], 0), rewards

    def world_model_loss(self, params, pi_params, target, batch, key, sample_weights=None):
        """TOLD objective of TD-MPC, TD-MPC2 and FOWM on sequences [H + 1, B]:

          sum_t rho^t [ c1 ||z_{t+1} - sg(h'(o_{t+1}))||^2 + c2 l(R(z_t, a_t), r_t)
                        + c3 sum_e l(Q_e(z_t, a_t), y_t)
                        (+ c3 L_tau(min2 Q'(z_t, a_t) - V(z_t)))  ] / H

        y_t = r_t + gamma (1 - terminal) [min2_e Q'_e(z', pi(z'))  ('td')  |  V(z')  ('iql')],
        z' = sg(h(o_{t+1})); primes are EMA targets; l is MSE or two-hot CE. Q losses are summed
        over members for scalar heads (TD-MPC, FOWM) and averaged for two-hot (TD-MPC2).
        sample_weights [B]: prioritized replay's importance weights on each sequence's loss.
        Returns (loss, (metrics, zs [H + 1, B, L] for the policy loss, priorities [B])), the
        priorities as in TD-MPC's official code: min(sum_t rho^t sum_e |Q_e(z_t, a_t) - y_t|, 1e4).
        """
        c = self.config
        obs = batch["vector"].astype(jnp.float32)
        chex.assert_rank(obs, 3)
        horizon = obs.shape[0] - 1
        actions = batch["action"][:-1].astype(jnp.float32)
        rewards = batch["reward"][1:].astype(jnp.float32)
        cont = 1.0 - batch["is_terminal"][1:].astype(jnp.float32)
        mask = transition_mask(batch["is_first"])
        rho = rho_weights(horizon, c.rho)[:, None]
        weights = rho * mask                                           # [H, B]
        k_pi, k_min, k_v, k_drop = jax.random.split(key, 4)

        next_z = sg(self.encode(params, obs[1:]))                      # [H, B, L]
        z_target = (self.encode(target, obs[1:]) if c.ema_encoder else next_z)
        if c.value_learning == "iql":
            bootstrap = self.v_value(params, next_z)
        else:
            next_a, _ = self.pi(pi_params, next_z, k_pi)
            bootstrap = min_of_two(self.q_values(target["q"], next_z, next_a), k_min)
        td_target = sg(rewards + c.gamma * cont * bootstrap)          # [H, B]

        zs, reward_out = self.rollout(params, self.encode(params, obs[0]), actions)
        consistency = jnp.square(zs[1:] - sg(z_target)).mean(-1)       # [H, B]
        reward_loss = self._head_loss(reward_out, rewards)
        q_out = self.q_outputs(params["q"], zs[:-1], actions, k_drop)  # [E, H, B, .]
        q_loss = jax.vmap(self._head_loss, in_axes=(0, None))(q_out, td_target)
        q_loss = q_loss.sum(0) if self.bins is None else q_loss.mean(0)

        def per_sequence(x):
            return (weights * x).sum(0)                               # [B]

        parts = {"consistency_loss": per_sequence(consistency),
                 "reward_loss": per_sequence(reward_loss), "value_loss": per_sequence(q_loss)}
        total = (c.consistency_coef * parts["consistency_loss"]
                 + c.reward_coef * parts["reward_loss"] + c.value_coef * parts["value_loss"])
        q_values = self._decode(q_out)
        metrics = {}
        if c.value_learning == "iql":
            z_sg = sg(zs[:-1])
            q_data = sg(min_of_two(self.q_values(target["q"], z_sg, actions), k_v))
            v = self.v_value(params, z_sg)
            parts["v_loss"] = per_sequence(expectile_loss(q_data - v, c.expectile))
            total = total + c.value_coef * parts["v_loss"]
            metrics["v_mean"] = v.mean()
        metrics.update({k: x.mean() for k, x in parts.items()})
        if sample_weights is not None:
            total = sample_weights * total
        total = total.mean() / horizon
        priorities = jnp.minimum(per_sequence(jnp.abs(sg(q_values) - td_target).sum(0)), 1e4)
        metrics.update(model_loss=total, q_mean=q_values.mean(),
                       q_std=q_values.std(0, ddof=1).mean(), td_target=td_target.mean(),
                       mask_frac=mask.mean())
        return total, (metrics, sg(zs), priorities)

    def policy_loss(self, pi_params, params, target, zs, batch, q_scale, key):
        """Policy prior objective on latents zs [H + 1, B, L] (no gradient into the model).

        'max_q' (TD-MPC, TD-MPC2): sum_t rho^t [alpha log pi(a|z_t) - Q(z_t, a) / s],
          a ~ pi(z_t); Q = min of the two Qs (E = 2) or the mean of two random members (TD-MPC2),
          s = max(1, running 5-95% Q range) for two-hot heads, else 1; alpha for gaussian only.
        'awr' (FOWM): -sum_t rho^t mask_t w_t log pi(a_t | z_t), w = min(exp(A (Q' - V)), 100)
          with Q' = min2 target Q on dataset actions a_t.
        Returns (loss, metrics).
        """
        c = self.config
        horizon = zs.shape[0] - 1
        k_pi, k_q, k_drop = jax.random.split(key, 3)
        if c.policy_objective == "awr":
            actions = batch["action"][:-1].astype(jnp.float32)
            mask = transition_mask(batch["is_first"])
            z = zs[:-1]
            q = min_of_two(self.q_values(target["q"], z, actions), k_q)
            v = self.v_value(params, z)
            w = awr_weights(q, v, c.awr_scale, c.awr_max_weight)
            log_prob = self.pi_log_prob(pi_params, z, actions)
            weights = rho_weights(horizon, c.rho)[:, None] * mask
            loss = -(weights * w * log_prob).sum(0).mean() / horizon
            return loss, {"pi_loss": loss, "awr_weight": w.mean(), "advantage": (q - v).mean(),
                          "pi_log_prob": log_prob.mean()}
        action, log_prob = self.pi(pi_params, zs, k_pi)
        qs = self.q_values(params["q"], zs, action, k_drop)           # [E, H + 1, B]
        if c.num_q == 2:
            q = qs.min(0)
        else:
            idx = jax.random.choice(k_q, c.num_q, (2,), replace=False)
            q = qs[idx].mean(0)
        q = q / jnp.maximum(q_scale, 1.0)
        alpha = c.entropy_coef if c.policy == "gaussian" else 0.0
        per_step = (alpha * log_prob - q).mean(-1)                    # [H + 1]
        loss = (rho_weights(horizon + 1, c.rho) * per_step).sum() / (horizon + 1)
        return loss, {"pi_loss": loss, "pi_q": q.mean(), "pi_log_prob": log_prob.mean()}

    def q_scale_update(self, q_scale, params, zs, pi_params, key):
        """TD-MPC2's running scale of Q: EMA of the 5-95 percentile range of Q(z_0, pi(z_0))."""
        c = self.config
        if self.bins is None:
            return q_scale
        action, _ = self.pi(pi_params, zs[0], key)
        q = sg(self.q_values(params["q"], zs[0], action).mean(0))
        spread = jnp.percentile(q, 95) - jnp.percentile(q, 5)
        return q_scale + c.scale_tau * (spread - q_scale)


def ensemble_std(qs: jax.Array) -> jax.Array:
    """Disagreement of an ensemble: sample std over the leading axis, [E, ...] -> [...] (FOWM's
    uncertainty u(z, a), torch.std semantics)."""
    chex.assert_axis_dimension_gt(qs, 0, 1)
    return qs.std(0, ddof=1)
