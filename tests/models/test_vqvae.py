"""VQ-VAE frame tokenizer of JOWA / IRIS (models/vqvae.py)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.models import vqvae as vq
from jaxwm.runtime import steps as steps_lib


def init_key(seed: int) -> jax.Array:
    """Key for parameter init. The 'rbg' generator: XLA:CPU compiles one threefry call site per
    parameter initializer at ~0.6 s each on the loaded test machine, rbg's in a fraction of
    that; the library functions take either kind of key."""
    return jax.random.key(seed, impl="rbg")


# ------------------------------------------------------------------------------------------------
# Vector quantization
# ------------------------------------------------------------------------------------------------
CODEBOOK = jnp.array([[0.0, 0.0], [2.0, 2.0]])
# Squared distances to (e_0, e_1) = ((0, 0), (2, 2)):
#   z_0 = (0.5, 0)  : 0.25, 2.25 + 4 = 6.25   -> code 0, error (0.5, 0)
#   z_1 = (1.5, 2.5): 2.25 + 6.25 = 8.5, 0.5  -> code 1, error (-0.5, 0.5)
#   z_2 = (3, 1)    : 9 + 1 = 10, 1 + 1 = 2   -> code 1, error (1, -1)
Z = jnp.array([[[0.5, 0.0], [1.5, 2.5], [3.0, 1.0]]])      # [1, 3, 2]: leading dims kept


def test_quantize_hand_worked():
    z_q, indices, losses = vq.quantize(CODEBOOK, Z)
    assert indices.dtype == jnp.int32
    np.testing.assert_array_equal(indices, [[0, 1, 1]])
    np.testing.assert_allclose(z_q, [[[0.0, 0.0], [2.0, 2.0], [2.0, 2.0]]], atol=1e-7)
    # Both losses average the squared errors over the 6 elements:
    # (0.25 + 0 + 0.25 + 0.25 + 1 + 1) / 6 = 2.75 / 6 = 11/24.
    np.testing.assert_allclose(losses["codebook"], 11 / 24, rtol=1e-6)
    np.testing.assert_allclose(losses["commitment"], 11 / 24, rtol=1e-6)


def test_straight_through_and_loss_gradients():
    w = jnp.array([[[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]]])
    st = lambda cb, z: jnp.sum(vq.quantize(cb, z)[0] * w)
    g_codebook, g_z = jax.grad(st, argnums=(0, 1))(CODEBOOK, Z)
    # z_q = z + sg(e - z): d z_q / d z = I exactly, and nothing reaches the codebook.
    np.testing.assert_array_equal(g_z, w)
    np.testing.assert_array_equal(g_codebook, jnp.zeros_like(CODEBOOK))
    # Codebook loss mean (sg(z) - e)^2 over 6 elements: d/de_k = -2/6 sum_{i -> k} (z_i - e_k):
    #   e_0: -(0.5, 0) / 3 = (-1/6, 0); e_1: -((-0.5, 0.5) + (1, -1)) / 3 = (-1/6, 1/6);
    # and no gradient to z.
    loss = lambda key: lambda cb, z: vq.quantize(cb, z)[2][key]
    g_codebook, g_z = jax.grad(loss("codebook"), argnums=(0, 1))(CODEBOOK, Z)
    np.testing.assert_allclose(g_codebook, [[-1 / 6, 0.0], [-1 / 6, 1 / 6]], rtol=1e-6)
    np.testing.assert_array_equal(g_z, jnp.zeros_like(Z))
    # Commitment mean (z - sg(e))^2: d/dz_i = 2/6 (z_i - e_k), none to the codebook.
    g_codebook, g_z = jax.grad(loss("commitment"), argnums=(0, 1))(CODEBOOK, Z)
    np.testing.assert_allclose(g_z, [[[1 / 6, 0.0], [-1 / 6, 1 / 6], [1 / 3, -1 / 3]]],
                               rtol=1e-6)
    np.testing.assert_array_equal(g_codebook, jnp.zeros_like(CODEBOOK))


def test_ema_update_hand_worked():
    # Start: codebook ((0, 0), (4, 4)), cluster_size (1, 1), embed_sum = codebook (init_vq_state's
    # convention). Batch z = (1, 0), (1, 2) -> code 0 and (5, 3) -> code 1:
    # n = (2, 1), s = ((2, 2), (5, 3)). With decay 0.5:
    #   N = 0.5 (1, 1) + 0.5 (2, 1) = (1.5, 1),
    #   S = 0.5 ((0, 0), (4, 4)) + 0.5 ((2, 2), (5, 3)) = ((1, 1), (4.5, 3.5)).
    codebook = jnp.array([[0.0, 0.0], [4.0, 4.0]])
    state = vq.VQState(codebook=codebook, cluster_size=jnp.ones(2), embed_sum=codebook)
    z = jnp.array([[1.0, 0.0], [1.0, 2.0], [5.0, 3.0]])
    idx = jnp.array([0, 0, 1], jnp.int32)
    # eps = 0: no smoothing, e = S / N = ((2/3, 2/3), (4.5, 3.5)).
    new = vq.ema_update(state, z, idx, decay=0.5, eps=0.0)
    np.testing.assert_allclose(new.cluster_size, [1.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(new.embed_sum, [[1.0, 1.0], [4.5, 3.5]], rtol=1e-6)
    np.testing.assert_allclose(new.codebook, [[2 / 3, 2 / 3], [4.5, 3.5]], rtol=1e-6)
    # eps = 0.25: n = 2.5, N' = (N + 0.25) / (2.5 + 2 * 0.25) * 2.5 = (1.75, 1.25) * 5/6
    # = (35/24, 25/24); e_0 = (1, 1) * 24/35, e_1 = (4.5, 3.5) * 24/25 = (4.32, 3.36).
    new = vq.ema_update(state, z, idx, decay=0.5, eps=0.25)
    np.testing.assert_allclose(new.cluster_size, [1.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(new.codebook, [[24 / 35, 24 / 35], [4.32, 3.36]], rtol=1e-6)
    # decay 0 (and eps 0) is a k-means step: each code moves to the mean of its vectors.
    new = vq.ema_update(state, z, idx, decay=0.0, eps=0.0)
    np.testing.assert_allclose(new.codebook, [[1.0, 1.0], [5.0, 3.0]], rtol=1e-6)


def test_restart_dead_codes():
    codebook = jnp.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
    state = vq.VQState(codebook=codebook, cluster_size=jnp.array([2.0, 0.001, 3.0]),
                       embed_sum=codebook * jnp.array([[2.0], [0.001], [3.0]]))
    z = jnp.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])    # [2, 2, D]: N = 4
    rows = {tuple(r) for r in np.asarray(z).reshape(-1, 2).tolist()}
    restart = jax.jit(vq.restart_dead_codes)
    for seed in range(3):
        new, num = restart(state, z, jax.random.key(seed), 0.01)
        assert int(num) == 1
        # Only code 1 (usage 0.001 < 0.01) is replaced, by one of the batch vectors, and counts
        # as one use.
        assert tuple(np.asarray(new.codebook[1]).tolist()) in rows
        np.testing.assert_array_equal(new.codebook[jnp.array([0, 2])], codebook[jnp.array([0, 2])])
        np.testing.assert_array_equal(new.cluster_size, [2.0, 1.0, 3.0])
        np.testing.assert_array_equal(new.embed_sum[1], new.codebook[1])
        np.testing.assert_array_equal(new.embed_sum[0], state.embed_sum[0])
    # All dead with N >= K: each gets a different batch vector (drawn without replacement).
    new, num = restart(state, z, jax.random.key(0), 10.0)
    assert int(num) == 3
    picked = {tuple(r) for r in np.asarray(new.codebook).tolist()}
    assert len(picked) == 3 and picked <= rows
    # threshold 0 restarts nothing.
    new, num = restart(state, z, jax.random.key(0), 0.0)
    assert int(num) == 0
    np.testing.assert_array_equal(new.codebook, codebook)


def test_code_usage_and_weighted_l1_hand_worked():
    # Codes (0, 1, 1, 1) of K = 4: p = (1/4, 3/4), perplexity exp(-(1/4 ln 1/4 + 3/4 ln 3/4))
    # = exp(0.5623351) = 1.7548; 2 of the 4 codes used.
    perplexity, usage = vq.code_usage(jnp.array([[0, 1], [1, 1]], jnp.int32), 4)
    np.testing.assert_allclose(perplexity, np.exp(0.5623351), rtol=1e-6)
    np.testing.assert_allclose(usage, 0.5)
    perplexity, usage = vq.code_usage(jnp.arange(4, dtype=jnp.int32), 4)    # uniform: K
    np.testing.assert_allclose(perplexity, 4.0, rtol=1e-6)
    np.testing.assert_allclose(usage, 1.0)
    # x = (1, 0, 0, 0), recon = (0.5, 0.5, 0, 0): weights (3, 1, 1, 1) sum to 6, weighted errors
    # 3 * 0.5 + 0.5 = 2 -> 1/3; with weight 1 the plain mean 1/4.
    x, recon = jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(vq.weighted_l1(x, recon, 3.0), 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(vq.weighted_l1(x, recon, 1.0), 0.25, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, obs, tokens", [
    ("minatar", jax.ShapeDtypeStruct((3, 10, 10, 7), jnp.float32), (3, 25)),
    ("minatar", jax.ShapeDtypeStruct((2, 3, 10, 10, 7), jnp.bool_), (2, 3, 25)),
    ("atari", jax.ShapeDtypeStruct((3, 84, 84, 1), jnp.uint8), (3, 36)),
])
def test_tokenizer_shapes(kind, obs, tokens):
    # Abstract evaluation (eval_shape) traces the real layers without compiling them.
    tok = vq.Tokenizer(kind=kind, num_codes=32, code_dim=8, depth=4)
    params, state = jax.eval_shape(functools.partial(vq.init, tok), jax.random.key(0))
    assert state.codebook.shape == (32, 8) and state.cluster_size.shape == (32,)
    z = jax.eval_shape(lambda p, o: tok.apply(p, o, method=vq.Tokenizer.encode), params, obs)
    assert z.shape == tokens + (8,) and z.dtype == jnp.float32
    toks = jax.eval_shape(functools.partial(vq.tokenize, tok), params, state, obs)
    assert toks.shape == tokens and toks.dtype == jnp.int32
    recon = jax.eval_shape(functools.partial(vq.detokenize, tok), params, state, toks)
    assert recon.shape == obs.shape and recon.dtype == jnp.float32
    loss, metrics = jax.eval_shape(functools.partial(vq.tokenizer_loss, tok), params,
                                   state.codebook, obs)
    assert loss.shape == () and set(metrics) == {"loss", "l1", "commitment", "codebook",
                                                 "perplexity", "usage"}


def test_bad_config_and_inputs_name_the_field():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"kind='nes' is not one of \('minatar', 'atari'\)"):
        vq.init(vq.Tokenizer(kind="nes"), key)
    with pytest.raises(ValueError, match=r"ema_decay=1.0 must be in \[0, 1\)"):
        vq.init(vq.Tokenizer(ema_decay=1.0), key)
    with pytest.raises(ValueError, match="num_codes=0 must be a positive int"):
        vq.init(vq.Tokenizer(num_codes=0), key)
    with pytest.raises(ValueError, match="positive_weight=0.0 must be > 0"):
        vq.init(vq.Tokenizer(positive_weight=0.0), key)
    tok = vq.Tokenizer(channels=4, num_codes=8, code_dim=4, depth=2)
    params, state = jax.eval_shape(functools.partial(vq.init, tok), key)
    with pytest.raises(ValueError, match=r"\[\.\.\., 10, 10, 4\], got \(2, 10, 10, 5\)"):
        jax.eval_shape(functools.partial(vq.tokenize, tok), params, state,
                       jax.ShapeDtypeStruct((2, 10, 10, 5), jnp.float32))
    with pytest.raises(ValueError, match=r"tokens must be \[\.\.\., 25\], got \(2, 36\)"):
        jax.eval_shape(functools.partial(vq.detokenize, tok), params, state,
                       jax.ShapeDtypeStruct((2, 36), jnp.int32))
    atari = vq.Tokenizer(kind="atari", num_codes=8, code_dim=4, depth=2)
    params, state = jax.eval_shape(functools.partial(vq.init, atari), key)
    with pytest.raises(ValueError, match="must be uint8, got float32"):
        jax.eval_shape(functools.partial(vq.tokenize, atari), params, state,
                       jax.ShapeDtypeStruct((2, 84, 84, 1), jnp.float32))


def sparse_grids() -> tuple[jnp.ndarray, float]:
    """64 random binary grids [64, 10, 10, 4] with ~10% ones, and the positive weight that
    balances ones and zeros: (1 - d) / d for the batch's density d."""
    obs = (jax.random.uniform(jax.random.key(0), (64, 10, 10, 4)) < 0.1).astype(jnp.float32)
    density = float(obs.mean())
    return obs, (1.0 - density) / density


@pytest.fixture(scope="module")
def trained():
    obs, positive_weight = sparse_grids()
    tok = vq.Tokenizer(kind="minatar", channels=4, num_codes=64, code_dim=16, depth=16, ema=True,
                       ema_decay=0.9, restart_threshold=0.05, positive_weight=positive_weight)
    opt = optax.adam(3e-3)
    state = jax.jit(vq.create_state, static_argnums=(0, 1))(tok, opt, init_key(1))
    run = steps_lib.repeat_steps(functools.partial(vq.train_step, tok, opt), loop="host")
    state, metrics = run(state, jax.random.key(2), 150, obs)
    return tok, state, metrics, obs


def test_tokenizer_learns_sparse_grids(trained):
    _, state, metrics, _ = trained
    l1 = np.asarray(metrics["l1"])
    assert np.all(np.isfinite(l1)) and int(state.step) == 150
    # With the balancing weight, w_1 d = (1 - d) = w_0 (1 - d): every constant prediction c scores
    # (w_1 d (1 - c) + (1 - d) c) / (2 (1 - d)) = 1/2, as does the initial sigmoid(~0) = 1/2; so
    # going below 1/4 needs tokens that tell where the ones are. Measured 0.500 -> 0.152.
    assert abs(l1[0] - 0.5) < 0.01, l1[0]
    assert l1[-5:].mean() < 0.5 * l1[0], l1[::15]
    # The codebook is in use, not collapsed: measured perplexity ~59 of 64 codes, all used.
    assert float(metrics["perplexity"][-1]) > 16 and float(metrics["usage"][-1]) > 0.5


def test_frozen_tokens_reconstruct(trained):
    tok, state, _, obs = trained
    # Evaluated op by op: encode and decode below reuse the compiled ops of tokenize and
    # detokenize.
    tokens = vq.tokenize(tok, state.params, state.vq, obs)
    assert tokens.shape == (64, 25) and tokens.dtype == jnp.int32
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 64
    recon = vq.detokenize(tok, state.params, state.vq, tokens)
    assert recon.shape == obs.shape
    assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0
    # detokenize(tokenize(x)) is the training forward pass decode(quantize(encode(x))).
    z = tok.apply(state.params, obs, method=vq.Tokenizer.encode)
    z_q, indices, _ = vq.quantize(state.vq.codebook, z)
    np.testing.assert_array_equal(indices, tokens)
    np.testing.assert_allclose(tok.apply(state.params, z_q, method=vq.Tokenizer.decode), recon,
                               atol=1e-5)
    # From the 25 tokens alone most of the ones come back (measured recall 0.89).
    recall = float(jnp.sum((recon > 0.5) * obs) / jnp.sum(obs))
    assert recall > 0.6, recall


def test_loss_based_codebook_train_step(trained):
    # ema=False (IRIS): the optimizer updates the codebook through the codebook loss; the usage
    # statistics still follow the EMA of the counts. Same layers as the trained tokenizer, so its
    # parameters are reused (no second init to compile).
    tok, trained_state, _, obs = trained
    tok = tok.clone(ema=False, ema_decay=0.5)
    opt = optax.sgd(1.0)
    params, codes = trained_state.params, trained_state.vq.replace(cluster_size=jnp.ones(64))
    state = vq.TokenizerState(params=params, vq=codes, step=jnp.zeros((), jnp.int32),
                              opt_state=opt.init(vq.trainable(tok, params, codes)))
    new, metrics = jax.jit(functools.partial(vq.train_step, tok, opt))(
        state, jax.random.key(0), obs)
    # cluster_size = 0.5 * 1 + 0.5 * n_k, with n_k the counts of the 64 * 25 batch vectors.
    counts = (np.asarray(new.vq.cluster_size) - 0.5) / 0.5
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    assert round(counts.sum()) == 64 * 25
    # Only the codebook loss reaches the codebook (straight-through), so SGD moves exactly the
    # codes in use; nothing restarted (threshold 0.05 < 0.5).
    moved = np.any(np.asarray(new.vq.codebook != state.vq.codebook), axis=-1)
    np.testing.assert_array_equal(moved, counts > 0.5)
    assert int(metrics["restarted"]) == 0 and int(new.step) == 1
    assert not np.array_equal(new.params["params"]["enc_out"]["kernel"],
                              state.params["params"]["enc_out"]["kernel"])
    np.testing.assert_allclose(metrics["loss"], metrics["l1"] + metrics["codebook"]
                               + metrics["commitment"], rtol=1e-6)
