"""Atomic checkpoints of arbitrary pytrees (train states, replay, PRNG keys) with orbax.

Layout: `<directory>/<step>/{state, metadata}`, where `state` is the pytree (orbax
StandardSave) and `metadata` a JSON dict of host-side values (env step counters, episode counts).
orbax writes each step into `<step>.orbax-checkpoint-tmp-<n>` and renames it only once complete, so a
process killed mid-save leaves a tmp dir that is never listed as a step (and is removed the next
time a Checkpointer opens the directory). Runs pass `directory=<workdir>/checkpoints`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from jaxwm.runtime.distributed import local_value
from jaxwm.runtime.workdir import UserError

_STATE, _METADATA = "state", "metadata"


def _restore_target(target: Any) -> Any:
    """Leaves of `target` as ShapeDtypeStructs carrying the shardings to restore onto.

    jax.Arrays (incl. typed PRNG keys) keep their sharding; ShapeDtypeStructs without one go to the
    first device; other leaves (numpy arrays, Python scalars) are passed through as they are.
    """
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def leaf(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)
        return x

    return jax.tree.map(leaf, target)


class Checkpointer:
    """Saves and restores `(step, pytree, metadata)`; keeps the newest `max_to_keep` steps."""

    def __init__(self, directory: str | epath.PathLike, max_to_keep: int | None = 3):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep} must be >= 1 or None (keep all).")
        self.directory = epath.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _METADATA)
        )

    def save(self, step: int, state: Any, metadata: dict | None = None, wait: bool = True,
             replace: bool = False) -> None:
        """Writes `state` (any pytree of arrays) and JSON-serialisable `metadata` as checkpoint `step`.

        With wait=False the write finishes in the background (device arrays are copied first, so
        `state` may be donated right after); call `wait()` or `close()` before exiting.
        replace: a checkpoint already saved at `step` (the latest) is replaced by this one.
        """
        latest = self.latest_step()
        if replace and latest == step:
            self._manager.delete(step)
            latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(f"step={step} must be greater than the latest saved step {latest}.")
        args = ocp.args.Composite(
            **{
                _STATE: ocp.args.StandardSave(state),
                _METADATA: ocp.args.JsonSave(dict(metadata or {})),
            }
        )
        self._manager.save(step, args=args, force=True)  # the caller decides when to save
        if wait:
            self.wait()

    def latest_step(self) -> int | None:
        """Newest complete step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All complete steps, ascending."""
        return sorted(self._manager.all_steps())

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """(pytree, metadata) of `step`, restored into `target`'s structure, dtypes and shardings.

        `target` holds jax.Arrays (e.g. freshly initialised states) or jax.ShapeDtypeStructs with the
        wanted `sharding` (e.g. `replay.abstract(...)`), so sharded states restore straight onto the mesh.
        """
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step={step} in {self.directory}; "
                f"available: {self.all_steps()}."
            )
        args = ocp.args.Composite(
            **{
                _STATE: ocp.args.StandardRestore(_restore_target(target)),
                _METADATA: ocp.args.JsonRestore(),
            }
        )
        restored = self._manager.restore(step, args=args)
        return restored[_STATE], dict(restored[_METADATA] or {})

    def restore_latest(self, target: Any) -> tuple[int, Any, dict] | None:
        """(step, pytree, metadata) of the newest checkpoint that restores, or None if there is
        none. A checkpoint that fails to restore (truncated or garbage files, an emptied step
        directory) is renamed `<step>.corrupt`, with a one-line warning naming it, and the next
        older one is tried; if every one fails, a UserError lists them."""
        failures = []
        for step in reversed(self.all_steps()):
            try:
                state, metadata = self.restore(step, target)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back
                reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}" if str(
                    e).strip() else type(e).__name__
                failures.append(f"step {step} ({reason})")
                continue
            for bad in failures:
                logging.warning("checkpoint %s in %s could not be restored; resuming from step %d "
                                "(the bad one is kept as <step>.corrupt)", bad, self.directory,
                                step)
            self._set_aside(len(failures))
            return step, state, metadata
        if failures:
            raise UserError(f"no checkpoint in {self.directory} restores: {'; '.join(failures)}; "
                            "delete that directory to start over, or choose a new --workdir")
        return None

    def _set_aside(self, count: int) -> None:
        """Rename the newest `count` steps to `<step>.corrupt` (never listed as steps again)."""
        for step in list(reversed(self.all_steps()))[:count]:
            path = self.directory / str(step)
            path.rename(self.directory / f"{step}.corrupt")
        if count:
            self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending background saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases orbax resources."""
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ProcessCheckpointer:
    """The `Checkpointer` interface for one process of a multi-process run (`jax.distributed`),
    where orbax saves only global arrays collectively: each process writes its own state (host
    copies of its replays and of the replicated learner state) as `<directory>/<step>/state.npz`
    + `metadata.json`, into a tmp dir renamed when complete. The caller makes every process save
    the same steps."""

    def __init__(self, directory: str, max_to_keep: int | None = 3):
        self.directory, self.max_to_keep = os.path.abspath(directory), max_to_keep
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.endswith(".tmp"):
                shutil.rmtree(os.path.join(self.directory, name))

    def all_steps(self) -> list[int]:
        return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, metadata: dict | None = None, wait: bool = True,
             replace: bool = False) -> None:
        del wait                      # always synchronous
        latest = self.latest_step()
        if replace and latest == step:
            shutil.rmtree(os.path.join(self.directory, str(step)))
            latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(f"step={step} must be greater than the latest saved step {latest}.")
        tmp = os.path.join(self.directory, f"{step}.tmp")
        os.makedirs(tmp)
        leaves = jax.tree_util.tree_leaves_with_path(state)
        np.savez(os.path.join(tmp, "state.npz"),
                 **{jax.tree_util.keystr(p): local_value(x) for p, x in leaves})
        with open(os.path.join(tmp, "metadata.json"), "w") as f:
            json.dump(dict(metadata or {}), f)
        os.rename(tmp, os.path.join(self.directory, str(step)))
        steps = self.all_steps()
        for old in steps[:-self.max_to_keep] if self.max_to_keep else []:
            shutil.rmtree(os.path.join(self.directory, str(old)))

    def restore_latest(self, target: Any, place: Callable = jax.device_put
                       ) -> tuple[int, Any, dict] | None:
        """(step, pytree shaped like `target` with every leaf `place`d, metadata) or None."""
        step = self.latest_step()
        if step is None:
            return None
        path = os.path.join(self.directory, str(step))
        with np.load(os.path.join(path, "state.npz")) as arrays:
            paths, treedef = jax.tree_util.tree_flatten_with_path(target)
            leaves = [place(arrays[jax.tree_util.keystr(p)]) for p, _ in paths]
        with open(os.path.join(path, "metadata.json")) as f:
            metadata = json.load(f)
        return step, jax.tree_util.tree_unflatten(treedef, leaves), metadata

    def close(self) -> None:
        pass

