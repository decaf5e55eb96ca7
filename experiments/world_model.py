"""Train a Dreamer world model on random-policy data from any supported environment.

  python experiments/world_model.py --config=experiments/configs/world_model.py:cpu \
      --config.env.name=Pong-v5 --workdir=runs/wm_pong
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (resumable), plots/
and videos/ (real vs open-loop imagined frames) under --workdir.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.runtime import world_model_training
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/world_model.py:cpu",
                                "world-model config file with a preset")
flags.DEFINE_string("workdir", "runs/world_model", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    world_model_training.train(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
