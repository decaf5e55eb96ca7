r"""CASCADE-TS on Binary Tree MDPs: rounds to accuracy eps for three deployment strategies.

Reproduces the ordering of Lemma 2 (Xu et al., NeurIPS 2022, App. D),
T(Sequential) <= T(CASCADE-TS) <= T(SinglePolicyBatch), over tree depths and population sizes B.
Writes `table.md`, `results.json` and `rounds.png` to --out_dir and lists every cell where the
ordering of the mean rounds fails.

  .venv/bin/python experiments/paper/cascade_ts.py --depths=3,4,5,6,7,8 --populations=2,4,8 \
      --mdps=4 --seeds=64
"""
import json
import os
import time

from absl import app
from absl import flags
import jax
import matplotlib
import numpy as np

from jaxwm.tabular import binary_tree
from jaxwm.tabular import strategies

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_DEPTHS = flags.DEFINE_list("depths", ["3", "4", "5", "6", "7", "8"], "Binary tree depths.")
_POPULATIONS = flags.DEFINE_list("populations", ["2", "4", "8"], "Policies per round B.")
_SEEDS = flags.DEFINE_integer("seeds", 64, "Agent seeds per MDP (runs per cell = mdps * seeds).")
_MDPS = flags.DEFINE_integer("mdps", 4, "Random Binary Tree MDPs per depth.")
_EPS = flags.DEFINE_float("eps", 0.1, "Target accuracy: max TV error of the posterior-mean model.")
_ALPHA0 = flags.DEFINE_float("alpha0", 0.1, "Beta(alpha0, alpha0) prior of every (s, a).")
_MAX_ROUNDS = flags.DEFINE_integer("max_rounds", 0, "Cap on rounds; 0: 20 n(eps) 2^depth.")
_SEED = flags.DEFINE_integer("seed", 0, "Master seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", "runs/paper/cascade_ts", "Output directory.")

NAMES = {"sequential": "Sequential", "cascade_ts": "CASCADE-TS",
         "single_policy_batch": "SinglePolicyBatch"}


def bootstrap_ci(x: np.ndarray, num_resamples: int = 2000, seed: int = 0):
    """95% percentile-bootstrap CI of the mean of f[R]."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (num_resamples, len(x)))].mean(-1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run_cell(key, depth, population, max_population):
    """Sweeps the three strategies on common random numbers; returns {strategy: stats}."""
    cell = {}
    for strategy in strategies.STRATEGIES:
        start = time.time()
        rounds, learned = jax.block_until_ready(strategies.sweep(
            key, population, strategy=strategy, depth=depth, num_mdps=_MDPS.value,
            num_seeds=_SEEDS.value, alpha0=_ALPHA0.value, eps=_EPS.value,
            max_rounds=_MAX_ROUNDS.value, max_population=max_population))
        rounds = np.asarray(rounds, np.float64).reshape(-1)
        low, high = bootstrap_ci(rounds)
        cell[strategy] = dict(mean=float(rounds.mean()), ci95=[low, high], std=float(rounds.std()),
                              min=int(rounds.min()), max=int(rounds.max()),
                              capped=int((~np.asarray(learned)).sum()),
                              seconds=time.time() - start, rounds=rounds.astype(int).tolist())
    return cell


def ordering_failures(cell):
    """The inequalities of T(Seq) <= T(CASCADE-TS) <= T(SPB) that the means violate."""
    failures = []
    for lower, upper in (("sequential", "cascade_ts"), ("cascade_ts", "single_policy_batch")):
        if cell[lower]["mean"] > cell[upper]["mean"]:
            significant = cell[lower]["ci95"][0] > cell[upper]["ci95"][1]
            failures.append(f"T({NAMES[lower]}) = {cell[lower]['mean']:.3f} > "
                            f"T({NAMES[upper]}) = {cell[upper]['mean']:.3f}"
                            f" ({'CIs disjoint' if significant else 'CIs overlap'})")
    return failures


def markdown_table(results, visits):
    fmt = lambda s: f"{s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
    lines = ["| depth | B | bound n(eps) 2^d / B | " + " | ".join(NAMES.values())
             + " | ordering holds | capped runs |", "|---" * 8 + "|"]
    for r in results:
        cell = r["strategies"]
        capped = sum(cell[s]["capped"] for s in strategies.STRATEGIES)
        lines.append(f"| {r['depth']} | {r['population']} | "
                     f"{visits * 2**r['depth'] / r['population']:g} | "
                     + " | ".join(fmt(cell[s]) for s in NAMES)
                     + f" | {'yes' if not r['failures'] else 'NO'} | {capped} |")
    return "\n".join(lines)


def plot(results, populations, path):
    fig, axes = plt.subplots(1, len(populations), figsize=(4.5 * len(populations), 3.8),
                             squeeze=False, sharey=True)
    for ax, population in zip(axes[0], populations):
        rows = [r for r in results if r["population"] == population]
        depths = np.array([r["depth"] for r in rows])
        for strategy, name in NAMES.items():
            stats = [r["strategies"][strategy] for r in rows]
            mean = np.array([s["mean"] for s in stats])
            ci = np.array([s["ci95"] for s in stats])
            ax.errorbar(depths, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], marker="o",
                        capsize=3, label=name)
        ax.plot(depths, [r["bound"] for r in rows], "k:", label="bound n(eps) 2^d / B")
        ax.set_yscale("log", base=2)
        ax.set_xticks(depths)
        ax.set_xlabel("tree depth d")
        ax.set_title(f"B = {population}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("rounds to accuracy eps (mean, 95% CI)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    depths = [int(d) for d in _DEPTHS.value]
    populations = [int(b) for b in _POPULATIONS.value]
    visits = binary_tree.visits_for_accuracy(_EPS.value, _ALPHA0.value)
    os.makedirs(_OUT_DIR.value, exist_ok=True)
    print(f"{_MDPS.value} MDPs x {_SEEDS.value} seeds per cell; eps={_EPS.value}, "
          f"alpha0={_ALPHA0.value}: n(eps)={visits} visits of every (s, a)", flush=True)
    start, results = time.time(), []
    for depth in depths:
        key = jax.random.fold_in(jax.random.key(_SEED.value), depth)  # shared by all B
        for population in populations:
            cell = run_cell(key, depth, population, max(populations))
            results.append(dict(depth=depth, population=population,
                                bound=visits * 2**depth / population, strategies=cell,
                                failures=ordering_failures(cell)))
            print(f"[{time.time() - start:6.1f}s] depth {depth} B {population}: "
                  + ", ".join(f"{NAMES[s]} {cell[s]['mean']:.2f}" for s in NAMES), flush=True)
    runtime = time.time() - start

    table = markdown_table(results, visits)
    failures = [f"depth {r['depth']}, B {r['population']}: {f}"
                for r in results for f in r["failures"]]
    capped = sum(r["strategies"][s]["capped"] for r in results for s in NAMES)
    summary = (f"Runs per cell: {_MDPS.value * _SEEDS.value} ({_MDPS.value} MDPs x {_SEEDS.value}"
               f" seeds); eps = {_EPS.value}, alpha0 = {_ALPHA0.value}, n(eps) = {visits}; "
               f"sweep time {runtime:.1f} s; capped runs: {capped}.\n\n"
               + ("Ordering T(Seq) <= T(CASCADE-TS) <= T(SPB) of the means fails in:\n"
                  + "\n".join(f"- {f}" for f in failures) if failures else
                  "The ordering T(Seq) <= T(CASCADE-TS) <= T(SPB) of the means holds in every "
                  "cell."))
    text = (f"# Rounds to accuracy eps on Binary Tree MDPs (mean [95% bootstrap CI])\n\n"
            f"{table}\n\n{summary}\n")
    print("\n" + text)
    with open(os.path.join(_OUT_DIR.value, "table.md"), "w") as f:
        f.write(text)
    config = dict(depths=depths, populations=populations, mdps=_MDPS.value, seeds=_SEEDS.value,
                  eps=_EPS.value, alpha0=_ALPHA0.value, visits_for_accuracy=visits,
                  max_rounds=_MAX_ROUNDS.value, seed=_SEED.value)
    with open(os.path.join(_OUT_DIR.value, "results.json"), "w") as f:
        json.dump(dict(config=config, runtime_seconds=runtime, ordering_failures=failures,
                       cells=results), f)
    plot(results, populations, os.path.join(_OUT_DIR.value, "rounds.png"))


if __name__ == "__main__":
    app.run(main)
