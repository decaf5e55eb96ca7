"""DINO-WM predictor, decoder and goal planning (models/dino_wm.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import dino_wm
from jaxwm.planners import cem, mppi


def test_frame_causal_mask_hand_worked():
    # 2 frames x 2 tokens: tokens 0, 1 (frame 0) see frame 0; tokens 2, 3 see both frames.
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(dino_wm.frame_causal_mask(2, 2), expected)


@pytest.fixture(scope="module")
def predictor():
    model = dino_wm.Predictor(history=3, dim=16, depth=2, heads=2, action_emb=4)
    z = jax.random.normal(jax.random.key(0), (2, 3, 4, 8))
    a = jax.random.normal(jax.random.key(1), (2, 3, 2))
    return model, model.init(jax.random.key(2), z, a), z, a


def test_predictor_is_causal_over_frames(predictor):
    model, params, z, a = predictor
    out = model.apply(params, z, a)
    assert out.shape == z.shape
    # Changing frame 2 (features and action) leaves the outputs of frames 0, 1 unchanged ...
    z2, a2 = z.at[:, 2].add(1.0), a.at[:, 2].add(1.0)
    out2 = model.apply(params, z2, a2)
    np.testing.assert_allclose(out2[:, :2], out[:, :2], atol=1e-6)
    assert np.abs(out2[:, 2] - out[:, 2]).max() > 1e-3
    # ... and changing the action of frame 1 changes frames 1 and 2 but not frame 0.
    out3 = model.apply(params, z, a.at[:, 1].add(1.0))
    np.testing.assert_allclose(out3[:, 0], out[:, 0], atol=1e-6)
    assert np.abs(out3[:, 1] - out[:, 1]).max() > 1e-3


def test_predictor_shorter_window_and_too_long(predictor):
    model, params, z, a = predictor
    assert model.apply(params, z[:, :2], a[:, :2]).shape == (2, 2, 4, 8)
    with pytest.raises(ValueError, match="history=3"):
        model.apply(params, jnp.concatenate([z, z], 1), jnp.concatenate([a, a], 1))


def test_prediction_loss_gradient_reaches_predictor_only(predictor):
    model, params, z, a = predictor
    loss, grads = jax.value_and_grad(
        lambda p, z: dino_wm.prediction_loss(model, p, z, a), argnums=(0, 1))(params, z)
    assert loss > 0
    # The targets z[:, 1:] are not differentiated: the gradient w.r.t. the last frame
    # (a target only) is zero, while the predictor's parameters get a gradient.
    np.testing.assert_array_equal(grads[1][:, -1], 0.0)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[0])) > 0


def test_unpatchify_places_patches_row_major():
    # 4 patches of 2x2 pixels, patch i filled with the value i: the image is
    # [[0 0 1 1], [0 0 1 1], [2 2 3 3], [2 2 3 3]] in every channel.
    x = jnp.repeat(jnp.arange(4.0)[:, None], 12, 1)[None]
    img = dino_wm.unpatchify(x, 2)
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]], np.float32)
    np.testing.assert_array_equal(img[0, ..., 1], expected)
    with pytest.raises(ValueError, match="square grid"):
        dino_wm.unpatchify(jnp.zeros((3, 12)), 2)
    dec = dino_wm.PatchDecoder(patch_size=2, hidden=4)
    out = dec.apply(dec.init(jax.random.key(0), jnp.zeros((1, 4, 3))), jnp.zeros((1, 4, 3)))
    assert out.shape == (1, 4, 4, 3) and float(out.min()) >= 0 and float(out.max()) <= 1


class LinearModel:
    """A fake predictor: z_{t+1} = z_t + a_t @ B on every patch (a known linear latent model)."""

    def __init__(self, b):
        self.b = b

    def apply(self, params, z, actions):
        return z + jnp.einsum("bta,ad->btd", actions, self.b)[:, :, None]


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_planner_reaches_a_known_goal_in_a_linear_model(kind):
    # 2 patches x 2 dims, B = 0.25 I: the goal (+1, -0.5) is 4 + 2 steps of full action away;
    # MPC over horizon 5 with replanning must end within 0.1 of it in 10 steps (MPPI: the
    # costs differ by ~1e-2 between elites, so a high inverse temperature).
    b = 0.25 * jnp.eye(2)
    model = LinearModel(b)
    goal = jnp.tile(jnp.array([1.0, -0.5]), (2, 1))
    state = dino_wm.PlanState(z=jnp.zeros((1, 2, 2)), actions=jnp.zeros((1, 2)), goal=goal)
    batch = jax.tree.map(lambda x: x[None], state)
    if kind == "cem":
        cfg = cem.CEMConfig(horizon=5, num_candidates=200, num_elites=20, iterations=6)
        fns = dino_wm.cem_fns(model)
        plan = jax.jit(lambda k, s, m, f: cem.plan_batch(cfg, fns, None, k, s, m, f)[:2])
        mean = cem.initial_plan(cfg, 2, (1,))
    else:
        cfg = mppi.MPPIConfig(horizon=5, num_samples=200, num_pi_trajs=0, num_elites=20,
                              iterations=6, momentum=0.0, gamma=1.0, temperature=300.0)
        fns = dino_wm.mppi_fns(model, state)
        plan = jax.jit(lambda k, s, m, f: mppi.plan_batch(
            cfg, fns, None, k, jax.vmap(dino_wm.flatten_state)(s), m, f)[:2])
        mean = mppi.initial_plan(cfg, 2, (1,))
    z = batch.z
    for t in range(10):
        action, mean = plan(jax.random.key(t), batch, mean, jnp.array([t == 0]))
        z = z + (action @ b)[:, None, None]
        batch = dino_wm.PlanState(z=z, actions=batch.actions, goal=batch.goal)
    np.testing.assert_allclose(z[0, 0], goal, atol=0.1)


def test_flatten_round_trip():
    s = dino_wm.PlanState(z=jnp.arange(12.0).reshape(1, 3, 4), actions=jnp.ones((1, 2)),
                          goal=-jnp.ones((3, 4)))
    back = dino_wm.unflatten_state(dino_wm.flatten_state(s)[None], s)
    for x, y in zip(back, s):
        np.testing.assert_array_equal(x[0], y)
