"""Offline dataset I/O: round trip, validation errors that name the problem, replay conversion."""
import os

import jax
import numpy as np
import pytest

from jaxwm.data import datasets, replay


def make_arrays(t=12, n=2, d=3, a=2, seed=0):
    """Episodes of 5 rows (first + 4 transitions) per stream; reward 1 per transition."""
    rng = np.random.default_rng(seed)
    is_first = np.zeros((t, n), bool)
    is_first[::5] = True
    is_last = np.zeros((t, n), bool)
    is_last[4::5] = True
    reward = np.where(is_first, 0.0, 1.0).astype(np.float32)
    return {"vector": rng.standard_normal((t, n, d)).astype(np.float32),
            "action": rng.uniform(-1, 1, (t, n, a)).astype(np.float32),
            "reward": reward, "is_first": is_first, "is_last": is_last,
            "is_terminal": np.zeros((t, n), bool)}


META = {"env": "CartpoleBalance-v1", "env_options": {"action_repeat": 8}, "kind": "random"}


@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "data.npz")
    datasets.save(path, make_arrays(), META)
    return path


def test_round_trip_and_metadata(saved):
    arrays, meta = datasets.load(saved, env="CartpoleBalance-v1", obs_size=3, action_size=2,
                                 env_options={"action_repeat": 8})
    for k, v in make_arrays().items():
        np.testing.assert_array_equal(arrays[k], v)
        assert arrays[k].dtype == v.dtype
    # Two streams x rows 0-4 and 5-9 are complete episodes of 4 transitions: 4 returns of 4.
    assert meta["episodes"] == 4 and meta["return_mean"] == 4.0
    assert meta["num_steps"] == 12 and meta["num_streams"] == 2 and meta["kind"] == "random"
    assert meta["format"] == datasets.FORMAT and not any(
        f.endswith(".tmp") or ".tmp" in f for f in os.listdir(os.path.dirname(saved)))


def test_episode_returns_hand_worked():
    arrays = make_arrays(t=7, n=1)
    arrays["reward"][1:5, 0] = [1.0, 2.0, 3.0, 4.0]  # episode 0: 1 + 2 + 3 + 4 = 10
    np.testing.assert_array_equal(datasets.episode_returns(arrays), [10.0])  # rows 5-6 unfinished


def test_missing_file_names_the_generator(tmp_path):
    with pytest.raises(datasets.DatasetError, match="does not exist.*make_dataset.py"):
        datasets.load(str(tmp_path / "nope.npz"))


def test_truncated_file_is_reported_as_corrupt(saved):
    data = open(saved, "rb").read()
    with open(saved, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(datasets.DatasetError, match="corrupt or truncated"):
        datasets.load(saved)
    assert issubclass(datasets.DatasetError, ValueError)


def test_checksum_mismatch_is_reported(saved, tmp_path):
    with np.load(saved) as data:
        content = {k: data[k] for k in data.files}
    content["reward"] = content["reward"] + 1.0  # data changed, metadata kept
    path = str(tmp_path / "tampered.npz")
    np.savez_compressed(path, **content)
    with pytest.raises(datasets.DatasetError, match="checksum of field 'reward'"):
        datasets.load(path)


def test_foreign_npz_is_rejected(tmp_path):
    path = str(tmp_path / "foreign.npz")
    np.savez(path, observations=np.zeros((3, 2)))
    with pytest.raises(datasets.DatasetError, match="not a jaxwm offline dataset"):
        datasets.load(path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(env="WalkerWalk-v1"), "dataset env='CartpoleBalance-v1' does not match the run's "
                                "env='WalkerWalk-v1'"),
    (dict(action_size=6), "action_size=2 does not match the run's action_size=6"),
    (dict(env_options={"action_repeat": 2}), "env option action_repeat=8 does not match"),
])
def test_mismatch_with_the_run_names_the_field(saved, kwargs, match):
    with pytest.raises(datasets.DatasetError, match=match):
        datasets.load(saved, **kwargs)


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.pop("reward"), r"missing \['reward'\]"),
    (lambda a: a.update(action=a["action"] * 3), r"'action' must lie in \[-1, 1\]"),
    (lambda a: a["vector"].__setitem__((3, 0, 0), np.nan), "'vector' has non-finite"),
    (lambda a: a["is_first"].__setitem__((0, 1), False), "True on row 0"),
    (lambda a: a.update(reward=a["reward"].astype(np.float64)), "'reward' must be float32"),
    (lambda a: a.update(is_last=a["is_last"][:5]), r"'is_last' has leading shape \(5, 2\)"),
])
def test_invalid_arrays_are_rejected_on_save(tmp_path, edit, match):
    arrays = make_arrays()
    edit(arrays)
    with pytest.raises(datasets.DatasetError, match=match):
        datasets.save(str(tmp_path / "bad.npz"), arrays, META)
    assert not os.path.exists(tmp_path / "bad.npz")


def test_to_replay_samples_dataset_rows_and_from_replay_restores_order():
    arrays = make_arrays(t=10, n=2)
    arrays["vector"][..., 0] = np.arange(10)[:, None]  # row index as a feature
    state = datasets.to_replay(arrays)
    assert int(state.count) == 10 and state.capacity == 10
    batch = replay.sample(state, jax.random.key(0), 16, 4)
    np.testing.assert_array_equal(np.diff(np.asarray(batch["vector"][..., 0]), axis=0), 1)
    # A wrapped ring buffer comes back oldest-first, with is_first forced on the first row.
    ring = replay.init({k: (v.shape[2:], v.dtype) for k, v in arrays.items()}, 4, 2)
    add = jax.jit(replay.add, donate_argnums=0)
    for t in range(6):
        ring = add(ring, {k: v[t] for k, v in arrays.items()})
    rows = datasets.from_replay(ring)
    np.testing.assert_array_equal(rows["vector"][:, 0, 0], [2, 3, 4, 5])
    # Row 2 was mid-episode (is_first forced); row 5 starts an episode in the data itself.
    np.testing.assert_array_equal(rows["is_first"][:, 0], [True, False, False, True])
    datasets.validate(rows)


def test_concatenate_requires_equal_streams():
    joined = datasets.concatenate([make_arrays(t=5), make_arrays(t=7, seed=1)])
    assert joined["reward"].shape == (12, 2) and joined["is_first"][5].all()
    with pytest.raises(datasets.DatasetError, match="different stream counts"):
        datasets.concatenate([make_arrays(n=2), make_arrays(n=3)])


def with_image(arrays, seed=0):
    t, n = arrays["reward"].shape
    rng = np.random.default_rng(seed)
    return {**arrays, "image": rng.integers(0, 256, (t, n, 8, 8, 3), dtype=np.uint8)}


def test_optional_image_field_round_trips_with_its_checksum(tmp_path):
    arrays = with_image(make_arrays())
    path = datasets.save(str(tmp_path / "pixels.npz"), arrays, META)
    loaded, meta = datasets.load(path)
    assert set(loaded) == set(arrays) and loaded["image"].dtype == np.uint8
    np.testing.assert_array_equal(loaded["image"], arrays["image"])
    assert "image" in meta["checksums"] and meta["image_shape"] == [8, 8, 3]
    # Without the image nothing changes: no image entry, no image checksum.
    _, plain = datasets.load(datasets.save(str(tmp_path / "plain.npz"), make_arrays(), META))
    assert "image" not in plain["checksums"] and "image_shape" not in plain
    joined = datasets.concatenate([arrays, with_image(make_arrays(seed=1), seed=1)])
    assert joined["image"].shape == (24, 2, 8, 8, 3)
    state = datasets.to_replay(arrays)
    np.testing.assert_array_equal(datasets.from_replay(state)["image"][1:], arrays["image"][1:])
    with pytest.raises(datasets.DatasetError, match="different fields"):
        datasets.concatenate([arrays, make_arrays()])


@pytest.mark.parametrize("image,match", [
    (lambda a: a["image"].astype(np.float32), r"'image' must be uint8 of rank 5"),
    (lambda a: a["image"][..., 0], r"'image' must be uint8 of rank 5 \(\[T, N, H, W, C\]\)"),
    (lambda a: a["image"][:5], r"'image' has leading shape \(5, 2\)"),
])
def test_mis_shaped_image_field_is_rejected(tmp_path, image, match):
    arrays = with_image(make_arrays())
    arrays["image"] = image(arrays)
    with pytest.raises(datasets.DatasetError, match=match):
        datasets.save(str(tmp_path / "bad.npz"), arrays, META)


def test_corrupted_or_dropped_image_field_is_reported(tmp_path):
    path = datasets.save(str(tmp_path / "pixels.npz"), with_image(make_arrays()), META)
    with np.load(path) as data:
        content = {k: data[k] for k in data.files}
    tampered = {**content, "image": content["image"] ^ np.uint8(1)}
    np.savez_compressed(tmp_path / "tampered.npz", **tampered)
    with pytest.raises(datasets.DatasetError, match="checksum of field 'image'"):
        datasets.load(str(tmp_path / "tampered.npz"))
    dropped = {k: v for k, v in content.items() if k != "image"}
    np.savez_compressed(tmp_path / "dropped.npz", **dropped)
    with pytest.raises(datasets.DatasetError, match="checksums cover .*'image'"):
        datasets.load(str(tmp_path / "dropped.npz"))


def test_episode_ends_and_windows():
    # Stream 0: episodes rows 0-2 and 3-4; stream 1: one episode 0-4.
    is_first = np.zeros((5, 2), bool)
    is_first[0] = True
    is_first[3, 0] = True
    np.testing.assert_array_equal(datasets.episode_ends(is_first),
                                  [[2, 4], [2, 4], [2, 4], [4, 4], [4, 4]])
    # Windows of 3 rows (span 2): (0, 0) in stream 0; (0, 1), (1, 1), (2, 1) in stream 1.
    starts = datasets.window_starts(is_first, 2)
    assert sorted(map(tuple, starts)) == [(0, 0), (0, 1), (1, 1), (2, 1)]
    with pytest.raises(datasets.DatasetError, match="window of 6 rows"):
        datasets.window_starts(is_first, 5)
