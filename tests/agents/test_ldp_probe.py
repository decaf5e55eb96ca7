"""The latent probe reads what its inputs hold and nothing else."""
import jax
import numpy as np
import pytest

from jaxwm.agents.ldp import probe


def _inputs(seed=0, steps=20, episodes=30):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(steps, episodes, 4)).astype(np.float32), rng


def test_probe_reads_a_nonlinear_function_of_its_input():
    # y = (sin x0, x1 * x2): a smooth function of x, so an MLP fit on 24 episodes predicts the
    # 6 held-out ones far better than their mean (relative MSE << 1).
    x, _ = _inputs()
    y = np.stack([np.sin(x[..., 0]), x[..., 1] * x[..., 2]], -1)
    assert probe.mlp_probe(x, y, 6, jax.random.key(0), steps=800, hidden=64) < 0.15


def test_probe_of_independent_noise_is_no_better_than_the_mean():
    # y independent of x: the best predictor is the training mean, whose relative MSE on
    # held-out data is ~1 (+ its estimation error); an overfit MLP can only do worse.
    x, rng = _inputs()
    y = rng.normal(size=x.shape[:2] + (1,)).astype(np.float32)
    assert probe.mlp_probe(x, y, 6, jax.random.key(0), steps=800, hidden=64) > 0.9


def test_latent_probes_pair_consecutive_steps():
    # Positions p and actions a_t = p_{t+1} - p_t: the action is exactly readable from the
    # positions pair; latents z = p make the latent probes just as easy.
    x, _ = _inputs()
    position = np.cumsum(x[..., :2], 0)
    action = np.concatenate([position[1:] - position[:-1], np.zeros_like(position[:1])], 0)
    scores = probe.latent_probes(position, position, action, 6, jax.random.key(1), steps=800)
    assert set(scores) == {"position", "action", "action_from_positions"}
    assert max(scores.values()) < 0.1


@pytest.mark.parametrize("held_out", [0, 30])
def test_held_out_must_leave_training_episodes(held_out):
    x, _ = _inputs()
    with pytest.raises(ValueError, match="held_out"):
        probe.mlp_probe(x, x, held_out, jax.random.key(0))
