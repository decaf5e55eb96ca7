"""Latent Diffusion Planning. Presets: smoke (tests), cpu (Wall or Push-T, 64 px frames,
minutes), paper (16-d latents, horizon 16, the paper's sizes where stated).

Make the datasets first: python experiments/make_dataset.py --goal_task=Wall-v0
Usage: python experiments/ldp.py --config=experiments/configs/ldp.py:cpu --workdir=runs/ldp
"""
import ml_collections

from jaxwm.agents.ldp.config import get_config as ldp_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return ldp_config(preset)
