"""Train a TD-MPC / TD-MPC2 agent online on a DMC state task.

  python experiments/tdmpc.py --config=experiments/configs/tdmpc.py:cpu --workdir=runs/tdmpc
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (a killed run resumes
from the same --workdir) and plots/return.png (evaluation returns vs the random-policy baseline).
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.tdmpc.train import train_and_evaluate
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/tdmpc.py:cpu",
                                "TD-MPC config file with a preset")
flags.DEFINE_string("workdir", "runs/tdmpc", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    print({k: round(v, 3) for k, v in summary.items()})


if __name__ == "__main__":
    app.run(main)
