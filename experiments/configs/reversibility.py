"""Reversibility-aware RL. Presets: smoke (tests), cpu (about a minute here), paper (the
authors' settings where known). Modes: --config.mode=rae (PPO +- RAE on Turf or Sokoban;
--config.rae.penalty=0 is plain PPO) or --config.mode=rac (DQN +- RAC on CartPole-v1;
--config.rac.enabled=False is plain DQN).

Usage: python experiments/reversibility.py --config=experiments/configs/reversibility.py:cpu \
         --config.mode=rae --workdir=runs/rae
"""
import ml_collections

from jaxwm.agents.reversibility.config import get_config as reversibility_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return reversibility_config(preset)
