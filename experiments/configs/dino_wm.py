"""DINO-WM. Presets: smoke (tests), cpu (Wall or Push-T from 64 px frames, a small ViT
pretrained here by DINO, minutes), paper (DINOv2 ViT-S/14 at 224 px from a local file, the
paper's predictor and CEM settings).

Make the datasets first: python experiments/make_dataset.py --goal_task=Wall-v0
Usage: python experiments/dino_wm.py --config=experiments/configs/dino_wm.py:cpu --workdir=runs/dwm
"""
import ml_collections

from jaxwm.agents.dino_wm.config import get_config as dino_wm_config


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return dino_wm_config(preset)
