"""experiments/paper/cascade.py: the rliable aggregation on small hand-made metrics.jsonl records
(exact IQMs, probabilities of improvement), run reuse, and the whole script on fake runs."""
import importlib.util
import json
import os

import numpy as np
import pytest
from absl import flags

from jaxwm.runtime import stats as run_stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "paper_cascade", os.path.join(ROOT, "experiments", "paper", "cascade.py"))
paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper)

REPS = 200


def run(values_by_deployment: dict, key: str = "coverage") -> list:
    """Records of one run as the deployment runtime logs them (floats, incl. 'deployment')."""
    return [{"step": float(d), "deployment": float(d), key: float(v), "model_loss": 1.0}
            for d, v in values_by_deployment.items()]


def grid(scores: dict, key: str = "coverage") -> dict:
    """{method: [[v_d0, v_d1, ...] per seed]} -> {method: {seed: records}}."""
    return {m: {s: run(dict(enumerate(vals)), key) for s, vals in enumerate(seeds)}
            for m, seeds in scores.items()}


def test_iqm_of_known_arrays_with_cis():
    # Deployment 0: all four seeds 5 -> IQM 5 and the CI collapses to [5, 5].
    # Deployment 1: seeds {1, 2, 3, 100}; the IQM (25% trimmed mean) drops one value at each
    # end: mean(2, 3) = 2.5 -- the outlier 100 does not move it.
    # Baseline with 8 seeds {1..8} at deployment 1: drop two at each end, mean(3, 4, 5, 6) = 4.5.
    records = grid({"cascade": [[5, 1], [5, 2], [5, 3], [5, 100]],
                    "p2e": [[5, v] for v in range(1, 9)]})
    agg = paper.aggregate(records, "coverage", reps=REPS)
    assert agg["deployments"] == [0, 1]
    cascade, p2e = agg["methods"]["cascade"], agg["methods"]["p2e"]
    assert cascade["runs"] == 4 and p2e["runs"] == 8
    np.testing.assert_allclose(cascade["iqm"], [5.0, 2.5])
    np.testing.assert_allclose(p2e["iqm"], [5.0, 4.5])
    np.testing.assert_allclose([cascade["ci_low"][0], cascade["ci_high"][0]], [5.0, 5.0])
    for stats in (cascade, p2e):
        assert stats["ci_low"][1] <= stats["iqm"][1] <= stats["ci_high"][1]
    # Every bootstrap IQM of 4 values from {1, 2, 3, 100} lies in [1, 100].
    assert 1.0 <= cascade["ci_low"][1] < cascade["ci_high"][1] <= 100.0
    # Same seed, same intervals; numpy's global RNG is left as it was.
    np.random.seed(3)
    expected_draw = np.random.rand()
    np.random.seed(3)
    assert paper.aggregate(records, "coverage", reps=REPS) == agg
    assert np.random.rand() == expected_draw


def test_probability_of_improvement_dominating_dominated_equal():
    # CASCADE beats every random run in every pairing: P = 1 (and so in every resample);
    # it loses every pairing to 'pp2e': P = 0; identical scores to 'p2e': P = 0.5 by definition.
    records = grid({"cascade": [[0, 10], [0, 11], [0, 12]],
                    "random": [[0, 1], [0, 2], [0, 3]],
                    "pp2e": [[0, 20], [0, 21], [0, 22]],
                    "p2e": [[0, 10], [0, 11], [0, 12]]})
    imp = paper.aggregate(records, "coverage", reps=REPS)["improvement"]
    assert imp["deployment"] == 1
    assert imp["over"]["random"] == {"probability": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert imp["over"]["pp2e"]["probability"] == 0.0
    assert imp["over"]["p2e"]["probability"] == 0.5
    assert "cascade" not in imp["over"]
    # Without CASCADE in the grid there is nothing to compare.
    assert "improvement" not in paper.aggregate({"p2e": records["p2e"]}, "coverage", reps=REPS)


def test_pooled_tasks_and_task_mean():
    # Two runs x two tasks at deployment 1: pooled values {1, 2, 3, 100} -> IQM 2.5.
    # Per-run mean over tasks: run 0 (1 + 3) / 2 = 2, run 1 (2 + 100) / 2 = 51 -> IQM of two
    # values trims nothing (int(0.25 * 2) = 0): (2 + 51) / 2 = 26.5.
    tasks = ["zero_shot/stand", "zero_shot/walk"]
    recs = {"cascade": {
        0: [{"deployment": 0.0, "coverage": 1.0},
            {"deployment": 1.0, "zero_shot/stand": 1.0, "zero_shot/walk": 3.0}],
        1: [{"deployment": 1.0, "zero_shot/stand": 2.0, "zero_shot/walk": 100.0}]}}
    assert paper.task_keys(recs) == tasks
    pooled = paper.aggregate(recs, tasks, reps=REPS)
    assert pooled["deployments"] == [1] and pooled["key"] == tasks
    np.testing.assert_allclose(pooled["methods"]["cascade"]["iqm"], [2.5])
    with_mean = {m: {s: paper.with_task_mean(r, tasks) for s, r in seeds.items()}
                 for m, seeds in recs.items()}
    assert "zero_shot/mean" not in with_mean["cascade"][0][0]       # deployment 0: no tasks
    mean = paper.aggregate(with_mean, paper.TASK_MEAN, reps=REPS)
    np.testing.assert_allclose(mean["methods"]["cascade"]["iqm"], [26.5])
    scaled = paper.scale_keys(recs, tasks, 10.0)
    assert scaled["cascade"][1][0]["zero_shot/walk"] == 10.0
    assert scaled["cascade"][0][0]["coverage"] == 1.0


def test_numpy_bootstrap_matches_rliable_semantics():
    # Stratified: runs are resampled within each task, so a task whose runs all score 7 stays
    # 7 in every resample; the other task's values {0, 10} give IQMs in [0, 10].
    scores = np.array([[0.0, 7.0], [10.0, 7.0]])[..., None]      # [runs, tasks, 1]
    np.random.seed(0)
    point, interval = run_stats.numpy_interval_estimates(
        {"a": scores}, lambda x: np.array([x[:, 1].mean(), x[:, 0].mean()]), reps=500)
    np.testing.assert_allclose(point["a"], [7.0, 5.0])
    np.testing.assert_allclose(interval["a"][:, 0], [7.0, 7.0])
    assert interval["a"].shape == (2, 2) and 0.0 <= interval["a"][0, 1] < 5.0 < \
        interval["a"][1, 1] <= 10.0
    library = run_stats.rliable_library()
    if library is None:
        pytest.skip("rliable.library not importable here (arch / pandas versions)")
    np.random.seed(0)
    _, expected = library.get_interval_estimates(
        {"a": scores}, lambda x: np.array([x[:, 1].mean(), x[:, 0].mean()]), reps=500)
    np.testing.assert_allclose(expected["a"][:, 0], [7.0, 7.0])


def test_records_resume_and_missing_deployments():
    # After a resume the last record of a deployment wins; 'deployment' is logged as a float.
    records = run({0: 3, 1: 7}) + [{"deployment": 1.0, "coverage": 9.0}, {"step": 5.0}]
    assert paper.by_deployment(records, "coverage") == {0: 3.0, 1: 9.0}
    assert paper.is_finished(records, 1) and not paper.is_finished(records, 2)
    # Only deployments present in every run are aggregated.
    recs = {"cascade": {0: run({0: 1, 1: 2, 2: 3}), 1: run({0: 1, 1: 2})}}
    assert paper.common_deployments(recs, "coverage") == [0, 1]
    with pytest.raises(ValueError, match="zero_shot/flip"):
        paper.aggregate(recs, "zero_shot/flip", reps=REPS)


def test_read_records_skips_a_truncated_last_line(tmp_path):
    assert run_stats.read_records(str(tmp_path)) == []
    (tmp_path / "metrics.jsonl").write_text('{"deployment": 0.0, "coverage": 4.0}\n'
                                            '{"deployment": 1.0, "cov')
    assert run_stats.read_records(str(tmp_path)) == [{"deployment": 0.0, "coverage": 4.0}]


def test_tables_and_plot(tmp_path):
    records = grid({"cascade": [[1, 20], [2, 30]], "random": [[1, 5], [2, 6]]})
    agg = paper.aggregate(records, "coverage", reps=REPS)
    table = paper.deployment_table(agg)
    assert table.splitlines()[0] == "| method | deployment 0 | deployment 1 |"
    # Coverage-sized numbers (>= 10 somewhere in the table) get one decimal.
    assert "| CASCADE (n=2) | 1.5 [1.0, 2.0] | 25.0 [20.0, 30.0] |" in table
    assert "P(CASCADE > Random) in coverage at deployment 1: 1.000" in \
        paper.improvement_lines(agg, "coverage")
    path = str(tmp_path / "coverage.png")
    paper.plot_curves({"coverage": agg}, ["coverage"], path, "cells", "test")
    assert os.path.getsize(path) > 0


@pytest.fixture
def parsed_flags():
    if "preset" not in flags.FLAGS:
        paper.define_flags()
    names = ("preset", "domain", "env", "methods", "seeds", "out_dir", "skip_existing",
             "eval_deployments", "return_scale", "reps", "jobs", "sweep", "lambdas",
             "normalize", "placements")
    saved = {name: flags.FLAGS[name].value for name in names}
    yield flags.FLAGS
    for name, value in saved.items():
        flags.FLAGS[name].value = value


@pytest.fixture
def fake_deployments(monkeypatch):
    """`install(records)` replaces `cascade.train.run` by a fake that writes `records(config)` as
    the run's metrics.jsonl; returns the list of configs it is called with."""
    def install(records):
        configs = []

        def fake_run(config, workdir):
            configs.append(config)
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records(config))
            return {}

        from jaxwm.agents.cascade import train
        monkeypatch.setattr(train, "run", fake_run)
        return configs
    return install


def test_script_reuses_finished_runs_and_runs_the_others(tmp_path, fake_deployments,
                                                         parsed_flags):
    """minigrid grid of 2 methods x 2 seeds on fake runs: one finished run is reused, the other
    three go through (a fake) `train.run`; table, results and figure are written."""
    last = paper.last_deployment(paper.build_config("smoke", "minigrid", "MiniGrid-Empty-5x5-v0",
                                                    "cascade", 0, "all"))
    out = tmp_path / "out"
    finished = out / "random" / "seed_1"
    finished.mkdir(parents=True)
    (finished / "metrics.jsonl").write_text("".join(
        json.dumps(dict(r, deployment_coverage=1.0)) + "\n"
        for r in run({d: 1 + d for d in range(last + 1)})))

    def records(config):
        bonus = 3 if config.method == "cascade" else 0
        return [dict(r, deployment_coverage=r["coverage"] / 2)
                for r in run({d: 2 * d + bonus + config.seed for d in range(last + 1)})]

    configs = fake_deployments(records)
    parsed_flags(["prog", "--preset=smoke", "--domain=minigrid", "--env=MiniGrid-Empty-5x5-v0",
                  "--methods=cascade,random", "--seeds=2", f"--out_dir={out}", "--reps=50"])
    paper.main([])
    calls = [(c.method, c.seed, c.env.name) for c in configs]
    assert sorted(calls) == [("cascade", 0, "MiniGrid-Empty-5x5-v0"),
                             ("cascade", 1, "MiniGrid-Empty-5x5-v0"),
                             ("random", 0, "MiniGrid-Empty-5x5-v0")]
    results = json.loads((out / "results.json").read_text())
    agg = results["aggregates"]["coverage"]
    assert agg["deployments"] == list(range(last + 1))
    # CASCADE seeds: 2 d + 3 + {0, 1} -> mean 2 d + 3.5 (two runs: the IQM is the mean).
    np.testing.assert_allclose(agg["methods"]["cascade"]["iqm"],
                               [2 * d + 3.5 for d in range(last + 1)])
    assert agg["improvement"]["over"]["random"]["probability"] == 1.0
    assert results["aggregates"]["deployment_coverage"]["deployments"] == agg["deployments"]
    table = (out / "table.md").read_text()
    assert "| CASCADE (n=2) |" in table and "## Member diversity" in table
    assert "- CASCADE - Random in cumulative cells:" in table and "in 2 of 2 seeds" in table
    assert (out / "coverage.png").stat().st_size > 0
    # A second invocation reuses all four runs.
    configs.clear()
    paper.main([])
    assert configs == []


def test_script_walker_zero_shot(tmp_path, fake_deployments, parsed_flags):
    """walker grid on fake runs evaluated after deployments 1.. (none after the random one)."""
    tasks = ("stand", "walk", "run", "flip")

    def records(config):
        for d in range(config.deploy.deployments + 1):
            record = {"step": float(d), "deployment": float(d), "episodes": 3.0}
            if d > 0:   # task t of seed s: 100 (d + t) (+ 500 for CASCADE)
                record.update({f"zero_shot/{t}": 100.0 * (d + i) + 500 * (
                    config.method == "cascade") + config.seed for i, t in enumerate(tasks)})
            yield record

    configs = fake_deployments(records)
    out = tmp_path / "walker"
    parsed_flags(["prog", "--preset=smoke", "--domain=walker", "--methods=cascade,p2e",
                  "--seeds=2", f"--out_dir={out}", "--reps=50", "--return_scale=1000"])
    paper.main([])
    assert [c.deploy.eval_deployments for c in configs] == ["all"] * 4
    aggs = json.loads((out / "results.json").read_text())["aggregates"]
    assert set(aggs) == {f"zero_shot/{t}" for t in tasks} | {"zero_shot/mean",
                                                               "zero_shot/all_tasks"}
    last = aggs["zero_shot/mean"]["deployments"][-1]
    assert aggs["zero_shot/mean"]["deployments"][0] == 1
    # p2e, deployment d: tasks 100 (d + {0, 1, 2, 3}) + seed, / 1000; mean over tasks
    # (100 d + 150 + seed) / 1000; IQM over the two seeds = (100 d + 150.5) / 1000.
    np.testing.assert_allclose(aggs["zero_shot/mean"]["methods"]["p2e"]["iqm"][-1],
                               (100 * last + 150.5) / 1000)
    assert aggs["zero_shot/all_tasks"]["improvement"]["over"]["p2e"]["probability"] == 1.0
    text = (out / "table.md").read_text()
    assert "| method | stand (d=" in text and "returns / 1000" in text
    assert (out / "zero_shot.png").stat().st_size > 0


def test_script_crafter_scores(tmp_path, fake_deployments, parsed_flags):
    """crafter grid on fake runs: zero-shot game score plus the Crafter score per deployment."""
    def records(config):
        assert config.env.name == "Craftax-Classic-Symbolic-v1"   # the smoke_crafter preset's
        for d in range(config.deploy.deployments + 1):
            # Crafter score d + seed (+ 1 for CASCADE); zero-shot 10 + seed after the last.
            record = {"step": float(d), "deployment": float(d),
                      "crafter_score": d + config.seed + (config.method == "cascade")}
            if d == config.deploy.deployments:
                record["zero_shot/extrinsic"] = 10.0 + config.seed
            yield record

    fake_deployments(records)
    out = tmp_path / "crafter"
    parsed_flags(["prog", "--preset=smoke", "--domain=crafter", "--methods=cascade,random",
                  "--seeds=2", f"--out_dir={out}", "--reps=50", "--eval_deployments=last"])
    paper.main([])
    aggs = json.loads((out / "results.json").read_text())["aggregates"]
    # Two seeds: the IQM is their mean. CASCADE at deployment d: d + {0, 1} + 1 -> d + 1.5.
    np.testing.assert_allclose(aggs["crafter_score"]["methods"]["cascade"]["iqm"],
                               [0 + 1.5, 1 + 1.5, 2 + 1.5])
    np.testing.assert_allclose(aggs["zero_shot/extrinsic"]["methods"]["random"]["iqm"], [10.5])
    assert "Crafter score" in (out / "table.md").read_text()


def test_paired_difference_hand_worked():
    # Seeds 0-2 in both: differences 2, 4, 6 -> mean 4, x higher in all 3; every bootstrap
    # mean of three of {2, 4, 6} lies in [2, 6]. Seed 3 (y only) is left out.
    d = run_stats.paired_difference({0: 3.0, 1: 5.0, 2: 7.0}, {0: 1.0, 1: 1.0, 2: 1.0, 3: 9.0},
                                reps=500)
    assert (d["mean"], d["wins"], d["seeds"]) == (4.0, 3, 3)
    assert 2.0 <= d["ci_low"] <= 4.0 <= d["ci_high"] <= 6.0
    assert run_stats.paired_difference({0: 1.0}, {0: 1.0})["wins"] == 0
    with pytest.raises(ValueError, match="no seed in common"):
        run_stats.paired_difference({0: 1.0}, {1: 1.0})


def test_script_sweep_on_fake_runs(tmp_path, fake_deployments, parsed_flags):
    """--sweep over lambda {0, 0.5} without normalization, PopDiv at the final step or spread,
    2 seeds: coverage 2 d + 10 lambda + seed (+ 1 when spread), so lambda 0.5 beats lambda 0 by
    exactly 5 (final) or 6 (spread) cells in both seeds; lambda 0 runs once."""
    last = paper.last_deployment(paper.build_config("smoke", "minigrid", "", "cascade", 0, ""))

    def records(config):
        lam = config.cascade.diversity_scale
        spread = config.cascade.diversity_placement == "spread"
        return [dict(r, deployment_coverage=1.0, popdiv_return_share=lam, member_js=0.5,
                     actor_entropy=1.0)
                for r in run({d: 2 * d + 10 * lam + config.seed + spread
                              for d in range(last + 1)})]

    configs = fake_deployments(records)
    out = tmp_path / "sweep"
    parsed_flags(["prog", "--preset=smoke", "--sweep", "--lambdas=0,0.5", "--normalize=off",
                  "--placements=final,spread", "--seeds=2", f"--out_dir={out}", "--reps=50"])
    paper.main([])
    assert sorted((c.cascade.diversity_scale, c.cascade.diversity_placement, c.seed)
                  for c in configs) == [(0.0, "final", 0), (0.0, "final", 1),
                                        (0.5, "final", 0), (0.5, "final", 1),
                                        (0.5, "spread", 0), (0.5, "spread", 1)]
    assert {(c.method, c.cascade.normalize) for c in configs} == {("cascade", False)}
    assert (out / "lam0.5_normoff" / "seed_1" / "metrics.jsonl").exists()
    assert (out / "lam0.5_normoff_spread" / "seed_1" / "metrics.jsonl").exists()
    table = (out / "table.md").read_text()
    assert "| 0.5 | off | final |" in table and "| 0.50 | 0.50 | 1.00 | 1.00 [1.00, 1.00] | " \
        "+5.0 [+5.0, +5.0] (2/2) |" in table, table
    assert "| 0.5 | off | spread |" in table and "+6.0 [+6.0, +6.0] (2/2) |" in table, table
    assert "| 0 | off | final |" in table and "| - | - |" in table
    parsed_flags(["prog", "--sweep", "--placements=middle"])
    with pytest.raises(ValueError, match=r"--placements=middle; allowed: \('final', 'spread'\)"):
        paper.main([])
