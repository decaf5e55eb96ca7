"""World-model training throughput per preset: gradient steps/s and env frames/s.

  python benchmarks/world_model_step.py --presets=smoke,cpu --out=benchmarks/results

For each preset:
- one jitted call of K gradient steps on a [T, B] batch of 64x64 Atari-shaped data, comparing
  the space-to-depth CNN with DreamerV2's strided CNN on the same machine and shapes (a ratio
  measured in one run), and `wm.train_steps` (straight-line K steps on CPU,
  `jaxwm.utils.scan_gradient_steps`) with the same K steps in a `lax.scan` while loop;
  `frames/s` = T * B * steps/s (replayed frames);
- the loop of `experiments/world_model.py` on --env (random actions from envpool into the device
  replay, a training call every `train.train_every` steps per env, the preset's sizes): env
  frames/s with training vs the same loop without training calls.
Printed and saved as JSON.
"""
import os
import sys
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.configs import world_model as wm_configs  # noqa: E402
from jaxwm import envs
from jaxwm.agents.dreamer.config import apply_preset, model_config
from jaxwm.data import replay
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import world_model_training
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_list("presets", ["smoke", "cpu"],
                 "presets to time (paper: ~3 min here with --rolled_repeats=0)")
flags.DEFINE_integer("batch_size", 16, "sequences per step")
flags.DEFINE_integer("seq_len", 16, "steps per sequence")
flags.DEFINE_integer("grad_steps", 2, "K gradient steps per jitted call")
flags.DEFINE_integer("repeats", 3, "timed calls after the compile call")
flags.DEFINE_integer("rolled_repeats", 1, "timed calls of the lax.scan variant (0: skip it)")
flags.DEFINE_string("env", "Pong-v5", "env of the training-loop measurement")
flags.DEFINE_integer("loop_steps", 100, "timed steps per env of the training loop")
flags.DEFINE_string("out", "benchmarks/results", "directory for world_model_step.json")
FLAGS = flags.FLAGS


def time_preset(preset: str, cnn_impl: str, rolled: bool = False, repeats: int = 0) -> dict:
    """Gradient steps/s of K-step training calls; `rolled`: the K steps inside a `lax.scan`
    while loop instead of `wm.train_steps` (straight-line code on CPU)."""
    config = apply_preset(model_config(), preset)
    config.cnn_impl = cnn_impl
    obs_space = {"image": SimpleNamespace(shape=(64, 64, 1), dtype=np.uint8)}
    wm = WorldModel(config, obs_space, SimpleNamespace(discrete=True, size=6))
    k, t, b = FLAGS.grad_steps, FLAGS.seq_len, FLAGS.batch_size
    rng = np.random.default_rng(0)
    batches = {"image": jnp.asarray(rng.integers(0, 255, (k, t, b, 64, 64, 1), np.uint8)),
               "action": jnp.asarray(rng.integers(0, 6, (k, t, b)), jnp.int32),
               "reward": jnp.zeros((k, t, b)), "is_first": jnp.zeros((k, t, b), bool),
               "is_terminal": jnp.zeros((k, t, b), bool)}
    state = jax.jit(wm.init_state)(jax.random.PRNGKey(0))
    if rolled:
        def train_steps(state, batches, key):
            xs = (batches, jax.random.split(key, k))
            return jax.lax.scan(lambda s, x: wm.train_step(s, *x)[:2], state, xs)
    else:
        train_steps = wm.train_steps
    step = jax.jit(train_steps, donate_argnums=0)
    start = time.perf_counter()
    state, metrics = step(state, batches, jax.random.PRNGKey(1))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    repeats = repeats or FLAGS.repeats
    for i in range(repeats):
        state, metrics = step(state, batches, jax.random.PRNGKey(2 + i))
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / (repeats * k)
    return {"preset": preset, "cnn_impl": cnn_impl + (" (lax.scan)" if rolled else ""),
            "compile_s": round(compile_s, 2), "grad_steps_per_s": 1.0 / seconds,
            "frames_per_s": t * b / seconds}


def time_training_loop(preset: str) -> dict:
    """Env frames/s of the world-model training loop with and without its training calls."""
    config = wm_configs.get_config(preset)
    t = config.train
    env = envs.make(FLAGS.env, config.env.num_envs, config.seed)
    wm = WorldModel(config.model, env.obs_space, env.act_space)
    spec = replay.env_spec(env)
    train_fn = world_model_training.make_train_fn(wm, config)
    add = jax.jit(replay.add, donate_argnums=0)
    rng = np.random.default_rng(0)
    state = {"wm": jax.jit(wm.init_state)(jax.random.PRNGKey(0)),
             "replay": replay.init(spec, t.replay_capacity, env.num_envs), "obs": env.reset()}

    def loop(steps_per_env: int, learn: bool) -> float:
        start = time.perf_counter()
        for i in range(steps_per_env):
            action = world_model_training.random_actions(env.act_space, env.num_envs, rng)
            state["replay"] = add(state["replay"], replay.env_row(spec, state["obs"], action))
            state["obs"] = env.step(action)
            if learn and (i + 1) % t.train_every == 0:
                state["wm"], _ = train_fn(state["wm"], state["replay"], jax.random.PRNGKey(i))
        jax.block_until_ready((state["wm"], state["replay"]))
        return env.num_envs * steps_per_env / (time.perf_counter() - start)

    loop(t.seq_len, learn=False)                      # compiles `add`, fills one sequence
    loop(t.train_every, learn=True)                   # compiles the training call
    collect = loop(FLAGS.loop_steps, learn=False)
    train = loop(FLAGS.loop_steps, learn=True)
    env.close()
    return {"preset": preset, "env": FLAGS.env, "num_envs": env.num_envs,
            "train_every": t.train_every, "grad_steps": t.grad_steps,
            "batch": [t.seq_len, t.batch_size], "env_frames_per_s": train,
            "collect_only_env_frames_per_s": collect, "ratio_to_collect_only": train / collect}


def main(argv):
    del argv
    rows, loops = [], []
    for preset in FLAGS.presets:
        fast, strided = (time_preset(preset, impl) for impl in ("space_to_depth", "strided"))
        fast["speedup_vs_strided"] = fast["grad_steps_per_s"] / strided["grad_steps_per_s"]
        new = [fast, strided]
        if FLAGS.rolled_repeats:
            rolled = time_preset(preset, "space_to_depth", rolled=True,
                                 repeats=FLAGS.rolled_repeats)
            fast["speedup_vs_lax_scan"] = fast["grad_steps_per_s"] / rolled["grad_steps_per_s"]
            new.append(rolled)
        rows += new
        for r in new:
            print(f"{r['preset']:>6} {r['cnn_impl']:>15}: {r['grad_steps_per_s']:7.2f} steps/s "
                  f"{r['frames_per_s']:9.0f} frames/s (compile {r['compile_s']} s)")
        print(f"{preset:>6} space_to_depth / strided speed ratio: "
              f"{fast['speedup_vs_strided']:.2f}x")
        if "speedup_vs_lax_scan" in fast:
            print(f"{preset:>6} straight-line / lax.scan speed ratio: "
                  f"{fast['speedup_vs_lax_scan']:.1f}x")
        r = time_training_loop(preset)
        loops.append(r)
        print(f"{preset:>6} training loop on {r['env']}: {r['env_frames_per_s']:.0f} env frames/s "
              f"vs {r['collect_only_env_frames_per_s']:.0f} collecting only "
              f"({r['ratio_to_collect_only']:.3f}x)")
    save_benchmark(FLAGS.out, "world_model_step",
                   {"batch": [FLAGS.seq_len, FLAGS.batch_size], "rows": rows,
                    "training_loop": loops})


if __name__ == "__main__":
    app.run(main)
