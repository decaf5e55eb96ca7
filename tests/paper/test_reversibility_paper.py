"""experiments/paper/reversibility.py: the grid's configs and the scores read back from
hand-made runs (weighted per-episode means, the last 10%, paired differences)."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "paper_reversibility", os.path.join(ROOT, "experiments", "paper", "reversibility.py"))
paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper)


def _write(workdir, records):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def test_configs_of_the_grid():
    ppo, rae = (paper.build_config("sokoban", m, 3) for m in ("ppo", "rae"))
    assert (ppo.mode, ppo.rae.env, ppo.rae.penalty, ppo.seed) == ("rae", "Sokoban-v0", 0.0, 3)
    assert rae.rae.penalty == 0.1 and rae.precedence.beta == 0.7
    dqn, rac = (paper.build_config("cartpole", m, 0) for m in ("dqn", "rac"))
    assert (dqn.mode, dqn.rac.enabled, rac.rac.enabled) == ("rac", False, True)
    dreamer, dreamer_rae = (paper.build_config("turf_dreamer", m, 1)
                            for m in ("dreamer", "dreamer_rae"))
    assert (dreamer.env.name, dreamer.run.steps) == ("Turf-v0", paper.DREAMER_STEPS)
    assert (dreamer.reversibility.penalty, dreamer_rae.reversibility.penalty) == (0.0, 0.1)
    assert paper.last_step(ppo) == ppo.rae.iterations * ppo.rae.num_envs * ppo.rae.rollout
    assert paper.last_step(dreamer) == paper.DREAMER_STEPS


def test_rae_scores_weight_chunks_by_their_episodes(tmp_path):
    # 10 chunks: the first nine have 10 episodes with 2 irreversible steps each, the last has
    # 30 episodes with 1: over all training (9 * 10 * 2 + 30 * 1) / 120 = 1.75; the last 10%
    # is the last chunk alone: 1.0.
    chunks = [{"step": i, "episodes": 10.0, "episode/irreversible": 2.0, "episode/success": 0.0,
               "episode/return": 0.0} for i in range(1, 10)]
    chunks.append({"step": 10, "episodes": 30.0, "episode/irreversible": 1.0,
                   "episode/success": 0.5, "episode/return": 2.0})
    final = {"step": 10, "psi/eval_precision": 0.25, "psi/eval_recall": 0.75}
    _write(tmp_path / "run", chunks + [final])
    s = paper.rae_scores(str(tmp_path / "run"))
    assert (s["irreversible_all"], s["irreversible_last"]) == (1.75, 1.0)
    assert (s["success_last"], s["return_last"], s["precision"], s["recall"]) == (
        0.5, 2.0, 0.25, 0.75)
    assert s["curve"][10] == 1.0 and len(s["curve"]) == 10


def test_rac_scores_and_paired_report(tmp_path):
    rows = {}
    # falls after 2k steps: DQN 10, 20 per seed; RAC 2, 4; returns 100 / 300.
    for method, falls, ret in (("dqn", (10, 20), 100.0), ("rac", (2, 4), 300.0)):
        rows[method] = {}
        for seed, f in enumerate(falls):
            w = str(tmp_path / method / f"seed_{seed}")
            _write(w, [{"step": 0, "offline/psi_irreversible_fraction": 0.5},
                       {"step": 1000, "train/falls": f / 2, "train/episodes": 5,
                        "train/episodes_before_first_fall": 0, "episode/return": ret},
                       {"step": 2000, "train/falls": f, "train/episodes": 10,
                        "train/episodes_before_first_fall": 1, "episode/return": ret},
                       {"step": 2000, "eval/return": ret, "eval/falls": 1.0}])
            rows[method][seed] = paper.rac_scores(w)
    assert rows["rac"][1]["falls"] == 4 and rows["rac"][1]["train_return"] == 300.0
    body, results = paper.report({"cartpole": rows}, 200, "cpu")
    falls = results["cartpole"]["paired"]["falls"]
    # paired RAC - DQN per seed: -8, -16 -> mean -12, RAC higher in no seed
    assert (falls["mean"], falls["wins"], falls["seeds"]) == (-12.0, 0, 2)
    assert "DQN + RAC (n=2)" in body and "falls in training: -12.0" in body
