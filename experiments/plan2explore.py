"""Reward-free Plan2Explore online, then zero-shot evaluation on the env's task family.

  python experiments/plan2explore.py --config=experiments/configs/plan2explore.py:cpu \
      --workdir=runs/p2e
Writes config.json, metrics.jsonl (incl. coverage/cells on MiniGrid and zero_shot/<task>
returns), TensorBoard events (tb/), checkpoints/ (resumable), plots/ and videos/ under --workdir.
"""
from jaxwm.agents.plan2explore.train import train_and_evaluate
from jaxwm.agents.plan2explore.config import PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("plan2explore", train_and_evaluate, "Plan2Explore", PRESETS)
