"""A CASCADE deployment (acting only, frozen population) on MiniGrid FourRooms and Craftax
Classic: the compiled on-device loop (`deploy_on_device`: the JAX-native env (xminigrid,
craftax), population acting and replay inserts in one `lax.scan`) against the host loop over
envpool (one jitted act + one envpool step + one replay insert per step), for population sizes
B, in the same run.

  python benchmarks/deployment.py --populations=1,4,10 --out=benchmarks/results

Both use the `cpu` CASCADE preset's world model and population (B members, 2 env slots per
member) with symbolic 'vector' observations (Craftax: 1345-d, 100-step episodes); env frames/s =
steps per env x envs / seconds. Also, same run: the population's acting alone (`Learner._act`:
encoder, RSSM filter step and actors, the same steps in one compiled `lax.scan` over a recorded
rollout of the JAX-native env under random actions, no env, no replay), which both loops
contain; acting-only / host is the ceiling of the on-device / host ratio. (The observations
change from step to step: on a fixed one, XLA hoists the encoder out of the loop, and acting
measured 1.15-1.2x faster.) Median of `repeats` rounds after a warm-up call of each (compiles);
a round runs the on-device loop, the host loop and acting alone once each, in turn, so that a
drift in the machine's speed does not enter the ratios.
Printed and saved as deployment.json.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxwm import envs
from jaxwm.agents.cascade import train as cascade_train
from jaxwm.agents.cascade.config import get_config
from jaxwm.data import replay
from jaxwm.runtime import online
from jaxwm.runtime.logging import save_benchmark
from jaxwm.utils import random_action

flags.DEFINE_list("populations", ["1", "4", "10"], "Population sizes B.")
flags.DEFINE_list("games", ["minigrid", "craftax"], "Games: minigrid, craftax.")
flags.DEFINE_integer("steps", 500, "Steps per env slot per deployment.")
flags.DEFINE_integer("repeats", 5, "Timed rounds (median reported).")
flags.DEFINE_string("out", "benchmarks/results", "Directory of deployment.json.")
FLAGS = flags.FLAGS
# game -> (JAX-native name, envpool name)
GAMES = {"minigrid": ("xminigrid:MiniGrid-FourRooms-v0", "MiniGrid-FourRooms-v0"),
         "craftax": ("craftax:Craftax-Classic-Symbolic-v1", "Craftax-Classic-Symbolic-v1")}


def setup(name: str, population: int) -> tuple:
    """(env, learner, learner state) of the cpu preset with B members and 2 env slots each."""
    config = get_config("cpu")
    config.cascade.population = population
    config.env.name, config.env.num_envs = name, 2 * population
    env = envs.make(name, config.env.num_envs, seed=0, **dict(config.env.overrides))
    learner = cascade_train.Learner(config, env.obs_space, env.act_space)
    return env, learner, jax.jit(learner.init)(jax.random.PRNGKey(0))


def deployment(name: str, population: int, steps: int, opened: list):
    """(one deployment as a callable, env frames per call): `cascade_train.deploy` with the
    frozen population on the env `name` (on-device loop when it is JAX-native); the env is
    appended to `opened` for the caller to close."""
    env, learner, state = setup(name, population)
    opened.append(env)
    params = (state.wm.params, state.population.members.actor.params)
    holder = {"replay": replay.init(replay.env_spec(env), steps, env.num_envs), "calls": 0}

    def run():
        coverage = cascade_train.Coverage(population)
        coverage.start_deployment()
        holder["replay"], _ = cascade_train.deploy(
            learner, env, *params, holder["replay"], steps,
            jax.random.PRNGKey(holder["calls"]), False, coverage)
        holder["calls"] += 1
        return holder["replay"].data
    return run, steps * env.num_envs


def acting(name: str, population: int, steps: int):
    """(the population's acting alone as a callable, env frames per call): `steps` calls of
    `Learner._act` in one compiled scan over the policy inputs of a recorded `steps`-step
    rollout (random actions)."""
    env, learner, state = setup(name, population)
    out, rollout = env.reset(), []
    for t in range(steps):
        rollout.append(online.policy_inputs(env, out))
        out = env.step(np.asarray(random_action(env.act_space, env.num_envs,
                                                jax.random.PRNGKey(t))))
    env.close()
    rollout = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *rollout)

    @jax.jit
    def act_loop(wm_params, actor_params, carry, key):
        def body(carry, inputs):
            obs, t = inputs
            action, carry = learner._act(wm_params, actor_params, carry, obs,
                                         jax.random.fold_in(key, t), False)
            return carry, action
        return jax.lax.scan(body, carry, (rollout, jnp.arange(steps)))

    args = (state.wm.params, state.population.members.actor.params,
            learner.wm.initial_carry(env.num_envs), jax.random.PRNGKey(0))
    return lambda: act_loop(*args), steps * env.num_envs


def interleaved_frames_per_second(runs: dict, repeats: int) -> dict:
    """{name: frames/s} of `runs` {name: (callable, frames per call)}: one warm-up call each
    (compiles), then `repeats` rounds calling each once in turn; median seconds per name.
    Interleaving keeps a drift in the machine's speed out of the ratios."""
    times = {k: [] for k in runs}
    for fn, _ in runs.values():
        jax.block_until_ready(fn())
    for _ in range(repeats):
        for k, (fn, _) in runs.items():
            began = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - began)
    return {k: frames / float(np.median(times[k])) for k, (_, frames) in runs.items()}


def main(argv):
    del argv
    rows = []
    for game in FLAGS.games:
        native, envpool_name = GAMES[game]
        for b in map(int, FLAGS.populations):
            opened = []
            fps = interleaved_frames_per_second(
                {"device": deployment(native, b, FLAGS.steps, opened),
                 "host": deployment(envpool_name, b, FLAGS.steps, opened),
                 "acting": acting(native, b, FLAGS.steps)}, FLAGS.repeats)
            for env in opened:
                env.close()
            device, host, act = fps["device"], fps["host"], fps["acting"]
            rows.append({"game": game, "population": b, "envs": 2 * b,
                         "on_device_frames_per_s": device, "host_envpool_frames_per_s": host,
                         "ratio": device / host, "acting_only_frames_per_s": act,
                         "ratio_ceiling": act / host})
            print(f"{game:8s} B={b:2d} ({2 * b:2d} envs): on-device {device:8.0f} frames/s, "
                  f"host + envpool {host:7.0f} frames/s, ratio {device / host:.1f}x; acting "
                  f"alone {act:8.0f} frames/s, ceiling {act / host:.1f}x", flush=True)
    save_benchmark(FLAGS.out, "deployment", {"steps_per_env": FLAGS.steps,
                                             "repeats": FLAGS.repeats, "rows": rows})


if __name__ == "__main__":
    app.run(main)
