"""Latent Diffusion Planning configuration (Xie et al., 2025, "Latent Diffusion Planning for
Imitation Learning").

`variant` picks what is trained on which data (the rows of the issue's table). Of the
demonstrations only the first `dataset.labelled_demos` episodes keep their actions:
  'ldp'               planner on all demonstrations with their actions hidden, inverse-dynamics
                      model (IDM) on the suboptimal data plus the labelled demos (the paper's
                      point: action-free demos and suboptimal data both help)
  'ldp_demos'         planner and IDM both on the labelled demonstrations only
  'diffusion_policy'  goal-conditioned diffusion policy over action chunks, labelled demos
  'bc'                goal-conditioned behavior cloning (MLP on latents), labelled demos
`paper` follows the paper's setup where it states it (16-d VAE latents, planning horizon 16,
DDPM training, replanning after a few actions). The planner works on latents scaled per
dimension to [-1, 1] and clips its x0 estimates there, as Diffusion Policy's normalizer and
clip_sample do (Chi et al. 2023), which LDP builds on; `cpu` sizes train here in minutes; `smoke`
seconds, for tests. The datasets are those of the DINO-WM goal tasks (make_dataset.py
--goal_task): `scripted` = demonstrations, `random` = suboptimal.
"""
import ml_collections

PRESETS = ("smoke", "cpu", "paper")
VARIANTS = ("ldp", "ldp_demos", "diffusion_policy", "bc")
TASKS = ("Wall-v0", "PushT-v0")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full config: task, dataset, variant, vae, planner, idm, train, eval."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "Wall-v0"                 # goal-reaching task, one of TASKS
    c.variant = "ldp"                  # one of VARIANTS
    c.dataset = ml_collections.ConfigDict()
    c.dataset.demos = "datasets/Wall-v0/scripted.npz"       # demonstrations
    c.dataset.suboptimal = "datasets/Wall-v0/random.npz"    # action-labelled suboptimal data
    c.dataset.labelled_demos = 0       # demo episodes whose actions are known (0: all); the
                                       #   planner always sees every demo, without actions

    v = c.vae = ml_collections.ConfigDict()
    v.latent_dim = 16                  # paper: 16-d image latents
    v.depth = 32                       # channels of the first conv layer
    v.kl_weight = 1e-3                 # beta of the VAE's KL term (on summed pixel errors)
    v.steps = 50_000
    v.batch_size = 64
    v.lr = 3e-4

    p = c.planner = ml_collections.ConfigDict()
    p.horizon = 16                     # planned future latents (paper 16)
    p.dim = 256
    p.depth = 6
    p.heads = 8
    p.diffusion_steps = 100            # K of the DDPM
    p.prediction = "x0"                # denoiser target, 'x0' or 'eps' (models/diffusion.py): with
                                       #   'eps' the cosine schedule's last step multiplies the
                                       #   error ~1000x (K = 50; measured: plans off by 50 std)
    p.sample_steps = 10                # DDIM steps at acting time
    p.cond_drop_prob = 0.0             # classifier-free guidance training (0: off)
    p.guidance = 0.0                   # guidance strength w at sampling

    i = c.idm = ml_collections.ConfigDict()
    i.hidden = (512, 512, 512)         # MLP denoiser of a_t given (z_t, z_{t+1}); also the
    i.diffusion_steps = 100            #   diffusion policy's denoiser and the BC MLP
    i.sample_steps = 10

    t = c.train = ml_collections.ConfigDict()
    t.steps = 100_000                  # gradient steps of the planner and of the IDM / policy
    t.batch_size = 256
    t.lr = 3e-4
    t.execute = 8                      # actions executed per plan (paper: 1-8), then replan
    t.log_every = 5_000
    t.progress_bar = True

    e = c.eval = ml_collections.ConfigDict()
    e.goals = 50                       # fixed start/goal pairs (the DINO-WM tasks' eval_pairs)
    e.seed = 0
    e.batch = 50

    if preset == "paper":
        return c
    c.dataset.labelled_demos = 20      # of 200: few action labels, many action-free demos
    # depth 16 at batch 32: 0.14 s per VAE step here vs 1.27 s at depth 32, batch 64 (loaded).
    v.depth, v.steps, v.batch_size, v.lr = 16, 1_500, 32, 1e-3
    p.dim, p.depth, p.heads, p.diffusion_steps = 128, 3, 4, 50
    i.hidden, i.diffusion_steps = (256, 256), 50
    t.steps, t.batch_size, t.lr, t.execute, t.log_every = 4_000, 128, 1e-3, 4, 500
    if preset == "cpu":
        return c
    c.dataset.demos = c.dataset.suboptimal = "datasets/smoke_wall.npz"
    c.dataset.labelled_demos = 2
    v.latent_dim, v.depth, v.steps, v.batch_size = 4, 4, 4, 4
    p.horizon, p.dim, p.depth, p.heads, p.diffusion_steps, p.sample_steps = 4, 16, 1, 2, 4, 2
    i.hidden, i.diffusion_steps, i.sample_steps = (16,), 4, 2
    t.steps, t.batch_size, t.execute, t.log_every = 4, 4, 2, 2
    e.goals, e.batch = 4, 4
    t.progress_bar = False
    return c
