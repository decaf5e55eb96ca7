"""runtime.goal_reaching (the DINO-WM and LDP paper tables) on hand-made eval.json files, and
the LDP paper script end to end on finished fake runs (--report_only)."""
import json
import os
import subprocess
import sys

import pytest

from jaxwm.runtime import goal_reaching, grid
from jaxwm.runtime.logging import write_json
from jaxwm.runtime.workdir import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fake_run(workdir, success, ever, plan=None):
    e = {"success_rate": success, "ever_success_rate": ever, "seconds": 120.0}
    if plan is not None:
        e.update(plan_seconds_per_decision=plan, plan_seconds_per_batch=plan * 50)
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, goal_reaching.EVAL_FILE), e)


def test_report_exact_iqm_and_paired_differences(tmp_path):
    # Reference 'a' successes {10, 20, 30}%, 'b' {0, 20, 60}%. With 3 seeds the IQM (25%
    # trimmed mean, fractional weights at the ends) of {10, 20, 30} is 20 by symmetry;
    # paired a - b per seed: {+10, 0, -30} -> mean -6.7, a higher in 1 of 3 seeds.
    rows = {"Wall-v0": {"a": {}, "b": {}}}
    for seed, (a, b) in enumerate([(0.1, 0.0), (0.2, 0.2), (0.3, 0.6)]):
        for v, x in (("a", a), ("b", b)):
            w = str(tmp_path / v / str(seed))
            fake_run(w, x, x, plan=0.02 if v == "a" else None)
            rows["Wall-v0"][v][seed] = goal_reaching.run_scores(w)
    assert rows["Wall-v0"]["a"][0] == {"success": 10.0, "ever": 10.0, "minutes": 2.0,
                                       "plan_ms": 20.0, "plan_batch_s": 1.0}
    body, results = goal_reaching.report(rows, {"a": "row A"}, "a", reps=200, goals=50)
    st = results["Wall-v0"]["iqm"]["success"]
    assert abs(st["a"]["iqm"] - 20.0) < 1e-9
    paired = results["Wall-v0"]["paired"]["b"]
    assert abs(paired["mean"] - (-20.0 / 3)) < 1e-9 and paired["wins"] == 1
    assert "| row A (n=3) | 20.0" in body and "20.0 (1.00)" in body   # planning ms (batch s)
    assert "- vs b: -6.7" in body
    assert "policy action MSE" not in body           # no run reports demonstration errors


def test_report_demo_error_columns_mean_over_seeds(tmp_path):
    # 'a' reports plan errors 0.2 and 0.4 -> mean 0.300; 'b' (no planner) reports none -> '-'.
    rows = {"Wall-v0": {"a": {}, "b": {}}}
    for seed in range(2):
        for v in ("a", "b"):
            w = str(tmp_path / v / str(seed))
            fake_run(w, 0.1, 0.1)
            e = json.load(open(os.path.join(w, goal_reaching.EVAL_FILE)))
            e.update(policy_action_mse=0.5 + seed, **({"plan_mse": 0.2 * (seed + 1)} if v == "a"
                                                      else {}))
            write_json(os.path.join(w, goal_reaching.EVAL_FILE), e)
            rows["Wall-v0"][v][seed] = goal_reaching.run_scores(w)
    body, _ = goal_reaching.report(rows, {}, "a", reps=50, goals=50)
    assert "| variant | policy action MSE | plan latent MSE |" in body
    assert "| a | 1.000 | 0.300 |" in body and "| b | 1.000 | - |" in body


def test_ldp_script_report_only_with_dino_wm_row_and_archive(tmp_path):
    # The LDP runs come from an archive of an earlier session (--archive), BC's are local.
    out, dwm, archive = tmp_path / "ldp", tmp_path / "dino_wm", tmp_path / "archive"
    for seed in range(3):
        fake_run(str(archive / "Wall-v0" / "ldp" / f"seed_{seed}"), 0.5, 0.6, 0.01)
        fake_run(str(out / "Wall-v0" / "bc" / f"seed_{seed}"), 0.1, 0.2, 0.001)
        fake_run(str(dwm / "Wall-v0" / "dino" / f"seed_{seed}"), 0.0, 0.0, 0.3)
    # A separate process: the script's absl flags would clash with other paper scripts'.
    subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "paper", "ldp.py"),
                    "--report_only", "--tasks=Wall-v0", "--variants=ldp,bc,ldp_demos",
                    f"--out_dir={out}", f"--dino_wm_dir={dwm}", "--reps=100",
                    f"--archive={archive}"],
                   check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "PYTHONPATH": ROOT})
    table = open(out / "table.md").read()
    # ldp_demos has no finished run: left out; DINO-WM's three runs make a row.
    assert "LDP, labelled demos only" not in table
    assert "| DINO-WM (all data, all actions) (n=3) | 0.0 [0.0, 0.0]" in table
    assert "- vs goal-conditioned BC: +40.0 [+40.0, +40.0] (3/3)" in table
    assert os.path.exists(out / "success.png")
    results = json.load(open(out / "results.json"))
    assert set(results["rows"]["Wall-v0"]) == {"ldp", "bc", "dino_wm"}
    # Restored into out_dir, and the local runs archived too.
    assert os.path.exists(out / "Wall-v0" / "ldp" / "seed_2" / goal_reaching.EVAL_FILE)
    assert os.path.exists(archive / "Wall-v0" / "bc" / "seed_0" / goal_reaching.EVAL_FILE)


def test_restore_never_overwrites_and_archive_keeps_records_only(tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    fake_run(str(archive / "a" / "seed_0"), 0.5, 0.5)
    fake_run(str(archive / "b" / "seed_0"), 0.5, 0.5)
    os.makedirs(out / "a" / "seed_0")          # a run started here, unfinished
    assert grid.restore_records(str(archive), str(out)) == 1
    assert not os.path.exists(out / "a" / "seed_0" / goal_reaching.EVAL_FILE)
    assert os.path.exists(out / "b" / "seed_0" / goal_reaching.EVAL_FILE)
    os.makedirs(out / "b" / "seed_0" / "checkpoints")
    other = tmp_path / "other"
    assert grid.archive_records(str(out), str(other)) == 1      # 'a' is not finished
    assert sorted(os.listdir(other / "b" / "seed_0")) == [goal_reaching.EVAL_FILE]


def test_a_finished_run_of_other_settings_is_refused_not_mixed_in(tmp_path):
    workdir = str(tmp_path / "a" / "seed_0")
    fake_run(workdir, 0.5, 0.5)
    write_json(os.path.join(workdir, "config.json"), {"seed": 0, "train": {"steps": 4000}})
    same = grid.Run("a", "unused:fn", {"seed": 0, "train": {"steps": 4000}}, workdir)
    assert grid.run_missing([same]) == [same]          # reused, nothing run
    other = same._replace(config={"seed": 0, "train": {"steps": 2000}})
    with pytest.raises(UserError, match="train.steps: 4000 -> 2000"):
        grid.run_missing([other])
