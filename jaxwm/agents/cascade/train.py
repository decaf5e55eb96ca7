"""CASCADE's agent: reward-free deployments (Xu et al. 2022, Algorithm 1) and its baselines.

    deployment 0: uniform random actions
    for d in 1..D:
        on ALL data, model_ratio / 1000 * steps_per_deployment + 1 times:
            one world-model + disagreement-ensemble gradient step on a replay batch
            `policy_updates` population updates in imagination from that batch's posteriors
                                                                       [skipped by 'random']
        deploy the frozen population: env slot n is driven by member n // (N / B), each member
        collecting an equal share of steps_per_deployment; no parameter update of any kind
    zero-shot evaluation on held-out tasks after chosen deployments (`runtime.zero_shot`)

Explorer updates are interleaved with world-model steps and continued across deployments, as in
the official code (one explorer update per model step: 25,001 per 100k-step deployment in
`paper`). After every deployment the run logs one record (coverage of distinct agent cells
overall, in this deployment and per member for grid worlds, with per-member diversity: cells
unique to a member and the Jensen-Shannon divergence between members' visitation; episode
statistics; losses and each reward term's share of the explorers' returns, averaged over the
deployment's updates; zero-shot returns) and checkpoints world model, ensemble, population,
replay and RNG key, so a killed run resumes at the last completed deployment with its replay
intact. Each deployment creates its envs with seed (seed, d) and fresh episodes, so a resumed
run repeats the uninterrupted one exactly.
"""
import collections
import functools
import itertools
import os

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxwm import envs
from jaxwm.agents.cascade.config import METHODS
from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.behaviors.cascade import Cascade, PopulationState, check_config
from jaxwm.behaviors.plan2explore import Disagreement, one_step_pairs
from jaxwm.data import replay
from jaxwm.envs import jax_native
from jaxwm.envs.tasks import family_for_env, label_keys
from jaxwm.models import rssm
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import sharding, zero_shot
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config
from jaxwm.runtime.online import EpisodeStats, policy_inputs, sample_batches
from jaxwm.runtime.plots import plot_metrics
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors
from jaxwm.types import TrainState
from jaxwm.utils import random_action, scan_gradient_steps

# config fields a resumed run may change (more deployments would need a larger replay)
EXTENDABLE = ("deploy.eval_deployments", "deploy.checkpoints_to_keep")


@flax.struct.dataclass
class LearnerState:
    """Everything that is trained between deployments."""
    wm: TrainState
    disag: TrainState
    population: PopulationState


def resolve_method(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The cascade block of `config.method`: p2e = B 1, pp2e = lambda 0 (copies config)."""
    if config.method not in METHODS:
        raise ValueError(f"method={config.method!r} is not one of {METHODS}")
    c = ml_collections.ConfigDict(config.cascade.to_dict())
    if config.method in ("p2e", "random"):
        c.population = 1
    if config.method in ("p2e", "pp2e", "random"):
        c.diversity_scale = 0.0
    check_config(c)
    if config.env.num_envs % c.population:
        raise ValueError(f"env.num_envs={config.env.num_envs} must be a multiple of the "
                         f"population size {c.population} (cascade.population)")
    return c


def check_deploy_config(config: ml_collections.ConfigDict) -> None:
    """ValueError naming the first `deploy.*`, `env.*` or `cascade.*` field out of range (and
    the allowed range), before any work."""
    resolve_method(config)
    d = config.deploy
    for field, value, low in (("env.num_envs", config.env.num_envs, 1),
                              ("deploy.deployments", d.deployments, 0),
                              ("deploy.steps_per_deployment", d.steps_per_deployment, 1),
                              ("deploy.model_ratio", d.model_ratio, 0),
                              ("deploy.model_grad_steps", d.model_grad_steps, 1),
                              ("deploy.policy_updates", d.policy_updates, 1),
                              ("deploy.batch_size", d.batch_size, 1),
                              ("deploy.seq_len", d.seq_len, 2),
                              ("deploy.num_devices", d.num_devices, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{field}={value!r} must be an int >= {low}")
    steps_per_env = d.steps_per_deployment // config.env.num_envs
    if steps_per_env < d.seq_len:
        raise ValueError(f"deploy.steps_per_deployment={d.steps_per_deployment} gives "
                         f"{steps_per_env} steps per env slot, fewer than deploy.seq_len="
                         f"{d.seq_len}")
    for field, value in (("env.num_envs", config.env.num_envs), ("deploy.batch_size", d.batch_size),
                         ("zero_shot.batch_size", config.zero_shot.batch_size)):
        if value % d.num_devices:
            raise ValueError(f"{field}={value} must be a multiple of deploy.num_devices="
                             f"{d.num_devices} (replay and batches are split over devices)")
    eval_deployments(d.eval_deployments, d.deployments)
    for block in ("behavior", "zero_shot.behavior"):
        head = config.behavior if block == "behavior" else config.zero_shot.behavior
        if head.discount_head and not config.model.pred_discount:
            raise ValueError(f"{block}.discount_head=True needs model.pred_discount=True (it "
                             "would read an untrained discount head)")


def eval_deployments(spec: str, deployments: int) -> set:
    """Deployment indices after which to evaluate zero-shot ('last', 'all', 'none', '1,5')."""
    if spec == "last":
        return {deployments}
    if spec == "all":
        return set(range(1, deployments + 1))
    if spec == "none":
        return set()
    try:
        return {int(x) for x in spec.split(",")}
    except ValueError:
        raise ValueError(f"deploy.eval_deployments={spec!r} is not 'last', 'all', 'none' or "
                         "comma-separated deployment indices") from None


class Learner:
    """World model, ensemble and population with their jitted train and act functions."""

    def __init__(self, config, obs_space, act_space):
        self.config = config
        self.cascade_config = resolve_method(config)
        self.wm = WorldModel(config.model, obs_space, act_space)
        self.ac = ac_lib.ActorCritic(config.behavior, ac_lib.feat_size(config.model), act_space)
        c = config.model
        stoch = c.stoch * (c.classes if c.latent == "discrete" else 1)
        self.disag = Disagreement(config.disag, self.ac.feat_size, act_space.size, stoch)
        self.population = Cascade(self.cascade_config, self.ac, self.disag)
        self.train = jax.jit(self._train, static_argnames="explore", donate_argnums=0)
        self.act = jax.jit(self._act, static_argnames="random")

    def init(self, key) -> LearnerState:
        k_wm, k_disag, k_pop = jax.random.split(key, 3)
        return LearnerState(wm=self.wm.init_state(k_wm), disag=self.disag.init_state(k_disag),
                            population=self.population.init(k_pop))

    def _train(self, state: LearnerState, replay_state, key, explore: bool):
        """K interleaved steps on replay batches [K, T, B]: a world-model + ensemble gradient
        step, then (explore) `deploy.policy_updates` population updates imagined from that
        step's posteriors with the just-updated world model. Returns (state, mean metrics)."""
        d = self.config.deploy
        k_batch, k_steps = jax.random.split(key)
        batches = sample_batches(replay_state, k_batch, d.model_grad_steps, d.batch_size,
                                 d.seq_len)

        def step(state, inputs):
            batch, k = inputs
            k_wm, k_pop = jax.random.split(k)
            wm_state, metrics, posts = self.wm.train_step(state.wm, batch, k_wm)
            pairs = one_step_pairs(posts, self.wm.action_features(batch["action"]),
                                   batch["is_first"])
            disag_state, disag_metrics = self.disag.train_step(state.disag, *pairs)
            metrics.update(disag_metrics)
            population = state.population
            for i in range(d.policy_updates if explore else 0):
                k_start, k_update = jax.random.split(jax.random.fold_in(k_pop, i))
                start, start_cont = ac_lib.replay_starts(
                    posts, batch, self.config.behavior.imag_starts, k_start)
                population, pop_metrics = self.population.update(
                    population, self.wm, wm_state.params, disag_state.params, start, k_update,
                    start_cont)
            if explore:
                metrics.update(pop_metrics)
            return LearnerState(wm=wm_state, disag=disag_state, population=population), metrics

        keys = jax.random.split(k_steps, d.model_grad_steps)
        # A rolled loop unless a CNN needs straight-line steps on CPU (`WorldModel`): the
        # interleaved population updates make a straight-line program slow to compile
        # (cpu minigrid: 14 s rolled vs ~110 s straight-line, same speed per step).
        state, metrics = scan_gradient_steps(step, state, (batches, keys),
                                             self.wm.straight_line)
        return state, jax.tree.map(jnp.mean, metrics)

    def _act(self, wm_params, actor_params, carry, obs, key, random: bool):
        """Actions of the frozen population for N env slots; slot n follows member
        n // (N / B). Returns (action [N] or [N, A], carry)."""
        k_obs, k_act = jax.random.split(key)
        post = self.wm.observe_step(wm_params, carry, obs, k_obs)
        num = obs["is_first"].shape[0]
        if random:
            action = random_action(self.wm.act_space, num, k_act)
        else:
            action = self.ac.act_in_blocks(actor_params, rssm.features(post), k_act)
        return action, {"state": post, "action": self.wm.action_features(action)}


class Coverage:
    """Distinct agent cells (grid worlds reporting 'agent_pos'): overall, per deployment and per
    population member, with each member's visitation counts for `member_diversity`."""

    def __init__(self, members: int, cells=()):
        self.members = members
        self.total = set(map(tuple, cells))

    def start_deployment(self):
        self.deployment = set()
        self.visits = [collections.Counter() for _ in range(self.members)]

    def observe(self, out: dict):
        if "agent_pos" not in out:
            return
        positions = [tuple(p) for p in np.asarray(out["agent_pos"]).tolist()]
        per_slot = len(positions) // self.members
        for n, cell in enumerate(positions):
            self.visits[n // per_slot][cell] += 1
        self.deployment.update(positions)
        self.total.update(positions)

    def metrics(self) -> dict:
        if not self.total:
            return {}
        out = {"coverage": len(self.total), "deployment_coverage": len(self.deployment)}
        out.update({f"member_coverage/{i}": len(v) for i, v in enumerate(self.visits)})
        out.update(member_diversity(self.visits))
        return out


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (bits, in [0, 1]) of two histograms over the same cells."""
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())
    return 0.5 * kl(p) + 0.5 * kl(q)


def member_diversity(visits) -> dict:
    """Diversity of a population's visitation in one deployment, from per-member Counters of
    cell -> visits: `member_unique_cells/<i>` (cells no other member visited), their mean
    `member_unique_cells`, and `member_js` = mean pairwise Jensen-Shannon divergence (bits)
    between the members' visitation histograms (0: identical, 1: disjoint)."""
    visits = [v for v in visits]
    if len(visits) < 2 or not all(visits):
        return {}
    out = {}
    for i, v in enumerate(visits):
        others = set().union(*(set(w) for j, w in enumerate(visits) if j != i))
        out[f"member_unique_cells/{i}"] = len(set(v) - others)
    out["member_unique_cells"] = float(np.mean([out[f"member_unique_cells/{i}"]
                                                for i in range(len(visits))]))
    cells = sorted(set().union(*visits))
    hist = [np.array([v[c] for c in cells], np.float64) for v in visits]
    out["member_js"] = float(np.mean([js_divergence(hist[i], hist[j]) for i, j in
                                      itertools.combinations(range(len(hist)), 2)]))
    return out


def deploy(learner: Learner, env, wm_params, actor_params, replay_state, steps_per_env: int,
           key, random: bool, coverage: Coverage, labeler=None, on_device: bool | None = None):
    """Collect `steps_per_env` steps in every env slot with frozen params; returns the replay
    state and episode statistics. Nothing here updates any parameter. on_device (None: where
    possible): a JAX-native env (`jaxwm.envs.jax_native`) whose task labels (if any) are
    jittable runs as one compiled loop (`deploy_on_device`)."""
    if on_device is None:
        on_device = isinstance(env, jax_native.JaxNativeEnv) and (
            labeler is None or getattr(labeler, "jittable", False))
    if on_device:
        return deploy_on_device(learner, env, wm_params, actor_params, replay_state,
                                steps_per_env, key, random, coverage, labeler)
    add = jax.jit(replay.add, donate_argnums=0)
    spec_keys = replay_state.data.keys()
    carry = learner.wm.initial_carry(env.num_envs)
    out = env.reset()
    episodes, achieved = EpisodeStats(env.num_envs), []
    for t in range(steps_per_env):
        if labeler is not None:
            out.update(labeler.label(out))
        coverage.observe(out)
        action, carry = learner.act(wm_params, actor_params, carry, policy_inputs(env, out),
                                    jax.random.fold_in(key, t), random=random)
        action = np.asarray(action)
        replay_state = add(replay_state, replay.env_row(spec_keys, out, action))
        out = env.step(action)
        episodes.observe(out)
        if "achievements" in out:
            achieved += list(out["achievements"][out["is_last"]])
    return replay_state, _deployment_stats(episodes, achieved, env)


# Per-step outputs a deployment's statistics need (the rest stays on device).
_STAT_KEYS = ("reward", "is_first", "is_last", "agent_pos", "achievements")


def deploy_on_device(learner: Learner, env: jax_native.JaxNativeEnv, wm_params, actor_params,
                     replay_state, steps_per_env: int, key, random: bool, coverage: Coverage,
                     labeler=None, chunk: int = 500):
    """`deploy` as the Podracer "Anakin" pattern: acting, env steps and replay inserts of
    `chunk` steps form one `lax.scan` in one jitted call (compiled once per learner, env and
    chunk length), so nothing crosses to the host per step but the few outputs the statistics
    need. Same actions (keys `fold_in(key, t)`), env key chain and replay rows as the host loop
    over the same `JaxNativeEnv`."""
    module, cfg = env.module, env.cfg
    env_state, out = env.device_reset()
    carry = (env_state, out, learner.wm.initial_carry(env.num_envs), replay_state,
             jnp.copy(env.key_chain))   # the carry is donated; the env keeps its key
    episodes, achieved = EpisodeStats(env.num_envs), []
    coverage.observe(jax.device_get(out))
    for start in range(0, steps_per_env, chunk):
        length = min(chunk, steps_per_env - start)
        carry, outs = _deploy_chunk(carry, wm_params, actor_params, key, start,
                                    learner=learner, module=module, cfg=cfg,
                                    obs_keys=tuple(env.obs_space), random=random,
                                    labeler=labeler, length=length)
        outs = jax.device_get(outs)
        for t in range(length):
            row = {k: v[t] for k, v in outs.items()}
            episodes.observe(row)
            if "achievements" in row:
                achieved += list(row["achievements"][row["is_last"]])
            if start + t < steps_per_env - 1:   # the host loop sees the last output only after
                coverage.observe(row)
    return carry[3], _deployment_stats(episodes, achieved, env)


@functools.partial(jax.jit, donate_argnums=0, static_argnames=(
    "learner", "module", "cfg", "obs_keys", "random", "labeler", "length"))
def _deploy_chunk(carry, wm_params, actor_params, key, start, *, learner, module, cfg,
                  obs_keys, random, labeler, length):
    """`length` deployment steps from step `start`: (carry, per-step `_STAT_KEYS` outputs)."""
    spec_keys = tuple(carry[3].data)

    def body(carry, t):
        env_state, out, policy_carry, replay_state, env_key = carry
        if labeler is not None:
            out = {**out, **labeler.label(out)}
        inputs = {**{k: out[k] for k in obs_keys}, "is_first": out["is_first"]}
        action, policy_carry = learner._act(wm_params, actor_params, policy_carry, inputs,
                                            jax.random.fold_in(key, t), random)
        replay_state = replay.add(replay_state, replay.env_row(spec_keys, out, action))
        env_key, k_env = jax.random.split(env_key)
        env_state, out = jax_native.protocol_step(module, cfg, env_state, action,
                                                  out["is_last"], k_env)
        return ((env_state, out, policy_carry, replay_state, env_key),
                {k: out[k] for k in _STAT_KEYS if k in out})

    return jax.lax.scan(body, carry, start + jnp.arange(length))


def _deployment_stats(episodes: EpisodeStats, achieved: list, env) -> dict:
    finished = episodes.pop()
    stats = {"episodes": int(finished.get("episode/count", 0))}
    stats.update({k: finished[k] for k in ("episode/return", "episode/length") if k in finished})
    if achieved:
        stats.update(achievement_stats(np.stack(achieved), env.ACHIEVEMENTS))
    return stats


def achievement_stats(achieved: np.ndarray, names) -> dict:
    """Crafter metrics (Hafner, "Benchmarking the Spectrum of Agent Capabilities", ICLR 2022) of
    episodes' unlocked achievements `achieved` [episodes, K] in {0, 1}: the success rate s_k (%)
    of each achievement and the score exp(mean_k ln(1 + s_k)) - 1."""
    rates = 100.0 * np.asarray(achieved, np.float64).mean(0)
    stats = {f"achievement/{n}": float(r) for n, r in zip(names, rates)}
    stats["crafter_score"] = float(np.exp(np.log1p(rates).mean()) - 1.0)
    return stats


def run(config: ml_collections.ConfigDict, workdir: str, progress: bool = True,
        stop_after: int | None = None) -> dict:
    """Run (or resume) the deployments of `config` in `workdir`; returns the last record.

    stop_after: return after this deployment (a time-boxed job; rerun to continue)."""
    d = config.deploy
    with user_errors():   # nothing is written before the config is known to be valid
        check_values(config)
        check_deploy_config(config)
        eval_at = eval_deployments(d.eval_deployments, d.deployments)
        make_env = lambda n, seed: envs.make(config.env.name, n, seed,  # noqa: E731
                                             **dict(config.env.overrides))
        probe = make_env(config.env.num_envs, config.seed)
        obs_space, act_space = probe.obs_space, probe.act_space
        family = family_for_env(config.env.name, probe)
        probe.close()
        learner = Learner(config, obs_space, act_space)
        check_saved_config(config, workdir, EXTENDABLE)
    spec = replay.env_spec(probe, label_keys(family))
    steps_per_env = d.steps_per_deployment // config.env.num_envs
    capacity = (d.deployments + 1) * steps_per_env        # all data is kept
    mesh = sharding.make_mesh(d.num_devices) if d.num_devices > 1 else None
    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    learner_state = jax.jit(learner.init)(k_init)
    if mesh is not None:
        learner_state = sharding.replicate(learner_state, mesh)
    state = {"learner": learner_state,
             "replay": replay.init(spec, capacity, config.env.num_envs, mesh), "key": key}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                        d.checkpoints_to_keep or None)
    start, cells, meta = 0, [], {}
    restored = ckpt.restore_latest(state)
    if restored is not None:
        _, state, meta = restored
        start, cells = meta["deployment"] + 1, meta["cells"]
    save_config(config, workdir)   # only once the config is known to fit the run
    coverage = Coverage(learner.cascade_config.population, cells)
    random_method = config.method == "random"
    record = {}
    logger = RunLogger(workdir, total=d.deployments + 1, start=start, desc=config.method,
                       keep_records=meta.get("records") if restored is not None else 0,
                       show_keys=("coverage", "model_loss", "episode/return"),
                       enable_bar=progress)
    try:
        for dep in range(start, d.deployments + 1):
            key = jax.random.fold_in(state["key"], dep)
            k_model, k_deploy, k_eval = jax.random.split(key, 3)
            record = {"deployment": dep}
            before = _update_counts(state["learner"])
            if dep > 0:
                model_steps = d.model_ratio * d.steps_per_deployment // 1000 + 1
                calls = []
                for i in range(-(-model_steps // d.model_grad_steps)):
                    state["learner"], metrics = learner.train(
                        state["learner"], state["replay"], jax.random.fold_in(k_model, i),
                        explore=not random_method)
                    calls.append(metrics)
                record.update(jax.tree.map(lambda *m: np.mean(m), *calls))
            learned = _update_counts(state["learner"])
            env = make_env(config.env.num_envs, config.seed * 1000 + dep)
            coverage.start_deployment()
            try:
                state["replay"], stats = deploy(
                    learner, env, state["learner"].wm.params,
                    state["learner"].population.members.actor.params, state["replay"],
                    steps_per_env, k_deploy, random_method or dep == 0, coverage, family)
            finally:
                env.close()
            deployed = _update_counts(state["learner"])
            record.update(stats, **coverage.metrics(), env_steps=(dep + 1) * steps_per_env
                          * config.env.num_envs,
                          updates_before_deploy=sum(learned) - sum(before),
                          updates_during_deploy=sum(deployed) - sum(learned))
            if dep in eval_at and family is not None:
                record.update(zero_shot.evaluate(
                    config.zero_shot, learner.wm, state["learner"].wm.params, state["replay"],
                    family, lambda n: make_env(n, config.seed * 1000 + 999), k_eval))
            record = logger.log(dep, record)
            ckpt.save(dep, state, {"deployment": dep, "cells": sorted(coverage.total),
                                   "records": logger.records})
            logger.advance(dep + 1)
            if stop_after is not None and dep >= stop_after:
                return record
        keys = ("coverage", "deployment_coverage", "member_js", "model_loss", "info_gain_raw",
                "pop_diversity_raw", "popdiv_return_share", "episode/return")
        if family is not None:   # one panel: a line per zero-shot task
            keys += (tuple(f"zero_shot/{t}" for t in family.tasks),)
        plot = plot_metrics(workdir, keys, title=f"{config.method} on {config.env.name}",
                            xlabel="deployment")
        logger.write(f"metrics: {logger.metrics_path}\nplot: {plot}\ncheckpoints: "
                     f"{ckpt.directory}")
    finally:
        logger.close()
        ckpt.close()
    return record


def _update_counts(learner_state: LearnerState) -> tuple:
    """Optimizer step counters of every trained component (host ints)."""
    members = learner_state.population.members
    return (int(learner_state.wm.step), int(learner_state.disag.step),
            int(np.asarray(members.actor.step).sum()), int(np.asarray(members.critic.step).sum()))
