"""A CASCADE deployment (acting only, frozen population) on MiniGrid FourRooms and Craftax
Classic: the compiled on-device loop (`deploy_on_device`: the JAX-native env (xminigrid,
craftax), population acting and replay inserts in one `lax.scan`) against the host loop over
envpool (one jitted act + one envpool step + one replay insert per step), for population sizes
B, in the same run.

  python benchmarks/deployment.py --populations=1,4,10 --out=benchmarks/results

Both use the `cpu` CASCADE preset's world model and population (B members, 2 env slots per
member) with symbolic 'vector' observations (Craftax: 1345-d, 100-step episodes); env frames/s =
steps per env x envs / seconds, median of `repeats` deployments after a warm-up one (compiles).
Also, same run: the population's acting alone (`Learner._act`: RSSM filter step + actors, the
same steps in one compiled `lax.scan` on a fixed observation, no env, no replay), which both
loops contain; acting-only / host is the ceiling of the on-device / host ratio.
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
from jaxwm.runtime.logging import median_seconds, save_benchmark

flags.DEFINE_list("populations", ["1", "4", "10"], "Population sizes B.")
flags.DEFINE_list("games", ["minigrid", "craftax"], "Games: minigrid, craftax.")
flags.DEFINE_integer("steps", 500, "Steps per env slot per deployment.")
flags.DEFINE_integer("repeats", 3, "Timed deployments per measurement (median reported).")
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


def frames_per_second(name: str, population: int, steps: int, repeats: int) -> float:
    env, learner, state = setup(name, population)
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
    return steps * env.num_envs / float(np.median(times))


def acting_frames_per_second(name: str, population: int, steps: int, repeats: int) -> float:
    """Frames/s of the population's acting alone: `steps` calls of `Learner._act` in one
    compiled scan, on the env's first observation (is_first False after the first step)."""
    env, learner, state = setup(name, population)
    inputs = jax.tree.map(jnp.asarray, online.policy_inputs(env, env.reset()))
    env.close()

    @jax.jit
    def act_loop(wm_params, actor_params, carry, key):
        def body(carry, t):
            obs = {**inputs, "is_first": inputs["is_first"] & (t == 0)}
            action, carry = learner._act(wm_params, actor_params, carry, obs,
                                         jax.random.fold_in(key, t), False)
            return carry, action
        return jax.lax.scan(body, carry, jnp.arange(steps))

    args = (state.wm.params, state.population.members.actor.params,
            learner.wm.initial_carry(env.num_envs), jax.random.PRNGKey(0))
    return steps * env.num_envs / median_seconds(lambda: act_loop(*args), repeats)


def main(argv):
    del argv
    rows = []
    for game in FLAGS.games:
        native, envpool_name = GAMES[game]
        for b in map(int, FLAGS.populations):
            device = frames_per_second(native, b, FLAGS.steps, FLAGS.repeats)
            host = frames_per_second(envpool_name, b, FLAGS.steps, FLAGS.repeats)
            acting = acting_frames_per_second(native, b, FLAGS.steps, FLAGS.repeats)
            rows.append({"game": game, "population": b, "envs": 2 * b,
                         "on_device_frames_per_s": device, "host_envpool_frames_per_s": host,
                         "ratio": device / host, "acting_only_frames_per_s": acting,
                         "ratio_ceiling": acting / host})
            print(f"{game:8s} B={b:2d} ({2 * b:2d} envs): on-device {device:8.0f} frames/s, "
                  f"host + envpool {host:7.0f} frames/s, ratio {device / host:.1f}x; acting "
                  f"alone {acting:8.0f} frames/s, ceiling {acting / host:.1f}x", flush=True)
    save_benchmark(FLAGS.out, "deployment", {"steps_per_env": FLAGS.steps, "rows": rows})


if __name__ == "__main__":
    app.run(main)
