"""Reversibility-aware RL (Grinsztajn et al., NeurIPS 2021): RAE on Turf or RAC on CartPole.

  python experiments/reversibility.py --config=experiments/configs/reversibility.py:cpu \
      --config.mode=rae --workdir=runs/rae
Writes config.json, metrics.jsonl (episode return, grass damaged, psi precision / recall; or
falls, episodes before the first fall, evaluation return), TensorBoard events (tb/),
checkpoints/ (a killed run resumes from the same --workdir) and plots/metrics.png.
"""
from jaxwm.agents.reversibility.config import PRESETS
from jaxwm.agents.reversibility.train import train_and_evaluate
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("reversibility", train_and_evaluate, "Reversibility-aware RL", PRESETS)
