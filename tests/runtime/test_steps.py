import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.runtime import steps


def _conv_sgd_step(params, key, images):
    """One SGD step of a stride-2 conv on a random half of `images` (a conv gradient)."""
    idx = jax.random.randint(key, (2,), 0, images.shape[0])

    def loss(w):
        y = jax.lax.conv_general_dilated(images[idx], w, (2, 2), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.mean(jnp.square(y - 1.0))
    value, grad = jax.value_and_grad(loss)(params)
    return params - 0.1 * grad, {"loss": value}


def test_scan_and_host_loops_compute_the_same_steps():
    images = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    w0 = 0.1 * jax.random.normal(jax.random.key(1), (3, 3, 3, 2))
    key = jax.random.key(2)
    results = {}
    for loop in ("scan", "host"):
        run = steps.repeat_steps(_conv_sgd_step, loop, donate=False)
        results[loop] = run(w0, key, 5, images)
    # The reference: the same keys in order, one step at a time.
    w, losses = w0, []
    for k in jax.random.split(key, 5):
        w, m = _conv_sgd_step(w, k, images)
        losses.append(m["loss"])
    for loop, (w_loop, metrics) in results.items():
        np.testing.assert_allclose(w_loop, w, rtol=1e-5, atol=1e-6, err_msg=loop)
        assert metrics["loss"].shape == (5,)
        np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5, err_msg=loop)
    assert not np.allclose(results["host"][0], w0)          # the steps did move the weights


def test_loop_choice():
    assert steps.resolve_loop("auto") == ("host" if jax.default_backend() == "cpu" else "scan")
    assert steps.resolve_loop("scan") == "scan"
    with pytest.raises(ValueError, match="loop='while'.*auto"):
        steps.resolve_loop("while")
