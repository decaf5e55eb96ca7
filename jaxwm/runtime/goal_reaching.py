"""Success-rate tables of goal-reaching agents (the DINO-WM and LDP paper scripts).

A grid is (task, seed, variant) cells, each a run of `train_fn(config, workdir)` that writes
`eval.json` with `success_rate`, `ever_success_rate`, `seconds` and, for planners,
`plan_seconds_per_decision` / `plan_seconds_per_batch`. Reported per task: success at the end
of the episode and ever reached (%), IQM [95% CI] over seeds, paired per-seed differences of
the reference row minus every other row, and planning time per decision.
"""
import json
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

EVAL_FILE = grid.EVAL_FILE


def run_grid(tasks: Sequence[str], variants: Sequence[str], seeds: int, out_dir: str,
             make_config: Callable, train_fn: str, jobs: int, report_only: bool = False) -> dict:
    """Runs (or reuses) every (task, seed, variant) in that order, `jobs` at a time;
    `make_config(task, variant, seed)` -> ConfigDict. Returns {task: {variant: {seed: dir}}}
    of the finished runs."""
    cells = [(t, v, s) for t in tasks for s in range(seeds) for v in variants]
    runs = [grid.Run(f"[{i + 1}/{len(cells)}] {t} {v} seed {s}", train_fn,
                     make_config(t, v, s).to_dict(), os.path.join(out_dir, t, v, f"seed_{s}"))
            for i, (t, v, s) in enumerate(cells)]
    finished = {r.workdir for r in grid.run_missing(runs, jobs, report_only, EVAL_FILE)}
    out = {}
    for (t, v, s), r in zip(cells, runs):
        if r.workdir in finished:
            out.setdefault(t, {}).setdefault(v, {})[s] = r.workdir
    return out


# Errors on held-out demonstrations that some agents report (LDP's `demo_errors`), as columns.
DEMO_ERRORS = {"demo_action_var": "action variance", "policy_action_mse": "policy action MSE",
               "idm_action_mse": "IDM action MSE", "plan_mse": "plan latent MSE",
               "still_mse": "standing-still latent MSE"}


def run_scores(workdir: str) -> dict:
    """One run's scores in % and minutes (and planning ms per decision, s per batch, and the
    DEMO_ERRORS it reports)."""
    with open(os.path.join(workdir, EVAL_FILE)) as f:
        e = json.load(f)
    out = {"success": 100.0 * e["success_rate"], "ever": 100.0 * e["ever_success_rate"],
           "minutes": e["seconds"] / 60.0}
    if "plan_seconds_per_decision" in e:
        out["plan_ms"] = 1000.0 * e["plan_seconds_per_decision"]
        out["plan_batch_s"] = e["plan_seconds_per_batch"]
    out.update({k: e[k] for k in DEMO_ERRORS if k in e})
    return out


def demo_error_table(variants: Mapping, names: Mapping) -> list:
    """Markdown lines: the mean over seeds of each DEMO_ERRORS key (- where a row has none);
    no lines if no run reports them."""
    keys = [k for k in DEMO_ERRORS if any(k in r for seeds in variants.values()
                                           for r in seeds.values())]
    if not keys:
        return []
    lines = ["", "Errors on the demonstrations whose actions no row trained on (mean over seeds; "
             "latents standardized, goal = the episode's last frame):", "",
             "| variant | " + " | ".join(DEMO_ERRORS[k] for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for v, seeds in variants.items():
        cells = [f"{np.mean([r[k] for r in seeds.values()]):.3f}"
                 if all(k in r for r in seeds.values()) else "-" for k in keys]
        lines.append(f"| {names.get(v, v)} | " + " | ".join(cells) + " |")
    return lines


def report(rows: Mapping, names: Mapping, reference: str, reps: int, goals: int) -> tuple:
    """rows {task: {variant: {seed: run_scores}}} -> (markdown body, aggregates)."""
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
            lines.append(f"| {names.get(v, v)} (n={len(seeds)}) | "
                         f"{run_stats.format_iqm(st['success'][v])} | "
                         f"{run_stats.format_iqm(st['ever'][v])} | {plan} | "
                         f"{st['minutes'][v]['iqm']:.1f} |")
        paired = {}
        if reference in variants:
            lines += ["", f"Paired per-seed success, {reference} - other (mean [95% CI] (seeds "
                      f"where {reference} is higher / seeds)):", ""]
            for v in variants:
                if v != reference:
                    paired[v] = run_stats.paired_of(variants[reference], variants[v], "success",
                                                    reps)
                    lines.append(f"- vs {names.get(v, v)}: "
                                 f"{run_stats.format_difference(paired[v])}")
        lines += demo_error_table(variants, names) + [""]
        results[task] = {"iqm": st, "paired": paired}
    return "\n".join(lines), results


def plot(rows: Mapping, results: Mapping, path: str) -> None:
    """Success IQM bars with 95% CIs and the seeds as dots, one panel per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.4), squeeze=False)
    for ax, (task, variants) in zip(axes[0], rows.items()):
        st = results[task]["iqm"]["success"]
        order = list(variants)
        mid = [st[v]["iqm"] for v in order]
        err = [[m - st[v]["ci_low"] for v, m in zip(order, mid)],
               [st[v]["ci_high"] - m for v, m in zip(order, mid)]]
        ax.bar(range(len(order)), mid, yerr=err, color=[f"C{i}" for i in range(len(order))],
               capsize=4)
        for i, v in enumerate(order):
            ax.scatter([i] * len(variants[v]), [r["success"] for r in variants[v].values()],
                       color="k", s=8, zorder=3)
        ax.set_xticks(range(len(order)), order, rotation=20, fontsize=8)
        ax.set(title=task, ylabel="success (%) IQM, 95% CI", ylim=(0, 100))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save(out_dir: str, title: str, rows: Mapping, runs: Mapping, names: Mapping,
         reference: str, reps: int, goals: int) -> None:
    """Writes (and prints) table.md, results.json and success.png of a finished grid."""
    body, results = report(rows, names, reference, reps, goals)
    bootstrap = "rliable" if run_stats.rliable_library() else "numpy bootstrap"
    text = f"# {title} [95% CI, {reps} resamples, {bootstrap}]\n\n{body}"
    print("\n" + text)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"runs": runs, "rows": rows, "aggregates": results}, f, indent=1)
    plot(rows, results, os.path.join(out_dir, "success.png"))
    print(f"saved {out_dir}/table.md, results.json, success.png")
