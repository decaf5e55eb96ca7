"""Train a PlaNet agent online (Gaussian RSSM + CEM planning at every step).

  python experiments/planet.py --config=experiments/configs/planet.py:cpu --workdir=runs/planet
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (a killed run resumes
from the same --workdir), plots/ and videos/ (real vs open-loop imagined frames, image tasks).
"""
from jaxwm.agents.planet.train import train_and_evaluate
from jaxwm.agents.planet.config import PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("planet", train_and_evaluate, "PlaNet", PRESETS)
