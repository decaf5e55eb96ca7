r"""CASCADE vs its baselines on reward-free deployments: the method x seed grid of one domain.

Xu et al., NeurIPS 2022 (ALGORITHMS.md Sec. 4). For every (method, seed) it runs (or resumes)
`jaxwm.agents.cascade.train.run` in `<out_dir>/<method>/seed_<s>`, then aggregates the runs'
`metrics.jsonl` with rliable: IQM over seeds with 95% stratified-bootstrap CIs per deployment, and
the probability of improvement of CASCADE over each baseline at the last deployment.

- minigrid (MiniGrid-FourRooms-v0): `coverage`, the cumulative number of distinct agent cells
  (and `deployment_coverage`, the cells of that deployment alone) -> coverage.png
- walker (dmc:walker_walk): zero-shot returns `zero_shot/{stand,walk,run,flip}` per task, their
  per-run mean over tasks, and all tasks pooled (rliable's aggregate IQM) -> zero_shot.png
- atari (Montezuma's Revenge; Freeway in the cpu preset), crafter (Craftax-Classic): zero-shot
  game score `zero_shot/extrinsic` -> zero_shot.png; crafter adds the Crafter score of the
  deployments' episodes per deployment.
The env is the one of `experiments/configs/cascade.py:<preset>_<domain>` unless --env is given.
Grid worlds add each method's member diversity at the last deployment (cells unique to a member,
Jensen-Shannon divergence between members' visitation, PopDiv's share of the explorers'
returns) and paired per-seed differences CASCADE - baseline with bootstrap CIs.

--sweep runs CASCADE over lambda (--lambdas) x running normalization (--normalize) x PopDiv
placement (--placements) instead, in `<out_dir>_sweep/lam<lambda>_norm<on|off>[_spread]/seed_<s>`,
and reports per cell the coverage IQM, the probability of improvement and the paired per-seed
difference over lambda = 0 (PP2E) with the same normalization, and PopDiv's share of the return.

Writes `table.md`, `results.json` and the figure to --out_dir.

  .venv/bin/python experiments/paper/cascade.py --domain=minigrid --preset=cpu --seeds=5 --jobs=2
  .venv/bin/python experiments/paper/cascade.py --sweep --seeds=5 --jobs=2
  .venv/bin/python experiments/paper/cascade.py --domain=walker --return_scale=1000

Finished runs are reused and killed ones resume from their checkpoints (--skip_existing, the
default); --noskip_existing deletes each run's workdir and reruns it.
"""
import functools
import importlib.util
import json
import multiprocessing
import os
import shutil
import time
from typing import Mapping, Sequence

from absl import app
from absl import flags
import matplotlib
import numpy as np
from rliable import metrics as rly_metrics

from jaxwm.runtime import stats as run_stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOMAINS = {  # domain -> kind of result (the env is the `<preset>_<domain>` config's)
    "minigrid": "coverage",
    "walker": "zero_shot",
    "atari": "zero_shot",
    "crafter": "zero_shot",
}
CRAFTER_SCORE = "crafter_score"     # of the deployments' own episodes (Crafter only)
METHODS = ("cascade", "pp2e", "p2e", "random")
NAMES = {"cascade": "CASCADE", "pp2e": "PP2E", "p2e": "P2E", "random": "Random"}
CASCADE = "cascade"
ZERO_SHOT = "zero_shot/"
DIVERSITY_KEYS = ("deployment_coverage", "member_unique_cells", "member_js",
                  "popdiv_return_share", "popdiv_advantage_share", "final_state_spread")
TASK_MEAN = "zero_shot/mean"       # per-record mean over the evaluated tasks
ALL_TASKS = "zero_shot/all_tasks"  # name of the pooled (runs x tasks) aggregate

FLAGS = flags.FLAGS


# --- reading runs ---------------------------------------------------------------------------

def last_deployment(config) -> int:
    """Index of the last deployment: deployments run 0 (random) .. D."""
    if "deploy" in config:
        return int(config.deploy.deployments)
    return int(config.deployments)


def is_finished(records: Sequence[Mapping], last: int) -> bool:
    """A run is finished when some record belongs to its last deployment."""
    return any("deployment" in r and round(r["deployment"]) == last for r in records)


def by_deployment(records: Sequence[Mapping], key: str) -> dict:
    """{deployment: value of `key`} from the records that carry both; a later record of the same
    deployment (e.g. after a resume) wins."""
    out = {}
    for r in records:
        if "deployment" in r and key in r and r[key] is not None:
            out[int(round(r["deployment"]))] = float(r[key])
    return out


def with_task_mean(records: Sequence[Mapping], tasks: Sequence[str],
                   name: str = TASK_MEAN) -> list:
    """Copies of `records`; those holding every key in `tasks` also get `name` = their mean."""
    out = []
    for r in records:
        r = dict(r)
        if tasks and all(t in r for t in tasks):
            r[name] = float(np.mean([r[t] for t in tasks]))
        out.append(r)
    return out


def task_keys(records_by_method_seed: Mapping, prefix: str = ZERO_SHOT) -> list:
    """Keys `<prefix><task>` present in every run, in order of first appearance."""
    runs = [records for seeds in records_by_method_seed.values() for records in seeds.values()]
    found = {}
    for records in runs:
        for r in records:
            for k in r:
                if k.startswith(prefix) and k not in (TASK_MEAN, ALL_TASKS):
                    found.setdefault(k, None)
    return [k for k in found if all(any(k in r for r in records) for records in runs)]


def scale_keys(records_by_method_seed: Mapping, keys: Sequence[str], scale: float) -> dict:
    """Copies of all runs with the values of `keys` divided by `scale`."""
    return {m: {s: [{k: (v / scale if k in keys else v) for k, v in r.items()} for r in recs]
                for s, recs in seeds.items()} for m, seeds in records_by_method_seed.items()}


# --- aggregation (pure) ---------------------------------------------------------------------

def _as_keys(key) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def common_deployments(records_by_method_seed: Mapping, key) -> list:
    """Deployments at which every run of every method has a value of every key in `key`."""
    keys, common = _as_keys(key), None
    for seeds in records_by_method_seed.values():
        for records in seeds.values():
            for k in keys:
                have = set(by_deployment(records, k))
                common = have if common is None else common & have
    return sorted(common or ())


def score_array(records_by_seed: Mapping, key, deployments: Sequence[int]) -> np.ndarray:
    """Scores [runs, tasks, deployments] of one method; runs in seed order, tasks = the keys."""
    keys = _as_keys(key)
    rows = []
    for seed in sorted(records_by_seed):
        tables = [by_deployment(records_by_seed[seed], k) for k in keys]
        rows.append([[table[d] for d in deployments] for table in tables])
    return np.asarray(rows, np.float64).reshape(len(rows), len(keys), len(deployments))


def aggregate(records_by_method_seed: Mapping, key, baseline: str = CASCADE, reps: int = 2000,
              seed: int = 0) -> dict:
    """IQM with 95% stratified-bootstrap CIs per method and deployment, and the probability of
    improvement of `baseline` (CASCADE) over every other method at the last deployment.

    records_by_method_seed: {method: {seed: [record, ...]}} with records as in metrics.jsonl
    (`deployment` plus metric values); key: one metric name, or a sequence of names pooled as
    rliable tasks (IQM over runs x tasks, bootstrap stratified by task, improvement averaged over
    tasks). Only deployments that every run has a value for are used. Returns
      {"key", "deployments": [d...],
       "methods": {method: {"runs": n, "iqm": [...], "ci_low": [...], "ci_high": [...]}},
       "improvement": {"deployment": d_last, "over": {other: {"probability": p,
                                                              "ci_low": lo, "ci_high": hi}}}}
    Raises ValueError if no deployment has the key in every run.
    """
    deployments = common_deployments(records_by_method_seed, key)
    if not deployments:
        raise ValueError(f"no deployment has {key!r} in every run of "
                         f"{sorted(records_by_method_seed)}")
    scores = {m: score_array(seeds, key, deployments)
              for m, seeds in records_by_method_seed.items()}

    def iqm_per_deployment(x):             # x [runs, tasks, deployments] -> [deployments]
        return np.array([rly_metrics.aggregate_iqm(x[..., i]) for i in range(x.shape[-1])])

    point, interval = run_stats.seeded(seed, lambda: run_stats.interval_estimates(
        scores, iqm_per_deployment, reps))
    result = {"key": key if isinstance(key, str) else list(key), "deployments": deployments,
              "methods": {m: {"runs": int(scores[m].shape[0]),
                              "iqm": [float(v) for v in point[m]],
                              "ci_low": [float(v) for v in interval[m][0]],
                              "ci_high": [float(v) for v in interval[m][1]]}
                          for m in scores}}
    others = [m for m in scores if m != baseline]
    if baseline not in scores or not others:
        return result
    last = {m: s[..., -1] for m, s in scores.items()}           # [runs, tasks]
    pairs = {m: [last[baseline], last[m]] for m in others}
    p_point, p_interval = run_stats.seeded(seed + 1, lambda: run_stats.interval_estimates(
        pairs, lambda x, y: np.array([rly_metrics.probability_of_improvement(x, y)]), reps))
    result["improvement"] = {
        "deployment": deployments[-1],
        "over": {m: {"probability": float(np.squeeze(p_point[m])),
                     "ci_low": float(np.squeeze(p_interval[m][0])),
                     "ci_high": float(np.squeeze(p_interval[m][1]))} for m in others}}
    return result


# --- outputs --------------------------------------------------------------------------------

def _digits(stats: Sequence[Mapping]) -> int:
    """Decimals for a table of these stats: 1 for counts like coverage, 3 for small scores."""
    values = [abs(v) for st in stats for k in ("iqm", "ci_low", "ci_high") for v in st[k]]
    return 1 if max(values, default=0.0) >= 10 else 3


def _cell(stats: Mapping, i: int, digits: int) -> str:
    return (f"{stats['iqm'][i]:.{digits}f} [{stats['ci_low'][i]:.{digits}f}, "
            f"{stats['ci_high'][i]:.{digits}f}]")


def _name(method: str) -> str:
    return NAMES.get(method, method)


def deployment_table(agg: Mapping, max_columns: int = 8) -> str:
    """Markdown: one row per method, one column per deployment (IQM [95% CI]). With more than
    `max_columns` deployments, the paper's 1, 5, 10, 15 and the last are shown."""
    deps = agg["deployments"]
    cols = list(range(len(deps)))
    if len(deps) > max_columns:
        cols = [i for i, d in enumerate(deps) if d in (1, 5, 10, 15) or i == len(deps) - 1]
    lines = ["| method | " + " | ".join(f"deployment {deps[i]}" for i in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    digits = _digits(agg["methods"].values())
    for m, stats in agg["methods"].items():
        lines.append(f"| {_name(m)} (n={stats['runs']}) | "
                     + " | ".join(_cell(stats, i, digits) for i in cols) + " |")
    return "\n".join(lines)


def task_table(aggs: Mapping, keys: Sequence[str]) -> str:
    """Markdown: one row per method, one column per key, at each key's last deployment."""
    header = [f"{k.removeprefix(ZERO_SHOT)} (d={aggs[k]['deployments'][-1]})" for k in keys]
    lines = ["| method | " + " | ".join(header) + " |", "|---" * (len(keys) + 1) + "|"]
    digits = _digits([st for k in keys for st in aggs[k]["methods"].values()])
    for m in aggs[keys[0]]["methods"]:
        lines.append(f"| {_name(m)} | " + " | ".join(
            _cell(aggs[k]["methods"][m], -1, digits) for k in keys) + " |")
    return "\n".join(lines)


def improvement_lines(agg: Mapping, what: str) -> str:
    imp = agg.get("improvement")
    if not imp:
        return f"(no probability of improvement: {CASCADE!r} and a baseline are both needed)"
    return "\n".join(
        f"- P({_name(CASCADE)} > {_name(m)}) in {what} at deployment {imp['deployment']}: "
        f"{p['probability']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]"
        for m, p in imp["over"].items())


def last_values(records_by_seed: Mapping, key: str) -> dict:
    """{seed: value of `key` at the run's last deployment that has it}."""
    out = {}
    for seed, records in records_by_seed.items():
        table = by_deployment(records, key)
        if table:
            out[seed] = table[max(table)]
    return out


def difference_lines(records: Mapping, key: str, ref: str, reps: int, what: str) -> str:
    """Markdown bullets: paired per-seed differences of every other method/cell minus `ref`."""
    lines = []
    for m in records:
        if m == ref:
            continue
        d = run_stats.paired_difference(last_values(records[m], key), last_values(records[ref], key),
                              reps)
        lines.append(f"- {_name(m)} - {_name(ref)} in {what}: {d['mean']:+.1f} "
                     f"[{d['ci_low']:+.1f}, {d['ci_high']:+.1f}], higher in {d['wins']} of "
                     f"{d['seeds']} seeds")
    return "\n".join(lines)


def diversity_table(records: Mapping) -> str:
    """Markdown: per method, the mean over seeds (min-max) of `DIVERSITY_KEYS` at the last
    deployment; '-' where a method does not log the key (e.g. one explorer)."""
    keys = [k for k in DIVERSITY_KEYS if any(last_values(seeds, k) for seeds in
                                             records.values())]
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for m, seeds in records.items():
        cells = []
        for k in keys:
            v = np.array(list(last_values(seeds, k).values()))
            digits = 2 if k.startswith(("member_js", "popdiv", "final_state")) else 1
            cells.append(f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f})"
                         if v.size else "-")
        lines.append(f"| {_name(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(aggs: Mapping, keys: Sequence[str], path: str, ylabel: str, title: str) -> None:
    """One panel per key: IQM across deployments per method with its 95% CI band."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        agg = aggs[key]
        for m, stats in agg["methods"].items():
            line, = ax.plot(agg["deployments"], stats["iqm"], marker="o", label=_name(m))
            ax.fill_between(agg["deployments"], stats["ci_low"], stats["ci_high"],
                            color=line.get_color(), alpha=0.2)
        ax.set_title(key.removeprefix(ZERO_SHOT))
        ax.set_xlabel("deployment")
        ax.set_xticks(agg["deployments"])
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the grid -------------------------------------------------------------------------------

def define_flags() -> None:
    """Flags of the binary (defined here, not at import, so tests can import the functions)."""
    flags.DEFINE_string("preset", "cpu", "Preset of experiments/configs/cascade.py.")
    flags.DEFINE_enum("domain", "minigrid", list(DOMAINS), "Domain of the grid.")
    flags.DEFINE_string("env", "", "Environment id overriding the domain's default.")
    flags.DEFINE_list("methods", list(METHODS), "Methods to run (config.method).")
    flags.DEFINE_integer("seeds", 3, "Seeds per method: 0 .. seeds - 1.")
    flags.DEFINE_string("out_dir", "", "Output directory; default runs/paper/cascade_<domain>.")
    flags.DEFINE_bool(
        "skip_existing", True, "Reuse finished runs (metrics.jsonl has a record of the last "
        "deployment); unfinished ones resume from their checkpoint. --noskip_existing deletes "
        "each run's workdir and reruns it from scratch.")
    flags.DEFINE_string(
        "eval_deployments", "all", "Walker: deployments after which to evaluate zero-shot "
        "(config.deploy.eval_deployments: 'all', 'last', or e.g. '1,5,10,15').")
    flags.DEFINE_float(
        "return_scale", 1.0, "Zero-shot returns are divided by this (1: raw; 1000 normalizes "
        "full-length DMC episodes as in the paper).")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_integer("jobs", 1, "Runs in parallel processes (2 on a 2-core CPU: 1.2x the "
                         "throughput of 1).")
    flags.DEFINE_bool("sweep", False, "Sweep CASCADE's lambda x normalization instead of the "
                      "method grid.")
    flags.DEFINE_list("lambdas", ["0", "0.1", "0.3", "0.5", "0.9"], "--sweep: lambda values "
                      "(cascade.diversity_scale); 0 is PP2E.")
    flags.DEFINE_list("normalize", ["off", "on"], "--sweep: cascade.normalize values.")
    flags.DEFINE_list("placements", ["final"], "--sweep: cascade.diversity_placement values "
                      "(final, spread); lambda 0 runs once, as 'final'.")


@functools.cache
def load_config_module():
    """experiments/configs/cascade.py, loaded by path (works from any working directory)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "cascade.py")
    spec = importlib.util.spec_from_file_location("cascade_deployment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_config(preset: str, domain: str, env: str, method: str, seed: int,
                 eval_deployments: str, cascade: Mapping | None = None):
    """The deployment config of one run: `get_config('<preset>_<domain>')` of
    experiments/configs/cascade.py with the method, seed, `cascade.*` overrides and (if not
    '') env set."""
    config = load_config_module().get_config(f"{preset}_{domain}")
    config.method, config.seed = method, seed
    config.cascade.update(dict(cascade or {}))
    if env:
        config.env.name = env
    if DOMAINS[domain] == "zero_shot" and eval_deployments:
        config.deploy.eval_deployments = eval_deployments
    return config


def sweep_cell(lam: float, normalize: bool, placement: str = "final") -> str:
    """Directory name of a sweep cell; PP2E (lambda 0) has no placement."""
    suffix = "" if placement == "final" or lam == 0 else f"_{placement}"
    return f"lam{lam:g}_norm{'on' if normalize else 'off'}{suffix}"


def _run_one(config_dict: dict, workdir: str) -> None:
    """One deployment run (a worker process of --jobs > 1 rebuilds the config here)."""
    import ml_collections
    from absl import logging as absl_logging
    from jaxwm.agents.cascade import train
    absl_logging.set_verbosity(absl_logging.WARNING)
    train.run(ml_collections.ConfigDict(config_dict), workdir, progress=False)


def run_grid(out_dir: str, env: str) -> dict:
    """Runs (or reuses) every (method or sweep cell, seed) on `env` ('' = the preset's), in
    --jobs processes; returns {method or cell: {seed: records}}."""
    if FLAGS.sweep:
        cells = {sweep_cell(float(lam), norm == "on", place): dict(
            diversity_scale=float(lam), normalize=norm == "on",
            diversity_placement=place if float(lam) else "final")
            for place in FLAGS.placements for norm in FLAGS.normalize for lam in FLAGS.lambdas}
        grid = [(cell, "cascade", overrides, s) for s in range(FLAGS.seeds)
                for cell, overrides in cells.items()]
    else:  # seed-major, so that a stopped grid still holds paired seeds
        grid = [(m, m, {}, s) for s in range(FLAGS.seeds) for m in FLAGS.methods]
    todo, last, start = [], {}, time.time()
    for i, (name, method, overrides, seed) in enumerate(grid):
        config = build_config(FLAGS.preset, FLAGS.domain, env, method, seed,
                              FLAGS.eval_deployments, overrides)
        workdir = os.path.join(out_dir, name, f"seed_{seed}")
        last[workdir] = last_deployment(config)
        tag = f"[{i + 1}/{len(grid)}] {name} seed {seed}"
        if FLAGS.skip_existing and is_finished(run_stats.read_records(workdir), last[workdir]):
            print(f"{tag}: finished run reused ({workdir})", flush=True)
            continue
        if not FLAGS.skip_existing and os.path.isdir(workdir):
            print(f"{tag}: removing {workdir} to rerun from scratch", flush=True)
            shutil.rmtree(workdir)
        todo.append((tag, config, workdir))
    if FLAGS.jobs > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")   # JAX is not fork-safe
        with context.Pool(FLAGS.jobs, maxtasksperchild=1) as pool:
            pending = [(tag, pool.apply_async(_run_one, (config.to_dict(), workdir)))
                       for tag, config, workdir in todo]
            for tag, result in pending:
                result.get()
                print(f"{tag}: done at {time.time() - start:.0f}s", flush=True)
    else:
        from jaxwm.agents.cascade import train    # heavy: only when a run is needed
        for tag, config, workdir in todo:
            print(f"{tag}: running in {workdir}", flush=True)
            train.run(config, workdir)
    records = {}
    for name, _, _, seed in grid:
        workdir = os.path.join(out_dir, name, f"seed_{seed}")
        records.setdefault(name, {})[seed] = run_stats.read_records(workdir)
        if not is_finished(records[name][seed], last[workdir]):
            raise RuntimeError(f"{workdir}/metrics.jsonl has no record of the last deployment "
                               f"{last[workdir]}")
    return records


def sweep_report(records: Mapping, reps: int) -> tuple:
    """Markdown table of a lambda x normalization sweep and its aggregates: per cell the
    cumulative and last-deployment coverage IQMs, PopDiv's share of the return, member
    diversity and the explorers' policy entropy (means over seeds), and against lambda = 0
    with the same normalization the probability of improvement and the paired per-seed
    difference in cumulative coverage."""
    lines = ["| lambda | normalize | PopDiv placement | cumulative cells | "
             "cells in last deployment | PopDiv share of return | member JS | explorer entropy | "
             "P(> lambda 0) | paired diff vs lambda 0 |", "|---" * 10 + "|"]
    aggs = {}
    for cell, seeds in records.items():
        lam, norm = cell.removeprefix("lam").split("_norm")
        norm, _, placement = norm.partition("_")
        ref = sweep_cell(0.0, norm == "on")
        pair = {cell: seeds, ref: records[ref]} if ref in records and ref != cell else \
            {cell: seeds}
        agg = aggs[cell] = aggregate(pair, "coverage", baseline=cell, reps=reps)
        within = aggregate({cell: seeds}, "deployment_coverage", reps=reps)
        means = {k: np.mean(list(last_values(seeds, k).values()) or [np.nan])
                 for k in ("popdiv_return_share", "member_js", "actor_entropy")}
        if len(pair) == 2:
            p = agg["improvement"]["over"][ref]
            d = run_stats.paired_difference(last_values(seeds, "coverage"),
                                  last_values(records[ref], "coverage"), reps)
            versus = (f"{p['probability']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}] | "
                      f"{d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] "
                      f"({d['wins']}/{d['seeds']})")
        else:
            versus = "- | -"
        lines.append(f"| {lam} | {norm} | {placement or 'final'} | "
                     f"{_cell(agg['methods'][cell], -1, 1)} | "
                     f"{_cell(within['methods'][cell], -1, 1)} | "
                     f"{means['popdiv_return_share']:.2f} | {means['member_js']:.2f} | "
                     f"{means['actor_entropy']:.2f} | {versus} |")
    return "\n".join(lines), aggs


def main(argv):
    del argv
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)   # keep orbax's INFO lines off the console
    unknown = [m for m in FLAGS.methods if m not in METHODS]
    if unknown or not FLAGS.methods:
        raise ValueError(f"--methods={','.join(FLAGS.methods)}: unknown {unknown}; allowed: "
                         f"{METHODS}")
    if FLAGS.seeds < 1:
        raise ValueError(f"--seeds={FLAGS.seeds} must be >= 1")
    placements = ("final", "spread")
    if not set(FLAGS.placements) <= set(placements) or not FLAGS.placements:
        raise ValueError(f"--placements={','.join(FLAGS.placements)}; allowed: {placements}")
    domain = FLAGS.domain
    kind = DOMAINS[domain]
    env = build_config(FLAGS.preset, domain, FLAGS.env, "cascade", 0, "").env.name
    out_dir = FLAGS.out_dir or os.path.join(
        "runs", "paper", f"cascade_{domain}" + ("_sweep" if FLAGS.sweep else ""))
    if FLAGS.sweep and kind != "coverage":
        raise ValueError(f"--sweep needs a coverage domain (minigrid), not --domain={domain}")
    os.makedirs(out_dir, exist_ok=True)
    records = run_grid(out_dir, env)
    reps = FLAGS.reps
    bootstrap = "rliable" if run_stats.rliable_library() else "numpy; rliable.library not importable"
    header = (f"# CASCADE on {env} ({FLAGS.preset} preset): IQM over {FLAGS.seeds} "
              f"seed{'s' if FLAGS.seeds != 1 else ''} "
              f"[95% stratified bootstrap CI, {reps} resamples, {bootstrap}]\n")
    if FLAGS.sweep:
        table, aggs = sweep_report(records, reps)
        text = (f"{header}\n## lambda x normalization sweep, at the last deployment\n\n"
                f"{table}\n\nP(> lambda 0) and the paired difference (mean [95% CI] (seeds "
                f"higher / seeds)) compare cumulative cells with lambda = 0 (PP2E) at the "
                f"same normalization.\n")
        figure = os.path.join(out_dir, "coverage.png")
        plot_curves({"coverage": aggregate(records, "coverage", reps=reps)}, ["coverage"],
                    figure, "distinct cells (IQM, 95% CI)", env)
    elif kind == "coverage":
        keys = ["coverage"] + (["deployment_coverage"] if common_deployments(
            records, "deployment_coverage") else [])
        aggs = {k: aggregate(records, k, reps=reps) for k in keys}
        text = (f"{header}\n## Cumulative distinct cells visited (coverage)\n\n"
                f"{deployment_table(aggs['coverage'])}\n\n")
        if "deployment_coverage" in aggs:
            text += (f"## Distinct cells visited within each deployment\n\n"
                     f"{deployment_table(aggs['deployment_coverage'])}\n\n")
        text += (f"## Probability of improvement\n\n"
                 f"{improvement_lines(aggs['coverage'], 'coverage')}\n\n"
                 "## Member diversity at the last deployment (mean over seeds, min-max)\n\n"
                 f"{diversity_table(records)}\n")
        if CASCADE in records:
            text += ("\n## Paired per-seed differences at the last deployment (mean [95% "
                     "bootstrap CI])\n\n"
                     + "\n".join(difference_lines({CASCADE: records[CASCADE], m: seeds},
                                                   k, m, reps, what)
                                  for m, seeds in records.items() if m != CASCADE
                                  for k, what in (("coverage", "cumulative cells"),
                                                  ("deployment_coverage",
                                                   "cells in the last deployment")))
                     + "\n")
        figure = os.path.join(out_dir, "coverage.png")
        plot_curves(aggs, keys, figure, "distinct cells (IQM, 95% CI)", env)
    else:
        tasks = task_keys(records)
        if not tasks:
            raise ValueError(f"no '{ZERO_SHOT}<task>' values in every run under {out_dir}: "
                             "was the zero-shot evaluation run (config.deploy.eval_deployments"
                             ")?")
        records = scale_keys(records, tasks, FLAGS.return_scale)
        records = {m: {s: with_task_mean(r, tasks) for s, r in seeds.items()}
                   for m, seeds in records.items()}
        aggs = {k: aggregate(records, k, reps=reps) for k in tasks + [TASK_MEAN]}
        aggs[ALL_TASKS] = aggregate(records, tasks, reps=reps)
        unit = ("raw returns" if FLAGS.return_scale == 1.0 else
                f"returns / {FLAGS.return_scale:g}")
        text = (f"{header}\nZero-shot {unit}; `mean` = per-run mean over the tasks, "
                f"`all_tasks` = IQM over runs x tasks (rliable's aggregate).\n\n"
                f"## Per task at the last evaluated deployment\n\n"
                f"{task_table(aggs, tasks + [TASK_MEAN, ALL_TASKS])}\n\n"
                f"## Mean over tasks per deployment\n\n{deployment_table(aggs[TASK_MEAN])}\n\n"
                f"## Probability of improvement\n\n"
                f"{improvement_lines(aggs[ALL_TASKS], 'the zero-shot tasks (averaged over tasks)')}"
                f"\n{improvement_lines(aggs[TASK_MEAN], 'the mean over tasks')}\n")
        text += ("\n## Member diversity at the last deployment (mean over seeds, min-max)\n\n"
                 f"{diversity_table(records)}\n")
        if CASCADE in records:
            text += ("\n## Paired per-seed differences at the last evaluation (mean [95% "
                     "bootstrap CI])\n\n"
                     + "\n".join(difference_lines({CASCADE: records[CASCADE], m: seeds},
                                                   k, m, reps, k.removeprefix(ZERO_SHOT))
                                  for m, seeds in records.items() if m != CASCADE
                                  for k in tasks + [TASK_MEAN])
                     + "\n")
        if common_deployments(records, CRAFTER_SCORE):
            aggs[CRAFTER_SCORE] = aggregate(records, CRAFTER_SCORE, reps=reps)
            text += (f"\n## Crafter score of the deployments' episodes\n\n"
                     f"{deployment_table(aggs[CRAFTER_SCORE])}\n")
        figure = os.path.join(out_dir, "zero_shot.png")
        plot_curves(aggs, tasks + [TASK_MEAN], figure, "zero-shot return (IQM, 95% CI)", env)
    print("\n" + text)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    runs = {m: {str(s): os.path.join(out_dir, m, f"seed_{s}") for s in seeds}
            for m, seeds in records.items()}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(dict(domain=domain, env=env, preset=FLAGS.preset, methods=list(records),
                       seeds=FLAGS.seeds, reps=reps, return_scale=FLAGS.return_scale,
                       bootstrap=bootstrap, runs=runs, aggregates=aggs), f, indent=1)
    print(f"saved {out_dir}/table.md, results.json, {os.path.basename(figure)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
