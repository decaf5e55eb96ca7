"""jaxwm.utils.scan_gradient_steps: the same result as `lax.scan`, with no while loop on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.utils import scan_gradient_steps


def body(c, x):
    return c * 0.5 + x, c.sum()


def test_values_match_a_hand_worked_scan():
    # c0 = [1, 1], xs = [[0, 1], [2, 3], [4, 5]]; each step emits sum(c), then c <- c / 2 + x:
    # emit 2, c1 = [0.5, 1.5]; emit 2, c2 = [2.25, 3.75]; emit 6, c3 = [5.125, 6.875]
    xs = jnp.arange(6.0).reshape(3, 2)
    state, outs = jax.jit(lambda c, xs: scan_gradient_steps(body, c, xs))(jnp.ones(2), xs)
    np.testing.assert_allclose(state, [5.125, 6.875])
    np.testing.assert_allclose(outs, [2.0, 2.0, 6.0])
    ref_state, ref_outs = jax.lax.scan(body, jnp.ones(2), xs)
    np.testing.assert_allclose(state, ref_state)
    np.testing.assert_allclose(outs, ref_outs)


@pytest.mark.parametrize("k", [1, 3])
def test_no_while_loop_on_cpu(k):
    """XLA:CPU runs conv gradients ~15-70x slower inside a while loop; lax.scan keeps one even
    for K = 1 with unroll, so the helper must not emit one."""
    lowered = jax.jit(lambda c, xs: scan_gradient_steps(body, c, xs)).lower(
        jnp.ones(2), jnp.ones((k, 2)))
    assert "while" not in lowered.as_text()
