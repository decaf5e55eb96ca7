"""Zero-shot evaluation of a reward-free world model (Plan2Explore, Sekar et al. 2020, Sec. 5;
CASCADE, Xu et al. 2022, Sec. 5 / ALGORITHMS.md Sec. 3-4).

Given a world model and a replay buffer whose steps carry the rewards of a task family
(`reward/<task>` keys, `jaxwm.envs.tasks`), for all K tasks at once:
  1. train a reward head per task on stop-gradient features of the frozen world model's posteriors
     (K heads stacked on a leading axis, `jaxwm.ensemble`),
  2. train a task actor-critic per task purely in imagination on its reward head (K actor-critics
     stacked and updated with one `jax.vmap`, all imagining from the same start states),
  3. run evaluation episodes in the real environment with each task's mode policy, scored by the
     task's labelled reward.
No environment interaction is used for learning: only the replay buffer and the world model.
"""
import chex
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxwm import ensemble
from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.data import replay
from jaxwm.models import rssm
from jaxwm.nn import MLP
from jaxwm.runtime.online import run_episodes, sample_batches
from jaxwm.types import TrainState, adam
from jaxwm.utils import train_on_batches

sg = jax.lax.stop_gradient


def zero_shot_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """Defaults of the protocol; `preset` shrinks the budgets (smoke / cpu / paper)."""
    c = ml_collections.ConfigDict()
    c.every = 0                # env steps between zero-shot evaluations during a run (0: end only)
    c.tasks = "all"            # comma-separated task names of the family, or 'all'
    c.reward_steps = 10_000    # gradient steps of the reward heads
    c.behavior_steps = 10_000  # actor-critic updates in imagination per task
    c.grad_steps = 10          # steps per jitted call (scanned)
    c.batch_size = 16          # replay sequences per step
    c.seq_len = 50             # steps per sequence
    c.reward_layers = 4        # reward head MLP depth
    c.reward_units = 400       # reward head MLP width
    c.reward_lr = 3e-4         # reward head Adam learning rate
    c.episodes = 10            # evaluation episodes per task
    # task actor-critics
    c.behavior = ac_lib.apply_behavior_preset(ac_lib.behavior_config(), "paper_dmc")
    if preset == "cpu":
        c.reward_steps, c.behavior_steps, c.grad_steps = 500, 300, 10
        c.batch_size, c.seq_len, c.reward_layers, c.reward_units = 16, 32, 2, 200
        c.episodes = 1
        c.behavior = ac_lib.apply_behavior_preset(ac_lib.behavior_config(), "cpu")
        c.behavior.imag_starts = 128
    elif preset == "smoke":
        c.reward_steps, c.behavior_steps, c.grad_steps = 2, 2, 1
        c.batch_size, c.seq_len, c.reward_layers, c.reward_units = 4, 8, 1, 32
        c.episodes = 1
        c.behavior = ac_lib.apply_behavior_preset(ac_lib.behavior_config(), "smoke")
    elif preset != "paper":
        raise ValueError(f"preset={preset!r} is not one of ('smoke', 'cpu', 'paper')")
    return c


@flax.struct.dataclass
class ZeroShotState:
    reward: TrainState                 # K reward heads, params [K, ...]
    ac: ac_lib.ACState                 # K task actor-critics, every leaf [K, ...]


class ZeroShot:
    """The protocol for one world model and K tasks (names `tasks`)."""

    def __init__(self, config: ml_collections.ConfigDict, wm, tasks: tuple):
        if not tasks:
            raise ValueError("zero_shot.tasks selects no task")
        if config.reward_steps < 1 or config.behavior_steps < 1 or config.grad_steps < 1:
            raise ValueError("zero_shot.reward_steps, behavior_steps and grad_steps must be >= 1")
        self.config, self.wm, self.tasks = config, wm, tuple(tasks)
        self.head = MLP((config.reward_units,) * config.reward_layers, out=1,
                        act=config.behavior.act)
        self.reward_opt = adam(config.reward_lr, 1e-5, 100.0, 0.0)
        self.ac = ac_lib.ActorCritic(config.behavior, ac_lib.feat_size(wm.config), wm.act_space)

    def init(self, key) -> ZeroShotState:
        k_head, k_ac = jax.random.split(key)
        dummy = jnp.zeros((1, ac_lib.feat_size(self.wm.config)))
        heads = ensemble.init(lambda k: self.head.init(k, dummy), k_head, len(self.tasks))
        acs = jax.vmap(self.ac.init)(jax.random.split(k_ac, len(self.tasks)))
        return ZeroShotState(reward=TrainState.create(heads, self.reward_opt), ac=acs)

    def task_rewards(self, head_params, feat) -> jax.Array:
        """K reward heads on feat [..., F] -> [K, ...]."""
        return ensemble.apply(self.head.apply, head_params, feat)[..., 0]

    def _posts(self, wm_params, batch, key):
        posts, _ = self.wm.observe(wm_params, batch, key)
        return sg(posts)

    def reward_step(self, state: ZeroShotState, wm_params, batch, key):
        """One step of all K reward heads on a batch [T, B]: MSE to labels 'reward/<task>'."""
        feat = rssm.features(self._posts(wm_params, batch, key))              # [T, B, F]
        labels = jnp.stack([batch[f"reward/{t}"] for t in self.tasks])       # [K, T, B]

        def loss(params):
            pred = self.task_rewards(params, feat)
            chex.assert_equal_shape([pred, labels])
            per_task = 0.5 * jnp.square(pred - labels).mean((1, 2))
            return per_task.sum(), per_task

        grads, per_task = jax.grad(loss, has_aux=True)(state.reward.params)
        reward = state.reward.apply_gradients(self.reward_opt, grads)
        metrics = {f"reward_loss/{t}": per_task[i] for i, t in enumerate(self.tasks)}
        return state.replace(reward=reward), metrics

    def behavior_step(self, state: ZeroShotState, wm_params, batch, key):
        """One update of all K task actor-critics (vmapped) from the batch's posteriors."""
        k_obs, k_start, k_ac = jax.random.split(key, 3)
        start, start_cont = ac_lib.replay_starts(self._posts(wm_params, batch, k_obs), batch,
                                                 self.config.behavior.imag_starts, k_start)

        def one(ac_state, head_params, k):
            reward_fn = lambda traj: self.head.apply(head_params, traj.feat[1:])[..., 0]  # noqa
            return self.ac.update(ac_state, self.wm, wm_params, start, reward_fn, k, start_cont)

        acs, metrics = jax.vmap(one)(state.ac, state.reward.params,
                                     jax.random.split(k_ac, len(self.tasks)))
        metrics = {f"{k}/{t}": v[i] for k, v in metrics.items()
                   for i, t in enumerate(self.tasks) if k in ("imag_return", "actor_loss")}
        return state.replace(ac=acs), metrics

    def make_train_fn(self, step_fn):
        """Jitted (state, wm_params, replay_state, key) -> (state, mean metrics) over K steps."""
        c = self.config

        def train(state, wm_params, replay_state, key):
            k_sample, k_steps = jax.random.split(key)
            batches = sample_batches(replay_state, k_sample, c.grad_steps, c.batch_size,
                                     c.seq_len)
            return train_on_batches(lambda s, b, k: step_fn(s, wm_params, b, k), state,
                                    batches, k_steps)

        return jax.jit(train, donate_argnums=0)

    def policy(self, state: ZeroShotState, wm_params):
        """act_fn(carry, obs, key) for K * episodes envs: env block k follows task k's mode
        policy (actor params [K, ...] vmapped)."""
        @jax.jit
        def act(carry, obs, key):
            k_obs, k_act = jax.random.split(key)
            post = self.wm.observe_step(wm_params, carry, obs, k_obs)
            action = self.ac.act_in_blocks(state.ac.actor.params, rssm.features(post), k_act,
                                           sample=False)
            return action, {"state": post, "action": self.wm.action_features(action)}

        return act


def select_tasks(spec: str, family) -> tuple:
    """Task names from 'all' or a comma-separated list; ValueError names unknown tasks."""
    if spec == "all":
        return tuple(family.tasks)
    tasks = tuple(t.strip() for t in spec.split(",") if t.strip())
    unknown = [t for t in tasks if t not in family.tasks]
    if unknown or not tasks:
        raise ValueError(f"zero_shot.tasks={spec!r}: unknown {unknown}; allowed: 'all' or a "
                         f"comma-separated subset of {tuple(family.tasks)}")
    return tasks


def evaluate(config: ml_collections.ConfigDict, wm, wm_params, replay_state, family,
             env_fn, key, logger=None, step: int = 0) -> dict:
    """Run the whole protocol (module docstring) and return
    {'zero_shot/<task>': mean evaluation return, ...} plus the final training metrics.

    replay_state: holds 'reward/<task>' for every selected task; env_fn(num_envs) -> a fresh env
    of the same dynamics whose outputs `family.label` can score; logger: optional RunLogger.
    """
    tasks = select_tasks(config.tasks, family)
    missing = [t for t in tasks if f"reward/{t}" not in replay_state.data]
    if missing:
        raise ValueError(f"replay has no labels for tasks {missing}; it holds "
                         f"{sorted(k for k in replay_state.data if k.startswith('reward/'))}")
    if int(replay.size(replay_state)) < config.seq_len:
        raise ValueError(f"replay holds {int(replay.size(replay_state))} steps per env; "
                         f"zero_shot.seq_len={config.seq_len} needs more")
    zs = ZeroShot(config, wm, tasks)
    k_init, k_reward, k_behavior, k_eval = jax.random.split(key, 4)
    state = jax.jit(zs.init)(k_init)
    results = {}
    for name, step_fn, total, k in (("reward", zs.reward_step, config.reward_steps, k_reward),
                                    ("behavior", zs.behavior_step, config.behavior_steps,
                                     k_behavior)):
        train = zs.make_train_fn(step_fn)
        calls = -(-total // config.grad_steps)
        for i in range(calls):
            state, metrics = train(state, wm_params, replay_state, jax.random.fold_in(k, i))
        values = {f"zero_shot_train/{m}": float(v) for m, v in jax.device_get(metrics).items()}
        results.update(values)
    env = env_fn(len(tasks) * config.episodes)
    try:
        act = zs.policy(state, wm_params)
        res = run_episodes(env, act, wm.initial_carry(env.num_envs), k_eval, family)
    finally:
        env.close()
    for i, task in enumerate(tasks):
        block = slice(i * config.episodes, (i + 1) * config.episodes)
        results[f"zero_shot/{task}"] = float(np.mean(res[f"return_{task}"][block]))
    if logger is not None:
        logger.log(step, results)
    return results
