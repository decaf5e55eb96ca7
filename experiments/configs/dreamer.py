"""Dreamer online, one binary for three versions by preset (`jaxwm/agents/dreamer/config.py`):
smoke / cpu / paper = DreamerV2, smoke_v1 / cpu_v1 / paper_v1 = DreamerV1, smoke_v3 / cpu_v3 /
paper_v3 = DreamerV3. smoke: tests; cpu: CartpoleBalance from states, minutes here; paper: the
version's published DMC defaults (walker walk from pixels).

Usage: python experiments/dreamer.py --config=experiments/configs/dreamer.py:cpu_v3 \
           --workdir=runs/dreamer_v3 [--config.env.name=CartpoleSwingup-v1]
       (--config.run.policy=random gives the random-policy baseline with the same env budget)
"""
import ml_collections

from jaxwm.agents.dreamer.config import AGENT_PRESETS
from jaxwm.agents.dreamer.config import get_config as dreamer_config

PRESETS = AGENT_PRESETS            # names accepted after `dreamer.py:`


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    return dreamer_config(preset)
