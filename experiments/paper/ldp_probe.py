r"""What LDP's frozen VAE latents keep of the agent (Xie et al., 2025; diagnostic of the
ldp.py grid): for each task and seed, stage 1 is trained exactly as in that grid's runs (same
config and keys, so at the preset's vae.steps it is the runs' VAE), then continued, and at every
step count of --vae_steps an MLP probe (agents/ldp/probe.py) reads, on 40 held-out demos, the
agent's position from z_t and the action from (z_t, z_{t+1}); the action from the true
positions is the ceiling of two-frame inverse dynamics. Relative MSE: 0 = exact, 1 = the mean.
Writes probe.md and probe.json to --out_dir.

  .venv/bin/python experiments/paper/ldp_probe.py --seeds=3 --vae_steps=1500,4500
"""
import json
import os

import jax
from absl import app
from absl import flags

from jaxwm.agents.ldp import config as ldp_config
from jaxwm.agents.ldp import probe
from jaxwm.agents.ldp import train as ldp_train

HELD_OUT = 40
FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 3, "Seeds: 0 .. seeds - 1.")
flags.DEFINE_list("tasks", list(ldp_config.TASKS), f"Tasks among {ldp_config.TASKS}.")
flags.DEFINE_list("vae_steps", ["1500", "4500"], "VAE step counts to probe at (increasing).")
flags.DEFINE_float("kl_weight", -1.0, "vae.kl_weight override (< 0: the preset's).")
flags.DEFINE_string("preset", "cpu", "Preset: " + ", ".join(ldp_config.PRESETS))
flags.DEFINE_string("datasets", "datasets", "Directory of <task>/{random,scripted}.npz.")
flags.DEFINE_string("out_dir", "runs/paper/ldp_probe", "Output directory.")


def probe_seed(task: str, seed: int, milestones: list) -> list:
    c = ldp_config.get_config(FLAGS.preset)
    c.task, c.seed = task, seed
    c.dataset.demos = os.path.join(FLAGS.datasets, task, "scripted.npz")
    c.dataset.suboptimal = os.path.join(FLAGS.datasets, task, "random.npz")
    if FLAGS.kl_weight >= 0:
        c.vae.kl_weight = FLAGS.kl_weight
    ldp_train.check_config(c)
    demos, subopt = ldp_train.load(c, "demos"), ldp_train.load(c, "suboptimal")
    models = ldp_train.Models(c, demos["action"].shape[-1])
    k_vae = ldp_train.stage_keys(c.seed)[0]
    opt, state, frames = ldp_train.init_vae(models, demos, subopt, k_vae)
    out, done = [], 0
    for steps in milestones:
        state = ldp_train.train_vae(models, opt, state, frames, k_vae, done, steps)
        done = steps
        z = ldp_train.latents(models, state.params, demos["image"])
        scores = probe.latent_probes(z, demos["vector"], demos["action"], HELD_OUT,
                                     jax.random.key(seed))
        out.append(dict(task=task, seed=seed, vae_steps=steps, kl_weight=c.vae.kl_weight,
                        **scores))
        print(json.dumps(out[-1]), flush=True)
    return out


def write(rows: list):
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "probe.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = [f"# LDP latent probes, {FLAGS.preset} preset (relative MSE on {HELD_OUT} held-out "
             "demos: 0 = exact, 1 = the mean)", "",
             "| task | seed | VAE steps | KL weight | position from z_t | action from "
             "(z_t, z_t+1) | action from (p_t, p_t+1) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['seed']} | {r['vae_steps']} | {r['kl_weight']:g} | "
              f"{r['position']:.3f} | {r['action']:.3f} | {r['action_from_positions']:.3f} |"
              for r in rows]
    with open(os.path.join(FLAGS.out_dir, "probe.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    bad = [t for t in FLAGS.tasks if t not in ldp_config.TASKS]
    milestones = [int(s) for s in FLAGS.vae_steps]
    if bad or FLAGS.preset not in ldp_config.PRESETS or milestones != sorted(set(milestones)) \
            or milestones[0] < 1:
        raise app.UsageError(f"--tasks {bad} not in {ldp_config.TASKS}, or --preset="
                             f"{FLAGS.preset!r} not in {ldp_config.PRESETS}, or --vae_steps="
                             f"{FLAGS.vae_steps} not increasing positive integers")
    rows = []
    for task in FLAGS.tasks:
        for seed in range(FLAGS.seeds):
            rows += probe_seed(task, seed, milestones)
            write(rows)   # after every task-seed: a stopped run keeps its finished rows


if __name__ == "__main__":
    app.run(main)
