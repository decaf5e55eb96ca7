"""JOWA configuration (Cheng et al., "Scaling Offline Model-Based RL via Jointly-Optimized
World-Action Model Pretraining", ICLR 2025).

`paper`: the published setup where it is stated: 84x84 gray Atari frames tokenized to 36 tokens
(codebook 2048 x 512 is IRIS's; here `tokenizer.num_codes`), 8-step context, C51 with 51 atoms on
[-10, 30], world-model weight 0.1, CQL 0.1, beam search K 2 / H 2, the 15 pretraining and 5
held-out games, sizes 40M / 70M / 150M (`SIZES`); full runs need accelerators.
`cpu`: the JAX-native MinAtar games (Breakout, Space Invaders, Freeway pretrain; Asterix held
out), 10x10 grids padded to 7 channels -> 25 tokens, a 3-step context and small transformers
(`CPU_SIZES`, the model-size sweep), trained here in minutes. `smoke`: seconds, for tests.

`variant` selects the ablations of the paper's table:
  'jowa'       the full objective
  'no_cql'     CQL weight 0
  'no_wm'      world-model loss weight 0 (action values only; planning then has no model)
  'mse_td'     a scalar Q head per action with MSE TD instead of C51
  'detach_q'   the value losses do not reach the shared trunk
  'bc'         multi-task behavior cloning on the same data and trunk (cross-entropy on a_t)
"""
import ml_collections

PRESETS = ("smoke", "cpu", "paper")
VARIANTS = ("jowa", "no_cql", "no_wm", "mse_td", "detach_q", "bc")
MINATAR_PRETRAIN = ("MinAtar-Breakout-v0", "MinAtar-SpaceInvaders-v0", "MinAtar-Freeway-v0")
MINATAR_HELDOUT = "MinAtar-Asterix-v0"
ATARI_PRETRAIN = ("Assault", "Atlantis", "BeamRider", "Berzerk", "Carnival", "Centipede",
                  "ChopperCommand", "DemonAttack", "Gravitar", "NameThisGame", "Phoenix",
                  "Robotank", "Seaquest", "SpaceInvaders", "StarGunner")   # the paper's 15
ATARI_HELDOUT = ("Pong", "Asterix", "Breakout", "Qbert", "Zaxxon")             # few-shot games
# (dim, depth, heads, Q heads)
SIZES = {"40M": (512, 4, 8, 1), "70M": (768, 6, 12, 1), "150M": (768, 12, 12, 3)}
CPU_SIZES = {"tiny": (64, 2, 4, 1), "small": (128, 3, 4, 1), "base": (192, 4, 6, 1)}


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.variant = "jowa"
    c.games = ATARI_PRETRAIN           # pretraining games (task ids in this order)
    c.heldout = ATARI_HELDOUT[0]       # few-shot finetuning game
    c.data_dir = "datasets/jowa"       # <data_dir>/<game>/mixed.npz (make_dataset.py --jowa_games)

    k = c.tokenizer = ml_collections.ConfigDict()
    k.kind = "atari"
    k.num_codes = 2048
    k.code_dim = 512
    k.depth = 64
    k.steps = 100_000
    k.batch_size = 64
    k.lr = 1e-4

    m = c.model = ml_collections.ConfigDict()
    m.size = "150M"                    # a key of SIZES (paper) or CPU_SIZES (cpu, smoke)
    m.context = 8                      # T steps per sequence
    m.num_atoms = 51
    m.v_min, m.v_max = -10.0, 30.0

    t = c.train = ml_collections.ConfigDict()
    t.steps = 1_000_000
    t.batch_size = 512                 # windows per step, games mixed uniformly
    t.lr = 1e-4
    t.grad_clip = 1.0
    t.gamma = 0.99
    t.wm_weight = 0.1                  # world-model cross-entropies
    t.cql_weight = 0.1
    t.target_every = 2_000             # target network refresh (gradient steps)
    t.log_every = 10_000
    t.checkpoint_every = 50_000
    t.progress_bar = True

    p = c.planner = ml_collections.ConfigDict()
    p.beam_width = 2                   # K
    p.horizon = 2                      # H
    p.expand = 2

    f = c.finetune = ml_collections.ConfigDict()
    f.enabled = True                   # stage 4 (off: the run ends after evaluation)
    f.transitions = 5_000              # of the held-out game
    f.steps = 50_000
    f.lr = 1e-4

    e = c.eval = ml_collections.ConfigDict()
    e.episodes = 16                    # per game (parallel envs)
    e.max_steps = 27_000               # per episode (Atari: 108k frames)
    e.epsilon = 0.0
    e.beam = True                      # also act by beam search (off: greedy in Q only)

    if preset == "paper":
        return c
    c.games, c.heldout = MINATAR_PRETRAIN, MINATAR_HELDOUT
    k.kind, k.num_codes, k.code_dim, k.depth = "minatar", 128, 32, 32
    k.steps, k.batch_size, k.lr = 2_000, 128, 1e-3
    # 3 steps x 26 tokens, 32 windows: the small model's step is ~0.2 s here (quiet machine).
    m.size, m.context = "small", 3
    t.steps, t.batch_size, t.lr, t.target_every = 4_000, 32, 3e-4, 500
    t.log_every, t.checkpoint_every = 500, 2_000
    f.transitions, f.steps, f.lr = 5_000, 1_000, 3e-4
    e.episodes, e.max_steps = 16, 2_500          # Freeway's episodes end at 2500 steps
    if preset == "cpu":
        return c
    c.games = MINATAR_PRETRAIN[:2]     # two games: the multi-game batch, fewer compiles
    k.num_codes, k.code_dim, k.depth, k.steps, k.batch_size = 16, 8, 4, 3, 8
    m.size, m.context = "tiny", 3
    t.steps, t.batch_size, t.target_every, t.log_every, t.checkpoint_every = 4, 4, 2, 2, 2
    f.transitions, f.steps = 64, 2
    e.episodes, e.max_steps = 2, 6
    t.progress_bar = False
    return c


def model_size(c: ml_collections.ConfigDict) -> tuple:
    """(dim, depth, heads, Q heads) of `model.size`."""
    table = SIZES if c.tokenizer.kind == "atari" else CPU_SIZES
    if c.model.size not in table:
        raise ValueError(f"model.size={c.model.size!r} is not one of {sorted(table)}")
    return table[c.model.size]
