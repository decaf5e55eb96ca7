"""Dreamer configuration: world model, actor-critic behaviour and the online run, with presets
`<size>[_<variant>]`: sizes smoke / cpu / paper, variants v1 / v2 (no suffix) / v3.

- v2 (smoke, cpu, paper): DreamerV2 (Hafner et al. 2021, App. D / official configs.yaml).
- v1 (smoke_v1, cpu_v1, paper_v1): DreamerV1 (Hafner et al., ICLR 2020, Sec. 3-4, App. A):
  Gaussian latents, plain KL with 3 free nats, no discount head, value by lambda-returns of the
  critic itself (no slow critic), dynamics backprop, tanh-transformed Gaussian actor, no entropy.
- v3 (smoke_v3, cpu_v3, paper_v3): DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains
  through World Models", Sec. 3 and App. hyperparameter table): symlog vector inputs/targets,
  two-hot symlog reward and critic (255 bins, zero-init outputs), unimix 1%, free bits 1 with
  dyn 0.5 / rep 0.1, LayerNorm + SiLU, percentile return normalization, entropy 3e-4, critic
  regularized toward its EMA (fraction 0.02 per update) while returns bootstrap from the critic.
`reversibility` (every preset, off by default): RAE inside imagination (Grinsztajn et al.,
NeurIPS 2021, beyond the paper): psi trained on the world model's posterior features of the replay
sequences, and the imagined reward r - w * max(sigmoid(psi(s_t, s_{t+1})) - beta, 0).
The variant switches are the same at every size; sizes only shrink networks and budgets. smoke
and cpu run CartpoleBalance from states (`--config.env.name=CartpoleSwingup-v1` switches task);
paper runs walker walk from pixels. The v1/v3 presets set a continuous actor ('tanh_normal' /
'normal'): on a discrete action space set `behavior.actor_dist='auto'`.
"""
import ml_collections

from jaxwm.behaviors.actor_critic import apply_behavior_preset, behavior_config
from jaxwm.models.dreamer import PRESETS, apply_preset, model_config

__all__ = ["AGENT_PRESETS", "PRESETS", "SIZES", "VARIANTS", "apply_behavior_preset",
           "apply_preset", "apply_variant", "behavior_config", "get_config", "model_config"]

SIZES = ("smoke", "cpu", "paper")
VARIANTS = ("v1", "v2", "v3")
AGENT_PRESETS = SIZES + tuple(f"{s}_{v}" for v in ("v1", "v3") for s in SIZES)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full Dreamer agent config: env, model, behavior and run blocks.

    smoke: seconds (tests) on CartpoleBalance states; cpu: a real run on this 2-core machine
    (CartpoleBalance from states, 20k env steps, 4k gradient steps: ~20-45 min depending on the
    load); paper: the published DMC defaults of the variant (walker walk from pixels).
    """
    from jaxwm.runtime.online import run_config
    if preset not in AGENT_PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {AGENT_PRESETS}")
    size, _, variant = preset.partition("_")
    variant = variant or "v2"
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.variant = variant            # Dreamer version of the algorithmic switches: v1, v2 or v3
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "dmc:walker_walk"  # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 1             # envs stepped in lockstep
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    c.model = apply_preset(model_config(), "paper_dmc")
    c.behavior = apply_behavior_preset(behavior_config(), "paper_dmc")
    c.run = run_config()
    c.reversibility = reversibility_config()
    if size == "paper":
        c.run.eval_every, c.run.eval_episodes = 10_000, 10
        apply_variant(c, variant)
        {"v1": _paper_v1, "v2": lambda c: c, "v3": _paper_v3}[variant](c)
        return c
    c.env.name = "CartpoleBalance-v1"
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})
    c.model = apply_preset(model_config(), size)
    c.model.kl_scale, c.model.kl_free = 1.0, 1.0      # DMC values
    c.model.loss_scales.discount = 1.0
    c.behavior = apply_behavior_preset(behavior_config(), size)
    r = c.run
    if size == "cpu":
        c.env.num_envs = 1
        r.steps, r.prefill, r.pretrain, r.train_every = 20_000, 1000, 100, 5
        r.batch_size, r.seq_len, r.replay_capacity = 16, 32, 20_000
        r.log_every, r.checkpoint_every = 1000, 5000
        r.eval_every, r.eval_episodes = 5000, 5
    else:  # smoke
        c.env.num_envs = 2
        c.env.overrides = ml_collections.ConfigDict({"action_repeat": 4,
                                                     "max_episode_steps": 10})
        r.steps, r.prefill, r.pretrain, r.train_every = 60, 20, 1, 20
        r.batch_size, r.seq_len, r.replay_capacity = 4, 8, 100
        r.log_every, r.checkpoint_every, r.video_len = 20, 40, 8
        r.eval_every, r.eval_episodes = 0, 2
    apply_variant(c, variant)
    if variant == "v1" and size == "cpu":
        c.model.stoch = 30         # DreamerV1's Gaussian latent size is already small
    return c


def reversibility_config() -> ml_collections.ConfigDict:
    """RAE in imagination: psi on latent features (`jaxwm.models.precedence`); penalty 0 = off."""
    r = ml_collections.ConfigDict()
    r.penalty = 0.0                # RAE weight w on imagined transitions (0: no psi at all)
    r.beta = 0.7                   # irreversibility threshold beta
    r.window = 10                  # pairs at most `window` steps apart in a replay sequence
    r.batch_size = 256             # pairs per psi update (one update per world-model step)
    r.units, r.layers, r.embed = 64, 2, 32  # psi's MLPs and embedding size
    r.lr = 1e-3                    # psi's Adam learning rate
    return r


def apply_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Set the algorithmic switches of a Dreamer version on an agent config (sizes untouched);
    v2 is the default of `model_config` / `behavior_config`. Returns c."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not one of {VARIANTS}")
    m, b = c.model, c.behavior
    if variant == "v1":
        m.latent, m.unimix = "gaussian", 0.0
        m.kl_balancing, m.kl_scale, m.kl_free, m.kl_free_avg = False, 1.0, 3.0, True
        m.pred_discount = False                 # no continue predictor ("pcont") on DMC
        b.discount_head = False
        b.actor_dist, b.actor_min_std = "tanh_normal", 1e-4
        b.actor_grad, b.actor_ent = "dynamics", 0.0
        b.slow_target = False                   # lambda-returns of the value model itself
    elif variant == "v3":
        m.latent, m.unimix = "discrete", 0.01
        m.act, m.layer_norm, m.symlog_inputs = "silu", True, True
        m.reward_head = "twohot"
        # beta_dyn = 0.5, beta_rep = 0.1, each clipped below 1 nat per sample (free bits)
        m.kl_balancing, m.kl_scale, m.kl_balance = True, 0.6, 0.5 / 0.6
        m.kl_free, m.kl_free_avg = 1.0, False
        m.pred_discount = True
        m.loss_scales = ml_collections.ConfigDict(
            {"image": 1.0, "vector": 1.0, "reward": 1.0, "discount": 1.0})  # beta_pred = 1
        b.act, b.layer_norm = "silu", True
        b.discount_head = True
        b.actor_dist, b.actor_min_std, b.actor_max_std = "normal", 0.1, 1.0
        b.actor_unimix = 0.01
        b.actor_ent = 3e-4                      # fixed, on percentile-normalized returns
        b.return_norm, b.return_norm_decay = "percentile", 0.99
        b.critic_head, b.critic_bins = "twohot", 255
        # critic EMA (decay 0.98) used only by the regularizer; returns use the critic itself
        b.slow_target, b.slow_target_update, b.slow_target_fraction = False, 1, 0.02
        b.critic_slowreg = 1.0
    c.variant = variant
    return c


def _paper_v1(c: ml_collections.ConfigDict) -> None:
    """DreamerV1 DMC defaults (Hafner et al. 2020, App. A): deter 200, 30 Gaussian latents,
    hidden 200, 3 x 400 ELU dense heads, CNN depth 32, KL scale 1 with 3 free nats, model lr
    6e-4, actor and value lr 8e-5, clip 100, H 15, lambda 0.95, gamma 0.99, batch 50 x 50,
    action repeat 2, 100 gradient steps per 1000 env frames and 5000 prefill frames (here in
    agent steps: train_every 5, prefill 2500). The official code's heads differ in depth
    (reward 2, value 3, actor 4 layers); the paper's 3 layers are used for all, also for the
    vector encoder/decoder."""
    m, b, r = c.model, c.behavior, c.run
    m.deter, m.stoch, m.hidden, m.min_std = 200, 30, 200, 0.1
    m.cnn_depth, m.mlp_layers, m.mlp_units, m.act = 32, 3, 400, "elu"
    m.lr, m.clip, m.weight_decay = 6e-4, 100.0, 0.0
    m.loss_scales.discount = 1.0
    b.horizon, b.return_lambda, b.discount = 15, 0.95, 0.99
    b.actor_layers, b.actor_units, b.critic_layers, b.critic_units = 3, 400, 3, 400
    b.actor_lr, b.critic_lr, b.clip, b.weight_decay = 8e-5, 8e-5, 100.0, 0.0
    r.batch_size, r.seq_len, r.prefill, r.train_every = 50, 50, 2500, 5


def _paper_v3(c: ml_collections.ConfigDict) -> None:
    """DreamerV3 defaults (Hafner et al. 2023, hyperparameter table): model size S for DMC
    (GRU 512, hidden 512, 2 layers, CNN depth 32), 32 x 32 latents, world-model lr 1e-4 with
    Adam eps 1e-8 and clip 1000, actor and critic lr 3e-5 with eps 1e-5 and clip 100, no weight
    decay, H 15, lambda 0.95, gamma = 1 - 1/333, batch 16 x 64, replay 1e6, train ratio 512
    (one step of 16 x 64 replayed steps per 2 agent steps: train_every 2), action repeat 2.
    Not reproduced from the official code: learned initial RSSM state, the replayed-value
    critic loss (repval), return-normalizer percentile decay schedule details, and actor
    gradients are DreamerV2-style ('auto': REINFORCE for discrete, dynamics backprop for
    continuous actions, as the 2023 code does)."""
    m, b, r = c.model, c.behavior, c.run
    m.deter, m.hidden, m.stoch, m.classes = 512, 512, 32, 32
    m.cnn_depth, m.mlp_layers, m.mlp_units = 32, 2, 512
    m.lr, m.eps, m.clip, m.weight_decay = 1e-4, 1e-8, 1000.0, 0.0
    b.horizon, b.return_lambda, b.discount = 15, 0.95, 1.0 - 1.0 / 333
    b.actor_layers, b.actor_units, b.critic_layers, b.critic_units = 2, 512, 2, 512
    b.actor_lr, b.critic_lr, b.opt_eps, b.clip, b.weight_decay = 3e-5, 3e-5, 1e-5, 100.0, 0.0
    r.batch_size, r.seq_len, r.replay_capacity, r.train_every = 16, 64, 1_000_000, 2
