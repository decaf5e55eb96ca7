"""TD-MPC / TD-MPC2 agent: a TOLD model, its policy prior, EMA targets and an MPPI planner.

Composition only (Hansen et al. 2022, Alg. 2; Hansen et al. 2024): the maths lives in
`jaxwm.models.told` (losses) and `jaxwm.planners.mppi` (planning). One jitted `train_steps` samples
K batches from device replay buffers (uniformly, or by priority with importance weights and the
sampled starts re-prioritized by their TD errors after every step, as TD-MPC's and FOWM's
official runs do) and takes K gradient steps in a `lax.scan`; one jitted `act`
encodes a batch of observations and plans for every env with a vmapped MPPI. FOWM reuses this agent
with IQL/AWR losses, balanced sampling from two buffers and an uncertainty-penalized planner.
"""
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.data import prioritized, replay
from jaxwm.models import told
from jaxwm.planners import mppi
from jaxwm.types import TrainState, adam, scale_subtree
from jaxwm.utils import random_action


@flax.struct.dataclass
class AgentState:
    """model: TOLD params {'encoder', 'dynamics', 'reward', 'q' [E, ...], ('v')} with Adam state;
    pi: policy-prior params; target: EMA {'encoder', 'q'}; q_scale: TD-MPC2's running Q scale []."""
    model: TrainState
    pi: TrainState
    target: dict
    q_scale: jax.Array


class Agent:
    """Static description; every method is a pure function of an `AgentState`.

    config: the full agent ConfigDict (`model`, `planner`, `run` blocks); obs_size D and
    action_size A of the 'vector' observations and continuous actions in [-1, 1].
    """

    def __init__(self, config: ml_collections.ConfigDict, obs_size: int, action_size: int):
        self.config = config
        self.planner = tdmpc_config.planner_from(config)
        self.model = told.TOLD(config.model, obs_size, action_size)
        self.obs_size, self.action_size = obs_size, action_size
        c = config.model
        self.optimizer = adam(c.lr, eps=1e-8, clip=c.grad_clip)
        if c.enc_lr_scale != 1.0:
            self.optimizer = optax.chain(self.optimizer, scale_subtree("encoder", c.enc_lr_scale))
        self.pi_optimizer = adam(c.lr, eps=c.pi_eps, clip=c.grad_clip)
        m = self.model
        self.fns = mppi.ModelFns(
            next=lambda p, z, a: m.next(p["model"], z, a),
            reward=lambda p, z, a: m.reward(p["model"], z, a),
            q_ensemble=lambda p, z, a: m.q_values(p["model"]["q"], z, a),
            policy=lambda p, z, key: m.pi(p["pi"], z, key)[0])
        self.jit_act = jax.jit(self.act)  # one compiled planner shared by training and eval

    # --- state -----------------------------------------------------------------------------
    def init(self, key: jax.Array) -> AgentState:
        """Fresh state; the EMA targets start as copies of the online params. Jit it."""
        params, pi_params = self.model.init(key)
        return AgentState(model=TrainState.create(params, self.optimizer),
                          pi=TrainState.create(pi_params, self.pi_optimizer),
                          target=self.model.target_params(params), q_scale=jnp.ones(()))

    def priorities(self, rstate: replay.ReplayState, filled: bool = False):
        """The PriorityState of a buffer when `run.per` (else None): empty, or for a buffer
        already `filled` (FOWM's offline data) every valid start at priority 1."""
        if not self.config.run.per:
            return None
        seq_len, alpha = self.config.model.horizon + 1, self.config.run.per_alpha
        if filled:
            return prioritized.from_replay(rstate, seq_len, alpha)
        return prioritized.init(rstate, seq_len, alpha)

    def replay_spec(self) -> dict:
        """Replay fields: 'vector' [D], 'action' [A], 'reward' and the episode flags."""
        spec = {"vector": ((self.obs_size,), jnp.float32),
                "action": ((self.action_size,), jnp.float32), "reward": ((), jnp.float32)}
        spec.update({k: ((), jnp.bool_) for k in ("is_first", "is_last", "is_terminal")})
        return spec

    # --- learning --------------------------------------------------------------------------
    def update(self, state: AgentState, batch: dict, key: jax.Array,
               weights: jax.Array | None = None):
        """One gradient step on sequences [H + 1, B] (IS weights [B] on the model loss if given):
        model (TOLD losses), then policy prior on the updated Qs (TD-MPC Alg. 2), then EMA
        targets every `target_every` steps. Returns (state, metrics, priorities [B])."""
        c = self.config.model
        k_model, k_pi, k_scale = jax.random.split(key, 3)
        grads, (metrics, zs, priority) = jax.grad(self.model.world_model_loss, has_aux=True)(
            state.model.params, state.pi.params, state.target, batch, k_model, weights)
        metrics["model_grad_norm"] = optax.global_norm(grads)
        model_state = state.model.apply_gradients(self.optimizer, grads)
        q_scale = self.model.q_scale_update(state.q_scale, model_state.params, zs,
                                            state.pi.params, k_scale)
        pi_grads, pi_metrics = jax.grad(self.model.policy_loss, has_aux=True)(
            state.pi.params, model_state.params, state.target, zs, batch, q_scale, k_pi)
        metrics.update(pi_metrics, pi_grad_norm=optax.global_norm(pi_grads), q_scale=q_scale)
        pi_state = state.pi.apply_gradients(self.pi_optimizer, pi_grads)
        new_target = told.ema(state.target, self.model.target_params(model_state.params), c.tau)
        due = model_state.step % c.target_every == 0
        target = jax.tree.map(lambda new, old: jnp.where(due, new, old), new_target, state.target)
        new_state = AgentState(model=model_state, pi=pi_state, target=target, q_scale=q_scale)
        return new_state, metrics, priority

    def sample(self, replays: Sequence[replay.ReplayState], key: jax.Array,
               sizes: Sequence[int], priorities: Sequence | None = None):
        """Sequences [H + 1, sum(sizes)]: sizes[i] from replays[i], concatenated on the batch axis
        (FOWM's balanced sampling uses two buffers with equal sizes), drawn uniformly or by
        priorities[i] (a `prioritized.PriorityState`, or None). Returns (batch, IS weights
        [sum(sizes)] (1 for uniform draws), per-buffer SampleInfo or None)."""
        seq_len = self.config.model.horizon + 1
        priorities = priorities or (None,) * len(replays)
        beta = self.config.run.per_beta
        keys = jax.random.split(key, len(replays))
        parts, weights, infos = [], [], []
        for r, p, k, n in zip(replays, priorities, keys, sizes):
            if not n:
                infos.append(None)
                continue
            if p is None:
                batch, info, w = replay.sample(r, k, n, seq_len), None, jnp.ones(n)
            else:
                batch, info = prioritized.sample(r, p, k, n, beta)
                w = info.weights
            parts.append(batch)
            weights.append(w)
            infos.append(info)
        batch = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
        return batch, jnp.concatenate(weights), tuple(infos)

    def train_steps(self, state: AgentState, replays: tuple, key: jax.Array, num_steps: int,
                    sizes: tuple | None = None, priorities: tuple | None = None):
        """`num_steps` (static) gradient steps in a `lax.scan`, each on a fresh batch sampled on
        device from `replays` (a tuple of ReplayStates; `sizes` static per-buffer batch sizes,
        default all of `run.batch_size` from the first; `priorities` a PriorityState or None per
        buffer, updated after every step with the sampled starts' TD errors).
        Returns (state, mean metrics, priorities)."""
        sizes = tuple(sizes or (self.config.run.batch_size,))
        if len(sizes) != len(replays):
            raise ValueError(f"sizes={sizes} needs one batch size per replay ({len(replays)})")
        priorities = tuple(priorities or (None,) * len(replays))
        bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

        def body(carry, k):
            state, prios = carry
            k_batch, k_update = jax.random.split(k)
            batch, weights, infos = self.sample(replays, k_batch, sizes, prios)
            state, metrics, errors = self.update(state, batch, k_update, weights)
            prios = tuple(p if info is None else prioritized.update(
                p, info.leaves, errors[bounds[i]:bounds[i + 1]])
                for i, (p, info) in enumerate(zip(prios, infos)))
            return (state, prios), metrics

        (state, priorities), metrics = jax.lax.scan(body, (state, priorities),
                                                    jax.random.split(key, num_steps))
        return state, jax.tree.map(jnp.mean, metrics), priorities

    # --- acting ----------------------------------------------------------------------------
    def act(self, state: AgentState, obs: jax.Array, plan_mean: jax.Array, is_first: jax.Array,
            key: jax.Array, explore: jax.Array | bool = True,
            min_std: jax.Array | float | None = None, horizon: jax.Array | int | None = None):
        """Plan for N envs: obs [N, D], plan_mean [N, H, A] (from the previous call; reset where
        is_first [N]) -> (action [N, A], plan_mean [N, H, A], info). min_std: the planner's std
        floor (default planner.min_std; `config.exploration_std` while training); horizon: the
        planning horizon (default H; `config.planning_horizon`). Jit it."""
        z = self.model.encode(state.model.params, obs.astype(jnp.float32))
        params = {"model": state.model.params, "pi": state.pi.params}
        min_std = self.planner.min_std if min_std is None else min_std
        horizon = self.planner.horizon if horizon is None else horizon
        return mppi.plan_batch(self.planner, self.fns, params, key, z, plan_mean, is_first,
                               explore, jnp.float32(min_std), jnp.int32(horizon))

    def policy_act(self, state: AgentState, obs: jax.Array, key: jax.Array,
                   explore: jax.Array | bool = True) -> jax.Array:
        """The policy prior alone (no planning): obs [N, D] -> action [N, A]."""
        z = self.model.encode(state.model.params, obs.astype(jnp.float32))
        action, _ = self.model.pi(state.pi.params, z, key)
        mode, _ = self.model.pi(state.pi.params, z, key, noise=False)
        return jnp.where(explore, action, mode)

    def initial_plan(self, num_envs: int) -> jax.Array:
        """Zero plan means [N, H, A]."""
        return mppi.initial_plan(self.planner, self.action_size, (num_envs,))


class OnlineTDMPC:
    """TD-MPC in the online protocol of `jaxwm.runtime.online` (init / initial_carry / act /
    train_steps), for runners that sample replay themselves (`jaxwm.runtime.async_runner`).
    Acting plans by MPPI at the full horizon with the planner's std floor (`planner.min_std`;
    the training loop's annealing schedules need the env step, which the protocol does not
    pass); 'eval' plans without noise; 'random' is uniform. Training runs `Agent.update` on each
    given batch of H + 1 steps, uniformly sampled (no prioritized replay)."""

    def __init__(self, config: ml_collections.ConfigDict, obs_space: dict, act_space):
        if "vector" not in obs_space or act_space.discrete:
            raise ValueError(f"env.name={config.env.name!r}: TD-MPC needs 'vector' observations "
                             f"and continuous actions, got obs {sorted(obs_space)}, "
                             f"discrete={act_space.discrete}")
        self.agent = Agent(config, obs_space["vector"].shape[0], act_space.size)
        self.act_space, self.seq_len = act_space, config.model.horizon + 1

    def init(self, key: jax.Array) -> AgentState:
        return self.agent.init(key)

    def initial_carry(self, num_envs: int) -> jax.Array:
        return self.agent.initial_plan(num_envs)

    def act(self, state: AgentState, plan: jax.Array, obs: dict, key: jax.Array, mode):
        k_plan, k_random = jax.random.split(key)
        action, plan, _ = self.agent.act(state, obs["vector"], plan, obs["is_first"], k_plan,
                                         mode == 0)
        uniform = random_action(self.act_space, obs["is_first"].shape[0], k_random)
        return jnp.where(mode == 2, uniform, action), plan

    def train_steps(self, state: AgentState, batches: dict, key: jax.Array):
        """batches: fields [K, H + 1, B, ...] -> (state, mean metrics) after K updates."""
        def body(state, xs):
            batch, k = xs
            state, metrics, _ = self.agent.update(state, batch, k)
            return state, metrics

        keys = jax.random.split(key, jax.tree.leaves(batches)[0].shape[0])
        state, metrics = jax.lax.scan(body, state, (batches, keys))
        return state, jax.tree.map(jnp.mean, metrics)
