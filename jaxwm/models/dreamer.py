"""The Dreamer world model: encoders, RSSM, decoders, reward and discount heads, and its loss.

Variants by config (`jaxwm/agents/dreamer/config.py`): DreamerV2 (discrete 32x32 latents, KL
balancing alpha = 0.8; Hafner et al. 2021, Sec. 2), DreamerV1 / PlaNet (Gaussian latents, plain
KL with free nats; Hafner et al. 2019/2020), DreamerV3 (unimix 0.01, two-hot symlog reward, dyn
0.5 / rep 0.1 KL with 1 free nat per sample: kl_scale 0.6, kl_balance 5/6, kl_free 1, kl_free_avg
False; symlog vector inputs and targets, LayerNorm + SiLU; Hafner et al. 2023, Sec. 3).
Batches are time-major dicts: obs keys [T, B, ...] ('image' uint8 [.., 64, 64, C], 'vector'
float [.., D]), 'action' [T, B] int or [T, B, A] float (taken after observing o_t),
'reward' [T, B] (received on arriving at o_t), 'is_first', 'is_terminal' [T, B] bool.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm import distributions as dists
from jaxwm.models import rssm
from jaxwm.nn import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder, conv
from jaxwm.types import TrainState, adam
from jaxwm.utils import train_on_batches

REWARD_HEADS = ("normal", "twohot")
PRESETS = ("smoke", "cpu", "paper", "paper_dmc")  # size presets of model and behavior


def model_config() -> ml_collections.ConfigDict:
    """DreamerV2 Atari world model (the `paper` sizes)."""
    c = ml_collections.ConfigDict()
    c.latent = "discrete"      # 'discrete' (V2/V3: 32 x 32 one-hot) or 'gaussian' (PlaNet/V1)
    c.deter = 600              # GRU state size h
    c.stoch = 32               # number of categoricals (or Gaussian dims: 30 for PlaNet)
    c.classes = 32             # classes per categorical
    c.hidden = 600             # width of the RSSM's dense layers
    c.unimix = 0.0             # uniform mix of categorical probs (V3: 0.01)
    c.min_std = 0.1            # minimum std of Gaussian latents
    c.act = "elu"              # activation of all MLPs/CNNs (V3: 'silu')
    c.layer_norm = False       # LayerNorm before every hidden activation of the MLPs, CNNs and
    #                            RSSM dense layers (V3; the GRU is always layer-normed)
    c.symlog_inputs = False    # V3: vector observations enter the encoder as symlog(x) and the
    #                            vector decoder regresses symlog(x) (images unchanged)
    c.cnn_depth = 48           # CNN channel multiplier
    c.conv_lowering = "auto"   # CNN convs as 'phase' (stride-1 form, fast on CPU), 'native'
    #                            or 'auto' (phase on CPU, native on GPU/TPU): same function
    c.mlp_layers = 4           # layers of vector encoders/decoders and heads
    c.mlp_units = 400          # width of those layers
    c.reward_head = "normal"   # 'normal' (V2) or 'twohot' (V3, symlog bins)
    c.reward_bins = 255        # two-hot bins over [-20, 20] in symlog space
    c.reward_grad = True       # False: reward head on stop-gradient features (reward-free P2E)
    c.pred_discount = True     # train the discount head into the features (CASCADE: False)
    c.kl_scale = 0.1           # beta (0.1 Atari, 1.0 DMC)
    c.kl_balance = 0.8         # alpha: share of the KL gradient sent to the prior
    c.kl_balancing = True      # False: the plain beta * KL(q || p) of PlaNet / DreamerV1, its
    #                            gradient into both posterior and prior (kl_balance ignored)
    c.overshooting = 1         # PlaNet's latent overshooting distance D (1: the one-step KL)
    c.kl_free = 0.0            # free nats (0 Atari, 1 DMC)
    c.kl_free_avg = True       # apply free nats to the batch average (V2) or per sample (V3)
    c.loss_scales = ml_collections.ConfigDict(
        {"image": 1.0, "vector": 1.0, "reward": 1.0, "discount": 5.0})  # per-term weights
    c.lr = 2e-4                # Adam learning rate (2e-4 Atari, 3e-4 DMC)
    c.eps = 1e-5               # Adam epsilon
    c.clip = 100.0             # global-norm gradient clip
    c.weight_decay = 1e-6      # decoupled weight decay
    return c


def apply_preset(c: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
    """Shrink the model sizes of `c` (a model config) for a preset; returns c."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    if preset == "paper_dmc":
        c.deter, c.hidden, c.kl_scale, c.kl_free, c.lr = 200, 200, 1.0, 1.0, 3e-4
        c.loss_scales.discount = 1.0
    elif preset == "cpu":
        c.deter, c.hidden, c.stoch, c.classes = 200, 200, 16, 16
        c.cnn_depth, c.mlp_layers, c.mlp_units = 16, 2, 200
        c.lr = 6e-4
    elif preset == "smoke":
        c.deter, c.hidden, c.stoch, c.classes = 32, 32, 4, 4
        c.cnn_depth, c.mlp_layers, c.mlp_units = 8, 1, 32  # depth 4: Pong loss -43% only
        c.lr = 1e-3
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """Raise a ValueError naming the `model.<field>` whose value is not allowed, and the allowed
    values, before anything is built or written."""
    for field, allowed in (("latent", rssm.LATENTS), ("reward_head", REWARD_HEADS),
                           ("conv_lowering", conv.LOWERINGS), ("act", tuple(sorted(ACTIVATIONS)))):
        if c[field] not in allowed:
            raise ValueError(f"model.{field}={c[field]!r} is not one of {allowed}")
    if c.unimix and c.latent != "discrete":
        raise ValueError(f"model.unimix={c.unimix!r} mixes categorical probabilities: it needs "
                         f"model.latent='discrete' (got {c.latent!r}); use unimix=0.0")
    if not 0.0 <= c.unimix < 1.0:
        raise ValueError(f"model.unimix={c.unimix!r} must be in [0, 1)")
    if isinstance(c.overshooting, bool) or not isinstance(c.overshooting, int) or (
            c.overshooting < 1):
        raise ValueError(f"model.overshooting={c.overshooting!r} must be an int >= 1 (1: off)")


def image_keys(obs_space: dict) -> list:
    return sorted(k for k, s in obs_space.items() if len(s.shape) == 3)


def vector_keys(obs_space: dict) -> list:
    return sorted(k for k, s in obs_space.items() if len(s.shape) == 1)


class WorldModelNet(nn.Module):
    """All parameterized parts of the world model; used only through `apply` with a method."""
    config: Any
    obs_shapes: tuple            # ((key, shape), ...) for the observation keys that are modelled
    action_size: int

    def setup(self):
        c = self.config
        shapes = dict(self.obs_shapes)
        mlp = (c.mlp_units,) * c.mlp_layers
        cnn = (c.cnn_depth, c.act, c.conv_lowering, c.layer_norm)
        dense = dict(act=c.act, layer_norm=c.layer_norm)
        self.encoders = {k: (ConvEncoder(*cnn) if len(s) == 3 else MLP(mlp, **dense))
                         for k, s in shapes.items()}
        self.decoders = {k: (ConvDecoder(s[-1], *cnn) if len(s) == 3
                             else MLP(mlp, out=s[0], **dense)) for k, s in shapes.items()}
        self.cell = make_cell(c)
        reward_out = c.reward_bins if c.reward_head == "twohot" else 1
        self.reward = MLP(mlp, out=reward_out, out_init_scale=0.0
                          if c.reward_head == "twohot" else 1.0, **dense)
        self.discount = MLP(mlp, out=1, **dense)

    def encode(self, obs: dict):
        """Embeddings [..., E] of obs keys [..., *shape]; symlog(x) of vectors if symlog_inputs."""
        shapes = dict(self.obs_shapes)
        inputs = {k: dists.symlog(obs[k]) if self.config.symlog_inputs and len(shapes[k]) == 1
                  else obs[k] for k in shapes}
        return jnp.concatenate([self.encoders[k](inputs[k]) for k in sorted(self.encoders)], -1)

    def decode(self, feat):
        return {k: dec(feat) for k, dec in self.decoders.items()}

    def reward_logits(self, feat):
        out = self.reward(feat)
        return out[..., 0] if self.config.reward_head == "normal" else out

    def discount_logits(self, feat):
        return self.discount(feat)[..., 0]

    def __call__(self, obs, action, key):
        """Touches every submodule once (for init). obs: [B, ...], action [B, A]."""
        embed = self.encode(obs)
        state = rssm.initial_state(self.cell, embed.shape[:1])
        _, post = self.cell(state, action, embed, key)
        feat = rssm.features(post)
        return self.decode(feat), self.reward_logits(feat), self.discount_logits(feat)


def make_cell(c) -> rssm.RSSMCell:
    return rssm.RSSMCell(deter=c.deter, stoch=c.stoch, classes=c.classes, hidden=c.hidden,
                         latent=c.latent, unimix=c.unimix, min_std=c.min_std, act=c.act,
                         layer_norm=c.layer_norm)


class WorldModel:
    """Static description of a Dreamer world model; every method is a pure function of params.

    config: the `model` ConfigDict; obs_space: dict key -> object with .shape/.dtype;
    act_space: object with .discrete (bool) and .size (int).
    """

    def __init__(self, config: ml_collections.ConfigDict, obs_space: dict, act_space):
        check_config(config)
        self.config = config
        keys = image_keys(obs_space) + vector_keys(obs_space)
        if not keys:
            raise ValueError(f"obs_space has no image (rank 3) or vector (rank 1) keys: "
                             f"{ {k: s.shape for k, s in obs_space.items()} }")
        self.obs_shapes = tuple((k, tuple(obs_space[k].shape)) for k in keys)
        # K gradient steps per call: straight-line code on CPU only for a CNN (`utils`); a
        # rolled loop otherwise, as fast per step and compiled once instead of K times
        self.straight_line = None if image_keys(obs_space) else False
        self.act_space = act_space
        self.net = WorldModelNet(config, self.obs_shapes, act_space.size)
        self.cell = make_cell(config)
        self.bins = dists.symlog_bins(config.reward_bins) if config.reward_head == "twohot" else None
        self.optimizer = adam(config.lr, config.eps, config.clip, config.weight_decay)

    # --- parameters -------------------------------------------------------------------------
    def init(self, key) -> dict:
        """Params pytree {'net': ...}. Jit it: `jax.jit(wm.init)(key)`."""
        obs = {k: jnp.zeros((1,) + s) for k, s in self.obs_shapes}
        action = jnp.zeros((1, self.act_space.size))
        k_init, k_sample = jax.random.split(key)
        return self.net.init(k_init, obs, action, k_sample)

    def init_state(self, key) -> TrainState:
        return TrainState.create(self.init(key), self.optimizer)

    # --- pieces ------------------------------------------------------------------------------
    def action_features(self, action):
        """int [...] -> one-hot [..., A] (discrete) or float [..., A] (continuous)."""
        if self.act_space.discrete:
            return jax.nn.one_hot(action.astype(jnp.int32), self.act_space.size)
        return action.astype(jnp.float32)

    def cell_params(self, params):
        return {"params": params["params"]["cell"]}

    def initial_state(self, batch_shape):
        return rssm.initial_state(self.cell, tuple(batch_shape))

    def encode(self, params, obs):
        return self.net.apply(params, obs, method=WorldModelNet.encode)

    def decode(self, params, feat):
        """Predicted observations {key: [..., *shape]} (vectors symexp'd back if symlog_inputs)."""
        preds = self.net.apply(params, feat, method=WorldModelNet.decode)
        if self.config.symlog_inputs:
            preds = {k: dists.symexp(v) if self._is_vector(k) else v for k, v in preds.items()}
        return preds

    def _is_vector(self, key: str) -> bool:
        return len(dict(self.obs_shapes)[key]) == 1

    def reward(self, params, feat):
        """Predicted reward (mean): feat [..., F] -> [...]."""
        out = self.net.apply(params, feat, method=WorldModelNet.reward_logits)
        return dists.two_hot_mean(out, self.bins) if self.bins is not None else out

    def discount(self, params, feat):
        """Predicted probability of continuing (1 - terminal): [..., F] -> [...]."""
        return jax.nn.sigmoid(self.net.apply(params, feat, method=WorldModelNet.discount_logits))

    def observe(self, params, batch, key, state0=None):
        """Posteriors and priors for a batch [T, B] (see `rssm.observe`)."""
        embeds = self.encode(params, {k: batch[k] for k, _ in self.obs_shapes})
        if state0 is None:
            state0 = self.initial_state(embeds.shape[1:2])
        return rssm.observe(self.cell, self.cell_params(params), embeds,
                            self.action_features(batch["action"]), batch["is_first"], state0, key)

    def filter_step(self, params, prev_state, prev_action, obs, is_first, key):
        """Posterior [N] after observing obs [N, ...] (acting online); prev_action int [N] or
        float [N, A] was taken after the previous observation; is_first [N] resets."""
        embed = self.encode(params, {k: obs[k] for k, _ in self.obs_shapes})
        post, _ = rssm.filter_step(self.cell, self.cell_params(params), prev_state,
                                   self.action_features(prev_action), embed, is_first, key)
        return post

    def initial_carry(self, num_envs: int) -> dict:
        """Acting carry of `num_envs` envs: {'state': RSSM state [N], 'action': zeros [N, A]}."""
        return {"state": self.initial_state((num_envs,)),
                "action": jnp.zeros((num_envs, self.act_space.size))}

    def observe_step(self, params, carry: dict, obs: dict, key) -> dict:
        """One filtering step for acting: the posterior [N] of o_t given the carry's previous
        posterior and action features (reset where obs['is_first']); obs: observation keys
        [N, ...] and 'is_first' [N]."""
        embed = self.encode(params, {k: obs[k] for k, _ in self.obs_shapes})
        post, _ = rssm.filter_step(self.cell, self.cell_params(params), carry["state"],
                                   carry["action"], embed, obs["is_first"], key)
        return post

    def imagine(self, params, policy, start, horizon: int, key):
        """Imagined states [H + 1, N] and actions [H, N, A] from start states [N]."""
        return rssm.imagine(self.cell, self.cell_params(params), policy, start, horizon, key)

    def rollout(self, params, start, actions, key):
        """Open-loop prior states [H, N] under actions [H, N] (int) or [H, N, A] from start [N]."""
        return rssm.rollout(self.cell, self.cell_params(params), start,
                            self.action_features(actions), key)

    # --- loss --------------------------------------------------------------------------------
    def loss(self, params, batch, key):
        """World-model loss on a batch [T, B]: recon + reward + discount NLLs + balanced KL.

        Image and vector NLLs are unit-variance Gaussians up to a constant (0.5 * squared error
        summed over the observation); with symlog_inputs the vector target is symlog(x)
        (DreamerV3 Eq. 9). Returns (loss, (metrics, posts [T, B])).
        """
        c = self.config
        posts, priors = self.observe(params, batch, key)
        feat = rssm.features(posts)
        losses = {}
        for k, pred in self.net.apply(params, feat, method=WorldModelNet.decode).items():
            target = batch[k].astype(jnp.float32)
            if not self._is_vector(k):
                target = target / 255.0 - 0.5
            elif c.symlog_inputs:
                target = dists.symlog(target)
            axes = tuple(range(2, pred.ndim))
            losses[k] = (0.5 * jnp.square(pred - target).sum(axes)).mean()
        reward_feat = feat if c.reward_grad else jax.lax.stop_gradient(feat)
        reward_out = self.net.apply(params, reward_feat, method=WorldModelNet.reward_logits)
        reward = batch["reward"].astype(jnp.float32)
        if self.bins is None:
            losses["reward"] = (0.5 * jnp.square(reward_out - reward)).mean()
        else:
            losses["reward"] = dists.two_hot_loss(reward_out, reward, self.bins).mean()
        if c.pred_discount:
            cont = 1.0 - batch["is_terminal"].astype(jnp.float32)
            disc_logits = self.net.apply(params, feat, method=WorldModelNet.discount_logits)
            losses["discount"] = -(cont * jax.nn.log_sigmoid(disc_logits)
                                   + (1 - cont) * jax.nn.log_sigmoid(-disc_logits)).mean()
        if c.kl_balancing:
            kl, kl_value = rssm.kl_loss(self.cell, posts, priors, c.kl_scale * c.kl_balance,
                                        c.kl_scale * (1 - c.kl_balance), c.kl_free,
                                        c.kl_free_avg)
        else:
            kl, kl_value = rssm.plain_kl_loss(self.cell, posts, priors, c.kl_scale, c.kl_free,
                                              c.kl_free_avg)
        if c.overshooting > 1:
            overshoot, by_distance = rssm.overshooting_kl(
                self.cell, self.cell_params(params), posts, priors,
                self.action_features(batch["action"]), batch["is_first"], c.overshooting,
                jax.random.fold_in(key, 1), c.kl_free, c.kl_free_avg)
            # PlaNet Eq. 7: beta times the average over distances 1..D of the KL terms
            kl = (kl + c.kl_scale * overshoot) / by_distance.shape[0]
            losses_extra = {"overshooting_kl": by_distance[1:].mean()}
        else:
            losses_extra = {}
        scales = dict(c.loss_scales)
        total = kl + sum(scales.get(k, 1.0) * v for k, v in losses.items())
        metrics = {f"{k}_loss": v for k, v in losses.items()}
        metrics.update(losses_extra)
        metrics.update(kl_loss=kl, kl=kl_value.mean(), model_loss=total,
                       prior_entropy=_entropy(self.cell, priors),
                       post_entropy=_entropy(self.cell, posts))
        return total, (metrics, posts)

    def train_step(self, state: TrainState, batch, key):
        """One gradient step on a batch [T, B]. Returns (state, metrics, posts)."""
        grads, (metrics, posts) = jax.grad(self.loss, has_aux=True)(state.params, batch, key)
        metrics["model_grad_norm"] = optax.global_norm(grads)
        return state.apply_gradients(self.optimizer, grads), metrics, posts

    def train_steps(self, state: TrainState, batches, key):
        """K gradient steps over batches [K, T, B] (`train_on_batches`); returns (state, mean
        metrics)."""
        return train_on_batches(lambda s, b, k: self.train_step(s, b, k)[:2], state, batches,
                                key, self.straight_line)


def _entropy(cell, state):
    if cell.latent == "discrete":
        logp = jax.nn.log_softmax(state["logits"], -1)
        return -(jnp.exp(logp) * logp).sum((-2, -1)).mean()
    return (jnp.log(state["std"]) + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1).mean()
