"""FOWM configuration (Feng et al., "Finetuning Offline World Models in the Real World", CoRL 2023).

Offline phase: TD-MPC losses with V(z) by expectile regression, Q targets r + gamma V(z') and an
AWR policy prior, on an offline dataset (`jaxwm.data.datasets`). Online phase: the same losses on
batches drawn 50/50 from the offline and the online buffer, acting with MPPI penalized by
lambda * std over a 5-member Q-ensemble. `paper` follows the official cfgs/config.yaml with the
D4RL locomotion task settings (expectile 0.7, A_scaling 3, lambda 20, 500k offline steps);
`cpu` runs on CartpoleSwingup (action repeat 8) with a medium-replay dataset made by
experiments/make_dataset.py, in minutes.
"""
import ml_collections

from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.models import told

PRESETS = ("smoke", "cpu", "paper")


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Full FOWM config: env, dataset, model (TOLD + V), planner, offline, run (online) blocks."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {PRESETS}")
    c = tdmpc_config.get_config(preset)
    c.run.std_schedule_steps = 0   # online finetuning starts from a trained policy: fixed floor
    c.run.horizon_schedule_steps = 0   # ... and the full planning horizon
    c.model = told.model_config("fowm")
    c.dataset = ml_collections.ConfigDict()
    c.dataset.path = "datasets/WalkerWalk-v1/medium_replay.npz"  # .npz of make_dataset.py
    c.dataset.offline_fraction = 0.5   # share of each online-phase batch from the offline data
    c.offline = ml_collections.ConfigDict()
    c.offline.steps = 500_000          # offline gradient steps
    c.offline.updates_per_call = 100   # gradient steps per jitted call
    c.offline.eval_every = 50_000      # offline gradient steps between evaluations
    c.offline.checkpoint_every = 100_000  # offline gradient steps between checkpoints
    p, r, m = c.planner, c.run, c.model
    p.num_pi_trajs, p.num_elites, p.iterations = 51, 50, 1  # mixture 0.1, FOWM default.yaml
    p.uncertainty_penalty = 20.0       # lambda (D4RL 20, xArm 1)
    p.value_members = 2                # terminal value: min of 2 random Qs of the 5 (FOWM)
    r.seed_steps, r.pretrain_updates = 0, 0  # online starts from the offline model
    r.batch_size = 256
    r.per = True                       # prioritized replay on both buffers (FOWM)
    r.env_steps = 500_000              # online agent steps
    if preset == "paper":
        return c
    m.latent_dim, m.enc_dim, m.mlp_dim = (32, 128, 128) if preset == "cpu" else (16, 16, 16)
    if preset == "cpu":
        # Balance is solved offline from any TD-MPC replay; swing-up leaves room to finetune.
        c.env.name = "CartpoleSwingup-v1"
        c.dataset.path = "datasets/CartpoleSwingup-v1/medium_replay.npz"
        r.per = False                  # uniform until PER is measured at this budget
        m.lr = 1e-3
        m.expectile = 0.7
        p.num_samples, p.num_pi_trajs, p.num_elites, p.iterations = 128, 8, 16, 4
        p.uncertainty_penalty = 1.0
        c.offline.steps, c.offline.updates_per_call = 3_000, 50
        c.offline.eval_every, c.offline.checkpoint_every = 1_000, 1_500
        r.env_steps, r.batch_size = 1_500, 128
        r.eval_every, r.log_every, r.checkpoint_every = 500, 125, 750
    else:  # smoke
        c.dataset.path = "datasets/smoke.npz"
        p.num_samples, p.num_pi_trajs, p.num_elites, p.iterations = 16, 4, 4, 2
        c.offline.steps, c.offline.updates_per_call = 8, 4
        c.offline.eval_every, c.offline.checkpoint_every = 4, 8
        r.env_steps, r.batch_size = 40, 4
    return c


def check_config(c: ml_collections.ConfigDict):
    """Validates a FOWM config (TD-MPC checks plus dataset/offline blocks); raises ValueError
    naming the field. Returns the planner's MPPIConfig."""
    planner = tdmpc_config.check_config(c)
    if c.model.value_learning != "iql" or c.model.policy_objective != "awr":
        raise ValueError(f"model.value_learning={c.model.value_learning!r} / "
                         f"model.policy_objective={c.model.policy_objective!r}: FOWM needs "
                         f"'iql' / 'awr' (use told.model_config('fowm'))")
    if not isinstance(c.dataset.path, str) or not c.dataset.path.endswith(".npz"):
        raise ValueError(f"dataset.path={c.dataset.path!r} must name an .npz file written by "
                         f"experiments/make_dataset.py")
    if not 0.0 <= c.dataset.offline_fraction < 1.0:
        raise ValueError(f"dataset.offline_fraction={c.dataset.offline_fraction!r} must be in "
                         f"[0, 1)")
    for name in ("steps", "checkpoint_every"):
        tdmpc_config._positive_int(f"offline.{name}", c.offline[name], 0)
    for name in ("updates_per_call", "eval_every"):
        tdmpc_config._positive_int(f"offline.{name}", c.offline[name])
    return planner


def batch_sizes(c: ml_collections.ConfigDict) -> tuple[int, int]:
    """(online, offline) sequences per online-phase batch: FOWM's balanced sampling."""
    offline = round(c.run.batch_size * c.dataset.offline_fraction)
    return c.run.batch_size - offline, offline
