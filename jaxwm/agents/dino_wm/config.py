"""DINO-WM configuration (Zhou et al., 2024, "DINO-WM: World Models on Pre-trained Visual Features
enable Zero-shot Planning").

`variant` picks the encoder (and so the row of the paper script's table):
  'dino'            frozen ViT pretrained here by DINO self-distillation on the dataset's frames
  'dinov2'          frozen DINOv2 ViT loaded from a local file (`encoder.checkpoint`; the paper)
  'reconstruction'  the same ViT trained end to end with the predictor and a pixel reconstruction
                    loss (the paper's "no frozen pretrained features" comparison)
  'random'          frozen randomly initialized ViT
  'bc'              no world model: a goal-conditioned behavior-cloning policy on the same data
`paper` follows the paper's setup (ViT-S/14 DINOv2 at 224 px, history 3, frameskip 5, predictor
depth 6 / 16 heads, CEM horizon 5, 300 samples, top 30, 30 iterations, MPC); `cpu` a small ViT
on 64 px frames that trains and plans here in minutes; `smoke` seconds, for tests.
"""
import ml_collections

from jaxwm.models import dino

PRESETS = ("smoke", "cpu", "paper")
VARIANTS = ("dino", "dinov2", "reconstruction", "random", "bc")
TASKS = ("Wall-v0", "PushT-v0")
PLANNERS = ("cem", "mppi")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full config: task, dataset, variant, encoder, dino, predictor, train, bc, planner, eval."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "Wall-v0"                 # goal-reaching task, one of TASKS
    c.variant = "dino"                 # encoder / agent, one of VARIANTS
    c.dataset = ml_collections.ConfigDict()
    c.dataset.paths = ("datasets/Wall-v0/random.npz", "datasets/Wall-v0/scripted.npz")  # make_dataset.py --goal_task

    e = c.encoder = ml_collections.ConfigDict()
    e.image_size = 224                 # frames are resized to this (paper: 224)
    e.patch_size = 14                  # ViT-S/14
    e.dim = 384
    e.depth = 12
    e.heads = 6
    e.mlp_ratio = 4.0
    e.layer_scale = 1e-5               # DINOv2's LayerScale init (0: none)
    e.num_registers = 0
    e.checkpoint = ""                  # variant 'dinov2': local .npz/.safetensors in DINOv2 layout

    c.dino = dino.default_config()     # DINO self-distillation (variant 'dino')

    p = c.predictor = ml_collections.ConfigDict()
    p.history = 3                      # frames of context h
    p.frameskip = 5                    # env steps per model step (actions concatenated)
    p.dim = 384
    p.depth = 6
    p.heads = 16
    p.mlp_ratio = 4.0
    p.action_emb = 10                  # action embedding concatenated to every patch
    p.residual = False                 # predict the change of features (paper: the features)
    p.decoder_hidden = 256             # visualization decoder (per-patch MLP)

    t = c.train = ml_collections.ConfigDict()
    t.steps = 100_000                  # predictor (+ decoder) gradient steps
    t.batch_size = 32                  # windows per step
    t.lr = 5e-4                        # predictor learning rate (paper 5e-4)
    t.encoder_lr = 1e-4                # variant 'reconstruction': encoder learning rate
    t.decoder_lr = 3e-4
    t.recon_weight = 1.0               # variant 'reconstruction': pixel MSE weight
    t.log_every = 1_000
    t.checkpoint_every = 10_000
    t.checkpoints_to_keep = 2
    t.progress_bar = True

    b = c.bc = ml_collections.ConfigDict()
    b.goal_horizon = 25                # hindsight goals 1..goal_horizon env steps ahead
    b.depth = 32                       # channels of the first conv layer (doubling x4)
    b.hidden = 256
    b.lr = 3e-4                        # (3e-3, the cpu predictor's, saturates the policy)

    pl = c.planner = ml_collections.ConfigDict()
    pl.kind = "cem"                    # one of PLANNERS
    pl.horizon = 5                     # H model steps
    pl.num_candidates = 300            # CEM samples (mppi: num_samples)
    pl.num_elites = 30                 # top-k refit
    pl.iterations = 30
    pl.init_std = 1.0
    pl.replan_every = 1                # model steps executed per plan: 1 = MPC, horizon = open loop
    pl.temperature = 0.5               # mppi only

    v = c.eval = ml_collections.ConfigDict()
    v.goals = 50                       # evaluation start/goal pairs (fixed by eval.seed)
    v.seed = 0                         # the pairs are the same for every variant and seed
    v.batch = 50                       # goals planned for in one batch

    if preset == "paper":
        c.dino.steps = 100_000
        return c
    e.image_size, e.patch_size, e.dim, e.depth, e.heads = 64, 16, 64, 4, 4
    e.layer_scale = 0.0
    p.history, p.frameskip, p.dim, p.depth, p.heads = 1, 1, 64, 3, 4
    # CEM dominates evaluation time here (~0.1 s per decision, compute-bound): fewer samples
    # and iterations than the paper, and 2 actions executed per plan.
    pl.num_candidates, pl.num_elites, pl.iterations, pl.replan_every = 64, 8, 3, 2
    # Measured here (Wall, random encoder): predicting the change of features with lr 3e-3
    # reaches 32% of the copy-last-frame error in 4k steps; the paper's direct prediction at
    # lr 1e-3 barely uses the action in the first 2k steps.
    t.batch_size, t.lr, p.residual = 64, 3e-3, True
    d = c.dino
    if preset == "cpu":
        d.steps, d.batch_size = 1_000, 32
        t.steps, t.log_every, t.checkpoint_every = 4_000, 250, 2_000
        return c
    # smoke
    c.dataset.paths = ("datasets/smoke_wall.npz",)
    e.dim, e.depth, e.heads = 16, 1, 2
    p.dim, p.depth, p.heads = 16, 1, 2
    b.depth, b.hidden = 4, 16
    d.steps, d.batch_size = 4, 4
    d.out_dim, d.head_hidden, d.head_bottleneck = 32, 16, 8
    d.local_crops = 2
    t.steps, t.batch_size, t.log_every, t.checkpoint_every = 6, 4, 3, 3
    pl.num_candidates, pl.num_elites, pl.iterations, pl.replan_every = 8, 2, 2, 1
    v.goals, v.batch = 4, 4
    t.progress_bar = False
    return c
