"""DINO-WM throughput: encoder and predictor frames/s, and CEM decisions/s jitted vs a host loop.

  python benchmarks/dino_wm.py --presets=cpu --num_envs=1,50 --out=benchmarks/results

For each agent preset (its ViT encoder, predictor and CEM sizes, random weights):
- encoder frames/s: `encode` (preprocess + ViT) of a batch of 64 frames, jitted;
- predictor frames/s: one teacher-forced forward pass over a batch of windows (frames predicted
  per second) and one gradient step of the predictor (frames trained per second);
- CEM decisions/s for `num_envs` goals at once: the whole planner as one jitted program
  (`planners.cem.plan_batch`: a scan over iterations and horizon, vmapped over envs) against the
  same CEM written as a host loop (NumPy sampling, elite refit and warm start; one jitted
  predictor call per horizon step over all envs x candidates), as an implementation without a
  compiled planner would run it. Both score the same model; the ratio is jitted / host loop.
Medians of `--repeats` timed calls after one compile call, in one run. Printed and saved as
JSON (dino_wm.json).
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxwm.agents.dino_wm import config as dwm_config
from jaxwm.agents.dino_wm.train import Models, Planner, encode
from jaxwm.models import dino_wm
from jaxwm.runtime.logging import median_seconds, save_benchmark

flags.DEFINE_list("presets", ["cpu"], "dino_wm presets timed (cpu, paper)")
flags.DEFINE_list("num_envs", ["1", "50"], "goals planned for per call")
flags.DEFINE_integer("repeats", 5, "timed calls after one compile call")
flags.DEFINE_string("out", "benchmarks/results", "directory for dino_wm.json")
FLAGS = flags.FLAGS



def host_loop_cem(models: Models, params, states: dino_wm.PlanState, key, prev_mean):
    """CEM with NumPy sampling/refit and one jitted predictor step per horizon step."""
    pl = models.c.planner
    n, h, a = prev_mean.shape
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    mean = np.concatenate([prev_mean[:, 1:], np.zeros_like(prev_mean[:, :1])], 1)
    std = np.full_like(mean, pl.init_std)
    j = pl.num_candidates
    tiled = jax.tree.map(lambda x: jnp.repeat(x, j, 0), states)
    for _ in range(pl.iterations):
        actions = np.clip(mean[:, None] + std[:, None] * rng.standard_normal((n, j, h, a)),
                          -1, 1).astype(np.float32)
        s = tiled
        for t in range(h):
            s = _step(models.predictor, params, s, jnp.asarray(actions[:, :, t].reshape(-1, a)))
        cost = np.asarray(_cost(s)).reshape(n, j)
        elite = np.argsort(cost, 1)[:, :pl.num_elites]
        elites = np.take_along_axis(actions, elite[:, :, None, None], 1)
        mean, std = elites.mean(1), np.sqrt(elites.var(1) + 1e-6)
    return mean


_step = jax.jit(dino_wm.rollout_step, static_argnums=0)
_cost = jax.jit(lambda s: dino_wm.goal_cost(s.z[:, -1], s.goal))


def bench(preset: str, repeats: int, env_counts) -> dict:
    c = dwm_config.get_config(preset)
    models = Models(c, action_size=2)
    e, p = c.encoder, c.predictor
    key = jax.random.key(0)
    enc_params = models.vit.init(key, jnp.zeros((1, e.image_size, e.image_size, 3)))
    state = models.init(key, enc_params)
    pred = state.params["pred"]
    frames = jnp.zeros((64, 64, 64, 3), jnp.uint8)
    enc = jax.jit(lambda prm, x: encode(models.vit, prm, x))
    row = {"preset": preset, "patches": models.num_patches, "feature_dim": e.dim,
           "history": p.history, "planner": dict(c.planner)}
    row["encoder_frames_per_s"] = 64 / median_seconds(lambda: enc(enc_params, frames), repeats)
    bsz = c.train.batch_size
    z = jax.random.normal(key, (bsz, p.history + 1, models.num_patches, e.dim))
    acts = jnp.zeros((bsz, p.history + 1, models.model_action))
    fwd = jax.jit(lambda prm: models.predictor.apply(prm, z[:, :-1], acts[:, :-1]))
    grad = jax.jit(jax.grad(lambda prm: dino_wm.prediction_loss(models.predictor, prm, z, acts)))
    row["predictor_frames_per_s"] = bsz * p.history / median_seconds(lambda: fwd(pred), repeats)
    row["predictor_train_frames_per_s"] = bsz * p.history / median_seconds(
        lambda: grad(pred), repeats)
    planner = Planner(models)
    row["cem"] = []
    for n in env_counts:
        states = dino_wm.PlanState(
            z=jax.random.normal(key, (n, p.history, models.num_patches, e.dim)),
            actions=jnp.zeros((n, p.history, models.model_action)),
            goal=jax.random.normal(jax.random.key(1), (n, models.num_patches, e.dim)))
        prev = planner.initial(n)
        first = jnp.zeros(n, bool)
        jitted = median_seconds(lambda: planner.plan(pred, key, states, prev, first), repeats)
        host = median_seconds(lambda: host_loop_cem(models, pred, states, key, np.asarray(prev)),
                              max(2, repeats // 2))
        row["cem"].append({"num_envs": n, "jitted_decisions_per_s": n / jitted,
                           "host_loop_decisions_per_s": n / host, "ratio": host / jitted})
    return row


def main(argv):
    del argv
    rows = [bench(p, FLAGS.repeats, [int(n) for n in FLAGS.num_envs]) for p in FLAGS.presets]
    for r in rows:
        print(f"{r['preset']}: encoder {r['encoder_frames_per_s']:.0f} frames/s, predictor "
              f"{r['predictor_frames_per_s']:.0f} frames/s (train "
              f"{r['predictor_train_frames_per_s']:.0f})")
        for cr in r["cem"]:
            print(f"  CEM, {cr['num_envs']} envs: jitted {cr['jitted_decisions_per_s']:.2f} vs "
                  f"host loop {cr['host_loop_decisions_per_s']:.2f} decisions/s "
                  f"({cr['ratio']:.1f}x)")
    save_benchmark(FLAGS.out, "dino_wm", {"rows": rows})


if __name__ == "__main__":
    app.run(main)
