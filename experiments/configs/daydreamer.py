"""DayDreamer: asynchronous actors and learner for Dreamer V2/V3 or TD-MPC. Presets: smoke, cpu,
paper (Dreamer V2), smoke_v3 / cpu_v3 / paper_v3, smoke_tdmpc / cpu_tdmpc / paper_tdmpc.
--config.runner.backend=sync|threads|ray; --config.runner.control_hz=20 paces the envs.

Usage: python experiments/daydreamer.py --config=experiments/configs/daydreamer.py:cpu \
         --config.runner.backend=threads --workdir=runs/daydreamer
"""
import ml_collections

from jaxwm.agents.daydreamer.config import get_config as daydreamer_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return daydreamer_config(preset)
