"""The multi-host learner (`jaxwm.runtime.distributed`): a world-model gradient step over 2 CPU
processes with 2 devices each equals the 1-process step over 4 devices on the same global batch
(loss and every gradient to 1e-5); a 2-process DayDreamer run trains one learner in lockstep;
config errors name the field."""
import json
import os
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from jaxwm.runtime import distributed

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "distributed_step.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(num_processes: int, devices: int, out: str) -> list:
    port = free_port()
    return [start(SCRIPT, str(i), str(num_processes), str(port), str(devices), out)
            for i in range(num_processes)]


def start(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, script, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def wait(procs) -> None:
    for p in procs:
        output, _ = p.communicate(timeout=600)
        assert p.returncode == 0, output.decode()[-3000:]


@pytest.mark.slow
def test_two_process_step_equals_the_single_process_step(tmp_path):
    one, two = str(tmp_path / "one.npz"), str(tmp_path / "two.npz")
    procs = launch(1, 4, one) + launch(2, 2, two)   # both at once: 3 processes
    wait(procs)
    a, b = np.load(one), np.load(two)
    assert int(a["devices"]) == int(b["devices"]) == 4
    assert set(a.files) == set(b.files) and len(a.files) > 10
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert np.abs(a["loss"]) > 0


@pytest.mark.slow
def test_two_process_runner_trains_one_learner(tmp_path):
    """Each process runs its own thread actor and replay; the learner state stays identical
    in both (same train calls, versions and parameters), and each process's transitions reach
    its replay once."""
    port, workdir = str(free_port()), str(tmp_path / "run")
    outs = [str(tmp_path / f"summary_{i}.json") for i in range(2)]
    procs = [start(os.path.join(HERE, "distributed_runner.py"), str(i), port, workdir, outs[i])
             for i in range(2)]
    wait(procs)
    a, b = (json.load(open(o)) for o in outs)
    assert a["devices"] == b["devices"] == 4
    assert a["train_calls"] == b["train_calls"] >= 2 and a["version"] == b["version"]
    assert a["param_checksum"] == pytest.approx(b["param_checksum"], rel=1e-6)
    for s in (a, b):   # the run goes on until every process has its 96 steps
        assert s["produced"] == s["inserted"] and s["env_steps"] >= 96
    assert sorted(os.listdir(workdir)) == ["process_0", "process_1"]


@pytest.mark.parametrize("fields,match", [
    (dict(num_processes=0), "distributed.num_processes"),
    (dict(num_processes=2, process_id=2), "distributed.process_id"),
    (dict(num_processes=2, coordinator="localhost"), "distributed.coordinator")])
def test_bad_config_names_the_field(fields, match):
    c = distributed.distributed_config()
    c.update(fields)
    with pytest.raises(ValueError, match=match):
        distributed.check_distributed_config(c)


def test_one_process_needs_no_coordinator():
    distributed.initialize(ml_collections.ConfigDict(distributed.distributed_config()))


def test_importing_the_binary_starts_no_backend():
    """`jax.distributed.initialize` must precede any backend use; the binary's imports (envs,
    agents, runtime) create no device array, so `train_and_evaluate` can still join."""
    code = ("from jax._src import xla_bridge as xb\n"
            "import experiments.daydreamer, jaxwm.agents.daydreamer.train\n"
            "assert not xb.backends_are_initialized()\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=ROOT))
