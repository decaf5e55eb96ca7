"""PNG plots of a run's metrics (matplotlib, Agg backend)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from jaxwm.runtime.logging import read_metrics  # noqa: E402

# Lines of one panel differ in marker, style and size (hollow markers shrinking with the line's
# index), so identical series stay visible as concentric markers.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
STYLES = ("-", "--", ":", "-.")


def _panel_keys(panel) -> tuple:
    return (panel,) if isinstance(panel, str) else tuple(panel)


def _group_prefix(keys: list) -> str:
    """Shared '<group>/' of a panel's keys ('' if none): the title, cut from the line labels."""
    prefix = os.path.commonprefix(keys) if len(keys) > 1 else ""
    return prefix[:prefix.rfind("/") + 1]


def metrics_figure(records: list, panels: tuple, title: str = "", xlabel: str = "env steps",
                   logy: bool = False, columns: int = 4):
    """The matplotlib Figure of `plot_metrics` (None if no panel has data). panels: metric keys
    (one panel each) or tuples of keys (one panel, one line per key found)."""
    panels = [[k for k in _panel_keys(p) if any(k in r for r in records)] for p in panels]
    panels = [p for p in panels if p]
    if not panels:
        return None
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, keys in zip(axes.flat, panels):
        prefix = _group_prefix(keys)
        values = []
        for i, key in enumerate(keys):
            points = [(r["step"], r[key]) for r in records if key in r]
            values += [v for _, v in points]
            ax.plot(*zip(*points), marker=MARKERS[i % len(MARKERS)],
                    linestyle=STYLES[i % len(STYLES)], markersize=max(7 - 1.5 * i, 2.5),
                    markerfacecolor="none", markevery=max(1, len(points) // 40),
                    linewidth=max(1.8 - 0.3 * i, 0.8), label=key[len(prefix):])
        ax.set_title(prefix + "*" if prefix else ", ".join(keys))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
        # Steps are ints (deployments, env steps): never a fractional tick.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if logy and all(v > 0 for v in values):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics(workdir: str, keys: tuple, path: str | None = None, title: str = "",
                 xlabel: str = "env steps", logy: bool = False, columns: int = 4) -> str | None:
    """One panel per entry of `keys` found in `workdir/metrics.jsonl` (a tuple entry: one panel
    with a line per key), `columns` panels per row, integer x ticks; returns the PNG path."""
    fig = metrics_figure(read_metrics(workdir), keys, title, xlabel, logy, columns)
    if fig is None:
        return None
    path = path or os.path.join(workdir, "plots", "metrics.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_eval_curves(scores: dict, path: str, names: dict | None = None, reps: int = 2000,
                     ylabel: str = "eval return", xlabel: str = "env steps") -> str:
    """Evaluation return (or `ylabel`) vs env steps (or `xlabel`), one panel per task: the IQM
    over seeds with its 95% bootstrap CI per method; rows without a curve (a random policy, an
    offline-only score) as dashed lines at their IQM.
    scores: {task: {method: {seed: `grid.run_scores` dict}}}."""
    from jaxwm.runtime.stats import iqm
    names = names or {}
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.6), squeeze=False)
    for ax, (task, rows) in zip(axes[0], scores.items()):
        for i, (m, seeds) in enumerate(rows.items()):
            label = names.get(m, m)
            if "curve" not in next(iter(seeds.values())):
                st = iqm({m: [v["final"] for v in seeds.values()]}, reps)[m]
                ax.axhline(st["iqm"], ls="--", color=f"C{i}", label=label)
                continue
            steps = sorted(set.intersection(*(set(v["curve"]) for v in seeds.values())))
            st = [iqm({m: [v["curve"][k] for v in seeds.values()]}, reps)[m] for k in steps]
            ax.plot(steps, [x["iqm"] for x in st], marker=MARKERS[i % len(MARKERS)], ms=3,
                    color=f"C{i}", label=label)
            ax.fill_between(steps, [x["ci_low"] for x in st], [x["ci_high"] for x in st],
                            color=f"C{i}", alpha=0.2)
        ax.set(title=task, xlabel=xlabel, ylabel=f"{ylabel} (IQM, 95% CI)")
        ax.grid(alpha=0.3)
    labels = [tuple(ax.get_legend_handles_labels()[1]) for ax in axes[0]]
    for ax, own in zip(axes[0], labels):   # once, unless the panels hold different methods
        if ax is axes[0][0] or own != labels[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
