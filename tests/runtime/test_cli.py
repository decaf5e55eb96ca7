"""The experiment binaries as a user runs them (`experiments/world_model.py` through
`jaxwm.runtime.cli`): a smoke run writes its outputs and prints its summary; a bad config value in
an existing run directory fails naming the field and the allowed values, and leaves the run's
files untouched."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_binary(name, *args):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run(
        [sys.executable, os.path.join("experiments", f"{name}.py"),
         f"--config=experiments/configs/{name}.py:smoke", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def snapshot(workdir):
    """{relative path: bytes} of every file under workdir."""
    files = {}
    for root, _, names in os.walk(workdir):
        for n in names:
            path = os.path.join(root, n)
            with open(path, "rb") as f:
                files[os.path.relpath(path, workdir)] = f.read()
    return files


def test_world_model_binary_runs_and_a_bad_value_leaves_the_run_intact(tmp_path):
    workdir, cache = str(tmp_path / "wm"), tmp_path / "cache"
    done = run_binary("world_model", "--config.env.name=CartpoleBalance-v1",
                      f"--workdir={workdir}", f"--compilation_cache={cache}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(cache.iterdir())                      # compiled programs were persisted
    summary = done.stdout.strip().splitlines()[-1]
    assert "model_loss" in summary and "vector_loss" in summary
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["env"]["name"] == "CartpoleBalance-v1"
    # smoke: 200 env steps over 2 envs, checkpoints every 100 (2 kept)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["100", "200"]
    assert os.path.exists(os.path.join(workdir, "plots", "metrics.png"))
    # vector observations: the open-loop rollout is a PNG of truth vs model dimensions
    assert os.listdir(os.path.join(workdir, "videos")) == ["openloop_200.png"]
    before = snapshot(workdir)

    refusals = {  # user errors: exit 2, one line, no traceback, nothing on disk changed
        ("--config.model.latent=bernoulli",):
            "error: model.latent='bernoulli' is not one of ('discrete', 'gaussian')",
        ("--config.train.train_every=0",): "error: train.train_every=0: must be an integer >= 1",
        ("--config.seed=1",): "error: --workdir holds a run with another config (seed: 0 -> 1)",
        ("--config.model.no_such_field=1",): "error: unknown config field no_such_field",
    }
    for args, message in refusals.items():
        bad = run_binary("world_model", "--config.env.name=CartpoleBalance-v1", *args,
                         f"--workdir={workdir}")
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr[-500:]
        assert snapshot(workdir) == before


@pytest.mark.slow   # kept out of `make test` for time; `make test-slow` runs it
def test_make_dataset_takes_its_env_from_the_config(tmp_path):
    # The binary used to let its own --env default (CartpoleSwingup) win silently over the
    # config's env; the config's env must be what gets trained and written.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    done = subprocess.run(
        [sys.executable, os.path.join("experiments", "make_dataset.py"),
         "--config=experiments/configs/tdmpc.py:smoke", "--config.env.name=CartpoleBalance-v1",
         "--config.run.progress_bar=False", "--stages=24", "--data_stage=24",
         "--random_steps=8", "--kinds=random", f"--workdir={tmp_path / 'run'}",
         f"--out_dir={tmp_path / 'data'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["env"]["name"] == "CartpoleBalance-v1"
    from jaxwm.data import datasets
    _, meta = datasets.load(str(tmp_path / "data" / "random.npz"))
    assert meta["env"] == "CartpoleBalance-v1"


@pytest.fixture
def cpu_only(monkeypatch):
    """A process that has not started a backend, with no XLA_FLAGS and no accelerator."""
    from jaxwm.runtime import cli
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(cli, "accelerator_installed", lambda: False)
    monkeypatch.setattr(cli.xla_bridge, "backends_are_initialized", lambda: False)
    return cli


def test_cpu_optimization_level_goes_into_xla_flags_unless_set_or_off(cpu_only, monkeypatch):
    assert cpu_only.set_cpu_optimization_level(1)
    assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=1"
    # a level the user gave in XLA_FLAGS wins; their other flags are kept
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                       "--xla_backend_optimization_level=3")
    assert not cpu_only.set_cpu_optimization_level(1)
    assert os.environ["XLA_FLAGS"].endswith("level=3")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    assert not cpu_only.set_cpu_optimization_level(-1)            # -1: XLA's default
    assert cpu_only.set_cpu_optimization_level(1)
    assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                       "--xla_backend_optimization_level=1")


def test_cpu_optimization_level_leaves_accelerators_alone(cpu_only, monkeypatch):
    monkeypatch.setattr(cpu_only, "accelerator_installed", lambda: True)
    assert not cpu_only.set_cpu_optimization_level(1)
    assert "XLA_FLAGS" not in os.environ


def test_accelerator_installed_follows_jax_platforms(monkeypatch):
    from jaxwm.runtime import cli
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert cli.accelerator_installed()
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not cli.accelerator_installed()


def test_cpu_optimization_level_is_not_claimed_once_a_backend_runs(monkeypatch):
    import jax
    from jaxwm.runtime import cli
    jax.devices()   # XLA has read its flags: a level set now would do nothing
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(cli, "accelerator_installed", lambda: False)
    assert not cli.set_cpu_optimization_level(1)
    assert "XLA_FLAGS" not in os.environ
