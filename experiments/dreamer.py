"""Train a Dreamer agent online (world model + actor-critic in imagination).

  python experiments/dreamer.py --config=experiments/configs/dreamer.py:cpu --workdir=runs/dreamer
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (a killed run resumes
from the same --workdir), plots/ and videos/ (real vs open-loop imagined frames, image tasks).
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.dreamer.train import train_and_evaluate
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/dreamer.py:cpu",
                                "Dreamer config file with a preset")
flags.DEFINE_string("workdir", "runs/dreamer", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    print({k: round(v, 3) for k, v in summary.items()})


if __name__ == "__main__":
    app.run(main)
