"""PlaNet online. Presets: smoke (tests), cpu (CartpoleSwingup states, minutes here), paper
(PlaNet's settings on walker walk from pixels).

Usage: python experiments/planet.py --config=experiments/configs/planet.py:cpu --workdir=runs/planet
       (--config.run.policy=random gives the random-policy baseline with the same env budget)
"""
import ml_collections

from jaxwm.agents.planet.config import get_config as planet_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return planet_config(preset)
