r"""DINO-WM (Zhou et al., 2024): goal-reaching success of planning on frozen DINO patch features
vs the same world model on other encoders, and vs goal-conditioned behavior cloning.

Variants (rows), each on the same offline datasets, the same `eval.goals` fixed start/goal pairs
and the same seeds:
  dino            frozen ViT pretrained here by DINO self-distillation on the dataset's frames
  reconstruction  the same ViT trained end to end with the predictor and pixel reconstruction
  random          frozen randomly initialized ViT
  bc              goal-conditioned behavior cloning on the same data (no world model)
  dinov2          (only with --dinov2=<local checkpoint>) the paper's frozen DINOv2 ViT
Reported per task: success rate at the end of the episode (and ever reached) in %, IQM [95% CI]
over seeds; paired per-seed differences dino - each other row; planning seconds per decision
(batched over the goals). Finished runs are reused. Writes table.md, results.json and
success.png.

  .venv/bin/python experiments/make_dataset.py --goal_task=Wall-v0
  .venv/bin/python experiments/make_dataset.py --goal_task=PushT-v0
  .venv/bin/python experiments/paper/dino_wm.py --seeds=3 --out_dir=runs/paper/dino_wm
"""
import os

from absl import app
from absl import flags

from jaxwm.agents.dino_wm import config as dwm_config
from jaxwm.runtime import goal_reaching, grid

TRAIN_FN = "jaxwm.agents.dino_wm.train:train_and_evaluate"
VARIANTS = ("dino", "reconstruction", "random", "bc")
NAMES = {"dino": "frozen DINO encoder (pretrained here)", "dinov2": "frozen DINOv2 (file)",
         "reconstruction": "end-to-end + pixel reconstruction", "random": "frozen random encoder",
         "bc": "goal-conditioned BC"}
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("seeds", 3, "Seeds per variant: 0 .. seeds - 1.")
    flags.DEFINE_list("tasks", list(dwm_config.TASKS), f"Tasks among {dwm_config.TASKS}.")
    flags.DEFINE_list("variants", list(VARIANTS), "Rows among " + ", ".join(
        dwm_config.VARIANTS))
    flags.DEFINE_string("dinov2", "", "Local DINOv2 checkpoint: adds the 'dinov2' row.")
    flags.DEFINE_string("preset", "cpu", "Preset of every run: " + ", ".join(dwm_config.PRESETS))
    flags.DEFINE_string("datasets", "datasets", "Directory of <task>/{random,scripted}.npz.")
    flags.DEFINE_string("out_dir", "runs/paper/dino_wm", "Output directory.")
    flags.DEFINE_integer("jobs", 2, "Runs in parallel (planning times are then shared-CPU "
                         "times).")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only.")
    grid.define_archive_flag("dino_wm")


def run_config(task: str, variant: str, seed: int):
    c = dwm_config.get_config(FLAGS.preset)
    c.task, c.variant, c.seed = task, variant, seed
    c.dataset.paths = tuple(os.path.join(FLAGS.datasets, task, f"{k}.npz")
                            for k in ("random", "scripted"))
    if variant == "dinov2":
        c.encoder.checkpoint = FLAGS.dinov2
    return c


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    variants = list(FLAGS.variants) + (["dinov2"] if FLAGS.dinov2 else [])
    bad = [v for v in variants if v not in dwm_config.VARIANTS] + [
        t for t in FLAGS.tasks if t not in dwm_config.TASKS]
    if bad:
        raise app.UsageError(f"{bad} not allowed; variants: {dwm_config.VARIANTS}, tasks: "
                             f"{dwm_config.TASKS}")
    if FLAGS.preset not in dwm_config.PRESETS or FLAGS.seeds < 1:
        raise app.UsageError(f"--preset={FLAGS.preset!r} (allowed {dwm_config.PRESETS}), "
                             f"--seeds={FLAGS.seeds} (>= 1)")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = grid.with_archive(FLAGS.archive, FLAGS.out_dir, lambda: goal_reaching.run_grid(
        FLAGS.tasks, variants, FLAGS.seeds, FLAGS.out_dir, run_config, TRAIN_FN, FLAGS.jobs,
        FLAGS.report_only))
    rows = {t: {v: {s: goal_reaching.run_scores(w) for s, w in seeds.items()}
                for v, seeds in vs.items()} for t, vs in runs.items()}
    goal_reaching.save(FLAGS.out_dir, f"DINO-WM goal reaching, {FLAGS.preset} preset, IQM over "
                       f"{FLAGS.seeds} seeds", rows, runs, NAMES, "dino", FLAGS.reps,
                       dwm_config.get_config(FLAGS.preset).eval.goals)


if __name__ == "__main__":
    define_flags()
    app.run(main)
