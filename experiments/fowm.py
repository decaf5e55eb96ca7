"""FOWM: train TD-MPC offline on a dataset (IQL value, AWR policy), then finetune it online with
balanced replay and an uncertainty-penalized planner.

  python experiments/fowm.py --config=experiments/configs/fowm.py:cpu --workdir=runs/fowm \
      [--config.dataset.path=datasets/CartpoleBalance-v1/medium_replay.npz]
Writes config.json, metrics.jsonl, TensorBoard events (tb/), checkpoints/ (resumable in either
phase) and plots/return.png (offline evaluations, then the online curve from the offline-only
score at env step 0).
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.fowm.train import train_and_evaluate
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/fowm.py:cpu",
                                "FOWM config file with a preset")
flags.DEFINE_string("workdir", "runs/fowm", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()})


if __name__ == "__main__":
    app.run(main)
