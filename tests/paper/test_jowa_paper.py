"""experiments/paper/jowa.py end to end on finished fake runs (--report_only): exact IQMs and
paired differences of hand-made scores."""
import os
import subprocess
import sys

from jaxwm.runtime.logging import write_json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fake_jowa_run(workdir, greedy, beam=None, finetuned=None, scratch=None):
    """An eval.json; beam and few-shot left out when None (rows other than the main one)."""
    games = {g: {"random": 0.0, "agent": 10.0, "greedy": 10 * greedy,
                 "greedy_normalized": greedy}
             for g in ("MinAtar-Breakout-v0", "MinAtar-Freeway-v0")}
    e = {"games": games, "greedy_normalized_mean": greedy}
    if beam is not None:
        for entry in games.values():
            entry.update(beam=10 * beam, beam_normalized=beam)
        e["beam_normalized_mean"] = beam
    if finetuned is not None:
        e["fewshot"] = {"finetuned_normalized": finetuned, "scratch_normalized": scratch}
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "eval.json"), e)


def test_jowa_script_report_only(tmp_path):
    # jowa@small greedy {0.2, 0.4, 0.6}, beam = greedy + 0.1; bc@small greedy 0.1 each seed.
    # Paired beam - greedy: +0.10 in 3/3 seeds; jowa - bc: {0.1, 0.3, 0.5} -> mean +0.30.
    # An ablation is paired with JOWA at its own size, another size with the main row:
    # jowa@tiny {0.1, 0.2, 0.3}, no_cql@tiny {0.0, 0.3, 0.4} -> {+0.1, -0.1, -0.1}, mean -0.03,
    # 1/3; jowa@small - jowa@tiny = {0.1, 0.2, 0.3} -> +0.20, 3/3.
    out = tmp_path / "jowa"
    for seed, g in enumerate((0.2, 0.4, 0.6)):
        fake_jowa_run(str(out / "jowa_small" / f"seed_{seed}"), g, g + 0.1, 0.5, 0.2)
        fake_jowa_run(str(out / "bc_small" / f"seed_{seed}"), 0.1)
        fake_jowa_run(str(out / "jowa_tiny" / f"seed_{seed}"), (0.1, 0.2, 0.3)[seed])
        fake_jowa_run(str(out / "no_cql_tiny" / f"seed_{seed}"), (0.0, 0.3, 0.4)[seed])
    subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "paper", "jowa.py"),
                    "--report_only", "--rows=jowa@small,bc@small,jowa@tiny,no_cql@tiny", f"--out_dir={out}",
                    "--reps=100"], check=True, cwd=ROOT, capture_output=True,
                   env={**os.environ, "PYTHONPATH": ROOT})
    table = open(out / "table.md").read()
    assert "| jowa@small (3) | 0.40 [0.20, 0.60] | 0.50 [0.30, 0.70] | +0.10 [+0.10, +0.10] " \
           "(3/3) | 0.50 [0.50, 0.50] | 0.20 [0.20, 0.20] | +0.30 [+0.30, +0.30] (3/3) |" in table
    assert "| bc@small (3) | 0.10 [0.10, 0.10] | - | - | - | - | - |" in table
    assert "- jowa@small vs bc@small: +0.30" in table
    lines = {line.split(":")[0]: line for line in table.splitlines() if line.startswith("- ")}
    assert lines["- jowa@small vs jowa@tiny"].startswith("- jowa@small vs jowa@tiny: +0.20 [")
    assert lines["- jowa@small vs jowa@tiny"].endswith("(3/3)")
    assert lines["- jowa@tiny vs no_cql@tiny"].startswith("- jowa@tiny vs no_cql@tiny: -0.03 [")
    assert lines["- jowa@tiny vs no_cql@tiny"].endswith("(1/3)")
    assert "jowa@small vs no_cql@tiny" not in table
    assert os.path.exists(out / "scores.png")
