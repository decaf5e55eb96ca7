"""Reversibility-aware RL configuration (Grinsztajn et al., NeurIPS 2021) with presets smoke /
cpu / paper and two modes:

- mode 'rae': reversibility-aware exploration on a JAX-native env (`rae.env`: Turf-v0 or
  Sokoban-v0, options in `rae.turf` / `rae.sokoban`), PPO with the shaped reward
  r - w * max(sigmoid(psi(s_t, s_{t+1})) - beta, 0), psi trained online on the rollouts;
  `rae.penalty = 0` is the plain PPO baseline (psi is still trained, to be scored).
- mode 'rac': reversibility-aware control on CartPole-v1 (envpool): psi, then phi, trained
  offline on uniform random trajectories, then DQN acting through RAC (reject actions with
  phi > beta); `rac.enabled = False` is the unconstrained DQN baseline.

paper: the settings of the authors' code (github.com/nathangrinsztajn/NoTurningBack, read for
facts): beta 0.7; RAE on a 10 x 10 Turf with 120-step episodes, w 0.1, PPO with 2048-step
rollouts, minibatches of 64, 10 epochs, lr 3e-4, entropy 0.05, 5M env steps, psi trained online
with Adam lr 0.01 on batches of 128 pairs at most 100 steps apart (about 10 steps per 500 env
steps, on the newest ~2k steps); RAC on CartPole-v0 (200-step episodes) with psi and phi from 5000
random transitions (phi: 1e5 steps). Differences: MLPs on one-hot vectors instead of their
small CNN on 10 x 10 images; their Turf path winds, ours is an L-turn-L (`envs/turf.py`); one
pair window and batch for RAE and RAC (theirs: 200 and 256 for RAC); their Cartpole learner
is PPO for 1M steps, ours DQN, as this project's issue asks. cpu: about a minute per run here;
smoke: seconds (tests).
"""
import ml_collections

PRESETS = ("smoke", "cpu", "paper")
MODES = ("rae", "rac")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = ml_collections.ConfigDict()
    c.preset = preset              # the preset these values came from
    c.mode = "rae"                 # 'rae' (Turf, PPO) or 'rac' (CartPole, DQN)
    c.seed = 0                     # seeds envs, init, acting and sampling

    p = c.precedence = ml_collections.ConfigDict()
    p.layers, p.units = 2, 64      # MLP of the encoder g and the pair head h of psi
    p.embed = 32                   # size of g(s)
    p.lr = 1e-3                    # Adam learning rate of psi (and of phi)
    p.window = 10                  # pairs are at most `window` steps apart in an episode
    p.batch_size = 256             # pairs per psi update
    p.beta = 0.7                   # irreversibility threshold beta (RAE penalty, RAC rejection)

    e = c.rae = ml_collections.ConfigDict()
    e.env = "Turf-v0"              # 'Turf-v0' or 'Sokoban-v0' (jaxwm.envs.jax_native)
    e.turf = ml_collections.ConfigDict()
    e.turf.height, e.turf.width = 7, 7   # Turf lawn (the authors' is 10 x 10)
    e.turf.max_episode_steps = 60  # Turf time limit (the authors': 120 steps on 10 x 10)
    e.sokoban = ml_collections.ConfigDict()
    e.sokoban.levels = 6           # the first `levels` of jaxwm.envs.sokoban.LEVELS
    e.sokoban.max_episode_steps = 120  # gym-sokoban's limit
    e.penalty = 0.1                # RAE weight w (the authors' Turf value; 1.0 stalls PPO here)
    e.num_envs = 16                # envs stepped in lockstep inside the compiled loop
    e.rollout = 64                 # steps per env per PPO iteration
    e.iterations = 300             # PPO iterations (env steps = iterations * num_envs * rollout)
    e.history = 256                # psi's trajectory history, steps per env (the newest rollouts)
    e.psi_updates = 4              # psi gradient steps per iteration, on pairs of the history
    e.lr = 1e-3                    # PPO Adam learning rate
    e.epochs = 4                   # PPO epochs per iteration
    e.minibatches = 4              # minibatches per epoch
    e.clip_eps = 0.2               # PPO ratio clipping
    e.gamma = 0.99                 # discount
    e.gae_lambda = 0.95            # GAE lambda
    e.value_coef = 0.5             # value loss weight
    e.entropy_coef = 0.01          # entropy bonus
    e.grad_clip = 0.5              # global-norm clipping
    e.log_every = 20               # iterations per compiled chunk (one log + checkpoint each)
    e.eval_transitions = 4096      # random-policy transitions scoring psi's precision / recall

    q = c.rac = ml_collections.ConfigDict()
    q.env = "CartPole-v1"          # a discrete-action classic-control task of jaxwm.envs
    q.enabled = True               # act through RAC (False: the unconstrained DQN baseline)
    q.beta = 0.7                   # RAC threshold on phi (the paper's Cartpole value is lower)
    q.random_steps = 20_000        # uniform-random transitions for psi and phi (offline)
    q.psi_updates = 2_000          # offline psi gradient steps
    q.phi_updates = 2_000          # offline phi gradient steps (batches of transitions)
    q.num_envs = 4                 # envs stepped in lockstep (one DQN update per step of all)
    q.steps = 40_000               # DQN env steps
    q.lr = 1e-3                    # DQN Adam learning rate
    q.replay_capacity = 20_000     # DQN replay size (transitions)
    q.batch_size = 64              # DQN minibatch
    q.gamma = 0.99                 # discount
    q.target_every = 250           # DQN updates between target-network copies
    q.learning_starts = 1_000      # env steps of epsilon-greedy acting before DQN updates
    q.epsilon_start, q.epsilon_end = 1.0, 0.05  # epsilon-greedy schedule (linear) ...
    q.epsilon_steps = 10_000       # ... over this many env steps
    q.log_every = 2_000            # env steps between logs
    q.checkpoint_every = 10_000    # env steps between checkpoints
    q.eval_episodes = 10           # greedy evaluation episodes at the end

    if preset == "paper":
        p.lr, p.window, p.batch_size = 1e-2, 100, 128
        e.turf.height, e.turf.width, e.turf.max_episode_steps = 10, 10, 120
        e.num_envs, e.rollout, e.history = 1, 2048, 2048
        e.iterations, e.log_every = 2_440, 20       # 5.0M env steps
        e.psi_updates = 41                          # ~10 per 500 env steps
        e.lr, e.epochs, e.minibatches, e.entropy_coef = 3e-4, 10, 32, 0.05
        q.env, q.random_steps, q.psi_updates, q.phi_updates = "CartPole-v0", 5_000, 4_000, 100_000
        q.steps, q.replay_capacity, q.epsilon_steps = 1_000_000, 100_000, 100_000
        q.log_every, q.checkpoint_every = 10_000, 100_000
        return c
    if preset == "smoke":
        p.units, p.embed, p.batch_size = 16, 8, 32
        e.turf.height, e.turf.width, e.turf.max_episode_steps = 4, 4, 12
        e.sokoban.max_episode_steps = 12
        e.num_envs, e.rollout, e.iterations, e.log_every = 4, 16, 4, 2
        e.eval_transitions = 64
        q.random_steps, q.psi_updates, q.phi_updates = 400, 20, 20
        q.steps, q.learning_starts, q.epsilon_steps = 200, 50, 100
        q.replay_capacity, q.batch_size, q.target_every = 500, 16, 10
        q.log_every, q.checkpoint_every, q.eval_episodes = 100, 100, 2
    return c


def check_config(c: ml_collections.ConfigDict) -> None:
    """ValueError naming a bad mode or an inconsistent size (ranges: `workdir.check_values`)."""
    if c.mode not in MODES:
        raise ValueError(f"mode={c.mode!r} is not one of {MODES}")
    e = c.rae
    if (e.num_envs * e.rollout) % e.minibatches:
        raise ValueError(f"rae.minibatches={e.minibatches} must divide rae.num_envs * "
                         f"rae.rollout = {e.num_envs * e.rollout}")
    if e.history < e.rollout:
        raise ValueError(f"rae.history={e.history} must be >= rae.rollout={e.rollout}")
    if e.iterations % e.log_every:
        raise ValueError(f"rae.log_every={e.log_every} must divide rae.iterations={e.iterations}")
    if c.rac.batch_size > c.rac.replay_capacity:
        raise ValueError(f"rac.batch_size={c.rac.batch_size} must be <= rac.replay_capacity="
                         f"{c.rac.replay_capacity}")
