r"""JOWA (Cheng et al., ICLR 2025) at cpu scale on MinAtar: the multi-game pretrained agent vs
multi-task behavior cloning and the data-generating agent per game, planning on vs off, the
model-size sweep, the paper's ablations and few-shot transfer to the held-out game.

Rows are (variant, size) runs over seeds (`--rows`, default every one below):
  jowa@tiny, jowa@small, jowa@base   the size sweep (small is the main row)
  bc@small                           multi-task BC on the same data and trunk
  no_cql@tiny, no_wm@tiny, mse_td@tiny, detach_q@tiny       ablations
The ablations run at the tiny size to fit this machine (at small, 12 runs take ~6 CPU-hours);
any variant@size is accepted. Scores are normalized per game by the dataset's references:
0 = uniform random, 1 = the PPO agent that generated the data (its final snapshot). Reported:
per game and over games, IQM [95% CI] over seeds of the greedy-in-Q scores; paired per-seed
differences of each row from its reference (full JOWA at the row's size for BC and the
ablations, jowa@small for the other sizes). The main row jowa@small alone also acts by beam search (paired beam minus
greedy) and runs the few-shot stage (held-out game, finetuned vs trained from scratch on the
same transitions): beam search costs ~10x a run's greedy evaluation here. Writes table.md,
results.json and scores.png. `--archive` finishes the grid over several sessions.

  .venv/bin/python experiments/make_dataset.py --jowa_games=MinAtar-Breakout-v0,\
MinAtar-SpaceInvaders-v0,MinAtar-Freeway-v0,MinAtar-Asterix-v0
  .venv/bin/python experiments/paper/jowa.py --seeds=3 --out_dir=runs/paper/jowa \
      --archive=experiments/paper/results/runs/jowa
"""
import json
import os

from absl import app
from absl import flags

from jaxwm.agents.jowa import config as jowa_config
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

TRAIN_FN = "jaxwm.agents.jowa.train:train_and_evaluate"
ROWS = ("jowa@small", "bc@small", "jowa@tiny", "jowa@base", "no_cql@tiny", "no_wm@tiny",
        "mse_td@tiny", "detach_q@tiny")
MAIN = "jowa@small"
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("seeds", 3, "Seeds per row: 0 .. seeds - 1.")
    flags.DEFINE_list("rows", list(ROWS), "Rows variant@size among " + ", ".join(ROWS))
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(
        jowa_config.PRESETS))
    flags.DEFINE_string("data_dir", "datasets/jowa", "make_dataset.py --jowa_games output.")
    flags.DEFINE_string("out_dir", "runs/paper/jowa", "Output directory.")
    flags.DEFINE_integer("jobs", 2, "Runs in parallel.")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")
    grid.define_archive_flag("jowa")


def reference(row: str) -> str:
    """The row a row is compared with, paired by seed: an ablation or BC with full JOWA at its
    size; another size of JOWA with the main row."""
    variant, size = row.split("@")
    return MAIN if variant == "jowa" else f"jowa@{size}"


def run_config(row: str, seed: int):
    variant, size = row.split("@")
    c = jowa_config.get_config(FLAGS.preset)
    c.variant, c.model.size, c.seed, c.data_dir = variant, size, seed, FLAGS.data_dir
    # Planning on vs off and few-shot transfer are measured on the main row only: beam search
    # dominates a run's evaluation here.
    c.eval.beam = c.finetune.enabled = row == MAIN
    return c


def run_grid(rows, seeds: int, out_dir: str) -> dict:
    """Runs (or reuses) every (seed, row); returns {row: {seed: eval.json contents}}."""
    runs = {(row, seed): grid.Run(f"{row} seed {seed}", TRAIN_FN,
                                  run_config(row, seed).to_dict(),
                                  os.path.join(out_dir, row.replace("@", "_"), f"seed_{seed}"))
            for seed in range(seeds) for row in rows}
    finished = {r.workdir for r in grid.run_missing(list(runs.values()), FLAGS.jobs,
                                                    FLAGS.report_only)}
    out = {}
    for (row, seed), r in runs.items():
        if r.workdir in finished:
            with open(os.path.join(r.workdir, grid.EVAL_FILE)) as f:
                out.setdefault(row, {})[seed] = json.load(f)
    return out


def scores(results: dict) -> dict:
    """{row: {seed: {key: value}}} of the numbers the tables aggregate: '<game>/<mode>' and
    'mean/<mode>' normalized scores, 'fewshot/finetuned', 'fewshot/scratch' and raw returns."""
    out = {}
    for row, seeds in results.items():
        for seed, e in seeds.items():
            s = {}
            for game, entry in e["games"].items():
                for mode in ("greedy", "beam"):
                    if mode in entry:
                        s[f"{game}/{mode}"] = entry[f"{mode}_normalized"]
                        s[f"{game}/{mode}_return"] = entry[mode]
            for mode in ("greedy", "beam"):
                if f"{mode}_normalized_mean" in e:
                    s[f"mean/{mode}"] = e[f"{mode}_normalized_mean"]
            for k in ("finetuned", "scratch"):
                if "fewshot" in e:
                    s[f"fewshot/{k}"] = e["fewshot"][f"{k}_normalized"]
            out.setdefault(row, {})[seed] = s
    return out


def fmt(st: dict) -> str:
    return f"{st['iqm']:.2f} [{st['ci_low']:.2f}, {st['ci_high']:.2f}]"


def fmt_diff(d: dict) -> str:
    return (f"{d['mean']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] "
            f"({d['wins']}/{d['seeds']})")


def report(results: dict, reps: int) -> tuple:
    rows = scores(results)
    first = next(iter(results.values()))
    any_run = next(iter(first.values()))
    games = list(any_run["games"])
    lines, agg = [], {}
    # Per game: returns and normalized scores of the main row, BC and the data's references.
    lines += ["## Per game (normalized: 0 = random, 1 = the data-generating PPO agent)", "",
              "| game | random | PPO (data) | " + " | ".join(
                  f"{r} {m}" for r in rows for m in ("greedy", "beam")
                  if f"{games[0]}/{m}" in next(iter(rows[r].values()))) + " |"]
    lines.append("|" + "---|" * (lines[-1].count("|") - 1))
    for game in games:
        refs = any_run["games"][game]
        cells = []
        for r in rows:
            for m in ("greedy", "beam"):
                key = f"{game}/{m}"
                if key in next(iter(rows[r].values())):
                    cells.append(fmt(run_stats.iqm_of({r: rows[r]}, key, reps)[r]))
        lines.append(f"| {game} | {refs['random']:.2f} | {refs['agent']:.2f} | "
                     + " | ".join(cells) + " |")
    # Over games.
    lines += ["", "## Mean normalized score over the pretraining games, IQM over seeds", "",
              "| row (n) | greedy in Q | beam search | beam - greedy (paired) | few-shot "
              "finetuned | few-shot scratch | finetuned - scratch (paired) |",
              "|---|---|---|---|---|---|---|"]
    for r, seeds in rows.items():
        st = {k: run_stats.iqm_of({r: seeds}, k, reps)[r] for k in next(iter(seeds.values()))
              if k.startswith(("mean/", "fewshot/"))}
        beam_gain = "-"
        if "mean/beam" in st:
            beam_gain = fmt_diff(run_stats.paired_difference(
                {s: v["mean/beam"] for s, v in seeds.items()},
                {s: v["mean/greedy"] for s, v in seeds.items()}, reps))
        few, few_cells = None, "- | - | -"
        if "fewshot/finetuned" in st:
            few = run_stats.paired_difference(
                {s: v["fewshot/finetuned"] for s, v in seeds.items()},
                {s: v["fewshot/scratch"] for s, v in seeds.items()}, reps)
            few_cells = (f"{fmt(st['fewshot/finetuned'])} | {fmt(st['fewshot/scratch'])} | "
                         f"{fmt_diff(few)}")
        lines.append(f"| {r} ({len(seeds)}) | {fmt(st['mean/greedy'])} | "
                     f"{fmt(st['mean/beam']) if 'mean/beam' in st else '-'} | {beam_gain} | "
                     f"{few_cells} |")
        agg[r] = {"iqm": st, "fewshot_paired": few}
    pairs = [(reference(r), r) for r in rows if r != MAIN and reference(r) in rows]
    if pairs:
        lines += ["", "Paired per-seed difference of the mean greedy score, reference - row "
                  "(mean [95% CI] (seeds the reference is higher / seeds)):", ""]
        for ref, r in pairs:
            d = run_stats.paired_of(rows[ref], rows[r], "mean/greedy", reps)
            lines.append(f"- {ref} vs {r}: {fmt_diff(d)}")
            agg[r]["paired_vs_reference"] = {"reference": ref, **d}
    return "\n".join(lines) + "\n", agg, rows


def plot(rows: dict, agg: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(rows)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.4))
    for j, mode in enumerate(("greedy", "beam")):
        xs, mid, lo, hi = [], [], [], []
        for i, r in enumerate(names):
            st = agg[r]["iqm"].get(f"mean/{mode}")
            if st:
                xs.append(i + 0.2 * (2 * j - 1))
                mid.append(st["iqm"])
                lo.append(st["iqm"] - st["ci_low"])
                hi.append(st["ci_high"] - st["iqm"])
        ax.bar(xs, mid, width=0.4, yerr=[lo, hi], capsize=3, label=mode, color=f"C{j}")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="data-generating PPO")
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set(ylabel="normalized score, IQM [95% CI]", title="JOWA on MinAtar (cpu preset)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [r for r in FLAGS.rows if "@" not in r or r.split("@")[0] not in jowa_config.VARIANTS
           or r.split("@")[1] not in jowa_config.CPU_SIZES]
    if bad or FLAGS.seeds < 1 or FLAGS.preset not in jowa_config.PRESETS:
        raise app.UsageError(f"rows {bad} not variant@size (variants {jowa_config.VARIANTS}, "
                             f"sizes {sorted(jowa_config.CPU_SIZES)}); --seeds >= 1; --preset "
                             f"among {jowa_config.PRESETS}")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    results = grid.with_archive(FLAGS.archive, FLAGS.out_dir, lambda: run_grid(
        FLAGS.rows, FLAGS.seeds, FLAGS.out_dir))
    body, agg, rows = report(results, FLAGS.reps)
    grid_title = (f"JOWA on MinAtar, {FLAGS.preset} preset, IQM over {FLAGS.seeds} seeds "
                  f"[95% CI, {FLAGS.reps} resamples]")
    text = f"# {grid_title}\n\n{body}"
    print("\n" + text)
    with open(os.path.join(FLAGS.out_dir, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(FLAGS.out_dir, "results.json"), "w") as f:
        json.dump({"scores": rows, "aggregates": agg}, f, indent=1)
    plot(rows, agg, os.path.join(FLAGS.out_dir, "scores.png"))
    print(f"saved {FLAGS.out_dir}/table.md, results.json, scores.png")


if __name__ == "__main__":
    define_flags()
    app.run(main)
