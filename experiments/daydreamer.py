"""Train an agent with asynchronous acting and learning (DayDreamer, Wu et al., CoRL 2022).

  python experiments/daydreamer.py --config=experiments/configs/daydreamer.py:cpu \
      --config.runner.backend=threads --workdir=runs/daydreamer
Writes config.json, metrics.jsonl (learner and actor rates, parameter version, losses),
episodes.jsonl (every episode with the parameter versions it acted with and its wall-clock
minute), TensorBoard events, plots/ and checkpoints/ (a killed run resumes from --workdir).
"""
from jaxwm.agents.daydreamer.train import PRESETS, train_and_evaluate
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("daydreamer", train_and_evaluate, "DayDreamer", PRESETS)
