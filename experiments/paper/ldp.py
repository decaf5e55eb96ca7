r"""Latent Diffusion Planning (Xie et al., 2025): goal-reaching success of a latent diffusion
planner + inverse-dynamics model that learns from action-free demonstrations and suboptimal
action-labelled data, vs the same agent on the labelled demonstrations alone, a goal-conditioned
diffusion policy and goal-conditioned BC.

Dataset mix (per task, make_dataset.py --goal_task): `scripted.npz` = 200 noisy scripted
demonstrations, of which only the first `dataset.labelled_demos` (cpu: 20) keep their actions;
`random.npz` = 200 episodes of correlated random actions (suboptimal, action-labelled).
  ldp               planner on all 200 demos (actions hidden); IDM on random + labelled demos
  ldp_demos         planner and IDM on the labelled demos only
  diffusion_policy  goal-conditioned diffusion policy (action chunks) on the labelled demos
  bc                goal-conditioned BC on the labelled demos
  dino_wm           (with --dino_wm_dir) the finished DINO-WM 'dino' runs of that grid, which
                    train on both datasets with every action: a reference, not the same data
Reported per task: success at the end (and ever), IQM [95% CI] over seeds on the same fixed
start/goal pairs, paired per-seed differences ldp - each other row, planning ms per decision.
Finished runs are reused. Writes table.md, results.json and success.png.

  .venv/bin/python experiments/paper/ldp.py --seeds=3 --out_dir=runs/paper/ldp \
      [--dino_wm_dir=runs/paper/dino_wm]
  # the same rows with 3x the cpu preset's VAE steps (see ldp_probe.py):
  .venv/bin/python experiments/paper/ldp.py --seeds=3 --tasks=Wall-v0 --variants=ldp,bc \
      --vae_steps=4500 --out_dir=runs/ldp_vae4500 \
      --archive=experiments/paper/results/runs/ldp_vae4500
"""
import os

from absl import app
from absl import flags

from jaxwm.agents.ldp import config as ldp_config
from jaxwm.runtime import goal_reaching, grid

TRAIN_FN = "jaxwm.agents.ldp.train:train_and_evaluate"
NAMES = {"ldp": "LDP (action-free demos + suboptimal)", "ldp_demos": "LDP, labelled demos only",
         "diffusion_policy": "diffusion policy", "bc": "goal-conditioned BC",
         "dino_wm": "DINO-WM (all data, all actions)"}
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("seeds", 3, "Seeds per variant: 0 .. seeds - 1.")
    flags.DEFINE_list("tasks", list(ldp_config.TASKS), f"Tasks among {ldp_config.TASKS}.")
    flags.DEFINE_list("variants", list(ldp_config.VARIANTS), "Rows among " + ", ".join(
        ldp_config.VARIANTS))
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(ldp_config.PRESETS))
    flags.DEFINE_integer("vae_steps", 0, "vae.steps of every run (0: the preset's); e.g. 4500, "
                         "which ldp_probe.py finds keeps the agent in the latents.")
    flags.DEFINE_string("datasets", "datasets", "Directory of <task>/{random,scripted}.npz.")
    flags.DEFINE_string("out_dir", "runs/paper/ldp", "Output directory.")
    flags.DEFINE_string("dino_wm_dir", "", "A DINO-WM grid's out_dir: adds its finished 'dino' "
                        "runs as a row.")
    flags.DEFINE_integer("jobs", 2, "Runs in parallel (planning times are then shared-CPU "
                         "times).")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")
    grid.define_archive_flag("ldp")


def run_config(task: str, variant: str, seed: int):
    c = ldp_config.get_config(FLAGS.preset)
    c.task, c.variant, c.seed = task, variant, seed
    c.dataset.demos = os.path.join(FLAGS.datasets, task, "scripted.npz")
    c.dataset.suboptimal = os.path.join(FLAGS.datasets, task, "random.npz")
    if FLAGS.vae_steps:
        c.vae.steps = FLAGS.vae_steps
    return c


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [v for v in FLAGS.variants if v not in ldp_config.VARIANTS] + [
        t for t in FLAGS.tasks if t not in ldp_config.TASKS]
    if bad:
        raise app.UsageError(f"{bad} not allowed; variants: {ldp_config.VARIANTS}, tasks: "
                             f"{ldp_config.TASKS}")
    if FLAGS.preset not in ldp_config.PRESETS or FLAGS.seeds < 1 or FLAGS.vae_steps < 0:
        raise app.UsageError(f"--preset={FLAGS.preset!r} (allowed {ldp_config.PRESETS}), "
                             f"--seeds={FLAGS.seeds} (>= 1), --vae_steps={FLAGS.vae_steps} (>= 0)")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = grid.with_archive(FLAGS.archive, FLAGS.out_dir, lambda: goal_reaching.run_grid(
        FLAGS.tasks, FLAGS.variants, FLAGS.seeds, FLAGS.out_dir, run_config, TRAIN_FN,
        FLAGS.jobs, FLAGS.report_only))
    if FLAGS.dino_wm_dir:
        for task in runs:
            seeds = {s: os.path.join(FLAGS.dino_wm_dir, task, "dino", f"seed_{s}")
                     for s in range(FLAGS.seeds)}
            done = {s: w for s, w in seeds.items()
                    if os.path.exists(os.path.join(w, goal_reaching.EVAL_FILE))}
            if done:
                runs[task]["dino_wm"] = done
    rows = {t: {v: {s: goal_reaching.run_scores(w) for s, w in seeds.items()}
                for v, seeds in vs.items()} for t, vs in runs.items()}
    c = ldp_config.get_config(FLAGS.preset)
    goal_reaching.save(FLAGS.out_dir, f"Latent Diffusion Planning goal reaching, {FLAGS.preset} "
                       f"preset ({c.dataset.labelled_demos or 'all'} labelled demos), IQM over "
                       f"{FLAGS.seeds} seeds", rows, runs, NAMES, "ldp", FLAGS.reps,
                       c.eval.goals)


if __name__ == "__main__":
    define_flags()
    app.run(main)
