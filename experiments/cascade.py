"""CASCADE and its baselines (random, p2e, pp2e) on reward-free deployments.

  python experiments/cascade.py --config=experiments/configs/cascade.py:cpu --workdir=runs/demo
Writes config.json, metrics.jsonl (one record per deployment: coverage, episode statistics,
losses, zero-shot returns), TensorBoard events, checkpoints/ (resumes at the last completed
deployment) and plots/metrics.png under --workdir.
"""
from jaxwm.agents.cascade import train as deployments
from jaxwm.agents.cascade.config import PRESETS
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("cascade", deployments.run, "CASCADE", PRESETS, print_summary=False)
