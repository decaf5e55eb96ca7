"""Actor-critic learning purely in imagination (DreamerV2, Hafner et al. 2021, Sec. 2.2).

From every start state (e.g. all posterior states of a training batch, N = T * B) the frozen world
model is rolled out for H steps under the actor (`imagine`, a `lax.scan` over H). The reward of
the imagined transitions is a function passed in, so the same code serves task agents (the
world model's reward head), explorers (Plan2Explore disagreement) and populations (CASCADE).

Maths of one update (per start state, vmapped over N):
  gamma_t = gamma * cont(s_{t+1})                         cont = the world model's discount head
  R_t     = r_t + gamma_t ((1 - lambda) v'(s_{t+1}) + lambda R_{t+1}),  R_H = v'(s_H)  (Eq. 4)
  w_t     = c_0 * prod_{k < t} gamma_k                    weight of the losses at state s_t
            c_0 = the replay's true 1 - is_terminal of the start (DreamerV2), else cont(s_0)
  critic  = mean_t w_t [ -log p_v(sg(R_t) | s_t) + beta_reg (-log p_v(sg(v_slow(s_t)) | s_t)) ]
            p_v: unit Gaussian (V2 Eq. 5: 0.5 (v - R)^2) or DreamerV3's two-hot over symlog bins;
            v' = v_slow (slow target, V2) or sg(v) (V1, V3) bootstraps R; v_slow is a copy/EMA
            of the critic, and beta_reg = `critic_slowreg` pulls v toward it (DreamerV3 Sec. 3)
  actor   = -mean_t w_t [ rho * log pi(a_t | s_t) sg((R_t - v'(s_t)) / S)        REINFORCE
                        + (1 - rho) * R_t / S                                     dynamics backprop
                        + eta * H[pi(. | s_t)] ]                                  (Eq. 6)
with S = 1 or DreamerV3's return scale max(1, P95(R) - P5(R)) (EMA, `returns.percentile_*`).
Actions are straight-through one-hot samples (discrete) or reparameterized samples (continuous),
and the actor's input is sg(feat), so dynamics-backprop gradients reach the actor only through
the actions' effect on later states, rewards and values; the world model is never updated here.

Factoring (every piece is a pure function of explicit params, usable under `jax.vmap` over a
population axis of stacked actor/critic params, as CASCADE needs; Xu et al. 2022):
  ActorCritic.init(key) -> ACState
  ActorCritic.act(actor_params, feat [N, F], key, sample) -> env action int [N] / float [N, A]
  ActorCritic.imagine(wm, wm_params, actor_params, start [N], horizon, key) -> Trajectory
  ActorCritic.losses(actor_params, critic_params, ac_state, wm, wm_params, traj, reward [H, N],
                     start_cont [N] | None) -> (actor_loss, critic_loss, LossAux(norm, metrics))
  ActorCritic.apply_gradients(ac_state, actor_grads, critic_grads, norm) -> ACState
  ActorCritic.update(ac_state, wm, wm_params, start, reward_fn, key, start_cont)
      -> (ACState, metrics)
where reward_fn(traj) -> [H, N] and reward[t] belongs to the transition into traj.states[t + 1].
A population update is then `jax.grad` of the sum over members of `jax.vmap(losses)` applied to
`jax.vmap(imagine)` trajectories, followed by `jax.vmap(apply_gradients)`.
"""
from typing import Any, Callable

import chex
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.scipy.special import ndtr, ndtri

from jaxwm import distributions as dists
from jaxwm import returns as rets
from jaxwm.models import rssm
from jaxwm.models.dreamer import PRESETS
from jaxwm.nn import MLP
from jaxwm.types import TrainState, adam

sg = jax.lax.stop_gradient

ACTOR_DISTS = ("auto", "onehot", "trunc_normal", "normal", "tanh_normal")
ACTOR_GRADS = ("auto", "reinforce", "dynamics", "mix")
RETURN_NORMS = ("none", "percentile")
CRITIC_HEADS = ("normal", "twohot")
TANH_MEAN_SCALE = 5.0          # DreamerV1 tanh_normal: mean = 5 tanh(m / 5) before the tanh
TANH_INIT_STD = 5.0            # and std = softplus(raw + softplus^-1(5)) + min_std


# --- configuration ---------------------------------------------------------------------------

def behavior_config() -> ml_collections.ConfigDict:
    """DreamerV2 Atari actor-critic (the `paper` values; `paper_dmc` switches to DMC's)."""
    c = ml_collections.ConfigDict()
    c.horizon = 15             # imagination horizon H
    c.discount = 0.999         # gamma (0.999 Atari, 0.99 DMC)
    c.return_lambda = 0.95     # lambda of the lambda-returns
    c.discount_head = True     # weight by the model's predicted continue prob (V2 DMC: off)
    c.actor_layers = 4         # actor MLP depth
    c.actor_units = 400        # actor MLP width
    c.critic_layers = 4        # critic MLP depth
    c.critic_units = 400       # critic MLP width
    c.act = "elu"              # activation of actor and critic (V3: 'silu')
    c.layer_norm = False       # LayerNorm before every hidden activation (V3)
    c.actor_dist = "auto"      # 'auto' (onehot / trunc_normal), 'onehot', 'trunc_normal',
    #                            'normal' (V3) or 'tanh_normal' (V1)
    c.actor_min_std = 0.1      # lower bound of the continuous actor's std (V1: 1e-4)
    c.actor_max_std = 1.0      # upper bound of the std ('normal' only, DreamerV3)
    c.actor_unimix = 0.0       # uniform mix of the discrete actor's probs (V3: 0.01)
    c.actor_grad = "auto"      # 'auto' (reinforce if discrete else dynamics), 'reinforce',
    #                            'dynamics' or 'mix'
    c.actor_grad_mix = 0.1     # 'mix': weight of dynamics backprop (DreamerV2: mix * dynamics
    #                            + (1 - mix) * reinforce), so rho = 1 - actor_grad_mix
    c.actor_ent = 1e-3         # entropy bonus eta (1e-3 Atari, 1e-4 DMC)
    c.actor_lr = 4e-5          # actor Adam learning rate (4e-5 Atari, 8e-5 DMC)
    c.critic_lr = 1e-4         # critic Adam learning rate (1e-4 Atari, 8e-5 DMC)
    c.opt_eps = 1e-5           # Adam epsilon
    c.clip = 100.0             # global-norm gradient clip
    c.weight_decay = 1e-6      # decoupled weight decay
    c.critic_head = "normal"   # 'normal' (V1/V2) or 'twohot' (V3: symlog bins, zero-init out)
    c.critic_bins = 255        # two-hot bins over [-20, 20] in symlog space
    c.slow_target = True       # bootstrap the returns from the slow critic (V2; V1/V3: the critic)
    c.slow_target_update = 100  # updates between slow-critic refreshes (V3: 1)
    c.slow_target_fraction = 1.0  # mixing fraction of each refresh (1: copy; V3 EMA: 0.02)
    c.critic_slowreg = 0.0     # weight of the critic's loss toward the slow critic's mean (V3: 1)
    c.return_norm = "none"     # 'none' (V2) or 'percentile' (V3: S = max(1, P95 - P5))
    c.return_norm_decay = 0.99  # EMA decay of the return percentiles
    c.imag_starts = 0          # start states per update drawn from the batch (0: all T * B)
    return c


def apply_behavior_preset(c: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
    """Shrink/adapt a behavior config for a preset; returns c."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    if preset in ("paper_dmc", "cpu", "smoke"):
        c.discount, c.actor_ent, c.actor_lr, c.critic_lr = 0.99, 1e-4, 8e-5, 8e-5
    if preset == "cpu":
        c.actor_layers, c.actor_units, c.critic_layers, c.critic_units = 2, 200, 2, 200
        c.actor_lr, c.critic_lr = 3e-4, 3e-4
        c.imag_starts = 256
    elif preset == "paper_dmc":
        c.discount_head = False    # V2 DMC: pred_discount False (no terminations)
    elif preset == "smoke":
        c.horizon = 5
        c.actor_layers, c.actor_units, c.critic_layers, c.critic_units = 1, 32, 1, 32
        c.actor_lr, c.critic_lr = 1e-3, 1e-3
    return c


# --- state pytrees ---------------------------------------------------------------------------

@flax.struct.dataclass
class ACState:
    """Training state of one actor-critic (stack it on a leading axis for a population)."""
    actor: TrainState                  # actor params + Adam state
    critic: TrainState                 # critic params + Adam state
    slow_critic: Any                   # target critic params v' (copied every `slow_target_update`)
    norm: rets.PercentileState         # running return percentiles (DreamerV3 scale S)
    step: jax.Array                    # int32 [] updates done


@flax.struct.dataclass
class Trajectory:
    """An imagined rollout of H steps from N start states.

    states:  RSSM state pytree [H + 1, N, ...] (states[0] = start)
    feat:    [H + 1, N, F] feat(states)
    actions: [H, N, A] action features (one-hot / continuous); actions[t] is taken in states[t]
    Gradients flow from feat and actions back to the actor params (dynamics backprop).
    """
    states: Any
    feat: jax.Array
    actions: jax.Array


@flax.struct.dataclass
class LossAux:
    """Side outputs of `ActorCritic.losses`."""
    norm: rets.PercentileState         # return normalizer updated with this batch's returns
    metrics: dict                      # scalar diagnostics


# --- core maths (unbatched, vmapped by the caller) ------------------------------------------

def actor_loss(logp: jax.Array, entropy: jax.Array, returns: jax.Array, baseline: jax.Array,
               weights: jax.Array, rho: float, eta: float, scale=1.0) -> jax.Array:
    """DreamerV2 actor loss (Eq. 6) of one imagined trajectory, averaged over its H steps.

    logp [H]: log pi(a_t | s_t) of the taken actions; entropy [H]: H[pi(. | s_t)];
    returns [H]: lambda-returns R_t (carrying dynamics gradients); baseline [H]: v'(s_t);
    weights [H]: w_t; rho: weight of REINFORCE vs dynamics backprop; eta: entropy scale;
    scale: return scale S (a positive scalar). Returns the scalar loss to minimise.
    """
    chex.assert_rank([logp, entropy, returns, baseline, weights], 1)
    chex.assert_equal_shape([logp, entropy, returns, baseline, weights])
    reinforce = logp * sg((returns - baseline) / scale)
    dynamics = returns / scale
    objective = rho * reinforce + (1.0 - rho) * dynamics + eta * entropy
    return -jnp.mean(sg(weights) * objective)


def critic_loss(out: jax.Array, returns: jax.Array, weights: jax.Array,
                slow_values: jax.Array | None = None, slowreg: float = 0.0,
                bins: jax.Array | None = None) -> jax.Array:
    """Weighted NLL of sg(R_t) [H] under the critic, plus `slowreg` times the NLL of the slow
    critic's prediction sg(v_slow(s_t)) [H] (DreamerV3's critic regularizer).

    out: values v(s_t) [H] (unit-variance Gaussian, V2 Eq. 5: 0.5 (v - R)^2) or, with `bins`
    [K], two-hot logits [H, K] (cross-entropy to two_hot(symlog(target)), DreamerV3 Sec. 3).
    """
    chex.assert_rank([returns, weights], 1)
    chex.assert_equal_shape([returns, weights])
    if bins is None:
        nll = lambda target: 0.5 * jnp.square(out - sg(target))  # noqa: E731
    else:
        nll = lambda target: dists.two_hot_loss(out, sg(target), bins)  # noqa: E731
    loss = nll(returns)
    if slowreg:
        loss = loss + slowreg * nll(slow_values)
    return jnp.mean(sg(weights) * loss)


# --- action distributions --------------------------------------------------------------------

def _normal_pdf(x):
    """phi(x), the standard Normal density."""
    return jnp.exp(-0.5 * x ** 2) / jnp.sqrt(2 * jnp.pi)


@jax.custom_jvp
def _ndtri(p):
    """Inverse Normal CDF with its exact derivative d ndtri(p) / dp = 1 / phi(ndtri(p)).

    Same values as `jax.scipy.special.ndtri`, whose derivative JAX would otherwise take through
    its piecewise rational approximation: that backward graph cost ~1 s of the walker
    explorers' training-call compile (benchmarks/README.md)."""
    return ndtri(p)


@_ndtri.defjvp
def _ndtri_jvp(primals, tangents):
    (p,), (dp,) = primals, tangents
    z = ndtri(p)
    return z, dp / _normal_pdf(z)


def _trunc_normal_sample(key, mean, std):
    """Reparameterized sample of N(mean, std) truncated to [-1, 1] (inverse-CDF method)."""
    lo, hi = ndtr((-1.0 - mean) / std), ndtr((1.0 - mean) / std)
    u = jax.random.uniform(key, mean.shape)
    x = mean + std * _ndtri(jnp.clip(lo + u * (hi - lo), 1e-6, 1.0 - 1e-6))
    return x + sg(jnp.clip(x, -1.0, 1.0) - x)


def _trunc_normal_log_z(mean, std):
    lo, hi = ndtr((-1.0 - mean) / std), ndtr((1.0 - mean) / std)
    return jnp.log(jnp.maximum(hi - lo, 1e-6)), lo, hi


def _trunc_normal_log_prob(x, mean, std):
    log_z, _, _ = _trunc_normal_log_z(mean, std)
    z = (x - mean) / std
    return -0.5 * z ** 2 - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(std) - log_z


def _trunc_normal_entropy(mean, std):
    """log(sqrt(2 pi e) std Z) + (a phi(a) - b phi(b)) / (2 Z) for the [-1, 1] truncation."""
    log_z, lo, hi = _trunc_normal_log_z(mean, std)
    a, b = (-1.0 - mean) / std, (1.0 - mean) / std
    z = jnp.maximum(hi - lo, 1e-6)
    return (0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(std) + log_z
            + (a * _normal_pdf(a) - b * _normal_pdf(b)) / (2 * z))


def _normal_log_prob(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(std)


def _normal_entropy(std):
    return 0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(std)


def _log_one_minus_tanh_sq(u):
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


# --- the actor-critic ------------------------------------------------------------------------

class ActorCritic:
    """Static description (config, feature size, action space) of a Dreamer actor-critic.

    config: the `behavior` ConfigDict (`jaxwm.agents.dreamer.config.behavior_config`);
    feat_size: F = size of feat(s); act_space: object with `.discrete` and `.size`.
    Raises ValueError naming the field for an unknown or incompatible config value.
    """

    def __init__(self, config: ml_collections.ConfigDict, feat_size: int, act_space):
        self.config = c = config
        self.feat_size = int(feat_size)
        self.act_space = act_space
        self.discrete = bool(act_space.discrete)
        self.action_size = int(act_space.size)
        _check_choice("behavior.actor_dist", c.actor_dist, ACTOR_DISTS)
        _check_choice("behavior.actor_grad", c.actor_grad, ACTOR_GRADS)
        _check_choice("behavior.return_norm", c.return_norm, RETURN_NORMS)
        _check_choice("behavior.critic_head", c.critic_head, CRITIC_HEADS)
        dist = c.actor_dist
        if dist == "auto":
            dist = "onehot" if self.discrete else "trunc_normal"
        if (dist == "onehot") != self.discrete:
            allowed = ("auto", "onehot") if self.discrete else ("auto", "trunc_normal", "normal")
            raise ValueError(f"behavior.actor_dist={c.actor_dist!r} does not fit a "
                             f"{'discrete' if self.discrete else 'continuous'} action space; "
                             f"allowed: {allowed}")
        self.dist = dist
        grad = c.actor_grad
        if grad == "auto":
            grad = "reinforce" if self.discrete else "dynamics"
        self.rho = {"reinforce": 1.0, "dynamics": 0.0, "mix": 1.0 - c.actor_grad_mix}[grad]
        if not 0.0 <= c.actor_grad_mix <= 1.0:
            raise ValueError(f"behavior.actor_grad_mix={c.actor_grad_mix!r} must be in [0, 1]")
        if c.horizon < 1:
            raise ValueError(f"behavior.horizon={c.horizon!r} must be an int >= 1")
        if not 0.0 <= c.return_lambda <= 1.0:
            raise ValueError(f"behavior.return_lambda={c.return_lambda!r} must be in [0, 1]")
        if c.slow_target_update < 1:
            raise ValueError(f"behavior.slow_target_update={c.slow_target_update!r} must be >= 1")
        if not 0.0 < c.slow_target_fraction <= 1.0:
            raise ValueError(f"behavior.slow_target_fraction={c.slow_target_fraction!r} must be "
                             f"in (0, 1]")
        if c.critic_slowreg < 0.0:
            raise ValueError(f"behavior.critic_slowreg={c.critic_slowreg!r} must be >= 0")
        if c.critic_slowreg and c.slow_target_update == 1 and c.slow_target_fraction == 1.0:
            raise ValueError(
                f"behavior.critic_slowreg={c.critic_slowreg!r} needs a slow critic that lags the "
                f"critic, but behavior.slow_target_update=1 with slow_target_fraction=1.0 copies "
                f"it every update; use an EMA (DreamerV3: fraction 0.02) or a longer period")
        if c.critic_head == "twohot" and c.critic_bins < 2:
            raise ValueError(f"behavior.critic_bins={c.critic_bins!r} must be >= 2 for "
                             f"critic_head='twohot'")
        self.bins = dists.symlog_bins(c.critic_bins) if c.critic_head == "twohot" else None
        out = self.action_size * (1 if dist == "onehot" else 2)
        dense = dict(act=c.act, layer_norm=c.layer_norm)
        self.actor_net = MLP((c.actor_units,) * c.actor_layers, out=out, **dense)
        # DreamerV3 zero-initializes the two-hot critic's output layer (prediction 0 at start)
        self.critic_net = MLP((c.critic_units,) * c.critic_layers,
                              out=1 if self.bins is None else c.critic_bins,
                              out_init_scale=1.0 if self.bins is None else 0.0, **dense)
        self.actor_opt = adam(c.actor_lr, c.opt_eps, c.clip, c.weight_decay)
        self.critic_opt = adam(c.critic_lr, c.opt_eps, c.clip, c.weight_decay)

    # --- params ----------------------------------------------------------------------------
    def init(self, key) -> ACState:
        """Fresh state; `jax.vmap(ac.init)(keys)` builds a population with a leading axis."""
        k_actor, k_critic = jax.random.split(key)
        dummy = jnp.zeros((1, self.feat_size))
        actor = self.actor_net.init(k_actor, dummy)
        critic = self.critic_net.init(k_critic, dummy)
        return ACState(actor=TrainState.create(actor, self.actor_opt),
                       critic=TrainState.create(critic, self.critic_opt),
                       slow_critic=critic, norm=rets.percentile_init(),
                       step=jnp.zeros((), jnp.int32))

    # --- networks --------------------------------------------------------------------------
    def critic_out(self, critic_params, feat) -> jax.Array:
        """Critic output: v(s) [...] ('normal') or two-hot logits [..., K] ('twohot')."""
        out = self.critic_net.apply(critic_params, feat)
        return out[..., 0] if self.bins is None else out

    def value(self, critic_params, feat) -> jax.Array:
        """v(s): feat [..., F] -> [...] (the two-hot head's symexp'd mean)."""
        out = self.critic_out(critic_params, feat)
        return out if self.bins is None else dists.two_hot_mean(out, self.bins)

    def _dist_params(self, actor_params, feat):
        """Logits [..., A] (onehot) or (mean, std) [..., A] of pi(. | s) for feat [..., F]."""
        out = self.actor_net.apply(actor_params, feat)
        c = self.config
        if self.dist == "onehot":
            return dists.unimix_logits(out, c.actor_unimix)
        mean, raw_std = jnp.split(out, 2, -1)
        if self.dist == "tanh_normal":  # DreamerV1: N(mean, std) of the pre-tanh action
            mean = TANH_MEAN_SCALE * jnp.tanh(mean / TANH_MEAN_SCALE)
            raw_init = jnp.log(jnp.expm1(TANH_INIT_STD))
            return mean, jax.nn.softplus(raw_std + raw_init) + c.actor_min_std
        mean = jnp.tanh(mean)
        if self.dist == "trunc_normal":  # DreamerV2
            std = 2.0 * jax.nn.sigmoid(raw_std / 2.0) + c.actor_min_std
        else:  # DreamerV3's bounded normal
            std = (c.actor_max_std - c.actor_min_std) * jax.nn.sigmoid(raw_std + 2.0) \
                + c.actor_min_std
        return mean, std

    def sample_features(self, actor_params, feat, key) -> jax.Array:
        """Differentiable action features [..., A] for imagination: a straight-through one-hot
        sample (discrete) or a reparameterized sample in [-1, 1] (continuous)."""
        params = self._dist_params(actor_params, feat)
        if self.dist == "onehot":
            return dists.straight_through_onehot(key, params)
        mean, std = params
        if self.dist == "trunc_normal":
            return _trunc_normal_sample(key, mean, std)
        x = mean + std * jax.random.normal(key, mean.shape)
        if self.dist == "tanh_normal":
            return jnp.tanh(x)
        return x + sg(jnp.clip(x, -1.0, 1.0) - x)

    def log_prob_entropy(self, actor_params, feat, action_features):
        """(log pi(a | s) [...], H[pi(. | s)] [...]) for feat [..., F], action features [..., A].

        'tanh_normal' has no closed-form entropy: H[N] + log|d tanh(u)/du| at the given action,
        a one-sample estimate (DreamerV1 uses no entropy bonus, so it is only logged).
        """
        params = self._dist_params(actor_params, feat)
        if self.dist == "onehot":
            logp = jax.nn.log_softmax(params, -1)
            return ((action_features * logp).sum(-1), -(jnp.exp(logp) * logp).sum(-1))
        mean, std = params
        if self.dist == "trunc_normal":
            return (_trunc_normal_log_prob(action_features, mean, std).sum(-1),
                    _trunc_normal_entropy(mean, std).sum(-1))
        if self.dist == "tanh_normal":
            u = jnp.arctanh(jnp.clip(action_features, -1.0 + 1e-6, 1.0 - 1e-6))
            log_det = _log_one_minus_tanh_sq(u)
            return ((_normal_log_prob(u, mean, std) - log_det).sum(-1),
                    (_normal_entropy(std) + log_det).sum(-1))
        return (_normal_log_prob(action_features, mean, std).sum(-1),
                _normal_entropy(std).sum(-1))

    def act(self, actor_params, feat, key, sample: bool = True) -> jax.Array:
        """Environment actions for feat [N, F]: int32 [N] (discrete) or float32 [N, A] in [-1, 1].

        sample=False takes the mode (argmax / the mean), e.g. for evaluation episodes.
        """
        if sample:
            action = sg(self.sample_features(actor_params, feat, key))
            return action.argmax(-1).astype(jnp.int32) if self.discrete else action
        params = self._dist_params(actor_params, feat)
        if self.dist == "onehot":
            return params.argmax(-1).astype(jnp.int32)
        if self.dist == "tanh_normal":
            return jnp.tanh(params[0])
        return jnp.clip(params[0], -1.0, 1.0)

    def act_in_blocks(self, actor_params, feat, key, sample: bool = True) -> jax.Array:
        """Actions of K actors stacked on a leading axis (a population, or one actor per task)
        for N = K * M env slots: slot n follows actor n // M. feat [N, F] -> [N] / [N, A]."""
        k = jax.tree.leaves(actor_params)[0].shape[0]
        feat = feat.reshape((k, feat.shape[0] // k, -1))
        act = jax.vmap(lambda p, f, kk: self.act(p, f, kk, sample=sample))
        action = act(actor_params, feat, jax.random.split(key, k))
        return action.reshape((-1,) + action.shape[2:])

    # --- imagination and losses ------------------------------------------------------------
    def imagine(self, wm, wm_params, actor_params, start, horizon: int, key) -> Trajectory:
        """Roll out the world model's prior under the actor for `horizon` steps from start [N].

        wm: a `jaxwm.models.dreamer.WorldModel` (or anything with `imagine(params, policy,
        start, horizon, key)`); the actor sees sg(feat).
        """
        def policy(state, k):
            return self.sample_features(actor_params, sg(rssm.features(state)), k)

        states, actions = wm.imagine(wm_params, policy, start, horizon, key)
        return Trajectory(states=states, feat=rssm.features(states), actions=actions)

    def discounts(self, wm, wm_params, feat):
        """(cont [H + 1, N], gamma_t [H, N]) of imagined feat [H + 1, N, F]: the world model's
        continue probability (or 1 without `discount_head`) and gamma * cont(s_{t+1})."""
        if self.config.discount_head:
            cont = wm.discount(wm_params, feat)
        else:
            cont = jnp.ones(feat.shape[:2])
        return cont, self.config.discount * cont[1:]

    def losses(self, actor_params, critic_params, ac_state: ACState, wm, wm_params,
               traj: Trajectory, reward: jax.Array, start_cont: jax.Array | None = None):
        """Actor and critic losses of imagined trajectories (module docstring).

        traj: feat [H + 1, N, F], actions [H, N, A]; reward [H, N] for the transitions into
        traj.states[1:]; start_cont [N]: the replay's 1 - is_terminal of the start states,
        which replaces the predicted cont(s_0) with the discount head (DreamerV2).
        Returns (actor_loss, critic_loss, LossAux). The critic loss is
        differentiable only in critic_params, the actor loss only in actor_params (through
        the trajectory and the reward for dynamics backprop).
        """
        c = self.config
        feat = traj.feat
        horizon = traj.actions.shape[0]
        chex.assert_shape(reward, (horizon, feat.shape[1]))
        cont, gammas = self.discounts(wm, wm_params, feat)
        target_params = ac_state.slow_critic if c.slow_target else sg(critic_params)
        target_values = self.value(target_params, feat)                     # [H + 1, N]
        returns = rets.batched_lambda_returns(reward, gammas, target_values, c.return_lambda)
        first = cont[:1] if start_cont is None or not c.discount_head else start_cont[None]
        weights = sg(jax.vmap(rets.discount_weights, 1, 1)(gammas) * first)  # [H + 1, N]

        norm = ac_state.norm
        scale = jnp.ones(())
        if c.return_norm == "percentile":
            norm = rets.percentile_update(norm, returns, c.return_norm_decay)
            scale = rets.percentile_scale(norm)

        logp, entropy = self.log_prob_entropy(actor_params, sg(feat[:-1]), sg(traj.actions))
        a_loss = jax.vmap(actor_loss, in_axes=(1, 1, 1, 1, 1, None, None, None))(
            logp, entropy, returns, sg(target_values[:-1]), weights[:-1], self.rho,
            c.actor_ent, scale).mean()
        out = self.critic_out(critic_params, sg(feat[:-1]))                  # [H, N(, K)]
        values = out if self.bins is None else dists.two_hot_mean(out, self.bins)
        slow_values = self.value(ac_state.slow_critic, sg(feat[:-1])) if c.critic_slowreg \
            else None
        c_loss = jax.vmap(critic_loss, in_axes=(1, 1, 1, 1, None, None))(
            out, returns, weights[:-1], slow_values, c.critic_slowreg, self.bins).mean()
        metrics = dict(actor_loss=a_loss, critic_loss=c_loss, actor_entropy=entropy.mean(),
                       imag_reward=reward.mean(), imag_return=returns.mean(),
                       imag_value=values.mean(), imag_weight=weights.mean(),
                       return_scale=scale)
        return a_loss, c_loss, LossAux(norm=norm, metrics=sg(metrics))

    def apply_gradients(self, ac_state: ACState, actor_grads, critic_grads,
                        norm: rets.PercentileState) -> ACState:
        """Adam steps on actor and critic, the new normalizer, and the slow-target copy
        slow <- f * critic + (1 - f) * slow every `slow_target_update` updates (DreamerV2)."""
        c = self.config
        actor = ac_state.actor.apply_gradients(self.actor_opt, actor_grads)
        critic = ac_state.critic.apply_gradients(self.critic_opt, critic_grads)
        step = ac_state.step + 1
        refresh = (step % c.slow_target_update == 0).astype(jnp.float32)
        frac = refresh * c.slow_target_fraction
        slow = jax.tree.map(lambda s, p: frac * p + (1.0 - frac) * s,
                            ac_state.slow_critic, critic.params)
        return ACState(actor=actor, critic=critic, slow_critic=slow, norm=norm, step=step)

    def update(self, ac_state: ACState, wm, wm_params, start, reward_fn: Callable, key,
               start_cont: jax.Array | None = None):
        """One actor-critic update from start states [N] (RSSM state pytree).

        reward_fn(traj: Trajectory) -> [H, N] (use `extrinsic_reward`, an intrinsic reward or
        a mix); start_cont [N]: as in `losses`. Returns (ac_state, metrics).
        """
        start = sg(start)
        imagine = lambda params: self.imagine(  # noqa: E731
            wm, wm_params, params, start, self.config.horizon, key)
        # Pure REINFORCE needs no gradient through the rollout: imagine outside of jax.grad.
        fixed = sg(imagine(ac_state.actor.params)) if self.rho == 1.0 else None

        def loss_fn(actor_params, critic_params):
            traj = fixed if fixed is not None else imagine(actor_params)
            reward = reward_fn(traj)
            if fixed is not None:
                reward = sg(reward)
            a_loss, c_loss, aux = self.losses(actor_params, critic_params, ac_state, wm,
                                              wm_params, traj, reward, start_cont)
            return a_loss + c_loss, aux

        (g_actor, g_critic), aux = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)(
            ac_state.actor.params, ac_state.critic.params)
        metrics = dict(aux.metrics, actor_grad_norm=optax.global_norm(g_actor),
                       critic_grad_norm=optax.global_norm(g_critic))
        return self.apply_gradients(ac_state, g_actor, g_critic, aux.norm), metrics


# --- helpers ---------------------------------------------------------------------------------

def extrinsic_reward(wm, wm_params) -> Callable:
    """reward_fn of a task agent: the world model's reward head on the states reached."""
    return lambda traj: wm.reward(wm_params, traj.feat[1:])


def flatten_starts(posts, num: int = 0, key=None) -> Any:
    """Posterior states [T, B, ...] -> start states [N, ...] (stop-gradient): all N = T * B,
    or `num` of them drawn without replacement with `key` (cheaper imagination on CPU). Any
    pytree of [T, B, ...] leaves, e.g. (posts, 1 - is_terminal), is flattened alike."""
    starts = jax.tree.map(lambda x: sg(x.reshape((-1,) + x.shape[2:])), posts)
    total = jax.tree.leaves(starts)[0].shape[0]
    if not num or num >= total:
        return starts
    idx = jax.random.choice(key, total, (num,), replace=False)
    return jax.tree.map(lambda x: x[idx], starts)


def replay_starts(posts, batch, num: int = 0, key=None) -> tuple:
    """(start states [N], start_cont [N]) from the posteriors [T, B] of a replay batch: the
    `flatten_starts` of the states and of the replay's 1 - is_terminal, drawn alike."""
    cont = 1.0 - batch["is_terminal"].astype(jnp.float32)
    return flatten_starts((posts, cont), num, key)


def feat_size(model_config) -> int:
    """F = deter + stoch * classes (discrete latents) or deter + stoch (Gaussian)."""
    stoch = model_config.stoch * (model_config.classes if model_config.latent == "discrete" else 1)
    return model_config.deter + stoch


def _check_choice(field: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {allowed}")
