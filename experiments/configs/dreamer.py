"""Dreamer (DreamerV2) online. Presets: smoke (tests), cpu (CartpoleBalance states, minutes here),
paper (DreamerV2 DMC: walker walk from pixels).

Usage: python experiments/dreamer.py --config=experiments/configs/dreamer.py:cpu \
           --workdir=runs/dreamer
       (--config.run.policy=random gives the random-policy baseline with the same env budget)
"""
import ml_collections

from jaxwm.agents.dreamer.config import get_config as dreamer_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return dreamer_config(preset)
