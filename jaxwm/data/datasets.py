"""Offline datasets: compressed `.npz` files of time-major replay rows plus JSON metadata.

A dataset holds N parallel streams of T rows in the replay convention (`jaxwm.data.replay`,
Dreamer style): row t of stream n is the observation o_t, the flags of o_t, the reward received on
arriving at o_t and the action a_t taken at o_t. Fields (float32 / bool):

  'vector' [T, N, D]   'action' [T, N, A] in [-1, 1]   'reward' [T, N]
  'is_first', 'is_last', 'is_terminal' [T, N]   (is_first[0] is all True)
  optional: 'image' uint8 [T, N, H, W, C]   (pixel observations, e.g. the goal-reaching tasks of
            `jaxwm.envs.goal_tasks`; when present it is validated, checksummed and kept by
            `concatenate`, `from_replay` and `to_replay` like the other fields)

Metadata (a JSON string stored as '__metadata__') records the format version, the env id and its
options, sizes, a CRC32 per field, the data sources and return statistics. `load` validates all of
it and raises `DatasetError` (a ValueError) that says what is wrong: a missing, truncated or corrupt
file, a missing field, a wrong shape, dtype, checksum or value, or a mismatch with the env the
caller trains on. Files are written atomically (tmp file + rename). FOWM (Feng et al. 2023) trains
offline on such data; `to_replay` turns it into a full device replay buffer for balanced sampling.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from jaxwm.data import replay

FORMAT = "jaxwm.offline/v1"
METADATA_KEY = "__metadata__"
FIELDS = {"vector": (np.float32, 3), "action": (np.float32, 3), "reward": (np.float32, 2),
          "is_first": (np.bool_, 2), "is_last": (np.bool_, 2), "is_terminal": (np.bool_, 2)}
OPTIONAL_FIELDS = {"image": (np.uint8, 5)}
ALL_FIELDS = {**FIELDS, **OPTIONAL_FIELDS}


class DatasetError(ValueError):
    """An offline dataset file is missing, corrupt, malformed or does not match the run."""


def _crc(x: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(x).tobytes()) & 0xFFFFFFFF


def present_fields(arrays: dict) -> list[str]:
    """The dataset fields of `arrays`: every required field and the optional ones it has."""
    return [k for k in ALL_FIELDS if k in FIELDS or k in arrays]


def validate(arrays: dict, where: str = "dataset") -> tuple[int, int]:
    """Checks fields, dtypes, ranks, shared [T, N], finiteness, action range and is_first[0].
    Returns (T, N); raises DatasetError naming the field."""
    missing = sorted(set(FIELDS) - set(arrays))
    extra = sorted(set(arrays) - set(ALL_FIELDS))
    if missing or extra:
        raise DatasetError(f"{where}: fields must be {sorted(FIELDS)} (optional: "
                           f"{sorted(OPTIONAL_FIELDS)}); missing {missing}, unexpected {extra}")
    t, n = np.shape(arrays["reward"])[:2] if np.ndim(arrays["reward"]) == 2 else (None, None)
    for name in present_fields(arrays):
        dtype, rank = ALL_FIELDS[name]
        x = arrays[name]
        if not isinstance(x, np.ndarray) or x.dtype != dtype or x.ndim != rank:
            got = (getattr(x, "dtype", type(x).__name__), np.ndim(x))
            layout = {2: "[T, N]", 3: "[T, N, ...]", 5: "[T, N, H, W, C]"}[rank]
            raise DatasetError(f"{where}: field {name!r} must be {np.dtype(dtype).name} of rank "
                               f"{rank} ({layout}); got {got}")
        if x.shape[:2] != (t, n):
            raise DatasetError(f"{where}: field {name!r} has leading shape {x.shape[:2]}; other "
                               f"fields have [T, N] = {(t, n)}")
    if t < 2 or n < 1:
        raise DatasetError(f"{where}: needs T >= 2 rows and N >= 1 streams; got T={t}, N={n}")
    for name in ("vector", "action", "reward"):
        if not np.isfinite(arrays[name]).all():
            raise DatasetError(f"{where}: field {name!r} has non-finite values")
    if np.abs(arrays["action"]).max() > 1.0 + 1e-6:
        raise DatasetError(f"{where}: field 'action' must lie in [-1, 1]; max |a| = "
                           f"{np.abs(arrays['action']).max():.3g}")
    if not arrays["is_first"][0].all():
        raise DatasetError(f"{where}: field 'is_first' must be True on row 0 of every stream")
    return int(t), int(n)


def episode_returns(arrays: dict) -> np.ndarray:
    """Returns of the episodes that end (is_last) inside the data: float64 [num_episodes]."""
    returns = []
    for n in range(arrays["reward"].shape[1]):
        total = None
        for t in range(arrays["reward"].shape[0]):
            if arrays["is_first"][t, n]:
                total = 0.0
            elif total is not None:
                total += float(arrays["reward"][t, n])
            if arrays["is_last"][t, n] and total is not None:
                returns.append(total)
                total = None
    return np.asarray(returns, np.float64)


def save(path: str, arrays: dict, metadata: dict) -> str:
    """Validates and writes `arrays` (see module docstring) with `metadata` (JSON-serialisable,
    e.g. {'env': ..., 'env_options': ..., 'sources': [...]}) to `path` (.npz); returns path."""
    t, n = validate(arrays, path)
    fields = present_fields(arrays)
    returns = episode_returns(arrays)
    meta = dict(metadata)
    meta.update(format=FORMAT, num_steps=t, num_streams=n,
                obs_size=int(arrays["vector"].shape[-1]),
                action_size=int(arrays["action"].shape[-1]),
                checksums={k: _crc(arrays[k]) for k in fields},
                episodes=int(len(returns)),
                return_mean=float(returns.mean()) if len(returns) else None,
                return_min=float(returns.min()) if len(returns) else None,
                return_max=float(returns.max()) if len(returns) else None)
    if "image" in arrays:
        meta["image_shape"] = list(arrays["image"].shape[2:])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: arrays[k] for k in fields},
                            **{METADATA_KEY: np.asarray(json.dumps(meta))})
    os.replace(tmp, path)
    return path


def load(path: str, *, env: str | None = None, obs_size: int | None = None,
         action_size: int | None = None, env_options: dict | None = None) -> tuple[dict, dict]:
    """(arrays, metadata) of a dataset written by `save`, fully validated.

    env / obs_size / action_size / env_options (e.g. {'action_repeat': 8}): when given, must equal
    the dataset's; otherwise a DatasetError names the mismatching field and both values.
    """
    if not os.path.exists(path):
        raise DatasetError(f"offline dataset {path!r} does not exist; generate one with "
                           f"experiments/make_dataset.py")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if METADATA_KEY not in names:
                raise DatasetError(f"{path}: no {METADATA_KEY!r} entry; not a jaxwm offline "
                                   f"dataset (write it with jaxwm.data.datasets.save)")
            meta = json.loads(str(data[METADATA_KEY]))
            arrays = {k: data[k] for k in names - {METADATA_KEY}}
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as err:
        raise DatasetError(f"{path}: corrupt or truncated .npz ({type(err).__name__}: {err}); "
                           f"regenerate it with experiments/make_dataset.py") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DatasetError(f"{path}: metadata format {got!r}; expected {FORMAT!r}")
    t, n = validate(arrays, path)
    for name, value in (("num_steps", t), ("num_streams", n),
                        ("obs_size", int(arrays["vector"].shape[-1])),
                        ("action_size", int(arrays["action"].shape[-1]))):
        if meta.get(name) != value:
            raise DatasetError(f"{path}: metadata {name}={meta.get(name)!r} but the arrays have "
                               f"{value}")
    for name, crc in meta.get("checksums", {}).items():
        if name in arrays and _crc(arrays[name]) != crc:
            raise DatasetError(f"{path}: checksum of field {name!r} does not match its metadata "
                               f"(corrupt file)")
    if set(meta.get("checksums", {})) != set(present_fields(arrays)):
        raise DatasetError(f"{path}: metadata checksums cover {sorted(meta.get('checksums', {}))}"
                           f" but the file has fields {sorted(present_fields(arrays))}")
    if "image" in arrays and meta.get("image_shape") != list(arrays["image"].shape[2:]):
        raise DatasetError(f"{path}: metadata image_shape={meta.get('image_shape')!r} but field "
                           f"'image' has {list(arrays['image'].shape[2:])}")
    expected = {"env": env, "obs_size": obs_size, "action_size": action_size}
    for name, value in expected.items():
        if value is not None and meta.get(name) != value:
            raise DatasetError(f"{path}: dataset {name}={meta.get(name)!r} does not match the "
                               f"run's {name}={value!r}")
    for name, value in (env_options or {}).items():
        have = (meta.get("env_options") or {}).get(name)
        if have != value:
            raise DatasetError(f"{path}: dataset env option {name}={have!r} does not match the "
                               f"run's {name}={value!r}")
    return arrays, meta


def concatenate(parts: list[dict]) -> dict:
    """Chains datasets along time (all with N streams); each part starts with is_first rows, so
    no sampled transition crosses from one part into the next."""
    if not parts:
        raise DatasetError("concatenate needs at least one part")
    streams = {p["reward"].shape[1] for p in parts}
    if len(streams) != 1:
        raise DatasetError(f"parts have different stream counts N {sorted(streams)}")
    fields = {tuple(present_fields(p)) for p in parts}
    if len(fields) != 1:
        raise DatasetError(f"parts have different fields {sorted(fields)}")
    out = {k: np.concatenate([p[k] for p in parts], 0) for k in fields.pop()}
    return out


def from_replay(state: replay.ReplayState) -> dict:
    """The rows of a replay buffer in chronological order [count, N, ...] (host numpy), with
    is_first forced on the first row (the oldest kept row may be mid-episode)."""
    host = replay.to_numpy(state)
    count, pos = host["count"], host["pos"]
    capacity = next(iter(host["data"].values())).shape[0]
    order = (np.arange(count) + (pos - count)) % capacity
    arrays = {k: np.asarray(v[order]) for k, v in host["data"].items() if k in ALL_FIELDS}
    arrays["is_first"] = arrays["is_first"].copy()
    arrays["is_first"][0] = True
    return arrays


def to_replay(arrays: dict, mesh=None) -> replay.ReplayState:
    """A full replay buffer (capacity T per stream) holding the dataset, for on-device sampling."""
    validate(arrays)
    t = arrays["reward"].shape[0]
    return replay.from_numpy({"data": {k: arrays[k] for k in present_fields(arrays)}, "pos": 0,
                              "count": t}, mesh)


def episode_ends(is_first: np.ndarray) -> np.ndarray:
    """int32 [T, N]: the last row of the episode that row t of stream n belongs to."""
    t = is_first.shape[0]
    ends = np.empty(is_first.shape, np.int32)
    ends[-1] = t - 1
    for i in range(t - 2, -1, -1):
        ends[i] = np.where(is_first[i + 1], i, ends[i + 1])
    return ends


def window_starts(is_first: np.ndarray, span: int) -> np.ndarray:
    """int32 [K, 2] (t, n) of every window of rows t..t+span inside one episode."""
    ends = episode_ends(is_first)
    t = np.arange(is_first.shape[0])[:, None]
    ok = t + span <= ends
    if not ok.any():
        raise DatasetError(f"no episode holds a window of {span + 1} rows; use longer episodes "
                           f"or a shorter window")
    return np.stack(np.nonzero(ok), -1).astype(np.int32)
