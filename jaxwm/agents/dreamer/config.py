"""Dreamer configuration: world model, actor-critic behaviour and the online run, with presets
smoke / cpu / paper (and paper_dmc for the model/behaviour blocks).

Paper defaults follow DreamerV2 (Hafner et al. 2021, App. D / official configs.yaml).
"""
import ml_collections

PRESETS = ("smoke", "cpu", "paper", "paper_dmc")


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
    c.act = "elu"              # activation of all MLPs/CNNs
    c.cnn_depth = 48           # CNN channel multiplier
    c.cnn_impl = "strided"     # 'strided' (DreamerV2) or 'space_to_depth' (fast on CPU)
    c.mlp_layers = 4           # layers of vector encoders/decoders and heads
    c.mlp_units = 400          # width of those layers
    c.reward_head = "normal"   # 'normal' (V2) or 'twohot' (V3, symlog bins)
    c.reward_bins = 255        # two-hot bins over [-20, 20] in symlog space
    c.reward_grad = True       # False: reward head on stop-gradient features (reward-free P2E)
    c.pred_discount = True     # train the discount head into the features (CASCADE: False)
    c.kl_scale = 0.1           # beta (0.1 Atari, 1.0 DMC)
    c.kl_balance = 0.8         # alpha: share of the KL gradient sent to the prior
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
        c.cnn_depth, c.mlp_layers, c.mlp_units, c.cnn_impl = 16, 2, 200, "space_to_depth"
        c.lr = 6e-4
    elif preset == "smoke":
        c.deter, c.hidden, c.stoch, c.classes = 32, 32, 4, 4
        c.cnn_depth, c.mlp_layers, c.mlp_units, c.cnn_impl = 4, 1, 32, "space_to_depth"
        c.lr = 1e-3
    return c


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
    c.act = "elu"              # activation of actor and critic
    c.actor_dist = "auto"      # 'auto' (onehot / trunc_normal), 'onehot', 'trunc_normal', 'normal'
    c.actor_min_std = 0.1      # lower bound of the continuous actor's std
    c.actor_max_std = 1.0      # upper bound of the std ('normal' only, DreamerV3)
    c.actor_unimix = 0.0       # uniform mix of the discrete actor's probs (V3: 0.01)
    c.actor_grad = "auto"      # 'auto' (reinforce if discrete else dynamics), 'reinforce',
    #                            'dynamics' or 'mix' (rho = actor_grad_mix)
    c.actor_grad_mix = 0.1     # rho: weight of REINFORCE when actor_grad == 'mix'
    c.actor_ent = 1e-3         # entropy bonus eta (1e-3 Atari, 1e-4 DMC)
    c.actor_lr = 4e-5          # actor Adam learning rate (4e-5 Atari, 8e-5 DMC)
    c.critic_lr = 1e-4         # critic Adam learning rate (1e-4 Atari, 8e-5 DMC)
    c.opt_eps = 1e-5           # Adam epsilon
    c.clip = 100.0             # global-norm gradient clip
    c.weight_decay = 1e-6      # decoupled weight decay
    c.slow_target = True       # bootstrap from a slow copy of the critic
    c.slow_target_update = 100  # updates between slow-critic refreshes
    c.slow_target_fraction = 1.0  # mixing fraction of each refresh (1: copy)
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


AGENT_PRESETS = ("smoke", "cpu", "paper")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full Dreamer agent config: env, model, behavior and run blocks.

    smoke: seconds (tests) on CartpoleBalance states; cpu: a real run on this 2-core machine
    (CartpoleBalance from states, 20k env steps, 4k gradient steps: ~20-45 min depending on the
    load); paper: DreamerV2 DMC (walker walk from pixels).
    """
    from jaxwm.runtime.online import run_config
    if preset not in AGENT_PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {AGENT_PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.seed = 0                     # seeds envs, init, acting and sampling
    c.env = ml_collections.ConfigDict()
    c.env.name = "dmc:walker_walk"  # any id `jaxwm.envs.make` accepts
    c.env.num_envs = 1             # envs stepped in lockstep
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})  # suite options
    c.model = apply_preset(model_config(), "paper_dmc")
    c.behavior = apply_behavior_preset(behavior_config(), "paper_dmc")
    c.run = run_config()
    if preset == "paper":
        c.run.eval_every, c.run.eval_episodes = 10_000, 10
        return c
    c.env.name = "CartpoleBalance-v1"
    c.env.overrides = ml_collections.ConfigDict({"action_repeat": 2})
    c.model = apply_preset(model_config(), preset)
    c.model.kl_scale, c.model.kl_free = 1.0, 1.0      # DMC values
    c.model.loss_scales.discount = 1.0
    c.behavior = apply_behavior_preset(behavior_config(), preset)
    r = c.run
    if preset == "cpu":
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
    return c
