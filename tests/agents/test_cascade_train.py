"""CASCADE's deployment loop: no updates while deploying, resume reproduces the next deployment
and logs it once, baselines resolve from one config, member diversity by hand, bad values
refused before any work, the official settings in every preset."""
import numpy as np
import pytest

from jaxwm.agents.cascade import train as deployments
from jaxwm.agents.cascade.config import get_config
from jaxwm.envs import registry
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
    # No discount head (model.pred_discount=False); PopDiv's share of the return is logged.
    assert "discount_loss" not in uninterrupted[-1] and "model_loss" in uninterrupted[-1]
    assert 0.0 < uninterrupted[-1]["popdiv_return_share"] < 1.0


def test_resume_after_kill_reproduces_next_deployment(uninterrupted, tmp_path):
    workdir = str(tmp_path / "resumed")
    deployments.run(smoke(2), workdir, progress=False, stop_after=1)  # "killed" after 1
    # As if killed after logging deployment 2 but before its checkpoint, mid-way through the
    # next line: the stale record and the partial line are dropped on resume.
    with open(f"{workdir}/metrics.jsonl", "a") as f:
        f.write('{"step": 2, "deployment": 2, "coverage": -1}\n{"step": 3, "deploy')
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


def test_achievement_stats_hand_worked():
    # Two episodes, achievements (a, b): a unlocked in one of them -> s_a = 50 %, s_b = 0 %;
    # Crafter score = exp((ln 51 + ln 1) / 2) - 1 = sqrt(51) - 1.
    stats = deployments.achievement_stats(np.array([[1.0, 0.0], [0.0, 0.0]]), ("a", "b"))
    assert stats["achievement/a"] == 50.0 and stats["achievement/b"] == 0.0
    np.testing.assert_allclose(stats["crafter_score"], np.sqrt(51) - 1, rtol=1e-12)


def test_domain_presets():
    cpu, cpu_minigrid = get_config("cpu").to_dict(), get_config("cpu_minigrid").to_dict()
    assert cpu.pop("preset") == "cpu" and cpu_minigrid.pop("preset") == "cpu_minigrid"
    assert cpu == cpu_minigrid
    for preset in ("smoke_walker", "cpu_walker", "paper_walker"):
        config = get_config(preset)
        assert config.env.name.startswith("dmc:walker_") and config.behavior.horizon == 5
    assert get_config("paper_walker").model.deter == 200           # DreamerV2 DMC sizes
    assert get_config("paper_crafter").deploy.steps_per_deployment == 50_000
    paper = get_config("paper_atari")
    assert (paper.cascade.population, paper.disag.members, paper.deploy.batch_size,
            paper.deploy.seq_len) == (10, 10, 16, 50)
    with pytest.raises(ValueError, match=r"preset='cpu_mujoco' is not one of .*cpu_walker"):
        get_config("cpu_mujoco")


@pytest.mark.parametrize("domain", [   # minigrid: the other tests of this file
    pytest.param("atari", marks=pytest.mark.slow),
    pytest.param("walker", marks=pytest.mark.slow),   # zero-shot walker: tests/runtime
    pytest.param("crafter", marks=[pytest.mark.slow, pytest.mark.skipif(
        not registry.craftax_available(), reason="Craftax needs envpool >= 1.2.7")])])
def test_smoke_domain_runs_end_to_end(domain, tmp_path):
    """One reward-free deployment after the random one, then zero-shot on the domain's tasks
    (walker and crafter in `make test-slow`: ~1 min each on 2 cores)."""
    config = get_config(f"smoke_{domain}")
    config.deploy.deployments = 1
    config.env.overrides.max_episode_steps = 5   # 16 steps per env slot: episodes end
    deployments.run(config, str(tmp_path), progress=False)
    records = read_metrics(str(tmp_path))
    assert [r["deployment"] for r in records] == [0, 1]
    tasks = {"walker": ("stand", "walk", "run", "flip")}.get(domain, ("extrinsic",))
    for task in tasks:
        assert np.isfinite(records[-1][f"zero_shot/{task}"]), task
    assert records[0]["episodes"] >= 4
    if domain == "crafter":
        assert 0.0 <= records[0]["crafter_score"] <= 100.0
        assert "achievement/collect_wood" in records[0]


@pytest.mark.slow   # ~45 s cold; the sharded replay and world model: tests/data, tests/models
def test_runs_on_a_4_device_mesh(tmp_path):
    """Replay split over the env slots of 4 (simulated) devices, batches over sequences."""
    config = smoke(1)
    config.deploy.num_devices = 4
    record = deployments.run(config, str(tmp_path), progress=False)
    for key in ("model_loss", "actor_loss", "info_gain", "pop_diversity"):
        assert np.isfinite(record[key]), key
    assert record["updates_during_deploy"] == 0
    config.deploy.num_devices, config.env.num_envs = 8, 4
    with pytest.raises(ValueError, match=r"env.num_envs=4 must be a multiple of "
                                         r"deploy.num_devices=8"):
        deployments.run(config, str(tmp_path / "bad"), progress=False)


@pytest.mark.slow
def test_cpu_population_outexplores_random_in_its_last_deployment(tmp_path):
    """~15 min on 2 cores (MiniGrid FourRooms, cpu preset, seeds 0-2). Cells visited within the
    last deployment, measured with experiments/paper/cascade.py: CASCADE (lambda 0.01) 95 / 204
    / 181 vs random 128 / 140 / 127 (mean 160 vs 132)."""
    cells = {"cascade": [], "random": []}
    for seed in (0, 1, 2):
        for method in cells:
            config = get_config("cpu")
            config.seed, config.method = seed, method
            record = deployments.run(config, str(tmp_path / f"{method}_{seed}"), progress=False)
            cells[method].append(record["deployment_coverage"])
    assert np.mean(cells["cascade"]) > np.mean(cells["random"]) + 20, cells


def test_member_diversity_on_a_hand_made_visitation_table():
    from collections import Counter
    a, b, c = (0, 0), (0, 1), (1, 1)
    stats = deployments.member_diversity([Counter({a: 2, b: 2}), Counter({b: 4})])
    # Unique cells: member 0 has a, member 1 none. JS(p = (1/2, 1/2), q = (0, 1)), m = (1/4, 3/4):
    # KL(p||m) = 1/2 log2 2 + 1/2 log2 (2/3) = 0.2075187, KL(q||m) = log2 (4/3) = 0.4150375,
    # JS = (0.2075187 + 0.4150375) / 2 = 0.3112781 bits.
    assert (stats["member_unique_cells/0"], stats["member_unique_cells/1"]) == (1, 0)
    assert stats["member_unique_cells"] == 0.5
    np.testing.assert_allclose(stats["member_js"], 0.3112781, rtol=1e-6)
    # Disjoint members: JS = 1 bit; identical members: 0; three members: the mean over pairs.
    disjoint = deployments.member_diversity([Counter({a: 1}), Counter({b: 3})])
    assert disjoint["member_js"] == 1.0 and disjoint["member_unique_cells"] == 1.0
    same = deployments.member_diversity([Counter({a: 1, c: 1}), Counter({a: 5, c: 5})])
    assert same["member_js"] == 0.0 and same["member_unique_cells"] == 0.0
    three = deployments.member_diversity([Counter({a: 1}), Counter({b: 1}), Counter({a: 1})])
    np.testing.assert_allclose(three["member_js"], (1.0 + 0.0 + 1.0) / 3)
    assert deployments.member_diversity([Counter({a: 1})]) == {}


def test_coverage_attributes_env_slots_to_members():
    # 4 env slots, 2 members: slots 0-1 follow member 0, slots 2-3 member 1.
    coverage = deployments.Coverage(2)
    coverage.start_deployment()
    coverage.observe({"agent_pos": np.array([[0, 0], [0, 1], [5, 5], [0, 1]])})
    coverage.observe({"agent_pos": np.array([[0, 0], [0, 2], [5, 6], [5, 5]])})
    m = coverage.metrics()
    assert (m["coverage"], m["member_coverage/0"], m["member_coverage/1"]) == (5, 3, 3)
    # member 0: {00, 01, 02}, member 1: {55, 01, 56} -> unique 2 and 2.
    assert (m["member_unique_cells/0"], m["member_unique_cells/1"]) == (2, 2)


@pytest.mark.parametrize("field, value", [
    ("deploy.policy_updates", 0), ("deploy.model_grad_steps", 0), ("deploy.batch_size", -1),
    ("cascade.population", 0), ("cascade.diversity_placement", "first")])
def test_bad_values_are_refused_before_any_work(field, value, tmp_path):
    config = smoke(1)
    block, name = field.split(".")
    config[block][name] = value
    with pytest.raises(ValueError, match=rf"{field}={value!r}"):
        deployments.run(config, str(tmp_path), progress=False)
    assert not list(tmp_path.iterdir())        # nothing written


def test_official_settings_in_every_domain():
    for size in ("smoke", "cpu", "paper"):
        for domain, eta in (("minigrid", 3e-3), ("walker", 1e-4), ("atari", 1e-3),
                            ("crafter", 3e-3)):
            c = get_config(f"{size}_{domain}")
            assert not (c.model.pred_discount or c.behavior.discount_head
                        or c.zero_shot.behavior.discount_head)
            assert (c.model.kl_scale, c.behavior.discount, c.behavior.actor_ent) == \
                (1.0, 0.99, eta)
            assert not c.cascade.normalize and c.cascade.diversity_placement == "final"
    paper = get_config("paper")
    model_steps = paper.deploy.model_ratio * paper.deploy.steps_per_deployment // 1000 + 1
    assert model_steps * paper.deploy.policy_updates == 25_001


@pytest.mark.skipif(not registry.jax_native.xminigrid_env.available(),
                    reason="needs xminigrid (pip install -e '.[jax-envs]')")
def test_on_device_deployment_equals_the_host_loop():
    """The compiled deployment (acting, env steps and replay inserts in one lax.scan, chunks
    of 10 steps) writes the same replay rows and statistics as the host loop over the same
    JAX-native env: random FourRooms layouts (the env key chain), autoresets, the policy's
    keys and a jittable task label ('reward/extrinsic') included."""
    import jax

    from jaxwm import envs
    from jaxwm.data import replay
    from jaxwm.envs.tasks import ExtrinsicTask

    config = smoke(1)
    config.env.name = "xminigrid:MiniGrid-FourRooms-v0"
    labeler = ExtrinsicTask()
    learner, state, results = None, None, []
    for on_device in (False, True):
        env = envs.make(config.env.name, 4, seed=7, **dict(config.env.overrides))
        if learner is None:
            learner = deployments.Learner(config, env.obs_space, env.act_space)
            state = jax.jit(learner.init)(jax.random.PRNGKey(0))
        replay_state = replay.init(replay.env_spec(env, ("reward/extrinsic",)), 40,
                                   env.num_envs)
        coverage = deployments.Coverage(learner.cascade_config.population)
        coverage.start_deployment()
        params = (state.wm.params, state.population.members.actor.params)
        if on_device:   # chunks of 10 steps: 3 calls of one compiled program
            replay_state, stats = deployments.deploy_on_device(
                learner, env, *params, replay_state, 30, jax.random.PRNGKey(1), True, coverage,
                labeler, chunk=10)
        else:
            replay_state, stats = deployments.deploy(
                learner, env, *params, replay_state, 30, jax.random.PRNGKey(1), True, coverage,
                labeler, on_device=False)
        results.append((jax.device_get(replay_state.data), stats, coverage.metrics()))
    (host_data, host_stats, host_cov), (dev_data, dev_stats, dev_cov) = results
    for k in host_data:
        np.testing.assert_array_equal(dev_data[k], host_data[k], err_msg=k)
    assert dev_stats == host_stats and host_stats["episodes"] >= 4   # 20-step episodes
    assert "reward/extrinsic" in dev_data
    assert dev_cov == host_cov
