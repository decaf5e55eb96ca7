"""CASCADE deployments. Presets: smoke, cpu (`make demo`), paper. Baselines by --config.method.

  python experiments/cascade.py --config=experiments/configs/cascade.py:cpu \
      --config.method=pp2e --config.env.name=MiniGrid-FourRooms-v0 --workdir=runs/pp2e
"""
from jaxwm.agents.cascade.config import get_config  # noqa: F401
