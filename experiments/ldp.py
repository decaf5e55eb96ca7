"""Latent Diffusion Planning: a diffusion planner over VAE latent trajectories and a diffusion
inverse-dynamics model (Xie et al., 2025).

  python experiments/make_dataset.py --goal_task=Wall-v0      # demos (scripted) + suboptimal (random)
  python experiments/ldp.py --config=experiments/configs/ldp.py:cpu --workdir=runs/ldp \
      [--config.variant=ldp|ldp_demos|diffusion_policy|bc]
Stages: VAE, then the planner and the IDM (or the policy), then goal reaching on the task's
fixed start/goal pairs. Writes config.json, metrics.jsonl, TensorBoard events, checkpoints/
(resumable by stage) and eval.json (success rate, seconds per plan).
"""
from jaxwm.agents.ldp.config import PRESETS
from jaxwm.agents.ldp.train import train_and_evaluate
from jaxwm.runtime import cli

if __name__ == "__main__":
    cli.run("ldp", train_and_evaluate, "Latent Diffusion Planning", PRESETS)
