"""Run outputs in a workdir: config.json, metrics.jsonl, TensorBoard events and a console bar.

Every binary logs through `RunLogger`; it also turns a non-finite loss into an error that names
the offending metrics instead of training on silently.
"""
import json
import math
import os
import platform
import time
from typing import Mapping

import jax
import ml_collections
from absl import logging as absl_logging
import numpy as np
import tqdm

try:  # tensorboardX is a hard dependency; the guard only keeps library imports light.
    from tensorboardX import SummaryWriter
except ImportError:  # pragma: no cover
    SummaryWriter = None


def quiet_libraries() -> None:
    """Keep the console for the progress bar: silence orbax/absl INFO chatter."""
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)


def write_json(path: str, value: Mapping) -> None:
    """Write `value` as JSON to `path` atomically (tmp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Write the resolved config as `workdir/config.json` (atomically); returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def to_python(metrics: Mapping) -> dict:
    """Device scalars/arrays -> floats (one host transfer for the whole dict)."""
    metrics = jax.device_get(dict(metrics))
    return {k: float(np.asarray(v)) for k, v in metrics.items() if np.size(v) == 1}


def check_finite(metrics: Mapping[str, float], step: int) -> None:
    """Raise FloatingPointError naming every non-finite metric (e.g. a NaN loss)."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise FloatingPointError(
            f"non-finite metrics at step {step}: {', '.join(f'{k}={metrics[k]}' for k in bad)}; "
            "lower the learning rate or check the inputs")


class RunLogger:
    """Appends metrics to `metrics.jsonl`, TensorBoard events, and a tqdm bar with ETA.

    total: the number of steps the bar counts (env steps, deployments, ...); `start` resumes it.
    keep_records: how many records the restored checkpoint covers (`records` at its save; 0 for
    a fresh run): later ones (logged before a kill, and about to be logged again) are dropped,
    so that no step is recorded twice (None: keep all). A partial last line (a kill mid-write)
    is always dropped, with a warning. A run logs a step's record before it saves that step's
    checkpoint with `records` in its metadata. Metrics whose name ends in `loss` are checked
    for NaN/inf.
    """

    def __init__(self, workdir: str, total: int | None = None, start: int = 0,
                 desc: str = "train", show_keys: tuple = (), enable_bar: bool = True,
                 keep_records: int | None = None):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.metrics_path = os.path.join(workdir, "metrics.jsonl")
        self.records = (_rewrite_records(self.metrics_path, keep_records)
                        if os.path.exists(self.metrics_path) else 0)
        self._file = open(self.metrics_path, "a")
        self._tb = SummaryWriter(os.path.join(workdir, "tb")) if SummaryWriter else None
        self._bar = tqdm.tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True,
                              disable=not enable_bar)
        self._show = show_keys
        self._last = start

    def log(self, step: int, metrics: Mapping, prefix: str = "") -> dict:
        """Record metrics at `step` (device values allowed); returns them as floats."""
        values = to_python(metrics)
        check_finite({k: v for k, v in values.items() if k.endswith("loss")}, step)
        values = {f"{prefix}{k}": v for k, v in values.items()}
        self._file.write(json.dumps({"step": int(step), **values}) + "\n")
        self._file.flush()
        self.records += 1
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, int(step))
        shown = {k: f"{v:.3g}" for k, v in values.items() if k in self._show}
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        return values

    def advance(self, step: int) -> None:
        """Move the progress bar to `step`."""
        self._bar.update(max(0, step - self._last))
        self._last = step

    def write(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        self._bar.write(message)

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _parse_records(path: str) -> tuple:
    """(records, whether a partial last line was skipped) of a metrics.jsonl; a bad line
    before the last one is an error naming it."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    records, partial = [], False
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not a JSON record") from None
            partial = True
    return records, partial


def _rewrite_records(path: str, keep_records: int | None) -> int:
    """Drop a partial last line and the records after the first `keep_records` (atomic
    rewrite); returns the number kept."""
    records, partial = _parse_records(path)
    kept = records if keep_records is None else records[:keep_records]
    if partial:
        absl_logging.warning("%s: dropped a partial last line (a run killed mid-write)", path)
    if partial or len(kept) < len(records):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, path)
    return len(kept)


def read_metrics(workdir: str) -> list:
    """All records of `workdir/metrics.jsonl` as dicts (a partial last line is skipped)."""
    return _parse_records(os.path.join(workdir, "metrics.jsonl"))[0]


def median_seconds(fn, repeats: int, warmup: bool = True) -> float:
    """Median wall seconds of `repeats` calls of `fn()` (results blocked on), after one
    untimed call when `warmup` (the compile)."""
    if warmup:
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def save_benchmark(out_dir: str, name: str, result: dict) -> str:
    """Write `<out_dir>/<name>.json`: the machine (backend, devices, CPU, cores, 1-min load)
    followed by `result`; prints and returns the path."""
    machine = {"backend": jax.default_backend(), "devices": jax.device_count(),
               "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({**machine, **result}, f, indent=2)
    print(f"saved {path}")
    return path
