"""Generate offline datasets (random / medium / medium_replay / mixed) from a TD-MPC run.

  python experiments/make_dataset.py --config.env.name=CartpoleSwingup-v1   # what fowm.py:cpu
      # trains on: datasets/CartpoleSwingup-v1/*.npz (TD-MPC run in runs/make_dataset_<env>)
Trains TD-MPC (--config, its env from the config only) up to each stage (env steps; resumable
in --workdir), then writes <out_dir>/<kind>.npz (compressed, checksummed, with metadata) from the
agent and replay of --data_stage, and <out_dir>/summary.json.

Goal-reaching pixel datasets (DINO-WM), no agent involved:
  python experiments/make_dataset.py --goal_task=Wall-v0   # or PushT-v0 (pip install -e '.[pusht]')
writes <out_dir or datasets/<task>>/<kind>.npz for each of --goal_kinds (random, scripted):
--goal_episodes episodes of --goal_length steps with images (jaxwm.envs.goal_tasks.collect),
and <out_dir>/summary.json; the TD-MPC flags are then ignored.

Mixed-quality MinAtar datasets for JOWA (PPO snapshots + random, jaxwm.agents.jowa.data):
  python experiments/make_dataset.py --jowa_games=MinAtar-Breakout-v0,MinAtar-Freeway-v0
trains PPO on each game for --jowa_env_steps env steps (seed --seed, +1 for the next game),
writes <out_dir or datasets/jowa>/<game>/mixed.npz (--jowa_steps_per_policy rows per snapshot
policy and per random policy) and merges the games into <out_dir>/summary.json (reference
returns of random and of the final agent); the TD-MPC flags are then ignored.
"""
import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jaxwm.agents.jowa import data as jowa_data
from jaxwm.agents.tdmpc.config import PRESETS
from jaxwm.agents.tdmpc.offline_data import KINDS, make_datasets
from jaxwm.envs import goal_tasks
from jaxwm.runtime import cli
from jaxwm.runtime.logging import quiet_libraries
from jaxwm.runtime.workdir import UserError

config_flags.DEFINE_config_file("config", "experiments/configs/tdmpc.py:cpu",
                                "TD-MPC config file of the data-collecting agent (with its env)")
flags.DEFINE_string("workdir", "", "TD-MPC run directory (resumes); default "
                    "runs/make_dataset_<config.env.name>")
flags.DEFINE_string("out_dir", "", "where the .npz files go; default datasets/<config.env.name>")
flags.DEFINE_list("stages", ["1000", "2000"], "env steps at which the TD-MPC run is snapshotted")
flags.DEFINE_integer("data_stage", 1000, "stage whose agent and replay make the datasets")
flags.DEFINE_integer("random_steps", 1000, "agent steps of uniform random data")
flags.DEFINE_integer("medium_steps", 1000, "agent steps of the stage agent's rollouts")
flags.DEFINE_list("kinds", list(KINDS), f"datasets to write, among {KINDS}")
flags.DEFINE_string("goal_task", "", f"goal-reaching task, among {list(goal_tasks.NAMES)}: write "
                    "its pixel datasets instead of TD-MPC's")
flags.DEFINE_list("goal_kinds", list(goal_tasks.KINDS),
                  f"with --goal_task: datasets to write, among {list(goal_tasks.KINDS)}")
flags.DEFINE_integer("goal_episodes", 200, "with --goal_task: episodes per dataset")
flags.DEFINE_integer("goal_length", 50, "with --goal_task: steps (rows) per episode")
flags.DEFINE_integer("seed", 0, "with --goal_task / --jowa_games: seed of the first dataset "
                     "(the next: +1, ...)")
flags.DEFINE_list("jowa_games", [], f"MinAtar games, among {list(jowa_data.GAMES)}: write their "
                  "JOWA mixed datasets (PPO snapshots + random) instead of TD-MPC's")
flags.DEFINE_integer("jowa_env_steps", jowa_data.ENV_STEPS,
                     "with --jowa_games: PPO env steps per game")
flags.DEFINE_integer("jowa_steps_per_policy", jowa_data.STEPS_PER_POLICY,
                     "with --jowa_games: dataset rows per snapshot policy and of random")


def write_goal_datasets(f) -> tuple[str, dict]:
    """(out_dir, summary) of the --goal_task mode."""
    out_dir = f.out_dir or f"datasets/{f.goal_task}"
    try:
        written = goal_tasks.write_datasets(f.goal_task, tuple(f.goal_kinds), f.goal_episodes,
                                            f.goal_length, f.seed, out_dir)
    except (ValueError, ImportError) as e:
        cli.exit_user_error(UserError(str(e)))
    return out_dir, written


def write_jowa_datasets(f) -> dict:
    """The --jowa_games mode: {game: summary} (also in <out_dir>/summary.json)."""
    try:
        return jowa_data.write_datasets(f.jowa_games, f.out_dir or jowa_data.OUT_DIR,
                                        f.jowa_env_steps, f.jowa_steps_per_policy, f.seed)
    except ValueError as e:
        cli.exit_user_error(UserError(str(e)))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quiet_libraries()
    f = flags.FLAGS
    if f.jowa_games:
        print(json.dumps(write_jowa_datasets(f), indent=2))
        return
    if f.goal_task:
        out_dir, written = write_goal_datasets(f)
        with open(os.path.join(out_dir, "summary.json"), "w") as fh:
            json.dump(written, fh, indent=2)
        print(json.dumps(written, indent=2))
        return
    env = f.config.env.name
    workdir, out_dir = f.workdir or f"runs/make_dataset_{env}", f.out_dir or f"datasets/{env}"
    try:
        written = make_datasets(f.config, workdir, out_dir, [int(s) for s in f.stages],
                                f.data_stage, f.random_steps, f.medium_steps, tuple(f.kinds))
    except UserError as e:
        cli.exit_user_error(e)
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(written, fh, indent=2, default=str)
    print(json.dumps(written, indent=2, default=str))


if __name__ == "__main__":
    sys.modules["__main__"].__doc__ += cli.usage("tdmpc", PRESETS).replace(
        "experiments/tdmpc.py", "experiments/make_dataset.py")
    app.run(main, flags_parser=cli.parse_flags)
