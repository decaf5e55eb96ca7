"""CASCADE and its baselines (random, p2e, pp2e) on reward-free deployments.

  python experiments/cascade.py --config=experiments/configs/cascade.py:cpu --workdir=runs/demo
Writes config.json, metrics.jsonl (one record per deployment: coverage, episode statistics,
losses, zero-shot returns), TensorBoard events, checkpoints/ (resumes at the last completed
deployment) and plots/metrics.png under --workdir.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.runtime import deployments
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/cascade.py:cpu",
                                "CASCADE config file with a preset")
flags.DEFINE_string("workdir", "runs/cascade", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    deployments.run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
