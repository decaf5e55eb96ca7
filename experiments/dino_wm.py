"""DINO-WM: a world model on frozen self-supervised patch features, planning to image goals
(Zhou et al., 2024).

  python experiments/make_dataset.py --goal_task=Wall-v0        # datasets/Wall-v0/*.npz
  python experiments/dino_wm.py --config=experiments/configs/dino_wm.py:cpu --workdir=runs/dwm \
      [--config.variant=dino|dinov2|reconstruction|random|bc] [--config.task=PushT-v0 \
       --config.dataset.paths=datasets/PushT-v0/random.npz,datasets/PushT-v0/scripted.npz]
Stages: DINO pretraining of the ViT (variant 'dino'), the predictor and its visualization
decoder (or a goal-conditioned BC policy), then MPC with CEM to `eval.goals` image goals.
Writes config.json, metrics.jsonl, TensorBoard events, checkpoints/ (resumable in any stage),
eval.json (success rate, planning seconds per decision) and plots/rollout.png (real vs
predicted frames). PushT-v0 needs `pip install -e '.[pusht]'`.
"""
from jaxwm.agents.dino_wm.config import PRESETS
from jaxwm.agents.dino_wm.train import train_and_evaluate
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("dino_wm", train_and_evaluate, "DINO-WM", PRESETS)
