"""JOWA throughput: transformer training tokens/s at several sizes, and beam-search decisions/s
vs acting greedily in Q, in one run.

  python benchmarks/jowa.py --sizes=tiny,small --num_envs=1,16 --out=benchmarks/results

For each cpu size (random weights, the cpu preset's context of 3 steps x 26 tokens):
- training tokens/s: one jitted joint-loss gradient step (with the target network's forward)
  on `--batch` windows, tokens = batch x context x (25 + 1);
- decisions/s for `num_envs` envs at once: tokenize the frames, then greedy in Q (one cached
  forward of the 25 frame tokens) vs beam search (K 2, H 2: 2 + 4 imagined steps of 26 cached
  decoding calls each), both jitted; the ratio is what planning costs.
Medians of `--repeats` timed calls after one compile call. Printed and saved (jowa.json).
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxwm.agents.jowa import config as jowa_config
from jaxwm.agents.jowa import train as jowa_train
from jaxwm.models import vqvae
from jaxwm.models import world_action_transformer as wat
from jaxwm.runtime.logging import median_seconds, save_benchmark

flags.DEFINE_list("sizes", ["tiny", "small"], f"cpu sizes among {sorted(jowa_config.CPU_SIZES)}")
flags.DEFINE_list("num_envs", ["1", "16"], "envs acted for per call")
flags.DEFINE_integer("batch", 32, "windows per training step (the cpu preset's)")
flags.DEFINE_integer("repeats", 5, "timed calls after one compile call")
flags.DEFINE_string("out", "benchmarks/results", "directory for jowa.json")
FLAGS = flags.FLAGS



def bench(size: str, batch: int, num_envs: list, repeats: int) -> dict:
    c = jowa_config.get_config("cpu")
    c.model.size = size
    models = jowa_train.Models(c, positive_weight=10.0)
    key = jax.random.key(0)
    params = models.init_net(key)
    g, ctx = models.tok.num_tokens, c.model.context
    k1, k2, k3 = jax.random.split(key, 3)
    windows = {"obs_tokens": jax.random.randint(k1, (batch, ctx, g), 0, c.tokenizer.num_codes),
               "actions": jax.random.randint(k2, (batch, ctx), 0, jowa_train.NUM_ACTIONS),
               "rewards": jnp.zeros((batch, ctx)), "dones": jnp.zeros((batch, ctx)),
               "task": jnp.zeros((batch,), jnp.int32), "mask": jnp.ones((batch, ctx))}
    grad = jax.jit(jax.grad(lambda p: wat.joint_loss(
        models.net, p, params, windows, support=models.support, gamma=0.99)[0]))
    step_s = median_seconds(lambda: grad(params), repeats)
    tok_params, vq = vqvae.init(models.tok, k3)
    row = {"size": size, "params": int(sum(x.size for x in jax.tree.leaves(params))),
           "train_step_s": step_s, "train_tokens_per_s": batch * ctx * (g + 1) / step_s,
           "acting": []}
    for n in num_envs:
        obs = (jax.random.uniform(key, (n, 10, 10, jowa_train.CHANNELS)) < 0.05).astype(
            jnp.float32)
        task = jnp.zeros((n,), jnp.int32)
        times = {}
        for mode in ("greedy", "beam"):
            act = jax.jit(jowa_train.make_act(models, mode))
            times[mode] = median_seconds(lambda: act(params, tok_params, vq, obs, task), repeats)
        row["acting"].append({"num_envs": n,
                              "greedy_decisions_per_s": n / times["greedy"],
                              "beam_decisions_per_s": n / times["beam"],
                              "beam_cost_ratio": times["beam"] / times["greedy"]})
    return row


def main(argv):
    del argv
    rows = [bench(s, FLAGS.batch, [int(n) for n in FLAGS.num_envs], FLAGS.repeats)
            for s in FLAGS.sizes]
    for r in rows:
        print(f"{r['size']} ({r['params'] / 1e6:.2f}M params): training "
              f"{r['train_tokens_per_s']:.0f} tokens/s ({r['train_step_s']:.3f} s/step)")
        for a in r["acting"]:
            print(f"  {a['num_envs']} envs: greedy {a['greedy_decisions_per_s']:.1f} vs beam "
                  f"{a['beam_decisions_per_s']:.1f} decisions/s (beam costs "
                  f"{a['beam_cost_ratio']:.1f}x)")
    save_benchmark(FLAGS.out, "jowa", {"rows": rows, "batch": FLAGS.batch})


if __name__ == "__main__":
    app.run(main)
