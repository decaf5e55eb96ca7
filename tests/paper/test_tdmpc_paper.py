"""experiments/paper/tdmpc.py: configs of the grid cells, scores read from hand-made
metrics.jsonl records, and the report's IQMs and paired differences on them."""
import importlib.util
import json
import os

import pytest

from jaxwm.runtime import plots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "paper_tdmpc", os.path.join(ROOT, "experiments", "paper", "tdmpc.py"))
paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper)


def write_run(workdir, evals: dict, random: float, offline_only: float | None = None,
              seconds: float = 60.0):
    """A run's metrics.jsonl as the TD-MPC / FOWM loops log it, plus wall.json."""
    os.makedirs(workdir)
    records = [{"step": 0, "eval/random_return": random}]
    if offline_only is not None:
        records.append({"step": 0, "eval/return": offline_only,
                        "eval/offline_only_return": offline_only})
    records += [{"step": s, "eval/return": v} for s, v in evals.items()]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    with open(os.path.join(workdir, "wall.json"), "w") as f:
        json.dump({"seconds": seconds}, f)


def test_configs_of_the_grid_cells(tmp_path):
    per = paper.build_config("online", "CartpoleSwingup-v1", "tdmpc_per", 3, str(tmp_path))
    uniform = paper.build_config("online", "CartpoleSwingup-v1", "tdmpc", 3, str(tmp_path))
    assert (per.run.per, uniform.run.per, per.seed) == (True, False, 3)
    # PER is the only difference between the two TD-MPC cells.
    a, b = per.to_dict(), uniform.to_dict()
    a["run"].pop("per"), b["run"].pop("per")
    assert a == b
    v2 = paper.build_config("online", "CartpoleBalance-v1", "tdmpc2", 0, str(tmp_path))
    assert v2.preset == "cpu_v2" and v2.planner.value_aggregation == "mean"
    fowm = paper.build_config("fowm", "WalkerWalk-v1", "fowm", 1, str(tmp_path))
    scratch = paper.build_config("fowm", "WalkerWalk-v1", "scratch", 1, str(tmp_path))
    # Same online budget for finetuning and scratch; walker at TD-MPC's action repeat 2.
    assert fowm.run.env_steps == scratch.run.env_steps == 2500
    assert fowm.env.overrides.action_repeat == scratch.env.overrides.action_repeat == 2
    assert fowm.dataset.path == paper.dataset_path(str(tmp_path), "WalkerWalk-v1")
    assert scratch.model.value_learning != "iql" and scratch.run.seed_steps > 0


def test_scores_report_and_reuse(tmp_path):
    out = str(tmp_path)
    runs = {"fowm": {}, "scratch": {}}
    # Finetuned finals 600, 700, 800; scratch 500, 500, 900; offline-only 400 each.
    for seed, (f_final, s_final) in enumerate([(600, 500), (700, 500), (800, 900)]):
        runs["fowm"][seed] = w = os.path.join(out, "fowm", f"seed_{seed}")
        write_run(w, {500: 450.0, 1500: float(f_final)}, random=100.0, offline_only=400.0)
        runs["scratch"][seed] = w = os.path.join(out, "scratch", f"seed_{seed}")
        write_run(w, {500: 100.0, 1500: float(s_final)}, random=100.0, seconds=120.0)
    s = paper.grid.run_scores(runs["fowm"][0])
    # The step-0 (offline-only) evaluation is not part of the online curve:
    # mean over evaluations = (450 + 600) / 2 = 525.
    assert s["final"] == 600.0 and s["mean"] == 525.0 and s["offline_only"] == 400.0
    assert s["curve"] == {500: 450.0, 1500: 600.0} and s["minutes"] == 1.0
    assert paper.grid.is_finished(runs["fowm"][0], 1500)
    assert not paper.grid.is_finished(runs["fowm"][0], 2000)
    rows = paper.task_scores(runs)
    assert set(rows) == {"fowm", "scratch", "random", "offline_only"}
    _, results = paper.report("fowm", {"WalkerWalk-v1": rows}, reps=100)
    r = results["WalkerWalk-v1"]
    # IQM of 3 runs = their 25% trimmed mean: rliable trims floor(0.25 * 3) = 0 runs, so the
    # plain mean: fowm (600 + 700 + 800) / 3 = 700, scratch (500 + 500 + 900) / 3 = 633.3.
    assert r["final"]["fowm"]["iqm"] == pytest.approx(700.0)
    assert r["final"]["scratch"]["iqm"] == pytest.approx(1900.0 / 3)
    # Paired per seed: fowm - scratch = 100, 200, -100 -> mean 66.7, wins 2 of 3.
    d = r["differences"]["fowm-scratch"]["final"]
    assert d["mean"] == pytest.approx(200.0 / 3) and (d["wins"], d["seeds"]) == (2, 3)
    # Mean over evaluations: fowm (450 + final) / 2 = 525, 575, 625; scratch (100 + final) / 2
    # = 300, 300, 500; differences 225, 275, 125 -> mean 625 / 3.
    assert r["differences"]["fowm-scratch"]["mean"]["mean"] == pytest.approx(625.0 / 3)
    d = r["differences"]["fowm-offline_only"]["final"]   # 200, 300, 400
    assert d["mean"] == pytest.approx(300.0) and d["ci_low"] >= 200.0 and d["ci_high"] <= 400.0
    plots.plot_eval_curves({"WalkerWalk-v1": rows}, os.path.join(out, "curves.png"),
                           paper.NAMES, reps=50)
    assert os.path.getsize(os.path.join(out, "curves.png")) > 0
