"""Reversibility-aware RL entry point: `train_and_evaluate(config, workdir)` runs mode 'rae'
(PPO +- RAE on Turf or Sokoban, compiled chunks) or 'rac' (offline psi/phi, then DQN +- RAC on
CartPole) under the workdir contract (`jaxwm.runtime.workdir`): validated before anything is
written, a workdir of another config refused, a killed run resumed from its last checkpoint
with no record logged twice. Writes config.json, metrics.jsonl, tb/, checkpoints/, plots/metrics.png.
"""
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxwm import envs
from jaxwm.agents.reversibility import rac, rae
from jaxwm.agents.reversibility.config import check_config
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config
from jaxwm.runtime.online import env_seed
from jaxwm.runtime.plots import plot_metrics
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

EXTENDABLE = ("rae.iterations", "rac.steps")
RAE_PLOTS = ("episode/return", "episode/irreversible", "episode/success",
             ("psi/precision", "psi/recall"), "penalty", "psi_loss")
RAC_PLOTS = ("episode/return", ("train/falls", "train/episodes"), "td_loss")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train (or resume) in `workdir`; returns the final metrics."""
    with user_errors():
        check_values(config)
        check_config(config)
        if config.mode == "rae":
            rae.env_core(config)
        if config.mode == "rac":
            probe = envs.make(config.rac.env, 1)
            probe.close()
            if not probe.act_space.discrete or set(probe.obs_space) != {"vector"}:
                raise ValueError(f"rac.env={config.rac.env!r}: RAC needs discrete actions and "
                                 f"vector observations, got {probe}")
        check_saved_config(config, workdir, EXTENDABLE)
    if config.mode == "rae":
        return _train_rae(config, workdir)
    return _train_rac(config, workdir, probe.act_space.size, probe.obs_space["vector"].shape[0])


def _train_rae(c, workdir: str) -> dict:
    nets = rae.build(c)
    key_init, key_eval = jax.random.split(jax.random.PRNGKey(c.seed))
    state = rae.init(c, nets, key_init)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 2)
    iteration, meta = 0, {}
    restored = ckpt.restore_latest(state)
    if restored is not None:
        iteration, state, meta = restored
    save_config(c, workdir)
    per_iteration = c.rae.num_envs * c.rae.rollout
    chunk = jax.jit(functools.partial(rae.chunk, c, nets), donate_argnums=0)
    summary = {}
    with RunLogger(workdir, total=c.rae.iterations * per_iteration,
                   start=iteration * per_iteration, desc="rae" if c.rae.penalty else "ppo",
                   show_keys=("episode/return", "episode/irreversible"),
                   keep_records=meta.get("records") if restored is not None else 0) as log:
        while iteration < c.rae.iterations:
            state, metrics = chunk(state)
            iteration += c.rae.log_every
            summary = log.log(iteration * per_iteration, rae.summarize(metrics))
            log.advance(iteration * per_iteration)
            ckpt.save(iteration, state, {"records": log.records})
        scores = jax.jit(functools.partial(rae.score_psi, c, nets))(state.psi.params, key_eval)
        summary.update(log.log(iteration * per_iteration, scores))
    ckpt.close()
    plot_metrics(workdir, RAE_PLOTS, title=f"{'PPO + RAE' if c.rae.penalty else 'PPO'} on "
                 f"{c.rae.env}")
    return summary


class _Episodes:
    """Host counters of finished training episodes: how many, how many fell (terminated), the
    episode index of the first fall (-1: none yet), and returns since the last log."""

    def __init__(self, num_envs, episodes=0, falls=0, first_fall=-1):
        self.episodes, self.falls, self.first_fall = episodes, falls, first_fall
        self.sums = np.zeros(num_envs)
        self.returns = []

    def update(self, out: dict) -> None:
        self.sums += out["reward"]
        for i in np.flatnonzero(out["is_last"]):
            if out["is_terminal"][i]:
                if self.first_fall < 0:
                    self.first_fall = self.episodes
                self.falls += 1
            self.episodes += 1
            self.returns.append(float(self.sums[i]))
        self.sums[out["is_first"] | out["is_last"]] = 0.0

    def checkpoint(self) -> dict:
        return dict(episodes=self.episodes, falls=self.falls, first_fall=self.first_fall)

    def pop(self) -> dict:
        out = {"train/episodes": self.episodes, "train/falls": self.falls,
               "train/episodes_before_first_fall": (self.first_fall if self.first_fall >= 0
                                                    else self.episodes)}
        if self.returns:
            out["episode/return"] = float(np.mean(self.returns))
        self.returns = []
        return out


def _train_rac(c, workdir: str, num_actions: int, obs_dim: int) -> dict:
    q = c.rac
    nets = rac.build(c, num_actions)
    k_data, k_psi, k_phi, k_dqn, k_eval = jax.random.split(jax.random.PRNGKey(c.seed), 5)
    zeros = jnp.zeros((1, obs_dim))   # psi and phi: restore targets until the offline phase
    state = {"psi": nets.psi.init(k_psi, zeros, zeros), "phi": nets.phi.init(k_phi, zeros),
             "dqn": rac.init_dqn(c, nets, obs_dim, k_dqn)}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 2)
    restored = ckpt.restore_latest(state)
    save_config(c, workdir)
    if restored is not None:
        step, state, meta = restored
        records = meta["records"]
    else:
        step, meta, records = 0, {}, 0
    episodes = _Episodes(q.num_envs, **meta.get("episodes", {}))
    with RunLogger(workdir, total=q.steps, start=step, desc="rac" if q.enabled else "dqn",
                   show_keys=("episode/return", "train/falls"), keep_records=records) as log:
        if restored is None:   # offline phase: psi, then phi, from random trajectories
            env = envs.make(q.env, q.num_envs, env_seed(c.seed, 0) + 1)
            data = rac.collect_random(env, q.random_steps, k_data)
            env.close()
            state["psi"], psi_metrics = rac.train_psi(c, nets, data, k_psi)
            state["phi"], phi_metrics = rac.train_phi(c, nets, state["psi"], data, k_phi)
            log.log(0, {**psi_metrics, **phi_metrics,
                        "random_fall_rate": data["falls"] / max(data["episodes"], 1)},
                    prefix="offline/")
            ckpt.save(0, state, {"records": log.records, "episodes": episodes.checkpoint()})
        act = jax.jit(functools.partial(rac.act, c, nets))
        update = jax.jit(functools.partial(rac.store_and_update, c, nets), donate_argnums=0)
        env = envs.make(q.env, q.num_envs, env_seed(c.seed, step))
        obs = env.reset()["vector"]
        dqn, key = state["dqn"], jax.random.fold_in(k_dqn, step)
        last_log, losses = step, []
        while step < q.steps:
            epsilon = q.epsilon_end + (q.epsilon_start - q.epsilon_end) * max(
                0.0, 1.0 - step / q.epsilon_steps)
            key, k_act = jax.random.split(key)
            action = np.asarray(act(dqn.q.params, state["phi"], obs, epsilon, k_act))
            out = env.step(action)
            episodes.update(out)
            step += q.num_envs
            dqn, loss = update(dqn, obs, action, {k: out[k] for k in (
                "vector", "reward", "is_first", "is_terminal")}, step >= q.learning_starts)
            losses.append(loss)
            obs = out["vector"]
            if step - last_log >= q.log_every or step >= q.steps:
                log.log(step, {**episodes.pop(), "td_loss": float(np.mean(losses)),
                               "epsilon": epsilon})
                log.advance(step)
                last_log, losses = step, []
                if step % q.checkpoint_every < q.num_envs or step >= q.steps:
                    state["dqn"] = dqn
                    ckpt.save(step, state, {"records": log.records,
                                            "episodes": episodes.checkpoint()})
        env.close()
        state["dqn"] = dqn
        summary = log.log(step, _evaluate(c, nets, state, k_eval), prefix="eval/")
    ckpt.close()
    plot_metrics(workdir, RAC_PLOTS, title=f"{'DQN + RAC' if q.enabled else 'DQN'} on {q.env}")
    return {**episodes.pop(), **summary}


def _evaluate(c, nets, state, key) -> dict:
    """Greedy episodes (through RAC when enabled), one per env: mean return and falls."""
    q = c.rac
    env = envs.make(q.env, q.eval_episodes, env_seed(c.seed, 0) + 20_000)
    act = jax.jit(functools.partial(rac.act, c, nets))
    out = env.reset()
    returns, done = np.zeros(env.num_envs), np.zeros(env.num_envs, bool)
    fell = np.zeros(env.num_envs, bool)
    while not done.all():
        key, k_act = jax.random.split(key)
        out = env.step(np.asarray(act(state["dqn"].q.params, state["phi"], out["vector"], 0.0,
                                      k_act)))
        returns += np.where(done, 0.0, out["reward"])
        fell |= ~done & out["is_terminal"]
        done |= out["is_last"]
    env.close()
    return {"return": float(returns.mean()), "falls": int(fell.sum())}
