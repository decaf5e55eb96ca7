"""Property-based fuzzing of the run contract (`jaxwm.runtime.workdir`, issue 11 item 7).

For every binary's smoke preset, 1-3 config leaves are overridden with values drawn by the
leaf's type (ints with 0, negatives and huge values; floats with 0, negatives, nan, inf and
values > 1; strings from the field's plausible values plus junk; booleans). Calling the binary's
train function must then either raise a `UserError` with a one-line message or get through
validation and building, which the test detects without training: the train module's
`check_saved_config` (the last step of its `with user_errors():` block) is wrapped to raise a
private sentinel once the real check passes, and `Checkpointer.__init__` raises it too as a
backstop. Any other exception is a bug. Each sample runs against a workdir holding a
finished-looking run of the unmodified preset (an override that changes the config must be
refused there) and against an empty workdir (where a valid override reaches the sentinel); the
files of both workdirs must be byte-identical afterwards. JAXWM_FUZZ_EXAMPLES=<n> samples n
overrides per binary instead of 25.
"""
import json
import math
import os
import tempfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from experiments.configs import (cascade, daydreamer, dreamer, fowm, plan2explore, planet,
                                 reversibility, tdmpc, world_model)
from jaxwm.agents.cascade import train as cascade_train
from jaxwm.agents.daydreamer import train as daydreamer_train
from jaxwm.agents.dreamer import train as dreamer_train
from jaxwm.agents.fowm import train as fowm_train
from jaxwm.agents.plan2explore import train as plan2explore_train
from jaxwm.agents.planet import train as planet_train
from jaxwm.agents.reversibility import train as reversibility_train
from jaxwm.agents.tdmpc import train as tdmpc_train
from jaxwm.runtime import checkpoint, online, world_model_training
from jaxwm.runtime.logging import save_config
from jaxwm.runtime.workdir import UserError

EXAMPLES = int(os.environ.get("JAXWM_FUZZ_EXAMPLES", "25"))   # samples per binary
# binary -> (config module, train module, name of its train function)
BINARIES = {
    "cascade": (cascade, cascade_train, "run"),
    "dreamer": (dreamer, dreamer_train, "train_and_evaluate"),
    "plan2explore": (plan2explore, plan2explore_train, "train_and_evaluate"),
    "world_model": (world_model, world_model_training, "train"),
    "tdmpc": (tdmpc, tdmpc_train, "train_and_evaluate"),
    "fowm": (fowm, fowm_train, "train_and_evaluate"),
    "planet": (planet, planet_train, "train_and_evaluate"),
    "reversibility": (reversibility, reversibility_train, "train_and_evaluate"),
    "daydreamer": (daydreamer, daydreamer_train, "train_and_evaluate"),
}

# Plausible values of string fields (by the last name of their dotted path), valid or not for
# a given binary; every string field also gets its current value and JUNK.
PLAUSIBLE = {
    "act": ("elu", "mish", "relu", "silu", "gelu", "tanh", "swish"),
    "actor_dist": ("auto", "onehot", "trunc_normal", "normal", "tanh_normal"),
    "actor_grad": ("auto", "reinforce", "dynamics", "mix"),
    "return_norm": ("none", "percentile", "ema"),
    "diversity_placement": ("final", "spread"),
    "eval_deployments": ("last", "all", "none", "1", "1,2", "0", "-1", "99", "1,,2", "first"),
    "method": ("cascade", "pp2e", "p2e", "random", "dreamer"),
    "backend": ("sync", "threads", "ray", "process"),
    "agent": ("dreamer", "tdmpc", "planet"),
    "conv_lowering": ("auto", "native", "phase", "space_to_depth"),
    "latent": ("discrete", "gaussian", "continuous"),
    "reward_head": ("normal", "twohot", "scalar"),
    "preset": ("smoke", "cpu", "paper", "paper_dmc"),
    "tasks": ("all", "walk", "stand,run", "walk,walk", "extrinsic", "fly"),
    "policy": ("learned", "random", "deterministic", "gaussian"),
    "head": ("scalar", "twohot"),
    "latent_norm": ("none", "simnorm", "sigmoid", "layer"),
    "policy_objective": ("max_q", "awr"),
    "value_learning": ("td", "iql"),
    "value_aggregation": ("min", "mean", "max"),
    "name": ("Pong-v5", "CartpoleBalance-v1", "CartpoleSwingup-v1", "WalkerWalk-v1",
             "MiniGrid-FourRooms-v0", "MiniGrid-Empty-5x5-v0", "dmc:walker_walk",
             "dmc:cartpole_swingup", "Craftax-Classic-Symbolic-v1", "dmc:", "Pong", "cartpole"),
    "obs": ("vector", "image", "both", "pixels"),
    "mode": ("rae", "rac", "ppo"),
    "env": ("Turf-v0", "Sokoban-v0", "CartPole-v1", "Acrobot-v1", "Pong-v5", "WalkerWalk-v1"),
}
JUNK = ("", " ", "junk", "None", "nan", "0", "-1", "ä∂ß", "x" * 300, "two\nlines", "a,b",
        "../../etc", "%s{}")
# dataset.path: the fixture's dataset is added per test; these are the bad ones
PATHS = ("missing.npz", "data.h5", "", "datasets/smoke.npz")

# ints: 0, negatives, small sizes and values too large for int32/int64
INTS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, -(2**31), 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**30]),
    st.integers(-10, 100),
    st.integers(-(2**70), 2**70))
# Counts of simulators built during validation (~0.1 s each): a large count below 2**31 is a
# valid request for that many envs (minutes and GBs), so only values past int32 stand for
# "large" here.
ENV_COUNTS = ("env.num_envs", "run.eval_episodes")
COUNTS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, -(2**31), 2**31, 2**63 - 1, 2**63, 10**30]),
    st.integers(-10, 16),
    st.integers(2**31, 2**70))
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, 0.5, 1.0, 1.5, 2.0, 1e-12, 1e300, -1e-3, math.nan,
                     math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True))


class PastValidation(Exception):
    """Raised where the train function would start writing: validation and building passed."""


def leaves(config) -> dict:
    """Dotted path -> value of every leaf of a config (nested dicts flattened)."""
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
    walk(config.to_dict(), "")
    return out


def set_leaf(config, path: str, value) -> None:
    """`config.<path> = value` (as --config.<path>=value would)."""
    *parents, name = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[name] = value


def value_strategy(path: str, current, dataset_path: str):
    """Values of the leaf's type: what a --config.<path>=... flag can set."""
    name = path.rsplit(".", 1)[-1]
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return COUNTS if path in ENV_COUNTS else INTS
    if isinstance(current, float):
        return FLOATS
    if isinstance(current, str):
        plausible = PATHS + (dataset_path,) if name == "path" else PLAUSIBLE.get(name, ())
        return st.sampled_from(sorted(set(plausible + JUNK + (current,))))
    raise AssertionError(f"no strategy for {path}={current!r}")


def smoke_config(binary: str, dataset_path: str):
    """The binary's smoke preset (FOWM's reads the fixture's dataset)."""
    config = BINARIES[binary][0].get_config("smoke")
    if binary == "fowm":
        config.dataset.path = dataset_path
    if binary == "world_model":   # 0 = all 8 simulated devices, which 2 envs do not divide
        config.num_devices = 1
    return config


def snapshot(directory: str) -> dict:
    """Relative path -> bytes of every file (None for directories) under `directory`."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), directory)] = None
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = fh.read()
    return out


def finished_run(workdir: str, config) -> None:
    """A workdir that looks like a completed run of `config`."""
    save_config(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for step in (20, 40):
            f.write(json.dumps({"step": step, "model_loss": 1.0 / step}) + "\n")
    os.makedirs(os.path.join(workdir, "checkpoints", "40"))
    with open(os.path.join(workdir, "checkpoints", "40", "dummy"), "wb") as f:
        f.write(bytes(range(256)))


@pytest.fixture
def dataset_path(fowm_smoke_dataset):
    return fowm_smoke_dataset


@pytest.fixture
def stop_before_writing(monkeypatch):
    """Makes each train module (and `online.prepare`, which Dreamer and P2E use) raise
    `PastValidation` once its `check_saved_config` passes (the end of its validate-and-build
    block), or at any `Checkpointer`. Returns a list that records the calls that got to
    `check_saved_config`."""
    reached = []
    callers = {m for _, m, _ in BINARIES.values() if hasattr(m, "check_saved_config")}
    for module in callers | {online}:
        real = module.check_saved_config

        def check_then_stop(*args, _real=real, **kwargs):
            reached.append(True)
            _real(*args, **kwargs)
            raise PastValidation

        monkeypatch.setattr(module, "check_saved_config", check_then_stop)

    def no_checkpointer(self, *args, **kwargs):
        raise PastValidation("Checkpointer created after check_saved_config")
    monkeypatch.setattr(checkpoint.Checkpointer, "__init__", no_checkpointer)
    return reached


def call(binary: str, config, workdir: str):
    """'user' (one-line UserError) or 'past' (reached the sentinel); anything else raises."""
    _, module, fn = BINARIES[binary]
    try:
        getattr(module, fn)(config, workdir)
    except UserError as e:
        message = str(e)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        return "user"
    except PastValidation:
        return "past"
    raise AssertionError(f"{binary} returned without reaching the sentinel")


@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_unmodified_preset_gets_past_validation(binary, dataset_path, stop_before_writing,
                                                tmp_path):
    """The harness: the smoke preset builds in an empty workdir and resumes a run of itself."""
    config = smoke_config(binary, dataset_path)
    assert call(binary, config, str(tmp_path / "new")) == "past"
    assert not os.path.exists(tmp_path / "new")
    finished_run(str(tmp_path / "old"), config)
    before = snapshot(str(tmp_path / "old"))
    assert call(binary, config, str(tmp_path / "old")) == "past"
    assert snapshot(str(tmp_path / "old")) == before


@pytest.mark.parametrize("binary", sorted(BINARIES))
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_overrides_are_user_errors_or_build(binary, dataset_path, stop_before_writing, data):
    base = smoke_config(binary, dataset_path)
    fields = leaves(base)
    paths = data.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3,
                               unique=True), label="fields")
    config = smoke_config(binary, dataset_path)
    for path in paths:
        value = data.draw(value_strategy(path, fields[path], dataset_path), label=path)
        set_leaf(config, path, value)
    with tempfile.TemporaryDirectory() as tmp:
        old, new = os.path.join(tmp, "old"), os.path.join(tmp, "new")
        finished_run(old, base)
        os.makedirs(new)
        before = snapshot(old)
        del stop_before_writing[:]
        call(binary, config, old)               # refused, or the same config: resumable
        built = bool(stop_before_writing)       # validation and building passed
        event("built" if built else "refused before building")   # --hypothesis-show-statistics
        assert snapshot(old) == before
        # an empty workdir: validation and building decide alone
        assert call(binary, config, new) == ("past" if built else "user")
        assert snapshot(new) == {}
