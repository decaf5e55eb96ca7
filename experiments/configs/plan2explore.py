"""Plan2Explore online, reward-free, + zero-shot evaluation. Presets: smoke (tests), cpu (walker
states with zero-shot stand/walk/run/flip), cpu_minigrid (coverage on MiniGrid), paper (walker
pixels, DreamerV2 sizes).

Usage: python experiments/plan2explore.py --config=experiments/configs/plan2explore.py:cpu \
           --workdir=runs/p2e
       (--config.run.policy=random gives the random-policy baseline with the same env budget)
"""
import ml_collections

from jaxwm.agents.plan2explore.config import get_config as p2e_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return p2e_config(preset)
