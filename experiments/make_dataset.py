"""Generate offline datasets (random / medium / medium_replay / mixed) from a TD-MPC run.

  python experiments/make_dataset.py   # the defaults make what fowm.py:cpu trains on:
      --config=experiments/configs/tdmpc.py:cpu --env=CartpoleSwingup-v1 --stages=1000,2000 \
      --data_stage=1000 --workdir=runs/make_dataset_swingup --out_dir=datasets/CartpoleSwingup-v1
Trains TD-MPC up to each stage (env steps; resumable in --workdir), then writes
<out_dir>/<kind>.npz (compressed, checksummed, with metadata) from the agent and replay of
--data_stage, and <out_dir>/summary.json.
"""
import json
import os

from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.tdmpc.offline_data import KINDS, make_datasets
from jaxwm.runtime.logging import quiet_libraries

config_flags.DEFINE_config_file("config", "experiments/configs/tdmpc.py:cpu",
                                "TD-MPC config file of the data-collecting agent")
flags.DEFINE_string("env", "CartpoleSwingup-v1", "DMC state task (overrides config.env.name)")
flags.DEFINE_string("workdir", "runs/make_dataset_swingup", "TD-MPC run directory (resumes)")
flags.DEFINE_string("out_dir", "datasets/CartpoleSwingup-v1", "where the .npz files go")
flags.DEFINE_list("stages", ["1000", "2000"], "env steps at which the TD-MPC run is snapshotted")
flags.DEFINE_integer("data_stage", 1000, "stage whose agent and replay make the datasets")
flags.DEFINE_integer("random_steps", 1000, "agent steps of uniform random data")
flags.DEFINE_integer("medium_steps", 1000, "agent steps of the stage agent's rollouts")
flags.DEFINE_list("kinds", list(KINDS), f"datasets to write, among {KINDS}")


def main(argv):
    del argv
    quiet_libraries()
    f = flags.FLAGS
    if f.env:
        f.config.env.name = f.env
    written = make_datasets(f.config, f.workdir, f.out_dir, [int(s) for s in f.stages],
                            f.data_stage, f.random_steps, f.medium_steps, tuple(f.kinds))
    with open(os.path.join(f.out_dir, "summary.json"), "w") as fh:
        json.dump(written, fh, indent=2, default=str)
    print(json.dumps(written, indent=2, default=str))


if __name__ == "__main__":
    app.run(main)
