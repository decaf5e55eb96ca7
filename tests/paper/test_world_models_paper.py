"""experiments/paper/world_models.py: one budget and evaluation protocol for every agent, the
gradient-step count of a run, the grid's cells, and the report on hand-made runs."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "paper_world_models", os.path.join(ROOT, "experiments", "paper", "world_models.py"))
paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper)


@pytest.mark.parametrize("task", ["CartpoleSwingup-v1", "ReacherEasy-v1"])
def test_every_agent_gets_the_same_budget_and_evaluation(task):
    settings = paper.TASKS[task]
    for agent in paper.AGENTS:
        c = paper.build_config(task, agent, seed=2)
        budget = c.run.env_steps if "env_steps" in c.run else c.run.steps
        assert (c.env.name, c.seed, budget) == (task, 2, settings["steps"]), agent
        assert c.env.overrides.action_repeat == settings["action_repeat"], agent
        assert (c.run.eval_every, c.run.eval_episodes) == (settings["eval_every"],
                                                           paper.EVAL_EPISODES), agent
    assert paper.build_config(task, "dreamerv1", 0).model.latent == "gaussian"


def test_gradient_steps_of_a_run():
    # TD-MPC cpu on CartpoleSwingup: 250 pretraining updates + 1 per agent step after the 500
    # seed steps: 250 + (5000 - 500) = 4750.
    assert paper.gradient_steps(paper.build_config("CartpoleSwingup-v1", "tdmpc", 0)) == 4750
    # PlaNet cpu: 100 pretraining calls + one per 2 env steps after the 500 prefill steps:
    # 100 + 4500 / 2 = 2350 calls of 1 gradient step.
    assert paper.gradient_steps(paper.build_config("CartpoleSwingup-v1", "planet", 0)) == 2350


def test_cells_skip_continuous_planners_on_atari():
    cells = paper.cells(["CartpoleSwingup-v1", "Pong-v5"], ["planet", "dreamerv2"], 2)
    assert ("Pong-v5", "planet", 0) not in cells and ("Pong-v5", "dreamerv2", 1) in cells
    assert len(cells) == 2 * 2 + 2


def test_report_on_hand_made_runs(tmp_path):
    runs = {}
    # TD-MPC finals 800, 900, 1000 against random 100, 200, 300 (logged by the TD-MPC runs);
    # PlaNet finals 300, 300, 300.
    for agent, finals in (("tdmpc", (800, 900, 1000)), ("planet", (300, 300, 300))):
        for seed, final in enumerate(finals):
            w = tmp_path / agent / f"seed_{seed}"
            os.makedirs(w)
            records = [{"step": 1000, "eval/return": final / 2},
                       {"step": 5000, "eval/return": float(final)}]
            if agent == "tdmpc":
                records.insert(0, {"step": 0, "eval/random_return": 100.0 * (seed + 1)})
            (w / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
            (w / "wall.json").write_text(json.dumps({"seconds": 475.0}))
            runs.setdefault(agent, {})[seed] = str(w)
    rows = paper.task_rows("CartpoleSwingup-v1", runs)
    # 4750 gradient steps in 475 s = 10 per second.
    assert rows["tdmpc"][0]["grad_per_s"] == pytest.approx(10.0)
    text, results = paper.report({"CartpoleSwingup-v1": rows}, reps=100)
    r = results["CartpoleSwingup-v1"]
    # 3 runs: rliable's IQM trims none: means 900 (TD-MPC), 300 (PlaNet), 200 (random).
    assert r["final"]["tdmpc"]["iqm"] == pytest.approx(900.0)
    assert r["final"]["random"]["iqm"] == pytest.approx(200.0)
    # Paired per seed: PlaNet - random = 200, 100, 0 -> mean 100, wins 2 of 3.
    d = r["versus_random"]["planet"]
    assert d["mean"] == pytest.approx(100.0) and (d["wins"], d["seeds"]) == (2, 3)
    assert "| PlaNet (n=3) | 300.0 [300.0, 300.0] | 225.0 [225.0, 225.0] | 7.9 |" in text
