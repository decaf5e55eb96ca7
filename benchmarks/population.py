"""CASCADE population update: one vmapped step for B members vs B sequential member steps.

  .venv/bin/python benchmarks/population.py --populations=1,2,4,8,16 --repeats=3

For each population size B it times one jitted `Cascade.update` (B stacked actor-critics imagined
and updated in one call, Xu et al. 2022 Sec. 4) against a Python loop that calls a jitted
single-member `ActorCritic.update` B times on members of the same shapes, each with its own
Plan2Explore disagreement reward (so both sides imagine, score and update B members; the loop
lacks only the cascade diversity term, which is cheap). Both are measured in the same run and
reported as the ratio sequential / vmapped time per B. Compile times (ahead-of-time `lower().
compile()`, the persistent compilation cache disabled) are reported separately: the vmapped step
compiles once per B, the single-member step once for all B.

Sizes: the `cpu` presets of the Dreamer model and behaviour (H = 15), the `cpu` Plan2Explore
ensemble (E = 10, 2 x 200), a DMC-walker-like vector observation (24 dims, 6 continuous actions),
N = 256 perturbed start states. Printed as a table and saved as `population.json`.
"""
import os
import statistics
import time
from types import SimpleNamespace

import jax
import numpy as np
from absl import app, flags

from jaxwm.agents.dreamer.config import (apply_behavior_preset, apply_preset, behavior_config,
                                         model_config)
from jaxwm.agents.plan2explore.config import disag_config
from jaxwm.behaviors import actor_critic, cascade, plan2explore
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_list("populations", ["1", "2", "4", "8", "16"], "population sizes B to time")
flags.DEFINE_integer("repeats", 2, "timed calls of each side per B (median reported)")
flags.DEFINE_integer("starts", 256, "N start states per update")
flags.DEFINE_string("out", "benchmarks/results", "directory for population.json")
FLAGS = flags.FLAGS

OBS_SIZE, ACTION_SIZE = 24, 6   # dm_control walker from states


def build(starts: int):
    """World model, actor-critic, disagreement ensemble and their params at `cpu` sizes."""
    obs_space = {"vector": SimpleNamespace(shape=(OBS_SIZE,), dtype=np.float32)}
    act_space = SimpleNamespace(discrete=False, size=ACTION_SIZE)
    model = apply_preset(model_config(), "cpu")
    wm = WorldModel(model, obs_space, act_space)
    behavior = apply_behavior_preset(behavior_config(), "cpu")
    ac = actor_critic.ActorCritic(behavior, actor_critic.feat_size(model), act_space)
    dc = disag_config()
    dc.layers, dc.units = 2, 200   # the `cpu` Plan2Explore ensemble
    disag = plan2explore.Disagreement(dc, ac.feat_size, ACTION_SIZE,
                                      model.stoch * model.classes)
    key_wm, key_start, key_disag = jax.random.split(jax.random.PRNGKey(0), 3)
    wm_params = wm.init(key_wm)
    initial = wm.initial_state((starts,))
    leaves, treedef = jax.tree.flatten(initial)
    noise = jax.random.split(key_start, len(leaves))
    start = jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                                         for x, k in zip(leaves, noise)])
    return SimpleNamespace(wm=wm, ac=ac, disag=disag, wm_params=wm_params, start=start,
                           disag_params=disag.init(key_disag), horizon=behavior.horizon)


def timed(fn):
    """(result, seconds) of fn() with all its outputs ready."""
    begin = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - begin


def compiled(fn, *args):
    """(ahead-of-time compiled jit(fn) for args like these, compile seconds)."""
    begin = time.perf_counter()
    executable = jax.jit(fn).lower(*args).compile()
    return executable, time.perf_counter() - begin


def time_population(s, population: int, sequential_step, repeats: int) -> dict:
    cc = cascade.cascade_config()
    cc.population = population
    pop = cascade.Cascade(cc, s.ac, s.disag)
    key = jax.random.PRNGKey(1)
    state = pop.init(jax.random.PRNGKey(2))
    members = [jax.tree.map(lambda x, i=i: x[i], state.members)
               for i in range(population)]
    # World-model, ensemble params and starts are arguments (not baked-in constants), as in
    # the deployment runtime.
    vmapped_step, vmapped_compile = compiled(
        lambda st, wm_params, disag_params, start, k: pop.update(
            st, s.wm, wm_params, disag_params, start, k),
        state, s.wm_params, s.disag_params, s.start, key)

    def loop(step_key):
        for i in range(population):   # member i uses fold_in(key, i), as in Cascade.imagine
            members[i], _ = sequential_step(members[i], s.wm_params, s.disag_params, s.start,
                                            jax.random.fold_in(step_key, i))
        return members

    # Alternate the two so that load from other processes hits both alike.
    vmapped, sequential = [], []
    for r in range(repeats):
        step_key = jax.random.fold_in(key, r)
        (state, _), seconds = timed(lambda: vmapped_step(state, s.wm_params, s.disag_params,
                                                         s.start, step_key))
        vmapped.append(seconds)
        sequential.append(timed(lambda: loop(step_key))[1])
    vmapped_s, sequential_s = statistics.median(vmapped), statistics.median(sequential)
    return {"population": population, "vmapped_s": vmapped_s, "sequential_s": sequential_s,
            "speedup": sequential_s / vmapped_s, "vmapped_compile_s": vmapped_compile,
            "vmapped_all_s": vmapped, "sequential_all_s": sequential}


def main(argv):
    del argv
    # Real compile times: no persistent cache even if JAX_COMPILATION_CACHE_DIR is set.
    jax.config.update("jax_enable_compilation_cache", False)
    populations = [int(b) for b in FLAGS.populations]
    s = build(FLAGS.starts)

    def sequential_fn(member, wm_params, disag_params, start, k):
        def reward_fn(traj):   # Plan2Explore disagreement of every imagined (s_t, a_t): [H, N]
            return s.disag.intrinsic_reward(disag_params, traj.feat[:-1], traj.actions)
        return s.ac.update(member, s.wm, wm_params, start, reward_fn, k)

    sequential_step, sequential_compile = compiled(
        sequential_fn, s.ac.init(jax.random.PRNGKey(3)), s.wm_params, s.disag_params, s.start,
        jax.random.PRNGKey(4))
    member = s.ac.init(jax.random.PRNGKey(5))
    jax.block_until_ready(sequential_step(member, s.wm_params, s.disag_params, s.start,
                                          jax.random.PRNGKey(6)))   # untimed warm-up
    load_start = os.getloadavg()[0]

    print(f"{'B':>3} {'vmapped s':>10} {'sequential s':>13} {'seq/vmapped':>12} "
          f"{'compile s':>10}", flush=True)
    rows = []
    for population in populations:
        row = time_population(s, population, sequential_step, FLAGS.repeats)
        rows.append(row)
        print(f"{population:>3} {row['vmapped_s']:>10.3f} {row['sequential_s']:>13.3f} "
              f"{row['speedup']:>11.2f}x {row['vmapped_compile_s']:>10.1f}", flush=True)
    print(f"single-member ActorCritic.update compile: {sequential_compile:.1f} s (once, reused "
          f"for every B); 1-min load average {load_start:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")

    save_benchmark(FLAGS.out, "population", {
              "starts": FLAGS.starts, "horizon": s.horizon, "repeats": FLAGS.repeats,
              "obs_size": OBS_SIZE, "action_size": ACTION_SIZE, "presets": "cpu",
              "disag_members": s.disag.config.members,
              "sequential_compile_s": sequential_compile,
              "load_average_1min": [load_start, os.getloadavg()[0]], "rows": rows})


if __name__ == "__main__":
    app.run(main)
