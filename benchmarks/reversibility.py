"""RAE on Turf: the whole rollout inside one compiled program (JAX-native env, Anakin style)
against the same rollout stepped from the host (the batched `TurfEnv` of the env protocol, one
jitted policy call per step, as with an envpool suite).

  python benchmarks/reversibility.py --num_envs=16,64 --out=benchmarks/results

Both act with the same PPO policy on `num_envs` rooms of the `cpu` preset for `rollout` steps;
env steps/s are medians over `repeats` timed rollouts after a warm-up, measured in one run, and
their ratio is reported. For context, one full compiled RAE iteration (rollout, psi updates,
reward shaping, GAE and the PPO epochs) is timed too. Printed and saved as reversibility.json.
"""
import functools

import jax
import numpy as np
from absl import app, flags

from jaxwm import envs
from jaxwm.agents.reversibility import config as rev_config
from jaxwm.agents.reversibility import rae
from jaxwm.runtime.logging import median_seconds, save_benchmark

flags.DEFINE_list("num_envs", ["16", "64"], "Batch sizes (rooms stepped in lockstep).")
flags.DEFINE_integer("repeats", 5, "Timed rollouts per measurement (median reported).")
flags.DEFINE_string("out", "benchmarks/results", "Directory of reversibility.json.")
FLAGS = flags.FLAGS



def measure(num_envs: int, repeats: int) -> dict:
    c = rev_config.get_config("cpu")
    c.rae.num_envs = num_envs
    nets = rae.build(c)
    state = rae.init(c, nets, jax.random.PRNGKey(0))
    steps = c.rae.rollout * num_envs

    compiled = jax.jit(functools.partial(rae.rollout, c, nets))
    compiled_s = median_seconds(lambda: jax.block_until_ready(
        compiled(state, jax.random.PRNGKey(1))), repeats)

    env = envs.make(c.rae.env, num_envs, seed=0, **c.rae.turf.to_dict())

    @jax.jit
    def policy(params, obs, key):
        logits, _ = nets.policy.apply(params, obs)
        return jax.random.categorical(key, logits)

    def host_rollout():
        obs = env.reset()["vector"]
        key = jax.random.PRNGKey(1)
        for _ in range(c.rae.rollout):
            key, k_act = jax.random.split(key)
            obs = env.step(np.asarray(policy(state.policy.params, obs, k_act)))["vector"]

    host_s = median_seconds(host_rollout, repeats)
    iteration = jax.jit(functools.partial(rae.iteration, c, nets))
    iteration_s = median_seconds(lambda: jax.block_until_ready(iteration(state)), repeats)
    return {"num_envs": num_envs, "rollout_steps": c.rae.rollout,
            "compiled_env_steps_per_s": steps / compiled_s,
            "host_env_steps_per_s": steps / host_s,
            "compiled_over_host": host_s / compiled_s,
            "rae_iteration_env_steps_per_s": steps / iteration_s}


def main(argv):
    del argv
    rows = []
    for n in FLAGS.num_envs:
        row = measure(int(n), FLAGS.repeats)
        rows.append(row)
        print(f"num_envs {row['num_envs']:3d}: compiled rollout "
              f"{row['compiled_env_steps_per_s']:9.0f} env steps/s, host-stepped "
              f"{row['host_env_steps_per_s']:7.0f} ({row['compiled_over_host']:.1f}x); full RAE "
              f"iteration {row['rae_iteration_env_steps_per_s']:7.0f} env steps/s")
    save_benchmark(FLAGS.out, "reversibility", {"rows": rows})


if __name__ == "__main__":
    app.run(main)
