"""FOWM: train TD-MPC offline on a dataset (IQL value, AWR policy), then finetune it online with
balanced replay and an uncertainty-penalized planner.

  python experiments/fowm.py --config=experiments/configs/fowm.py:cpu --workdir=runs/fowm \
      [--config.dataset.path=datasets/CartpoleBalance-v1/medium_replay.npz]
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (resumable in either
phase) and plots/return.png (offline evaluations, then the online curve from the offline-only
score at env step 0).
"""
from jaxwm.agents.fowm.train import train_and_evaluate
from jaxwm.agents.fowm.config import PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("fowm", train_and_evaluate, "FOWM", PRESETS)
