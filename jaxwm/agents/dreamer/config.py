"""Dreamer configuration: world model (and later behaviour) with presets smoke / cpu / paper.

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
