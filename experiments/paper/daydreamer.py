r"""DayDreamer (Wu et al., CoRL 2022): synchronous vs asynchronous acting and learning under the
same wall-clock budget, with the envs paced at a real-time control rate (20 Hz), as on a robot.

Both modes run the `cpu` preset (DreamerV2, CartpoleBalance from states) for `--minutes` of
wall clock per run (compilation of the train step excluded in both: it happens before the clock
starts). 'sync' alternates acting with the train calls owed (one per 5 env steps, the preset's
ratio), so the "robot" waits while the learner trains; 'threads' acts and learns concurrently,
the learner training as fast as it can. Reported per mode, IQM [95% CI] over seeds, and the
paired per-seed difference (async - sync): greedy evaluation return at the end of the budget,
the return of training episodes in the last 2 minutes, env steps and train calls done, actor
steps/s and learner updates/s, and steps the real-time env saw requested late (overruns).
Finished runs are reused. Writes table.md, results.json and curves.png (training-episode
return vs wall-clock minutes).

  .venv/bin/python experiments/paper/daydreamer.py --seeds=3 --minutes=8 \
      --out_dir=runs/paper/daydreamer
"""
import json
import os

from absl import app
from absl import flags
import numpy as np

from jaxwm.agents.daydreamer import config as dd_config
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

TRAIN_FN = "jaxwm.agents.daydreamer.train:train_and_evaluate"
MODES = ("sync", "threads")
NAMES = {"sync": "sync (act, then train)", "threads": "async (threads)"}
COLUMNS = (("eval_return", "eval return at the end"),
           ("return_last2", "training return, last 2 min"),
           ("env_steps", "env steps"), ("train_calls", "train calls"),
           ("actor_steps_per_s", "actor steps/s"), ("learner_steps_per_s", "learner updates/s"),
           ("overruns", "late steps"))
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("seeds", 3, "Seeds per mode: 0 .. seeds - 1.")
    flags.DEFINE_float("minutes", 8.0, "Wall-clock budget of every run.")
    flags.DEFINE_list("modes", list(MODES), "Runner backends compared; allowed: sync, threads, "
                      "ray.")
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(dd_config.PRESETS))
    flags.DEFINE_string("out_dir", "runs/paper/daydreamer", "Output directory.")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")


def run_grid(modes, seeds: int, minutes: float, preset: str, out_dir: str) -> dict:
    """Runs (or reuses) every (seed, mode), one at a time (timing is the measurement);
    returns {mode: {seed: workdir}}."""
    todo, runs = [], {}
    cells = [(s, m) for s in range(seeds) for m in modes]
    for i, (seed, mode) in enumerate(cells):
        c = dd_config.get_config(preset)
        c.seed, c.runner.backend, c.runner.minutes = seed, mode, minutes
        workdir = os.path.join(out_dir, mode, f"seed_{seed}")
        tag = f"[{i + 1}/{len(cells)}] {mode} seed {seed}"
        if os.path.exists(os.path.join(workdir, grid.WALL_FILE)):
            print(f"{tag}: finished run reused", flush=True)
        elif FLAGS.report_only:
            print(f"{tag}: not finished, left out", flush=True)
            continue
        else:
            todo.append(grid.Run(tag, TRAIN_FN, c.to_dict(), workdir))
        runs.setdefault(mode, {})[seed] = workdir
    grid.run_all(todo, jobs=1)
    return runs


def run_scores(workdir: str, minutes: float) -> dict:
    """One run's numbers from its metrics.jsonl and episodes.jsonl; 'curve' {minute: return of
    the newest episode finished by then}."""
    records = run_stats.read_records(workdir)
    episodes = [json.loads(line) for line in open(os.path.join(workdir, "episodes.jsonl"))]
    last = [r for r in records if "train_calls" in r][-1]
    evals = [r["eval/return"] for r in records if "eval/return" in r]
    late = [e["return"] for e in episodes if e["minutes"] >= minutes - 2] or [
        episodes[-1]["return"]]
    curve, i = {}, 0
    for m in range(1, int(minutes) + 1):
        while i < len(episodes) and episodes[i]["minutes"] <= m:
            i += 1
        if i:
            curve[m] = episodes[i - 1]["return"]
    span = max(last["minutes"], 1e-6) * 60
    return {"eval_return": evals[-1], "return_last2": float(np.mean(late)),
            "env_steps": float(last["step"]), "train_calls": float(last["train_calls"]),
            "actor_steps_per_s": last["step"] / span,
            "learner_steps_per_s": last["train_calls"] / span,
            "overruns": float(sum(r.get("overruns", 0) for r in records)), "curve": curve}


def report(rows: dict, reps: int, minutes: float, preset: str) -> tuple:
    stats = {k: run_stats.iqm_of(rows, k, reps) for k, _ in COLUMNS}
    lines = [f"## CartpoleBalance at 20 Hz, {minutes:g} wall-clock minutes per run, {preset} "
             "preset\n", "| mode | " + " | ".join(t for _, t in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for m in rows:
        lines.append(f"| {NAMES.get(m, m)} (n={len(rows[m])}) | " + " | ".join(
            run_stats.format_iqm(stats[k][m]) for k, _ in COLUMNS) + " |")
    diffs = {}
    if "sync" in rows and "threads" in rows:
        lines += ["", "Paired per-seed async - sync (mean [95% CI] (seeds where async is "
                  "higher / seeds)):", ""]
        for k, title in COLUMNS:
            diffs[k] = run_stats.paired_of(rows["threads"], rows["sync"], k, reps)
            lines.append(f"- {title}: {run_stats.format_difference(diffs[k])}")
    return "\n".join(lines) + "\n", {"iqm": stats, "paired": diffs}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [m for m in FLAGS.modes if m not in ("sync", "threads", "ray")]
    if bad or not FLAGS.modes:
        raise app.UsageError(f"--modes: {bad or 'empty'} not allowed; allowed: sync, threads, ray")
    if FLAGS.seeds < 1 or not FLAGS.minutes > 2:
        raise app.UsageError(f"--seeds={FLAGS.seeds} must be >= 1 and --minutes="
                             f"{FLAGS.minutes} > 2")
    if FLAGS.preset not in dd_config.PRESETS:
        raise app.UsageError(f"--preset={FLAGS.preset!r}; allowed: {dd_config.PRESETS}")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = run_grid(FLAGS.modes, FLAGS.seeds, FLAGS.minutes, FLAGS.preset, FLAGS.out_dir)
    rows = {m: {s: run_scores(w, FLAGS.minutes) for s, w in seeds.items()}
            for m, seeds in runs.items()}
    body, results = report(rows, FLAGS.reps, FLAGS.minutes, FLAGS.preset)
    grid.save_report(FLAGS.out_dir, f"DayDreamer: sync vs async, IQM over {FLAGS.seeds} seeds",
                     body, {"seeds": FLAGS.seeds, "minutes": FLAGS.minutes, "runs": runs,
                            "aggregates": results},
                     {"CartpoleBalance, 20 Hz": rows}, NAMES, FLAGS.reps,
                     ylabel="training-episode return", xlabel="wall-clock minutes")


if __name__ == "__main__":
    define_flags()
    app.run(main)
