"""Reward-free Plan2Explore online, then zero-shot evaluation on the env's task family.

  python experiments/plan2explore.py --config=experiments/configs/plan2explore.py:cpu \
      --workdir=runs/p2e
Writes config.json, metrics.jsonl (incl. coverage/cells on MiniGrid and zero_shot/<task>
returns), TensorBoard events (tb/), checkpoints/ (resumable), plots/ and videos/ under --workdir.
"""
from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.plan2explore.train import train_and_evaluate
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/plan2explore.py:cpu",
                                "Plan2Explore config file with a preset")
flags.DEFINE_string("workdir", "runs/plan2explore", "output directory (resumes if it exists)")


def main(argv):
    del argv
    quiet_libraries()
    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    print({k: round(v, 3) for k, v in summary.items()})


if __name__ == "__main__":
    app.run(main)
