"""Train a TD-MPC / TD-MPC2 agent online on a DMC state task.

  python experiments/tdmpc.py --config=experiments/configs/tdmpc.py:cpu --workdir=runs/tdmpc
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (a killed run resumes
from the same --workdir) and plots/return.png (evaluation returns vs the random-policy baseline).
"""
from jaxwm.agents.tdmpc.train import train_and_evaluate
from jaxwm.agents.tdmpc.config import PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("tdmpc", train_and_evaluate, "TD-MPC", PRESETS)
