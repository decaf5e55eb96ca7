"""FOWM offline-to-online finetuning. Presets: smoke (tests), cpu (CartpoleSwingup, a locally
generated medium-replay dataset, a few minutes here), paper (FOWM defaults, D4RL task settings).

Make the dataset first (its defaults: a TD-MPC cpu run on CartpoleSwingup snapshotted at 1000
env steps, written to datasets/CartpoleSwingup-v1/):
  python experiments/make_dataset.py
Usage: python experiments/fowm.py --config=experiments/configs/fowm.py:cpu --workdir=runs/fowm
"""
import ml_collections

from jaxwm.agents.fowm.config import get_config as fowm_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return fowm_config(preset)
