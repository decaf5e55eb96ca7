"""PNG plots of a run's metrics (matplotlib, Agg backend)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxwm.runtime.logging import read_metrics  # noqa: E402


def plot_metrics(workdir: str, keys: tuple, path: str | None = None, title: str = "",
                 xlabel: str = "env steps", logy: bool = False) -> str | None:
    """One panel per metric in `keys` found in `workdir/metrics.jsonl`; returns the PNG path."""
    records = read_metrics(workdir)
    keys = [k for k in keys if any(k in r for r in records)]
    if not keys:
        return None
    path = path or os.path.join(workdir, "plots", "metrics.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if logy and all(v > 0 for _, v in points):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
