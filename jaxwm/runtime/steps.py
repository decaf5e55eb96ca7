"""Repeated training steps: one `lax.scan` in one jitted call, or a host loop of a jitted step.

XLA:CPU computes convolution gradients inside a while loop (what `lax.scan` lowers to) with a
slow generic kernel: measured on this machine, the gradient of DreamerV2's conv encoder on 64
frames takes 2.0 s per step inside a scan and 0.08 s as a jitted step alone, with either conv
lowering of `jaxwm.nn.conv`; forward convolutions and matmuls are unaffected (JAX issue #12868:
convolutions in loop bodies are not given the layout of the fast Eigen kernels). So on the CPU
backend, models with convolutions take their steps in a host loop (one dispatch per step,
~0.1 ms); on GPU/TPU one scan per call saves the dispatches. (`jaxwm.utils.scan_gradient_steps`
is the in-program alternative for a few steps per call: it traces them straight-line, which
compiles one copy per step.)
"""
from typing import Callable

import jax
import jax.numpy as jnp

LOOPS = ("auto", "scan", "host")


def resolve_loop(loop: str) -> str:
    """'auto' -> 'host' on the CPU backend, 'scan' on GPU/TPU; others unchanged."""
    if loop not in LOOPS:
        raise ValueError(f"loop={loop!r} is not one of {LOOPS}")
    if loop == "auto":
        return "host" if jax.default_backend() == "cpu" else "scan"
    return loop


def repeat_steps(step: Callable, loop: str = "auto", donate: bool = True) -> Callable:
    """`step(state, key, *args) -> (state, metrics)` -> `run(state, key, num_steps, *args) ->
    (state, metrics stacked [num_steps, ...])`, applying `step` with the keys
    `jax.random.split(key, num_steps)` in order (the same computation in both loops). `state`
    is donated when `donate`; `num_steps` is static for the scan."""
    donate_argnums = (0,) if donate else ()
    if resolve_loop(loop) == "scan":
        def scanned(state, key, num_steps, *args):
            return jax.lax.scan(lambda s, k: step(s, k, *args), state,
                                jax.random.split(key, num_steps))
        return jax.jit(scanned, static_argnums=2, donate_argnums=donate_argnums)

    one = jax.jit(step, donate_argnums=donate_argnums)
    split = jax.jit(jax.random.split, static_argnums=1)

    def looped(state, key, num_steps, *args):
        metrics = []
        for k in split(key, num_steps):
            state, m = one(state, k, *args)
            metrics.append(m)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)
    return looped
