"""The reward-free deployment loop: no updates while deploying, resume reproduces the next
deployment, baselines resolve from one config."""
import numpy as np
import pytest

from jaxwm.agents.cascade.config import get_config
from jaxwm.runtime import deployments
from jaxwm.runtime.logging import read_metrics


def smoke(deployments_count: int, method: str = "cascade"):
    config = get_config("smoke")
    config.method = method
    config.deploy.deployments = deployments_count
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    deployments.run(smoke(2), workdir, progress=False)
    return read_metrics(workdir)


def test_no_parameter_update_while_deploying(uninterrupted):
    assert [r["deployment"] for r in uninterrupted] == [0, 1, 2]
    for record in uninterrupted:
        assert record["updates_during_deploy"] == 0
    assert uninterrupted[0]["updates_before_deploy"] == 0          # deployment 0 is random
    assert all(r["updates_before_deploy"] > 0 for r in uninterrupted[1:])
    assert uninterrupted[-1]["coverage"] >= uninterrupted[0]["coverage"] > 0


def test_resume_after_kill_reproduces_next_deployment(uninterrupted, tmp_path):
    workdir = str(tmp_path / "resumed")
    deployments.run(smoke(2), workdir, progress=False, stop_after=1)  # "killed" after 1
    deployments.run(smoke(2), workdir, progress=False)           # resumes at deployment 2
    resumed = read_metrics(workdir)
    assert [r["deployment"] for r in resumed] == [0, 1, 2]
    for key in ("coverage", "deployment_coverage", "model_loss", "actor_loss", "info_gain",
                "pop_diversity"):
        np.testing.assert_allclose(resumed[-1][key], uninterrupted[-1][key], rtol=1e-5,
                                   err_msg=key)


def test_methods_resolve_from_one_config():
    config = get_config("smoke")
    config.cascade.population, config.env.num_envs = 2, 4
    for method, size, lam in (("cascade", 2, 0.1), ("pp2e", 2, 0.0), ("p2e", 1, 0.0),
                              ("random", 1, 0.0)):
        config.method = method
        resolved = deployments.resolve_method(config)
        assert (resolved.population, resolved.diversity_scale) == (size, lam)
    config.method = "greedy"
    with pytest.raises(ValueError, match=r"method='greedy'.*cascade.*pp2e.*p2e.*random"):
        deployments.resolve_method(config)
    config.method, config.env.num_envs = "cascade", 3
    with pytest.raises(ValueError, match=r"env.num_envs=3 must be a multiple"):
        deployments.resolve_method(config)
    with pytest.raises(ValueError, match=r"eval_deployments='sometimes'"):
        deployments.eval_deployments("sometimes", 3)
    assert deployments.eval_deployments("1,3", 3) == {1, 3}
