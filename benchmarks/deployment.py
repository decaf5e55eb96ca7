"""A CASCADE deployment (acting only, frozen population) on MiniGrid FourRooms and Craftax
Classic: the compiled on-device loop (`deploy_on_device`: the JAX-native env (xminigrid,
craftax), population acting and replay inserts in one `lax.scan`) against the host loop over
envpool (one jitted act + one envpool step + one replay insert per step), for population sizes
B, in the same run.

  python benchmarks/deployment.py --populations=1,4,10 --out=benchmarks/results

Both use the `cpu` CASCADE preset's world model and population (B members, 2 env slots per
member) with symbolic 'vector' observations (Craftax: 1345-d, 100-step episodes); env frames/s =
steps per env x envs / seconds, median of `repeats` deployments after a warm-up one (compiles).
Printed and saved as deployment.json.
"""
import time

import jax
import numpy as np
from absl import app, flags

from jaxwm import envs
from jaxwm.agents.cascade import train as cascade_train
from jaxwm.agents.cascade.config import get_config
from jaxwm.data import replay
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_list("populations", ["1", "4", "10"], "Population sizes B.")
flags.DEFINE_list("games", ["minigrid", "craftax"], "Games: minigrid, craftax.")
flags.DEFINE_integer("steps", 500, "Steps per env slot per deployment.")
flags.DEFINE_integer("repeats", 3, "Timed deployments per measurement (median reported).")
flags.DEFINE_string("out", "benchmarks/results", "Directory of deployment.json.")
FLAGS = flags.FLAGS
# game -> (JAX-native name, envpool name)
GAMES = {"minigrid": ("xminigrid:MiniGrid-FourRooms-v0", "MiniGrid-FourRooms-v0"),
         "craftax": ("craftax:Craftax-Classic-Symbolic-v1", "Craftax-Classic-Symbolic-v1")}


def frames_per_second(name: str, population: int, steps: int, repeats: int) -> float:
    config = get_config("cpu")
    config.cascade.population = population
    config.env.name, config.env.num_envs = name, 2 * population
    env = envs.make(name, config.env.num_envs, seed=0, **dict(config.env.overrides))
    learner = cascade_train.Learner(config, env.obs_space, env.act_space)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    capacity = steps * (repeats + 1)
    replay_state = replay.init(replay.env_spec(env), capacity, env.num_envs)
    params = (state.wm.params, state.population.members.actor.params)
    times = []
    for i in range(repeats + 1):
        coverage = cascade_train.Coverage(population)
        coverage.start_deployment()
        start = time.perf_counter()
        replay_state, _ = cascade_train.deploy(learner, env, *params, replay_state, steps,
                                               jax.random.PRNGKey(i), False, coverage)
        jax.block_until_ready(replay_state.data)
        if i:   # the first one compiles
            times.append(time.perf_counter() - start)
    env.close()
    return steps * config.env.num_envs / float(np.median(times))


def main(argv):
    del argv
    rows = []
    for game in FLAGS.games:
        native, envpool_name = GAMES[game]
        for b in map(int, FLAGS.populations):
            device = frames_per_second(native, b, FLAGS.steps, FLAGS.repeats)
            host = frames_per_second(envpool_name, b, FLAGS.steps, FLAGS.repeats)
            rows.append({"game": game, "population": b, "envs": 2 * b,
                         "on_device_frames_per_s": device, "host_envpool_frames_per_s": host,
                         "ratio": device / host})
            print(f"{game:8s} B={b:2d} ({2 * b:2d} envs): on-device {device:8.0f} frames/s, "
                  f"host + envpool {host:7.0f} frames/s, ratio {device / host:.1f}x",
                  flush=True)
    save_benchmark(FLAGS.out, "deployment", {"steps_per_env": FLAGS.steps, "rows": rows})


if __name__ == "__main__":
    app.run(main)
