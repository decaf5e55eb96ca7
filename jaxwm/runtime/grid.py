"""Grids of training runs for the paper scripts: each run in its own process, finished runs
reused, killed runs resumed by their binaries, wall-clock time recorded, and the evaluation
curve of a finished run read back from its metrics.jsonl.

A run is (tag, train function as 'module:name', config dict, workdir); the train function takes
(config ConfigDict, workdir) like every `train_and_evaluate` of `jaxwm.agents.*.train`.

Records of finished runs (config.json, eval.json, wall.json: a few kB, no checkpoints) can be
archived under the repository (`archive_records`) and restored into a fresh output directory
(`restore_records`), so a grid too long for one machine's session is finished over several;
`run_missing` reuses a finished run only if its config.json matches the grid's config for it.
"""
import importlib
import json
import multiprocessing
import os
import shutil
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np

from jaxwm.runtime.stats import read_records

WALL_FILE = "wall.json"
EVAL_FILE = "eval.json"
RECORD_FILES = ("config.json", EVAL_FILE, WALL_FILE)


class Run(NamedTuple):
    tag: str                 # printed name, e.g. '[3/30] CartpoleSwingup-v1 tdmpc seed 2'
    train_fn: str            # 'jaxwm.agents.tdmpc.train:train_and_evaluate'
    config: dict             # ConfigDict.to_dict() of the run
    workdir: str


def evaluations(records: Sequence[dict], key: str = "eval/return") -> dict:
    """{step: value} of the records that hold `key` (the last one per step)."""
    return {int(r["step"]): r[key] for r in records if key in r}


def is_finished(workdir: str, last_step: int, key: str = "eval/return") -> bool:
    """Whether the run in `workdir` logged `key` at step `last_step` (its final evaluation)."""
    return last_step in evaluations(read_records(workdir), key)


def wall_minutes(workdir: str) -> float | None:
    """Wall-clock minutes of the run's last (uninterrupted) call, if recorded."""
    path = os.path.join(workdir, WALL_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["seconds"] / 60.0


def run_scores(workdir: str) -> dict:
    """The numbers of one finished run: 'final' and 'mean' evaluation return (over the
    evaluations after step 0), the 'curve' {step: return}, the uniform random policy's
    'random' and FOWM's 'offline_only' return where logged, and wall 'minutes' if recorded."""
    records = read_records(workdir)
    curve = {s: v for s, v in evaluations(records).items() if s > 0}
    out = {"final": curve[max(curve)], "mean": float(np.mean(list(curve.values()))),
           "curve": curve}
    for name, key in (("random", "eval/random_return"),
                      ("offline_only", "eval/offline_only_return")):
        values = evaluations(records, key)
        if values:
            out[name] = values[max(values)]
    minutes = wall_minutes(workdir)
    if minutes is not None:
        out["minutes"] = minutes
    return out


def _run_one(train_fn: str, config: dict, workdir: str) -> None:
    import ml_collections
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)   # keep orbax's INFO lines off the console
    module, name = train_fn.split(":")
    fn = getattr(importlib.import_module(module), name)
    start = time.time()
    fn(ml_collections.ConfigDict(config), workdir)
    with open(os.path.join(workdir, WALL_FILE), "w") as f:
        json.dump({"seconds": time.time() - start}, f)


def run_all(runs: Sequence[Run], jobs: int = 1) -> None:
    """Runs every run in `jobs` spawned processes (JAX is not fork-safe), printing each tag
    with the elapsed time when it is done; a failing run raises."""
    start = time.time()
    context = multiprocessing.get_context("spawn")
    with context.Pool(max(1, jobs), maxtasksperchild=1) as pool:
        pending = [(r.tag, pool.apply_async(_run_one, (r.train_fn, r.config, r.workdir)))
                   for r in runs]
        for tag, result in pending:
            result.get()
            print(f"{tag}: done at {time.time() - start:.0f}s", flush=True)


def run_missing(runs: Sequence[Run], jobs: int = 1, report_only: bool = False,
                done_file: str = EVAL_FILE) -> list:
    """Runs (`run_all`) the runs whose workdir has no `done_file` yet, unless `report_only`;
    prints what is reused or left out. Returns the runs that are finished, in order. A finished
    run whose config.json differs from the grid's config for it is refused (`UserError` naming
    the fields): a grid never mixes runs of other settings into its table."""
    import ml_collections
    from jaxwm.runtime.workdir import check_saved_config
    todo, finished = [], []
    for r in runs:
        if os.path.exists(os.path.join(r.workdir, done_file)):
            check_saved_config(ml_collections.ConfigDict(r.config), r.workdir)
            print(f"{r.tag}: finished run reused", flush=True)
        elif report_only:
            print(f"{r.tag}: not finished, left out", flush=True)
            continue
        else:
            todo.append(r)
        finished.append(r)
    run_all(todo, jobs)
    return finished


def _finished_dirs(root: str, done_file: str):
    for path, _, files in os.walk(root):
        if done_file in files:
            yield os.path.relpath(path, root)


def archive_records(out_dir: str, archive_dir: str, done_file: str = EVAL_FILE) -> int:
    """Copies the RECORD_FILES of every finished run under out_dir (a workdir holding
    `done_file`) to the same relative path under archive_dir. Returns the number of runs."""
    count = 0
    for rel in _finished_dirs(out_dir, done_file):
        os.makedirs(os.path.join(archive_dir, rel), exist_ok=True)
        for name in RECORD_FILES:
            if os.path.exists(os.path.join(out_dir, rel, name)):
                shutil.copy2(os.path.join(out_dir, rel, name), os.path.join(archive_dir, rel, name))
        count += 1
    return count


def restore_records(archive_dir: str, out_dir: str, done_file: str = EVAL_FILE) -> int:
    """Copies archived runs into out_dir where out_dir has no such workdir yet (a run started
    here, even unfinished, is never overwritten). Returns the number restored."""
    count = 0
    for rel in (_finished_dirs(archive_dir, done_file) if os.path.isdir(archive_dir) else ()):
        target = os.path.join(out_dir, rel)
        if os.path.exists(target):
            continue
        shutil.copytree(os.path.join(archive_dir, rel), target)
        count += 1
    return count


def define_archive_flag(name: str) -> None:
    """The paper scripts' --archive flag (absl), default off."""
    from absl import flags
    flags.DEFINE_string("archive", "", "Directory of archived run records, restored into "
                        "--out_dir before the grid and updated after it, to finish a grid over "
                        f"several sessions (e.g. experiments/paper/results/runs/{name}); '': off.")


def with_archive(archive_dir: str, out_dir: str, run_grid: Callable, done_file: str = EVAL_FILE):
    """restore_records, then run_grid(), then archive_records (if archive_dir); returns what
    run_grid returns. Archiving also happens when a run fails, so finished runs are kept."""
    if not archive_dir:
        return run_grid()
    print(f"{restore_records(archive_dir, out_dir, done_file)} archived runs restored from "
          f"{archive_dir}", flush=True)
    try:
        return run_grid()
    finally:
        print(f"{archive_records(out_dir, archive_dir, done_file)} finished runs archived in "
              f"{archive_dir}", flush=True)


def save_report(out_dir: str, title: str, body: str, results: dict, scores: dict,
                names: dict, reps: int, ylabel: str = "eval return",
                xlabel: str = "env steps") -> None:
    """Print and write a grid's report: table.md (title with the bootstrap used, then body),
    results.json (`results`) and curves.png (`plots.plot_eval_curves` of `scores`)."""
    from jaxwm.runtime import plots
    from jaxwm.runtime.stats import rliable_library
    bootstrap = "rliable" if rliable_library() else "numpy bootstrap"
    text = f"# {title} [95% CI, {reps} resamples, {bootstrap}]\n\n{body}"
    print("\n" + text)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    plots.plot_eval_curves(scores, os.path.join(out_dir, "curves.png"), names, reps, ylabel,
                           xlabel)
    print(f"saved {out_dir}/table.md, results.json, curves.png")
