"""Image VAE of Latent Diffusion Planning (models/vae.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.models import vae as vae_lib

VAE = vae_lib.VAE(latent_dim=4, depth=4)   # small widths: the tests check wiring, not capacity


def init_key(seed: int) -> jax.Array:
    """Key for parameter init. The 'rbg' generator: XLA:CPU compiles one threefry call site per
    parameter initializer at ~0.6 s each on the loaded test machine (10 s for this VAE's init),
    rbg's in a fraction of that; the library functions take either kind of key."""
    return jax.random.key(seed, impl="rbg")


def square_images() -> jnp.ndarray:
    """4 black uint8 frames [4, 64, 64, 3], each with one saturated 24x24 square in its own
    place and colour channel: simple enough for a tiny VAE to fit in 50 steps."""
    images = np.zeros((4, 64, 64, 3), np.uint8)
    for i in range(4):
        images[i, 8 * i:8 * i + 24, 16 + 4 * i:40 + 4 * i, i % 3] = 255
    return jnp.asarray(images)


@pytest.fixture(scope="module")
def params():
    return jax.jit(vae_lib.init, static_argnums=0)(VAE, init_key(0))


def test_shapes_ranges_and_finite_loss(params):
    images = square_images()

    @jax.jit
    def run(params, key):
        mean, log_std = VAE.apply(params, images, method=vae_lib.VAE.encode)
        return (mean, log_std, vae_lib.decode(VAE, params, mean),
                vae_lib.encode_mean(VAE, params, images), VAE.apply(params, images),
                vae_lib.vae_loss(VAE, params, images, key, 0.5))

    mean, log_std, decoded, z, (recon, mean2, _), (loss, metrics) = run(
        params, jax.random.key(1))
    assert mean.shape == log_std.shape == z.shape == (4, 4)
    assert decoded.shape == recon.shape == (4, 64, 64, 3)
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0
    np.testing.assert_array_equal(z, mean)          # frozen latents are the posterior means
    np.testing.assert_allclose(recon, decoded, atol=1e-6)   # no key: decode(mean)
    np.testing.assert_array_equal(mean2, mean)
    assert np.isfinite(float(loss)) and float(loss) > 0
    np.testing.assert_allclose(loss, metrics["recon"] + 0.5 * metrics["kl"], rtol=1e-6)
    # recon sums the squared error over the 64 * 64 * 3 pixels; mse averages it.
    np.testing.assert_allclose(metrics["recon"], metrics["mse"] * 64 * 64 * 3, rtol=1e-4)


def test_bad_inputs_name_the_field(params):
    # Checked abstractly (eval_shape), without compiling.
    with pytest.raises(ValueError, match=r"\[B, 64, 64, 3\], got \(2, 32, 32, 3\)"):
        jax.eval_shape(lambda p: vae_lib.encode_mean(VAE, p, jnp.zeros((2, 32, 32, 3),
                                                                        jnp.uint8)), params)
    with pytest.raises(ValueError, match="latent_dim=4"):
        jax.eval_shape(lambda p: vae_lib.decode(VAE, p, jnp.zeros((2, 16))), params)
    with pytest.raises(ValueError, match="uint8"):
        jax.eval_shape(lambda p: vae_lib.vae_loss(VAE, p, jnp.zeros((2, 64, 64, 3)),
                                                  jax.random.key(0)), params)
    with pytest.raises(ValueError, match="latent_dim=0"):
        vae_lib.init(vae_lib.VAE(latent_dim=0), jax.random.key(0))


def test_gaussian_kl_hand_worked():
    # KL(N(mu, sigma^2) || N(0, 1)) = 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma) per dimension:
    # mu = 0, sigma = 1 -> 0; mu = 1, sigma = 1 -> 0.5; mu = 0, sigma = 2 ->
    # 0.5 (4 - 1 - 2 ln 2) = 1.5 - ln 2 = 0.8068528; dims add up.
    zeros = jnp.zeros((3, 2))
    np.testing.assert_array_equal(vae_lib.gaussian_kl(zeros, zeros), [0.0, 0.0, 0.0])
    mean = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    log_std = jnp.array([[0.0, 0.0], [0.0, 0.0], [np.log(2.0), 0.0]])
    np.testing.assert_allclose(vae_lib.gaussian_kl(mean, log_std), [0.5, 1.0, 1.5 - np.log(2.0)],
                               rtol=1e-6)
    # Any other Gaussian has positive KL (sigma = 1/2: 0.5 (1/4 - 1 + 2 ln 2) = 0.3181472).
    np.testing.assert_allclose(vae_lib.gaussian_kl(jnp.zeros(1), jnp.full(1, -np.log(2.0))),
                               0.5 * (0.25 - 1 + 2 * np.log(2.0)), rtol=1e-6)
    rand = jax.random.normal(jax.random.key(0), (2, 100, 4))
    assert bool(jnp.all(vae_lib.gaussian_kl(rand[0], rand[1]) > 0))


def test_loss_decreases_on_simple_images(params):
    images = square_images()
    opt = optax.adam(2e-3)

    @jax.jit
    def train(params, key):
        def step(carry, key):
            params, opt_state = carry
            grads, metrics = jax.grad(vae_lib.vae_loss, argnums=1, has_aux=True)(
                VAE, params, images, key, 0.1)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), metrics
        _, metrics = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, 50))
        return metrics

    metrics = train(params, jax.random.key(1))
    loss = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(loss))
    # Starting from mid-grey (sigmoid(~0) = 0.5) the summed squared error is ~3000 per image;
    # the tiny VAE must at least learn the black background and some of the squares: measured
    # 3070 -> 605 after 50 steps, so halving is a safe bar.
    assert loss[-5:].mean() < 0.5 * loss[:5].mean(), loss[::10]
