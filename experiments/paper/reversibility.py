r"""Reversibility-aware RL (Grinsztajn et al., NeurIPS 2021) at the cpu preset, >= 5 seeds:

- Turf and Sokoban: PPO vs PPO + RAE (the preset's beta 0.7 and w 0.1): irreversible steps
  per episode (grass damaged; boxes pushed into a corner) over the whole training and over its
  last 10%, success (goal reached; level solved) and return over the last 10%, and psi's
  precision / recall at beta on uniform-random transitions, where the true irreversible steps
  are known.
- CartPole-v1: DQN vs DQN + RAC (psi and phi trained offline on random transitions): falls over
  training, episodes before the first fall, mean training return, greedy evaluation return and
  falls, and the fraction of random transitions psi calls irreversible.
- Turf, beyond the paper: DreamerV2 (cpu preset, 5k env steps) with and without RAE inside
  imagination (psi on the world model's latent features, `reversibility.penalty` 0.1): grass
  damaged per episode and goal reached over training, and the final evaluation.
Each comparison also gets the paired per-seed difference (RAE - PPO, RAC - DQN) with a 95%
bootstrap CI. Finished runs are reused and killed runs resume. Writes table.md, results.json and
curves.png (irreversible steps per episode and falls so far, IQM over seeds).

  .venv/bin/python experiments/paper/reversibility.py --seeds=5 --out_dir=runs/paper/reversibility
"""
import os

from absl import app
from absl import flags
import numpy as np

from jaxwm.agents.dreamer import config as dreamer_config
from jaxwm.agents.reversibility import config as rev_config
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

TRAIN_FNS = {"rae": "jaxwm.agents.reversibility.train:train_and_evaluate",
             "rac": "jaxwm.agents.reversibility.train:train_and_evaluate",
             "dreamer": "jaxwm.agents.dreamer.train:train_and_evaluate"}
# Dreamer on Turf (RAE inside imagination): its cpu preset with this budget
DREAMER_STEPS, DREAMER_EVAL_EVERY = 5_000, 1_000
# domain -> mode, shared field overrides, {method: its own overrides}
DOMAINS = {
    "turf": ("rae", {"rae.env": "Turf-v0"}, {"ppo": {"rae.penalty": 0.0}, "rae": {}}),
    "sokoban": ("rae", {"rae.env": "Sokoban-v0"},
                {"ppo": {"rae.penalty": 0.0}, "rae": {}}),
    "cartpole": ("rac", {}, {"dqn": {"rac.enabled": False}, "rac": {}}),
    "turf_dreamer": ("dreamer", {"env.name": "Turf-v0"},
                     {"dreamer": {}, "dreamer_rae": {"reversibility.penalty": 0.1}}),
}
TITLES = {"turf": "Turf (RAE)", "sokoban": "Sokoban (RAE)", "cartpole": "CartPole-v1 (RAC)",
          "turf_dreamer": "Turf, DreamerV2 +- RAE in imagination"}
NAMES = {"ppo": "PPO", "rae": "PPO + RAE", "dqn": "DQN", "rac": "DQN + RAC",
         "dreamer": "DreamerV2", "dreamer_rae": "DreamerV2 + RAE"}
FINAL_KEY = {"rae": "psi/eval_precision", "rac": "eval/return", "dreamer": "eval/return"}
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("domains", list(DOMAINS), "Domains; allowed: " + ", ".join(DOMAINS))
    flags.DEFINE_integer("seeds", 5, "Seeds per method: 0 .. seeds - 1.")
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(rev_config.PRESETS))
    flags.DEFINE_string("out_dir", "runs/paper/reversibility", "Output directory.")
    flags.DEFINE_integer("jobs", 1, "Runs in parallel processes.")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")


def build_config(domain: str, method: str, seed: int, preset: str = "cpu"):
    mode, shared, methods = DOMAINS[domain]
    if mode == "dreamer":
        c = dreamer_config.get_config(preset)
        c.env.overrides = {}
        r = c.run
        if preset != "smoke":
            r.steps, r.eval_every = DREAMER_STEPS, DREAMER_EVAL_EVERY
            r.checkpoint_every, r.log_every = DREAMER_STEPS // 2, DREAMER_EVAL_EVERY // 2
    else:
        c = rev_config.get_config(preset)
        c.mode = mode
    c.seed = seed
    for path, value in {**shared, **methods[method]}.items():
        block, name = path.split(".")
        c[block][name] = value
    return c


def last_step(c) -> int:
    if "run" in c:
        return c.run.steps
    if c.mode == "rae":
        return c.rae.iterations * c.rae.num_envs * c.rae.rollout
    return c.rac.steps


def run_grid(domains, seeds: int, preset: str, out_dir: str) -> dict:
    """Runs (or reuses) every (seed, domain, method), seed-major; returns
    {domain: {method: {seed: workdir}}}."""
    todo, runs = [], {}
    cells = [(s, d, m) for s in range(seeds) for d in domains for m in DOMAINS[d][2]]
    for i, (seed, domain, method) in enumerate(cells):
        c = build_config(domain, method, seed, preset)
        workdir = os.path.join(out_dir, domain, method, f"seed_{seed}")
        tag = f"[{i + 1}/{len(cells)}] {domain} {method} seed {seed}"
        mode = DOMAINS[domain][0]
        if grid.is_finished(workdir, last_step(c), FINAL_KEY[mode]):
            print(f"{tag}: finished run reused", flush=True)
        elif FLAGS.report_only:
            print(f"{tag}: not finished, left out", flush=True)
            continue
        else:
            todo.append(grid.Run(tag, TRAIN_FNS[mode], c.to_dict(), workdir))
        runs.setdefault(domain, {}).setdefault(method, {})[seed] = workdir
    grid.run_all(todo, FLAGS.jobs)
    return runs


def _last_tenth(rows: list) -> list:
    return rows[-max(1, len(rows) // 10):]


def _per_episode(rows: list, key: str, count: str) -> float:
    """Mean of `key` over the episodes of `rows` (records of `count` episodes each)."""
    return sum(r[key] * r[count] for r in rows) / max(sum(r[count] for r in rows), 1.0)


def rae_scores(workdir: str) -> dict:
    """Irreversible steps per episode over all training episodes and over the last 10% of the
    chunks, success and return over the last 10%, psi's scores on random transitions, and the
    irreversible-steps curve."""
    records = run_stats.read_records(workdir)
    chunks = [r for r in records if "episode/irreversible" in r]
    tail = _last_tenth(chunks)
    weighted = lambda rows, key: _per_episode(rows, key, "episodes")  # noqa: E731
    final = [r for r in records if "psi/eval_precision" in r][-1]
    return {"irreversible_all": weighted(chunks, "episode/irreversible"),
            "irreversible_last": weighted(tail, "episode/irreversible"),
            "success_last": weighted(tail, "episode/success"),
            "return_last": weighted(tail, "episode/return"),
            "precision": final["psi/eval_precision"], "recall": final["psi/eval_recall"],
            "curve": {r["step"]: r["episode/irreversible"] for r in chunks}}


def rac_scores(workdir: str) -> dict:
    """Falls, episodes before the first fall and mean return over training, greedy evaluation,
    psi's irreversible fraction on the random data, and the falls-so-far curve."""
    records = run_stats.read_records(workdir)
    train = [r for r in records if "train/falls" in r]
    final = [r for r in records if "eval/return" in r][-1]
    offline = [r for r in records if "offline/psi_irreversible_fraction" in r][-1]
    returns = [r["episode/return"] for r in train if "episode/return" in r]
    return {"falls": train[-1]["train/falls"], "episodes": train[-1]["train/episodes"],
            "before_first_fall": train[-1]["train/episodes_before_first_fall"],
            "train_return": float(np.mean(returns)), "eval_return": final["eval/return"],
            "eval_falls": final["eval/falls"],
            "flagged": offline["offline/psi_irreversible_fraction"],
            "curve": {r["step"]: r["train/falls"] for r in train}}


def dreamer_scores(workdir: str) -> dict:
    """Grass damaged per episode and success (Turf's return is 1 exactly at the goal) over all
    training episodes and over the last 10% of the logs, the final evaluation, and the
    grass-damaged curve."""
    records = run_stats.read_records(workdir)
    logs = [r for r in records if "episode/irreversible" in r]
    tail = _last_tenth(logs)
    weighted = lambda rows, key: _per_episode(rows, key, "episode/count")  # noqa: E731
    final = [r for r in records if "eval/return" in r][-1]
    return {"irreversible_all": weighted(logs, "episode/irreversible"),
            "irreversible_last": weighted(tail, "episode/irreversible"),
            "success_all": weighted(logs, "episode/return"),
            "eval_success": final["eval/return"], "eval_irreversible": final["eval/irreversible"],
            "curve": {r["step"]: r["episode/irreversible"] for r in logs}}


SCORES = {"rae": rae_scores, "rac": rac_scores, "dreamer": dreamer_scores}


def _rae_columns(irreversible: str, success: str) -> list:
    return [("irreversible_all", f"{irreversible} / episode (all training)"),
            ("irreversible_last", f"{irreversible} / episode (last 10%)"),
            ("success_last", f"{success} (last 10%)"), ("return_last", "return (last 10%)"),
            ("precision", "psi precision"), ("recall", "psi recall")]


COLUMNS = {
    "turf": _rae_columns("grass damaged", "goal reached"),
    "sokoban": _rae_columns("corner pushes", "levels solved"),
    "cartpole": [("falls", "falls in training"), ("episodes", "training episodes"),
                 ("before_first_fall", "episodes before the first fall"),
                 ("train_return", "mean training return"), ("eval_return", "greedy eval return"),
                 ("eval_falls", "greedy eval falls"), ("flagged", "random steps psi flags")],
    "turf_dreamer": [("irreversible_all", "grass damaged / episode (all training)"),
                     ("irreversible_last", "grass damaged / episode (last 10%)"),
                     ("success_all", "goal reached (all training)"),
                     ("eval_success", "goal reached (final evaluation)"),
                     ("eval_irreversible", "grass damaged (final evaluation)")],
}
PAIRS = {"turf": ("rae", "ppo"), "sokoban": ("rae", "ppo"), "cartpole": ("rac", "dqn"),
         "turf_dreamer": ("dreamer_rae", "dreamer")}
CURVES = {"turf": "Turf: grass damaged per episode", "sokoban": "Sokoban: corner pushes per "
          "episode", "cartpole": "CartPole: falls so far",
          "turf_dreamer": "Turf, Dreamer: grass damaged per episode"}


def _cell(st: dict, small: bool) -> str:
    if small:
        return f"{st['iqm']:.3f} [{st['ci_low']:.3f}, {st['ci_high']:.3f}]"
    return run_stats.format_iqm(st)


def report(scores: dict, reps: int, preset: str) -> tuple:
    text, results = [], {}
    for domain, rows in scores.items():
        columns = COLUMNS[domain]
        small = {k for k, _ in columns if max(abs(v[k]) for seeds in rows.values()
                                             for v in seeds.values()) <= 1.0}
        stats = {k: run_stats.iqm_of(rows, k, reps) for k, _ in columns}
        lines = [f"## {TITLES[domain]}, {preset} preset\n",
                 "| method | " + " | ".join(t for _, t in columns) + " |",
                 "|---" * (len(columns) + 1) + "|"]
        for m in rows:
            lines.append(f"| {NAMES[m]} (n={len(rows[m])}) | " + " | ".join(
                _cell(stats[k][m], k in small) for k, _ in columns) + " |")
        diffs = {}
        a, b = PAIRS[domain]
        if a in rows and b in rows:
            lines += ["", f"Paired per-seed {NAMES[a]} - {NAMES[b]} (mean [95% CI] (seeds "
                      f"where {NAMES[a]} is higher / seeds)):", ""]
            for k, title in columns:
                d = diffs[k] = run_stats.paired_of(rows[a], rows[b], k, reps)
                value = (f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                         f"({d['wins']}/{d['seeds']})" if k in small
                         else run_stats.format_difference(d))
                lines.append(f"- {title}: {value}")
        text.append("\n".join(lines))
        results[domain] = {"iqm": stats, "paired": diffs}
    return "\n\n".join(text) + "\n", results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [d for d in FLAGS.domains if d not in DOMAINS]
    if bad or not FLAGS.domains:
        raise app.UsageError(f"--domains: {bad or 'empty'} not allowed; allowed: {list(DOMAINS)}")
    if FLAGS.seeds < 1:
        raise app.UsageError(f"--seeds={FLAGS.seeds} must be >= 1")
    if FLAGS.preset not in rev_config.PRESETS:
        raise app.UsageError(f"--preset={FLAGS.preset!r}; allowed: {rev_config.PRESETS}")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = run_grid(FLAGS.domains, FLAGS.seeds, FLAGS.preset, FLAGS.out_dir)
    scores = {domain: {method: {s: SCORES[DOMAINS[domain][0]](w) for s, w in seeds.items()}
                       for method, seeds in methods.items()}
              for domain, methods in runs.items()}
    body, results = report(scores, FLAGS.reps, FLAGS.preset)
    grid.save_report(FLAGS.out_dir, f"Reversibility-aware RL, IQM over up to {FLAGS.seeds} seeds",
                     body, {"seeds": FLAGS.seeds, "preset": FLAGS.preset, "runs": runs,
                            "aggregates": results},
                     {CURVES[d]: rows for d, rows in scores.items()}, NAMES, FLAGS.reps,
                     ylabel="value")


if __name__ == "__main__":
    define_flags()
    app.run(main)
