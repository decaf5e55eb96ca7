"""Aggregates over seeds for paper tables (Agarwal et al., NeurIPS 2021, "Deep RL at the Edge of
the Statistical Precipice"): rliable's stratified-bootstrap interval estimates (with a numpy
fallback where rliable.library cannot be imported), IQMs of per-run scores and paired per-seed
differences, plus reading a run's metrics.jsonl.
"""
import functools
import os
from typing import Mapping

import numpy as np
from rliable import metrics as rly_metrics

from jaxwm.runtime.logging import read_metrics


def read_records(workdir: str) -> list:
    """Records of `workdir/metrics.jsonl` ([] if missing); a truncated last line (a run killed
    while writing) is skipped."""
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        return []
    return read_metrics(workdir)


def seeded(seed: int, fn):
    # rliable's StratifiedBootstrap draws from numpy's global RNG: seed it, then restore it.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return fn()
    finally:
        np.random.set_state(saved)


@functools.cache
def rliable_library():
    """rliable.library, or None where it cannot be imported: rliable 1.2 needs arch 7.x,
    whose import raises TypeError under pandas 3 (and arch 8 dropped `random_state`)."""
    try:
        from rliable import library
    except (ImportError, TypeError):
        return None
    return library


def resample(x: np.ndarray) -> np.ndarray:
    """One stratified resample of scores [runs, tasks, ...]: runs drawn with replacement
    independently in every (task, ...) cell, as rliable's StratifiedBootstrap does."""
    runs = np.random.randint(0, x.shape[0], x.shape)
    cells = np.ogrid[tuple(slice(n) for n in x.shape)][1:]
    return x[(runs, *cells)]


def numpy_interval_estimates(score_dict: Mapping, func, reps: int, size: float = 0.95):
    """`rliable.library.get_interval_estimates` (percentile method, stratified over tasks) in
    numpy: score_dict values are arrays [runs, tasks, ...] or lists of them (resampled
    independently, e.g. for the probability of improvement). Returns (point, interval) with
    interval [2, ...] = (low, high)."""
    point, interval = {}, {}
    for key, scores in score_dict.items():
        args = [scores] if isinstance(scores, np.ndarray) else list(scores)
        point[key] = func(*args)
        stats = np.stack([func(*map(resample, args)) for _ in range(reps)])
        tail = 100.0 * (1.0 - size) / 2.0
        interval[key] = np.percentile(stats, [tail, 100.0 - tail], axis=0)
    return point, interval


def interval_estimates(score_dict: Mapping, func, reps: int):
    """Point estimates and 95% stratified-bootstrap CIs: rliable's `get_interval_estimates`,
    or its numpy equivalent when rliable.library cannot be imported."""
    library = rliable_library()
    if library is None:
        return numpy_interval_estimates(score_dict, func, reps)
    return library.get_interval_estimates(score_dict, func, reps=reps)


def paired_difference(x: Mapping, y: Mapping, reps: int = 2000, seed: int = 0) -> dict:
    """Per-seed paired differences x[s] - y[s] over the seeds in both ({seed: value} each):
    their mean with a 95% percentile-bootstrap CI over seeds, and how many seeds x wins."""
    seeds = sorted(set(x) & set(y))
    if not seeds:
        raise ValueError("no seed in common")
    diff = np.array([x[s] - y[s] for s in seeds], np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (reps, len(diff)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "wins": int((diff > 0).sum()), "seeds": len(seeds)}


def iqm(scores: Mapping, reps: int = 2000, seed: int = 0) -> dict:
    """IQM over runs with a 95% bootstrap CI per method: {method: [score per run]} ->
    {method: {"runs", "iqm", "ci_low", "ci_high"}} (one task; rliable's estimator)."""
    arrays = {m: np.asarray(v, np.float64).reshape(-1, 1) for m, v in scores.items()}
    point, interval = seeded(seed, lambda: interval_estimates(
        arrays, rly_metrics.aggregate_iqm, reps))
    return {m: {"runs": len(arrays[m]), "iqm": float(np.squeeze(point[m])),
                "ci_low": float(np.squeeze(interval[m][0])),
                "ci_high": float(np.squeeze(interval[m][1]))} for m in arrays}


def iqm_of(rows: Mapping, key: str, reps: int = 2000) -> dict:
    """`iqm` of one score per run: rows {method: {seed: {key: value, ...}}}."""
    return iqm({m: [run[key] for run in seeds.values()] for m, seeds in rows.items()}, reps)


def paired_of(x: Mapping, y: Mapping, key: str, reps: int = 2000) -> dict:
    """`paired_difference` of one score per run: x, y {seed: {key: value, ...}}."""
    return paired_difference({s: run[key] for s, run in x.items()},
                             {s: run[key] for s, run in y.items()}, reps)


def format_iqm(st: Mapping) -> str:
    """'iqm [low, high]' of an `iqm` entry, one decimal."""
    return f"{st['iqm']:.1f} [{st['ci_low']:.1f}, {st['ci_high']:.1f}]"


def format_difference(d: Mapping) -> str:
    """'+mean [+low, +high] (wins/seeds)' of a `paired_difference`, one decimal."""
    return (f"{d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}] "
            f"({d['wins']}/{d['seeds']})")
