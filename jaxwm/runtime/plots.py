"""PNG plots of a run's metrics (matplotlib, Agg backend)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from jaxwm.runtime.logging import read_metrics  # noqa: E402


def plot_metrics(workdir: str, keys: tuple, path: str | None = None, title: str = "",
                 xlabel: str = "env steps", logy: bool = False, columns: int = 4) -> str | None:
    """One panel per metric in `keys` found in `workdir/metrics.jsonl`, `columns` panels per
    row (integer ticks when x counts deployments); returns the PNG path."""
    records = read_metrics(workdir)
    keys = [k for k in keys if any(k in r for r in records)]
    if not keys:
        return None
    path = path or os.path.join(workdir, "plots", "metrics.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cols = min(columns, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if xlabel == "deployment":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if logy and all(v > 0 for _, v in points):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
