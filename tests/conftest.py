"""Shared test set-up: 8 simulated CPU devices, a persistent compilation cache (one per
pytest-xdist worker), CPU rendering, and (outside `-m slow`) XLA's backend optimization level 0.

The default suite's time is XLA:CPU compilation of small programs, most of it in LLVM's passes:
level 0 skips them. Measured cold-cache on this 2-core machine: tests/behaviors/test_actor_critic.py
138 -> 94 CPU s, tests/agents/test_dreamer.py + tests/nn/test_conv.py 131 -> 71 CPU s, same
results. `make test-slow` (learning runs, bound by run time, not compile time) keeps the default.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "jax"))
if os.environ.get("PYTEST_XDIST_WORKER"):   # one cache per pytest-xdist worker: no shared writes
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ["JAX_COMPILATION_CACHE_DIR"], os.environ["PYTEST_XDIST_WORKER"])

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import pytest  # noqa: E402

FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    """Before any test initializes the backend: compile at level 0 unless slow tests are
    selected or XLA_FLAGS already sets a level."""
    flags = os.environ.get("XLA_FLAGS", "")
    runs_slow = "slow" in config.option.markexpr and "not slow" not in config.option.markexpr
    if not runs_slow and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAG}".strip()


@pytest.fixture(scope="session")
def fowm_smoke_dataset(tmp_path_factory) -> str:
    """Path of a small FOWM dataset of the smoke env: uniform-random rollouts, 2 streams x 24
    rows, saved in the `make_dataset.py` format."""
    from jaxwm.agents.fowm import config as fowm_config
    from jaxwm.agents.tdmpc import train as tdmpc_train
    from jaxwm.data import datasets
    config = fowm_config.get_config("smoke")
    env = tdmpc_train.make_env(config.env, seed=123)
    try:
        arrays = tdmpc_train.rollout(env, tdmpc_train.random_policy(env.act_space), None,
                                     jax.random.key(0), 24)
    finally:
        env.close()
    path = str(tmp_path_factory.mktemp("data") / "random.npz")
    return datasets.save(path, arrays, {"env": config.env.name, "kind": "random",
                                        "env_options": dict(config.env.overrides)})
