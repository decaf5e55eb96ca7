"""JOWA: a jointly-optimized world-action transformer pretrained offline on several games,
acting by beam search in its model, finetuned few-shot on a held-out game (Cheng et al., 2025).

  python experiments/make_dataset.py --jowa_games=MinAtar-Breakout-v0,MinAtar-SpaceInvaders-v0,\
MinAtar-Freeway-v0,MinAtar-Asterix-v0          # PPO-generated mixed-quality data, ~10 min
  python experiments/jowa.py --config=experiments/configs/jowa.py:cpu --workdir=runs/jowa \
      [--config.variant=jowa|no_cql|no_wm|mse_td|detach_q|bc] [--config.model.size=tiny|small|base]
Stages: tokenizer, joint transformer on the pretraining games, evaluation greedy in Q and with
beam search, few-shot finetuning on the held-out game vs training from scratch. Writes
config.json, metrics.jsonl, TensorBoard events, checkpoints/ (resumable) and eval.json.
"""
from jaxwm.agents.jowa.config import PRESETS
from jaxwm.agents.jowa.train import train_and_evaluate
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("jowa", train_and_evaluate, "JOWA", PRESETS, print_summary=False)
