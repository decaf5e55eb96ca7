"""JOWA. Presets: smoke (tests), cpu (JAX-native MinAtar: 3 pretraining games + Asterix held out,
small transformers, minutes), paper (Atari 84x84, 15 + 5 games, 40M / 70M / 150M).

Make the datasets first: python experiments/make_dataset.py --jowa_games=<the cpu games>
Usage: python experiments/jowa.py --config=experiments/configs/jowa.py:cpu --workdir=runs/jowa
"""
import ml_collections

from jaxwm.agents.jowa.config import get_config as jowa_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return jowa_config(preset)
