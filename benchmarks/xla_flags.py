"""XLA:CPU flags vs compile and run time of CASCADE's training call, one flag setting at a time.

  .venv/bin/python benchmarks/xla_flags.py --preset=cpu_walker --repeats=3   # ~1 min a setting

XLA reads `XLA_FLAGS` once per process, so each setting runs in a child process of its own
(`--child`): it builds the preset's `Learner` on the real env, fills the replay with one random
deployment (as deployment 0 of `train.run`), then compiles `Learner.train(explore=True)` ahead of
time with the persistent compilation cache off (compile seconds = trace + lower + XLA compile)
and times `--repeats` calls of the compiled program (median seconds per call, after one warm-up
call). The baseline (no flag) runs first and last, so drift in the machine's load shows as a
difference between its two rows. The binaries' own level (`jaxwm.runtime.cli`) is not applied:
'default' is XLA's. Printed as a table and saved as `xla_flags.json`.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Settings that trade LLVM optimization for compile time (the default is the empty setting).
SETTINGS = ("", "--xla_backend_optimization_level=1", "--xla_backend_optimization_level=0",
            "--xla_backend_optimization_level=1+--xla_llvm_disable_expensive_passes=true",
            "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE",
            "--xla_llvm_disable_expensive_passes=true",
            "--xla_cpu_parallel_codegen_split_count=2", "--xla_cpu_use_xnnpack=false")
flags.DEFINE_string("preset", "cpu_walker", "CASCADE preset whose Learner.train is measured")
flags.DEFINE_list("settings", [s or "default" for s in SETTINGS],
                  "XLA flag settings, one per child ('default': no flag; join several flags "
                  "of one setting with '+')")
flags.DEFINE_integer("repeats", 3, "timed calls per setting (median reported)")
flags.DEFINE_string("out", "benchmarks/results", "directory for xla_flags.json")
flags.DEFINE_string("child", None, "internal: measure this setting and print one JSON line")
FLAGS = flags.FLAGS


def measure_here(preset: str, repeats: int) -> dict:
    """Compile and run seconds of `Learner.train` in this process (XLA_FLAGS already set)."""
    import jax
    import numpy as np
    from jaxwm import envs
    from jaxwm.agents.cascade import config as cascade_configs
    from jaxwm.agents.cascade import train
    from jaxwm.data import replay
    from jaxwm.envs.tasks import family_for_env, label_keys

    jax.config.update("jax_enable_compilation_cache", False)
    config = cascade_configs.get_config(preset)
    d = config.deploy
    env = envs.make(config.env.name, config.env.num_envs, config.seed,
                    **dict(config.env.overrides))
    family = family_for_env(config.env.name, env)
    learner = train.Learner(config, env.obs_space, env.act_space)
    key = jax.random.PRNGKey(config.seed)
    state = jax.jit(learner.init)(key)
    steps_per_env = d.steps_per_deployment // config.env.num_envs
    replay_state = replay.init(replay.env_spec(env, label_keys(family)),
                               (d.deployments + 1) * steps_per_env, config.env.num_envs)
    coverage = train.Coverage(learner.cascade_config.population)
    coverage.start_deployment()
    replay_state, _ = train.deploy(learner, env, state.wm.params,
                                   state.population.members.actor.params, replay_state,
                                   steps_per_env, key, True, coverage, family)
    env.close()
    start = time.perf_counter()
    compiled = learner.train.lower(state, replay_state, key, explore=True).compile()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(repeats + 1):   # the first call warms caches and is not timed
        start = time.perf_counter()
        state, metrics = compiled(state, replay_state, jax.random.fold_in(key, i))
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    loss = float(np.asarray(metrics["model_loss"]))
    return {"compile_s": compile_s, "run_s": statistics.median(times[1:]), "k": d.model_grad_steps,
            "model_loss": loss}


def main(argv):
    del argv
    if FLAGS.child is not None:
        print("RESULT " + json.dumps(measure_here(FLAGS.preset, FLAGS.repeats)), flush=True)
        return
    settings = list(FLAGS.settings)
    if settings and settings[0] == "default" and settings[-1] != "default":
        settings.append("default")   # the baseline again, to see the load's drift
    base_flags = os.environ.get("XLA_FLAGS", "")
    rows = []
    print(f"CASCADE {FLAGS.preset} Learner.train (explore), cache off, median of "
          f"{FLAGS.repeats} calls\n{'setting':<48} {'compile s':>9} {'run s/call':>10}",
          flush=True)
    for setting in settings:
        xla = "" if setting == "default" else setting.replace("+", " ")
        env = {**os.environ, "XLA_FLAGS": f"{base_flags} {xla}".strip()}
        load = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={setting}",
                               f"--preset={FLAGS.preset}", f"--repeats={FLAGS.repeats}"],
                              env=env, capture_output=True, text=True)
        result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not result:
            raise RuntimeError(f"setting {setting!r} failed:\n{proc.stderr[-2000:]}")
        row = {"setting": setting, "load_avg_1min_before": load,
               **json.loads(result[0][len("RESULT "):])}
        rows.append(row)
        print(f"{setting:<48} {row['compile_s']:>9.1f} {row['run_s']:>10.2f}", flush=True)
    from jaxwm.runtime.logging import save_benchmark
    save_benchmark(FLAGS.out, "xla_flags", {"preset": FLAGS.preset, "repeats": FLAGS.repeats,
                                            "rows": rows})


if __name__ == "__main__":
    app.run(main)
