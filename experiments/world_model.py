"""Train a Dreamer world model on random-policy data from any supported environment.

  python experiments/world_model.py --config=experiments/configs/world_model.py:cpu \
      --config.env.name=Pong-v5 --workdir=runs/wm_pong
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (resumable), plots/
and videos/ (real vs open-loop imagined frames) under --workdir.
"""
from jaxwm.agents.dreamer.config import PRESETS
from jaxwm.runtime import cli, world_model_training

if __name__ == "__main__":
    cli.run("world_model", world_model_training.train, "world-model", PRESETS)
