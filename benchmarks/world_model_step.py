"""World-model training throughput per preset: step time, FLOP utilization, compile seconds.

  python benchmarks/world_model_step.py --presets=smoke,cpu --out=benchmarks/results

For each preset, on a [T, B] batch of 64x64 gray Atari-shaped data (DreamerV2's CNN):
- one jitted call of K gradient steps with the convs in the 'phase' lowering (stride-1 form,
  `jaxwm.nn.conv`) and in XLA's native strided convs: seconds per step, the ratio native / phase
  measured in one run, and the first call's compile seconds (persistent cache off);
- FLOPs per step from XLA's cost analysis of the compiled native program (the model's FLOPs; the
  phase form adds multiplications by zero taps, not counted), achieved FLOP/s, and as the
  reference the same run's jitted f32 matmul (`--matmul`^2 x `--matmul`): utilization =
  achieved / matmul FLOP/s;
- `wm.train_steps` (straight-line K steps on CPU, `jaxwm.utils.scan_gradient_steps`) vs the same
  K steps in a `lax.scan` while loop;
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
from jaxwm.runtime import cli, world_model_training
from jaxwm.runtime.logging import median_seconds, save_benchmark

flags.DEFINE_list("presets", ["smoke", "cpu"],
                 "presets to time (paper: ~3 min here with --rolled_repeats=0)")
flags.DEFINE_integer("batch_size", 16, "sequences per step")
flags.DEFINE_integer("seq_len", 16, "steps per sequence")
flags.DEFINE_integer("grad_steps", 2, "K gradient steps per jitted call")
flags.DEFINE_integer("repeats", 5, "timed calls after the compile call (median reported)")
flags.DEFINE_integer("rolled_repeats", 1, "timed calls of the lax.scan variant (0: skip it)")
flags.DEFINE_integer("matmul", 1024, "size n of the reference n x n f32 matmul")
flags.DEFINE_string("env", "Pong-v5", "env of the training-loop measurement")
flags.DEFINE_integer("loop_steps", 100, "timed steps per env of the training loop")
flags.DEFINE_string("out", "benchmarks/results", "directory for world_model_step.json")
flags.DEFINE_integer("xla_cpu_optimization_level", cli.CPU_OPTIMIZATION_LEVEL,
                     "XLA's LLVM level on CPU, as the binaries' flag of that name (-1: XLA's)")
FLAGS = flags.FLAGS



def matmul_flops_per_s(n: int, repeats: int = 10) -> float:
    """FLOP/s of a jitted f32 n x n matmul (2 n^3 FLOPs), median of `repeats` calls."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    mm = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(mm(a, a))
    return 2 * n ** 3 / median_seconds(lambda: mm(a, a), repeats, warmup=False)


def time_preset(preset: str, lowering: str, rolled: bool = False, repeats: int = 0) -> dict:
    """Seconds per gradient step of K-step training calls (median over calls); `rolled`: the K
    steps inside a `lax.scan` while loop instead of `wm.train_steps` (straight-line on CPU)."""
    config = apply_preset(model_config(), preset)
    config.conv_lowering = lowering
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
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    step = jax.jit(train_steps).lower(state, batches, key).compile()
    compile_s = time.perf_counter() - start
    cost = step.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")) / k
    jax.block_until_ready(step(state, batches, key))
    seconds = median_seconds(lambda: step(state, batches, key), repeats or FLAGS.repeats,
                             warmup=False) / k
    return {"preset": preset, "lowering": lowering + (" (lax.scan)" if rolled else ""),
            "compile_s": round(compile_s, 2), "seconds_per_step": seconds,
            "grad_steps_per_s": 1.0 / seconds, "frames_per_s": t * b / seconds,
            "xla_flops_per_step": flops}


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
    cli.set_cpu_optimization_level(FLAGS.xla_cpu_optimization_level)   # as the binaries
    jax.config.update("jax_enable_compilation_cache", False)  # compile seconds from scratch
    rows, loops = [], []
    for preset in FLAGS.presets:
        phase, native = (time_preset(preset, lowering) for lowering in ("phase", "native"))
        matmul = matmul_flops_per_s(FLAGS.matmul)
        for r in (phase, native):  # the model's FLOPs (native count) per second of each
            r["model_flops_per_s"] = native["xla_flops_per_step"] / r["seconds_per_step"]
            r["matmul_flops_per_s"] = matmul
            r["matmul_utilization"] = r["model_flops_per_s"] / matmul
        phase["speedup_vs_native"] = native["seconds_per_step"] / phase["seconds_per_step"]
        new = [phase, native]
        if FLAGS.rolled_repeats:
            rolled = time_preset(preset, "phase", rolled=True, repeats=FLAGS.rolled_repeats)
            phase["speedup_vs_lax_scan"] = rolled["seconds_per_step"] / phase["seconds_per_step"]
            new.append(rolled)
        rows += new
        for r in new:
            util = (f"{r['model_flops_per_s'] / 1e9:5.1f} GFLOP/s = "
                    f"{100 * r['matmul_utilization']:3.0f}% of matmul, "
                    if "matmul_utilization" in r else "")
            print(f"{r['preset']:>6} {r['lowering']:>18}: {r['seconds_per_step']:.3f} s/step, "
                  f"{util}compile {r['compile_s']} s")
        print(f"{preset:>6} {native['xla_flops_per_step'] / 1e9:.2f} GFLOP/step; native / phase "
              f"time: {phase['speedup_vs_native']:.2f}x; f32 matmul {matmul / 1e9:.0f} GFLOP/s")
        if "speedup_vs_lax_scan" in phase:
            print(f"{preset:>6} lax.scan / straight-line time: "
                  f"{phase['speedup_vs_lax_scan']:.2f}x")
        r = time_training_loop(preset)
        loops.append(r)
        print(f"{preset:>6} training loop on {r['env']}: {r['env_frames_per_s']:.0f} env frames/s "
              f"vs {r['collect_only_env_frames_per_s']:.0f} collecting only "
              f"({r['ratio_to_collect_only']:.3f}x)")
    save_benchmark(FLAGS.out, "world_model_step",
                   {"batch": [FLAGS.seq_len, FLAGS.batch_size],
                    "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": rows,
                    "training_loop": loops})


if __name__ == "__main__":
    app.run(main)
