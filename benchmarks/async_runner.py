"""Actor steps/s and learner updates/s of `jaxwm.runtime.async_runner` with each backend
(sync, threads, Ray), in the same run: DayDreamer's cpu preset (DreamerV2 on CartpoleBalance
from states), envs unpaced, one fixed wall-clock budget per backend after the same prefill.

  python benchmarks/async_runner.py --minutes=1.5 --out=benchmarks/results

Rates count the budget after the learner's train step is compiled (that happens before the
clock starts); the actors' first chunk includes the compilation of `act`. Ratios are against
the sync backend of the same run. Printed and saved as async_runner.json.
"""
import tempfile

from absl import app, flags

from jaxwm.agents.daydreamer.config import get_config
from jaxwm.agents.daydreamer.train import train_and_evaluate
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_list("backends", ["sync", "threads", "ray"], "Backends: sync, threads, ray.")
flags.DEFINE_float("minutes", 1.5, "Wall-clock budget per backend.")
flags.DEFINE_integer("actors", 1, "Actors (threads and ray).")
flags.DEFINE_string("out", "benchmarks/results", "Directory of async_runner.json.")
FLAGS = flags.FLAGS


def measure(backend: str, minutes: float, actors: int) -> dict:
    config = get_config("cpu")
    r = config.runner
    r.backend, r.minutes, r.control_hz = backend, minutes, 0.0
    r.num_actors = 1 if backend == "sync" else actors
    r.prefill, r.pretrain, r.eval_episodes = 500, 10, 0
    r.log_every, r.checkpoint_every = 10**9, 10**9
    with tempfile.TemporaryDirectory() as workdir:
        summary = train_and_evaluate(config, workdir)
    seconds = summary["minutes"] * 60
    return {"env_steps": summary["env_steps"], "train_calls": summary["train_calls"],
            "seconds": seconds, "actor_steps_per_s": summary["env_steps"] / seconds,
            "learner_steps_per_s": summary["train_calls"] / seconds}


def main(argv):
    del argv
    results = {b: measure(b, FLAGS.minutes, FLAGS.actors) for b in FLAGS.backends}
    if "sync" in results:
        base = results["sync"]
        for b, res in results.items():
            res["actor_ratio_vs_sync"] = res["actor_steps_per_s"] / base["actor_steps_per_s"]
            res["learner_ratio_vs_sync"] = (res["learner_steps_per_s"]
                                            / max(base["learner_steps_per_s"], 1e-9))
    for b, res in results.items():
        print(f"{b:8s} actor {res['actor_steps_per_s']:7.1f} steps/s  learner "
              f"{res['learner_steps_per_s']:5.2f} updates/s")
    save_benchmark(FLAGS.out, "async_runner", {"minutes": FLAGS.minutes, "actors": FLAGS.actors,
                                               "preset": "cpu (unpaced)", "results": results})


if __name__ == "__main__":
    app.run(main)
