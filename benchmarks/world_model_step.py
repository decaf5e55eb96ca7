"""World-model training throughput per preset: gradient steps/s and trained env frames/s.

  python benchmarks/world_model_step.py --presets=smoke,cpu --out=benchmarks/results

For each preset it times one jitted call of K scanned gradient steps on a [T, B] batch of 64x64
Atari-shaped data, and compares the space-to-depth CNN with DreamerV2's strided CNN on the same
machine and shapes (a ratio measured in one run). `frames/s` = T * B * steps/s (replayed frames).
Printed and saved as JSON.
"""
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxwm.agents.dreamer.config import apply_preset, model_config
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_list("presets", ["smoke", "cpu"], "presets to time (paper needs a GPU/TPU)")
flags.DEFINE_integer("batch_size", 16, "sequences per step")
flags.DEFINE_integer("seq_len", 16, "steps per sequence")
flags.DEFINE_integer("grad_steps", 2, "K gradient steps per jitted call")
flags.DEFINE_integer("repeats", 3, "timed calls after the compile call")
flags.DEFINE_string("out", "benchmarks/results", "directory for world_model_step.json")
FLAGS = flags.FLAGS


def time_preset(preset: str, cnn_impl: str) -> dict:
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
    step = jax.jit(wm.train_steps, donate_argnums=0)
    start = time.perf_counter()
    state, metrics = step(state, batches, jax.random.PRNGKey(1))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(FLAGS.repeats):
        state, metrics = step(state, batches, jax.random.PRNGKey(2 + i))
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / (FLAGS.repeats * k)
    return {"preset": preset, "cnn_impl": cnn_impl, "compile_s": round(compile_s, 2),
            "grad_steps_per_s": 1.0 / seconds, "frames_per_s": t * b / seconds}


def main(argv):
    del argv
    rows = []
    for preset in FLAGS.presets:
        fast, strided = (time_preset(preset, impl) for impl in ("space_to_depth", "strided"))
        fast["speedup_vs_strided"] = fast["grad_steps_per_s"] / strided["grad_steps_per_s"]
        rows += [fast, strided]
        for r in (fast, strided):
            print(f"{r['preset']:>6} {r['cnn_impl']:>15}: {r['grad_steps_per_s']:7.2f} steps/s "
                  f"{r['frames_per_s']:9.0f} frames/s (compile {r['compile_s']} s)")
        print(f"{preset:>6} space_to_depth / strided speed ratio: "
              f"{fast['speedup_vs_strided']:.2f}x")
    save_benchmark(FLAGS.out, "world_model_step",
                   {"batch": [FLAGS.seq_len, FLAGS.batch_size], "rows": rows})


if __name__ == "__main__":
    app.run(main)
