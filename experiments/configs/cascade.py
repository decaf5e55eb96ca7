"""CASCADE deployments. Presets `<size>` or `<size>_<domain>`: sizes smoke, cpu (`make demo` is
`cpu` = `cpu_minigrid`), paper; domains minigrid, walker, atari, crafter
(`jaxwm.agents.cascade.config.get_config`). Baselines by --config.method.

  python experiments/cascade.py --config=experiments/configs/cascade.py:cpu \
      --config.method=pp2e --workdir=runs/pp2e
  python experiments/cascade.py --config=experiments/configs/cascade.py:cpu_walker \
      --workdir=runs/cascade_walker
"""
from jaxwm.agents.cascade.config import get_config  # noqa: F401
