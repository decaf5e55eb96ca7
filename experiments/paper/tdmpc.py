r"""TD-MPC, TD-MPC2 and FOWM at the cpu budget: method x task x seed grids with rliable IQMs.

--study=online (TD-MPC, Hansen et al. ICML 2022; TD-MPC2, Hansen et al. ICLR 2024): TD-MPC with
uniform replay (the cpu preset), TD-MPC with prioritized replay (alpha 0.6, beta 0.4, the paper
preset's setting) and TD-MPC2, on CartpoleBalance and CartpoleSwingup from states (action repeat
8) for the cpu preset's 5k agent steps; the uniform random policy that every run scores is the
baseline.
--study=fowm (Feng et al., CoRL 2023, Fig. 4's comparison): FOWM trained offline on a
medium-replay dataset (scored before any online step: "offline only"), the same run after
finetuning online, and TD-MPC from scratch with the same online budget, on CartpoleSwingup and
WalkerWalk. Each task's dataset is the replay of one TD-MPC run (seed 0, cpu model) at the
task's data stage, written once to <out_dir>/datasets/<task>/medium_replay.npz.

Per task and method: IQM over seeds with a 95% stratified-bootstrap CI of the final evaluation
return and of the mean over evaluations (area under the curve), minutes per run, and paired
per-seed differences with bootstrap CIs. Writes table.md, results.json and curves.png to --out_dir
(default runs/paper/tdmpc_<study>). Finished runs are reused and killed ones resume.

  .venv/bin/python experiments/paper/tdmpc.py --study=online --seeds=5 --jobs=2
  .venv/bin/python experiments/paper/tdmpc.py --study=fowm --seeds=5 --jobs=2
"""
import json
import os
from typing import Mapping

from absl import app
from absl import flags
import numpy as np

from jaxwm.agents.fowm import config as fowm_config
from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

STUDIES = {
    "online": {"tasks": ("CartpoleBalance-v1", "CartpoleSwingup-v1"),
               "methods": ("tdmpc", "tdmpc_per", "tdmpc2")},
    "fowm": {"tasks": ("CartpoleSwingup-v1", "WalkerWalk-v1"), "methods": ("fowm", "scratch")},
}
# TD-MPC's action repeats; FOWM study: agent steps of the data-collecting run's stages, the
# stage whose replay is the dataset, and the online budget (FOWM finetuning = scratch run).
TASKS = {
    "CartpoleBalance-v1": {"action_repeat": 8},
    "CartpoleSwingup-v1": {"action_repeat": 8, "data_stages": (1000, 2000), "data_stage": 1000,
                           "online_steps": 1500, "eval_every": 500},
    "WalkerWalk-v1": {"action_repeat": 2, "data_stages": (10000,), "data_stage": 10000,
                      "online_steps": 2500, "eval_every": 1250},
}
NAMES = {"tdmpc": "TD-MPC (uniform replay)", "tdmpc_per": "TD-MPC (prioritized replay)",
         "tdmpc2": "TD-MPC2", "fowm": "FOWM offline -> online", "scratch": "TD-MPC from scratch",
         "offline_only": "FOWM offline only", "random": "uniform random policy"}
# (method, reference) pairs reported as paired per-seed differences of the final return.
PAIRS = {"online": (("tdmpc_per", "tdmpc"), ("tdmpc2", "tdmpc"), ("tdmpc", "random"),
                    ("tdmpc2", "random")),
         "fowm": (("fowm", "scratch"), ("fowm", "offline_only"), ("offline_only", "scratch"),
                  ("scratch", "random"))}

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("study", "online", list(STUDIES), "Which grid to run.")
    flags.DEFINE_list("tasks", [], "Tasks (default: the study's); allowed: " + ", ".join(TASKS))
    flags.DEFINE_integer("seeds", 5, "Seeds per method: 0 .. seeds - 1.")
    flags.DEFINE_string("out_dir", "", "Output directory; default runs/paper/tdmpc_<study>.")
    flags.DEFINE_integer("jobs", 1, "Runs in parallel processes.")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only "
                      "(each row states its number of seeds).")


def dataset_path(out_dir: str, task: str) -> str:
    return os.path.join(out_dir, "datasets", task, "medium_replay.npz")


def build_config(study: str, task: str, method: str, seed: int, out_dir: str):
    """The agent config of one run: the tdmpc / fowm cpu preset on `task`."""
    settings = TASKS[task]
    if method == "fowm":
        c = fowm_config.get_config("cpu")
        c.dataset.path = dataset_path(out_dir, task)
    else:
        c = tdmpc_config.get_config("cpu_v2" if method == "tdmpc2" else "cpu")
        c.run.per = method == "tdmpc_per"
    c.env.name, c.seed = task, seed
    c.env.overrides.action_repeat = settings["action_repeat"]
    if study == "fowm":
        c.run.env_steps, c.run.eval_every = settings["online_steps"], settings["eval_every"]
        c.run.log_every = c.run.eval_every // 4
        c.run.checkpoint_every = c.run.env_steps // 2
    c.run.progress_bar = False
    return c


def make_dataset(out_dir: str, task: str) -> None:
    """The task's medium-replay dataset from one TD-MPC run (reused if written)."""
    if os.path.exists(dataset_path(out_dir, task)):
        return
    from jaxwm.agents.tdmpc.offline_data import make_datasets
    settings = TASKS[task]
    config = build_config("online", task, "tdmpc", 0, out_dir)
    folder = os.path.dirname(dataset_path(out_dir, task))
    written = make_datasets(config, os.path.join(folder, "collector"), folder,
                            list(settings["data_stages"]), settings["data_stage"],
                            kinds=("medium_replay",))
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(written, f, indent=1, default=str)


TRAIN_FNS = {"fowm": "jaxwm.agents.fowm.train:train_and_evaluate",
             "tdmpc": "jaxwm.agents.tdmpc.train:train_and_evaluate"}


def run_grid(study: str, tasks, out_dir: str) -> dict:
    """Runs (or reuses) every (task, method, seed); returns {task: {method: {seed: workdir}}}."""
    cells = [(t, m, s) for t in tasks for s in range(FLAGS.seeds)
             for m in STUDIES[study]["methods"]]
    todo, runs = [], {}
    for i, (task, method, seed) in enumerate(cells):
        config = build_config(study, task, method, seed, out_dir)
        workdir = os.path.join(out_dir, task, method, f"seed_{seed}")
        runs.setdefault(task, {}).setdefault(method, {})[seed] = workdir
        tag = f"[{i + 1}/{len(cells)}] {task} {method} seed {seed}"
        if grid.is_finished(workdir, config.run.env_steps):
            print(f"{tag}: finished run reused", flush=True)
            continue
        if FLAGS.report_only:
            print(f"{tag}: not finished, left out", flush=True)
            del runs[task][method][seed]
            continue
        todo.append(grid.Run(tag, TRAIN_FNS["fowm" if method == "fowm" else "tdmpc"],
                             config.to_dict(), workdir))
    grid.run_all(todo, FLAGS.jobs)
    return runs


def task_scores(runs: Mapping) -> dict:
    """{row: {seed: scores}} of one task: the methods plus the random policy (and FOWM's
    offline-only score), each as the dict of `grid.run_scores`."""
    rows = {m: {s: grid.run_scores(w) for s, w in seeds.items()} for m, seeds in runs.items()}
    first = next(iter(rows.values()))
    rows["random"] = {s: {"final": v["random"], "mean": v["random"]} for s, v in first.items()}
    if "fowm" in rows:
        rows["offline_only"] = {s: {"final": v["offline_only"], "mean": v["offline_only"]}
                                for s, v in rows["fowm"].items()}
    return rows


def report(study: str, scores: Mapping, reps: int) -> tuple:
    """Markdown of all tasks and the aggregates saved to results.json."""
    text, results = [], {}
    for task, rows in scores.items():
        finals = run_stats.iqm_of(rows, "final", reps)
        means = run_stats.iqm_of(rows, "mean", reps)
        lines = [f"## {task}\n", "| method | final eval return | mean over evaluations | "
                 "minutes per run |", "|---|---|---|---|"]
        for m in rows:
            minutes = [v["minutes"] for v in rows[m].values() if "minutes" in v]
            lines.append(f"| {NAMES[m]} (n={finals[m]['runs']}) | {run_stats.format_iqm(finals[m])} | "
                         f"{run_stats.format_iqm(means[m])} | "
                         f"{f'{np.mean(minutes):.1f}' if minutes else '-'} |")
        lines.append("\nPaired per-seed differences, final return | mean over evaluations "
                     "(mean [95% bootstrap CI] (seeds higher / seeds)):\n")
        diffs = {}
        for m, ref in PAIRS[study]:
            both = diffs[f"{m}-{ref}"] = {k: run_stats.paired_of(rows[m], rows[ref], k, reps)
                                          for k in ("final", "mean")}
            lines.append(f"- {NAMES[m]} - {NAMES[ref]}: " + " | ".join(
                run_stats.format_difference(d) for d in both.values()))
        text.append("\n".join(lines))
        results[task] = {"final": finals, "mean": means, "differences": diffs}
    return "\n\n".join(text) + "\n", results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    study = FLAGS.study
    tasks = FLAGS.tasks or list(STUDIES[study]["tasks"])
    bad = [t for t in tasks if t not in TASKS or (study == "fowm" and "online_steps" not in
                                                   TASKS[t])]
    if bad:
        allowed = [t for t in TASKS if study == "online" or "online_steps" in TASKS[t]]
        raise app.UsageError(f"--tasks: {bad} not allowed for --study={study}; allowed: "
                             f"{allowed}")
    if FLAGS.seeds < 1:
        raise app.UsageError(f"--seeds={FLAGS.seeds} must be >= 1")
    out_dir = FLAGS.out_dir or os.path.join("runs", "paper", f"tdmpc_{study}")
    os.makedirs(out_dir, exist_ok=True)
    if study == "fowm" and not FLAGS.report_only:
        for task in tasks:
            make_dataset(out_dir, task)
    runs = run_grid(study, tasks, out_dir)
    scores = {task: task_scores(runs[task]) for task in tasks}
    body, results = report(study, scores, FLAGS.reps)
    grid.save_report(out_dir, f"TD-MPC family, study '{study}' (cpu presets): IQM over up to "
                     f"{FLAGS.seeds} seeds", body,
                     {"study": study, "tasks": tasks, "seeds": FLAGS.seeds, "runs": runs,
                      "aggregates": results}, scores, NAMES, FLAGS.reps)

if __name__ == "__main__":
    define_flags()
    app.run(main)
