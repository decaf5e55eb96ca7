r"""DINO-WM (Zhou et al., 2024): goal-reaching success of planning on frozen DINO patch features
vs the same world model on other encoders, and vs goal-conditioned behavior cloning.

Variants (rows), each on the same offline datasets, the same `eval.goals` fixed start/goal pairs
and the same seeds:
  dino            frozen ViT pretrained here by DINO self-distillation on the dataset's frames
  reconstruction  the same ViT trained end to end with the predictor and pixel reconstruction
  random          frozen randomly initialized ViT
  bc              goal-conditioned behavior cloning on the same data (no world model)
  dinov2          (only with --dinov2=<local checkpoint>) the paper's frozen DINOv2 ViT
Reported per task: success rate at the end of the episode (and ever reached) in %, IQM [95% CI]
over seeds; paired per-seed differences dino - each other row; planning seconds per decision
(batched over the goals). Finished runs are reused. Writes table.md, results.json and
success.png.

  .venv/bin/python experiments/make_dataset.py --goal_task=Wall-v0
  .venv/bin/python experiments/make_dataset.py --goal_task=PushT-v0
  .venv/bin/python experiments/paper/dino_wm.py --seeds=3 --out_dir=runs/paper/dino_wm
"""
import json
import os

from absl import app
from absl import flags
import numpy as np

from jaxwm.agents.dino_wm import config as dwm_config
from jaxwm.agents.dino_wm.train import EVAL_FILE
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

TRAIN_FN = "jaxwm.agents.dino_wm.train:train_and_evaluate"
VARIANTS = ("dino", "reconstruction", "random", "bc")
NAMES = {"dino": "frozen DINO encoder (pretrained here)", "dinov2": "frozen DINOv2 (file)",
         "reconstruction": "end-to-end + pixel reconstruction", "random": "frozen random encoder",
         "bc": "goal-conditioned BC"}
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("seeds", 3, "Seeds per variant: 0 .. seeds - 1.")
    flags.DEFINE_list("tasks", list(dwm_config.TASKS), f"Tasks among {dwm_config.TASKS}.")
    flags.DEFINE_list("variants", list(VARIANTS), "Rows among " + ", ".join(
        dwm_config.VARIANTS))
    flags.DEFINE_string("dinov2", "", "Local DINOv2 checkpoint: adds the 'dinov2' row.")
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(dwm_config.PRESETS))
    flags.DEFINE_string("datasets", "datasets", "Directory of <task>/{random,scripted}.npz.")
    flags.DEFINE_string("out_dir", "runs/paper/dino_wm", "Output directory.")
    flags.DEFINE_integer("jobs", 2, "Runs in parallel (planning times are then shared-CPU "
                         "times).")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")


def run_config(task: str, variant: str, seed: int, preset: str, data_dir: str,
               dinov2: str = ""):
    c = dwm_config.get_config(preset)
    c.task, c.variant, c.seed = task, variant, seed
    c.dataset.paths = tuple(os.path.join(data_dir, task, f"{k}.npz")
                            for k in ("random", "scripted"))
    if variant == "dinov2":
        c.encoder.checkpoint = dinov2
    return c


def run_grid(tasks, variants, seeds: int, out_dir: str) -> dict:
    """Runs (or reuses) every (task, variant, seed); returns {task: {variant: {seed: dir}}}."""
    todo, runs = [], {}
    cells = [(t, v, s) for t in tasks for s in range(seeds) for v in variants]
    for i, (task, variant, seed) in enumerate(cells):
        c = run_config(task, variant, seed, FLAGS.preset, FLAGS.datasets, FLAGS.dinov2)
        workdir = os.path.join(out_dir, task, variant, f"seed_{seed}")
        tag = f"[{i + 1}/{len(cells)}] {task} {variant} seed {seed}"
        if os.path.exists(os.path.join(workdir, EVAL_FILE)):
            print(f"{tag}: finished run reused", flush=True)
        elif FLAGS.report_only:
            print(f"{tag}: not finished, left out", flush=True)
            continue
        else:
            todo.append(grid.Run(tag, TRAIN_FN, c.to_dict(), workdir))
        runs.setdefault(task, {}).setdefault(variant, {})[seed] = workdir
    grid.run_all(todo, jobs=FLAGS.jobs)
    return runs


def run_scores(workdir: str) -> dict:
    with open(os.path.join(workdir, EVAL_FILE)) as f:
        e = json.load(f)
    out = {"success": 100.0 * e["success_rate"], "ever": 100.0 * e["ever_success_rate"],
           "minutes": e["seconds"] / 60.0}
    if "plan_seconds_per_decision" in e:
        out["plan_ms"] = 1000.0 * e["plan_seconds_per_decision"]
        out["plan_batch_s"] = e["plan_seconds_per_batch"]
    return out


def report(rows: dict, reps: int, goals: int) -> tuple:
    lines, results = [], {}
    for task, variants in rows.items():
        st = {k: run_stats.iqm_of(variants, k, reps) for k in ("success", "ever", "minutes")}
        lines += [f"## {task}: {goals} fixed start/goal pairs per run\n",
                  "| variant | success at the end (%) | ever reached (%) | planning ms / decision"
                  " (batch s) | run minutes |", "|---|---|---|---|---|"]
        for v, seeds in variants.items():
            runs = list(seeds.values())
            plan = (f"{np.mean([r['plan_ms'] for r in runs]):.1f} "
                    f"({np.mean([r['plan_batch_s'] for r in runs]):.2f})"
                    if "plan_ms" in runs[0] else "-")
            lines.append(f"| {NAMES.get(v, v)} (n={len(seeds)}) | "
                         f"{run_stats.format_iqm(st['success'][v])} | "
                         f"{run_stats.format_iqm(st['ever'][v])} | {plan} | "
                         f"{st['minutes'][v]['iqm']:.1f} |")
        paired = {}
        if "dino" in variants:
            lines += ["", "Paired per-seed success, dino - other (mean [95% CI] (seeds where "
                      "dino is higher / seeds)):", ""]
            for v in variants:
                if v != "dino":
                    paired[v] = run_stats.paired_of(variants["dino"], variants[v], "success",
                                                    reps)
                    lines.append(f"- vs {NAMES.get(v, v)}: "
                                 f"{run_stats.format_difference(paired[v])}")
        lines.append("")
        results[task] = {"iqm": st, "paired": paired}
    return "\n".join(lines), results


def plot(rows: dict, results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.4), squeeze=False)
    for ax, (task, variants) in zip(axes[0], rows.items()):
        st = results[task]["iqm"]["success"]
        names = list(variants)
        mid = [st[v]["iqm"] for v in names]
        err = [[m - st[v]["ci_low"] for v, m in zip(names, mid)],
               [st[v]["ci_high"] - m for v, m in zip(names, mid)]]
        ax.bar(range(len(names)), mid, yerr=err, color=[f"C{i}" for i in range(len(names))],
               capsize=4)
        for i, v in enumerate(names):
            ax.scatter([i] * len(variants[v]), [r["success"] for r in variants[v].values()],
                       color="k", s=8, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set(title=task, ylabel="success (%) IQM, 95% CI", ylim=(0, 100))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    variants = list(FLAGS.variants) + (["dinov2"] if FLAGS.dinov2 else [])
    bad = [v for v in variants if v not in dwm_config.VARIANTS] + [
        t for t in FLAGS.tasks if t not in dwm_config.TASKS]
    if bad:
        raise app.UsageError(f"{bad} not allowed; variants: {dwm_config.VARIANTS}, tasks: "
                             f"{dwm_config.TASKS}")
    if FLAGS.preset not in dwm_config.PRESETS or FLAGS.seeds < 1:
        raise app.UsageError(f"--preset={FLAGS.preset!r} (allowed {dwm_config.PRESETS}), "
                             f"--seeds={FLAGS.seeds} (>= 1)")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = run_grid(FLAGS.tasks, variants, FLAGS.seeds, FLAGS.out_dir)
    rows = {t: {v: {s: run_scores(w) for s, w in seeds.items()} for v, seeds in vs.items()}
            for t, vs in runs.items()}
    goals = dwm_config.get_config(FLAGS.preset).eval.goals
    body, results = report(rows, FLAGS.reps, goals)
    bootstrap = "rliable" if run_stats.rliable_library() else "numpy bootstrap"
    text = (f"# DINO-WM goal reaching, {FLAGS.preset} preset, IQM over {FLAGS.seeds} seeds "
            f"[95% CI, {FLAGS.reps} resamples, {bootstrap}]\n\n{body}")
    print("\n" + text)
    with open(os.path.join(FLAGS.out_dir, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(FLAGS.out_dir, "results.json"), "w") as f:
        json.dump({"runs": runs, "rows": rows, "aggregates": results}, f, indent=1)
    plot(rows, results, os.path.join(FLAGS.out_dir, "success.png"))
    print(f"saved {FLAGS.out_dir}/table.md, results.json, success.png")


if __name__ == "__main__":
    define_flags()
    app.run(main)
