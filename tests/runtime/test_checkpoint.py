"""Checkpointer: round trip (sharded replay, PRNG keys, metadata), keep-last-N, partial saves ignored."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxwm.data import replay
from jaxwm.runtime import sharding as shd
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.workdir import UserError

SPEC = {"image": ((3, 3, 1), jnp.uint8), "reward": ((), jnp.float32)}


def make_state(mesh, seed=0):
    """{'replay', 'params', 'key', 'raw_key'} with a partly wrapped, sharded replay buffer."""
    state = replay.init(SPEC, 4, 8, mesh)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        state = replay.add(
            state,
            {
                "image": rng.integers(0, 255, (8, 3, 3, 1), dtype=np.uint8),
                "reward": rng.normal(size=8).astype(np.float32),
            },
        )
    params = shd.replicate({"w": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}, mesh)
    return {
        "replay": state,
        "params": params,
        "key": jax.random.key(seed),
        "raw_key": jax.random.PRNGKey(seed),
    }


def assert_trees_equal(a, b):
    a, b = (
        jax.tree.map(
            lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
            t,
        )
        for t in (a, b)
    )
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_round_trip_with_shardings_keys_and_metadata(tmp_path):
    mesh = shd.make_mesh()
    state = make_state(mesh)
    meta = {"env_steps": 48, "episodes": [1, 2], "rate": 0.5, "nested": {"name": "cascade"}}
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.latest_step() is None and ckpt.restore_latest(state) is None
        ckpt.save(7, state, meta)
    # A new process: restore into an abstract target (nothing allocated) carrying the shardings.
    target = {
        "replay": replay.abstract(SPEC, 4, 8, mesh),
        "params": state["params"],
        "key": jax.random.key(99),
        "raw_key": jax.random.PRNGKey(99),
    }
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        step, restored, restored_meta = ckpt.restore_latest(target)
    assert step == 7 and restored_meta == meta
    assert isinstance(restored["replay"], replay.ReplayState) and restored["replay"].mesh == mesh
    assert restored["replay"].data["image"].dtype == jnp.uint8
    assert restored["replay"].data["image"].sharding.spec == P(None, "data")
    assert restored["params"]["w"].sharding.is_fully_replicated
    assert jnp.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    assert_trees_equal(restored, state)
    # Restored replay and key continue exactly as the originals would.
    same = lambda s: replay.sample(s["replay"], s["key"], 16, 3)
    assert_trees_equal(same(restored), same(state))


def test_keeps_last_n_and_rejects_old_steps(tmp_path):
    state = {"x": jnp.arange(3), "key": jax.random.key(0)}
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        for step in (10, 20, 30, 40):
            ckpt.save(
                step,
                jax.tree.map(lambda v: v + step if v.dtype == jnp.int32 else v, state),
                {"step": step},
                wait=step != 40,
            )
        ckpt.wait()
        assert ckpt.all_steps() == [30, 40] and ckpt.latest_step() == 40
        with pytest.raises(
            ValueError, match="step=40 must be greater than the latest saved step 40"
        ):
            ckpt.save(40, state)
        restored, meta = ckpt.restore(30, state)
        np.testing.assert_array_equal(restored["x"], np.arange(3) + 30)
        assert meta == {"step": 30}
        with pytest.raises(FileNotFoundError, match="step=10"):
            ckpt.restore(10, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["30", "40"]


def test_partial_checkpoint_is_never_latest(tmp_path):
    state = {"x": jnp.ones(4), "key": jax.random.key(1)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, state, {"env_steps": 3})
    # A process killed mid-save leaves orbax's tmp dir (renamed only once the save is complete).
    partial = tmp_path / "9.orbax-checkpoint-tmp-1700000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\x00" * 8)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 3 and ckpt.all_steps() == [3]
        step, restored, meta = ckpt.restore_latest(state)
        assert step == 3 and meta == {"env_steps": 3}
        assert_trees_equal(restored, state)
        ckpt.save(4, state)  # resuming writes new steps next to it
        assert ckpt.all_steps() == [3, 4]
    assert not partial.exists()  # cleaned up when the directory is reopened


def test_invalid_max_to_keep(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep=0"):
        Checkpointer(tmp_path, max_to_keep=0)


def _corrupt(step_dir, how):
    """Damage a saved step as a crash or a full disk would."""
    files = sorted(p for p in step_dir.rglob("*") if p.is_file())
    if how == "truncate":        # every array file cut in half
        for p in files:
            if p.stat().st_size > 16 and "metadata" not in p.name:
                p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif how == "garbage":       # every file overwritten with bytes that parse as nothing
        for p in files:
            p.write_bytes(b"\x00garbage\xff" * 4)
    elif how == "emptied":       # the step directory left without its contents
        for p in sorted(step_dir.iterdir()):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


@pytest.mark.parametrize("how", ["truncate", "garbage", "emptied"])
def test_corrupt_latest_falls_back_to_newest_intact(tmp_path, how, caplog):
    mesh = shd.make_mesh()
    states = {step: make_state(mesh, seed=step) for step in (1, 2, 3)}
    with Checkpointer(tmp_path, max_to_keep=3) as ckpt:
        for step, state in states.items():
            ckpt.save(step, state, {"step": step})
    _corrupt(tmp_path / "3", how)
    with Checkpointer(tmp_path, max_to_keep=3) as ckpt:
        step, restored, meta = ckpt.restore_latest(states[1])
        assert (step, meta) == (2, {"step": 2})
        assert_trees_equal(restored, states[2])
        assert any("step 3" in r.getMessage() and "resuming from step 2" in r.getMessage()
                   for r in caplog.records)
        assert (tmp_path / "3.corrupt").is_dir() and ckpt.all_steps() == [1, 2]
        ckpt.save(3, states[3])                    # the run goes on and saves step 3 again
    with Checkpointer(tmp_path, max_to_keep=3) as ckpt:
        assert ckpt.restore_latest(states[1])[0] == 3


def test_no_intact_checkpoint_is_a_one_line_user_error(tmp_path):
    state = {"x": jnp.arange(3)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        ckpt.save(2, state)
    for step in ("1", "2"):
        _corrupt(tmp_path / step, "garbage")
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(UserError) as e:
            ckpt.restore_latest(state)
    assert "no checkpoint in" in str(e.value) and "step 2 (" in str(e.value)
    assert "step 1 (" in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]   # nothing renamed
