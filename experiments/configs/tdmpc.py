"""TD-MPC / TD-MPC2 online on DMC state tasks. Presets: smoke (tests), cpu (CartpoleBalance with
TD-MPC's action repeat 8, ~3 minutes here), paper (TD-MPC defaults, walker walk); the `_v2`
presets (smoke_v2, cpu_v2, paper_v2) switch to TD-MPC2.

Usage: python experiments/tdmpc.py --config=experiments/configs/tdmpc.py:cpu --workdir=runs/tdmpc
"""
import ml_collections

from jaxwm.agents.tdmpc.config import get_config as tdmpc_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return tdmpc_config(preset)
