"""Train a Dreamer agent online (world model + actor-critic in imagination).

  python experiments/dreamer.py --config=experiments/configs/dreamer.py:cpu --workdir=runs/dreamer
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (a killed run resumes
from the same --workdir), plots/ and videos/ (real vs open-loop imagined frames, image tasks).
"""
from jaxwm.agents.dreamer.train import train_and_evaluate
from jaxwm.agents.dreamer.config import AGENT_PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("dreamer", train_and_evaluate, "Dreamer", AGENT_PRESETS)
