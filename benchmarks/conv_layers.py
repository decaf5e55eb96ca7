"""Where a DreamerV2 world-model step's time goes on this backend: each CNN layer, native vs phase.

  python benchmarks/conv_layers.py --depth=16 --images=256

Times forward + backward (gradients of input and kernel) of every conv layer of DreamerV2's
64x64 encoder and decoder (`jaxwm.nn.blocks`) at the given depth and images per step (the `cpu`
preset: depth 16, B 16 x T 16 = 256), for XLA's native strided convs and for the stride-1
'phase' lowering of `jaxwm.nn.conv`, in one run. The sum over layers is comparable with the whole
step of `benchmarks/world_model_step.py`. Printed as a table and saved as `conv_layers.json`.
"""
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxwm.nn import conv
from jaxwm.runtime.logging import save_benchmark

flags.DEFINE_integer("depth", 16, "CNN channel multiplier (cpu preset: 16, paper: 48)")
flags.DEFINE_integer("images", 256, "images per step (B x T)")
flags.DEFINE_integer("channels", 1, "image channels")
flags.DEFINE_integer("repeats", 5, "timed calls per layer and lowering (median reported)")
flags.DEFINE_string("out", "benchmarks/results", "directory for conv_layers.json")
FLAGS = flags.FLAGS


def layers(depth: int, channels: int) -> list:
    """(name, input side, in channels, out channels, kernel, transposed) of DreamerV2's CNN."""
    enc = [(f"encoder {i}", side, cin, cout, 4, False) for i, (side, cin, cout) in enumerate(
        [(64, channels, depth), (31, depth, 2 * depth), (14, 2 * depth, 4 * depth),
         (6, 4 * depth, 8 * depth)])]
    dec = [(f"decoder {i}", side, cin, cout, k, True) for i, (side, cin, cout, k) in enumerate(
        [(1, 32 * depth, 4 * depth, 5), (5, 4 * depth, 2 * depth, 5), (13, 2 * depth, depth, 6),
         (30, depth, channels, 6)])]
    return enc + dec


def time_layer(side, cin, cout, k, transposed, lowering) -> float:
    op = conv.conv_transpose_stride2 if transposed else conv.conv_stride2
    grads = jax.jit(jax.grad(lambda x, w: jnp.sum(op(x, w, lowering) ** 2), argnums=(0, 1)))
    x = jax.random.normal(jax.random.PRNGKey(0), (FLAGS.images, side, side, cin))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout)) / k
    jax.block_until_ready(grads(x, w))
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        jax.block_until_ready(grads(x, w))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    rows = []
    print(f"{'layer':>10} {'input':>14} {'kernel':>7} {'native ms':>10} {'phase ms':>9} ratio")
    for name, side, cin, cout, k, transposed in layers(FLAGS.depth, FLAGS.channels):
        native, phase = (time_layer(side, cin, cout, k, transposed, lw)
                         for lw in ("native", "phase"))
        rows.append({"layer": name, "input": [side, side, cin], "out_channels": cout,
                     "kernel": k, "native_s": native, "phase_s": phase})
        print(f"{name:>10} {f'{side}x{side}x{cin}':>14} {k:>7} {1e3 * native:10.1f} "
              f"{1e3 * phase:9.1f} {native / phase:5.2f}x")
    total = {lw: sum(r[f"{lw}_s"] for r in rows) for lw in ("native", "phase")}
    print(f"{'all':>10} {'':>14} {'':>7} {1e3 * total['native']:10.1f} "
          f"{1e3 * total['phase']:9.1f} {total['native'] / total['phase']:5.2f}x")
    save_benchmark(FLAGS.out, "conv_layers", {"depth": FLAGS.depth, "images": FLAGS.images,
                                              "rows": rows, "total_s": total})


if __name__ == "__main__":
    app.run(main)
