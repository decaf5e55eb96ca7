"""JOWA's world-action transformer: causal mask, KV-cached decoding, C51 projection and CQL on
hand-worked inputs, the trunk switch of the Q loss, and learning a toy world."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.models import world_action_transformer as wat

B, T, G, K, A = 2, 4, 3, 16, 4


def model(**kw):
    return wat.WorldActionTransformer(vocab_size=K, tokens_per_obs=G, num_actions=A,
                                      num_tasks=2, max_steps=T, dim=32, depth=2, heads=4,
                                      num_atoms=11, **kw)


def random_batch(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"obs_tokens": jax.random.randint(k1, (B, T, G), 0, K),
            "actions": jax.random.randint(k2, (B, T), 0, A),
            "rewards": jax.random.randint(k3, (B, T), -1, 2).astype(jnp.float32),
            "dones": jnp.zeros((B, T)), "task": jnp.array([0, 1]), "mask": jnp.ones((B, T))}


@pytest.fixture(scope="module")
def net():
    m = model()
    batch = random_batch(jax.random.key(0))
    params = m.init(jax.random.key(1), batch["obs_tokens"], batch["actions"], batch["task"])
    return m, params, batch


def test_output_shapes(net):
    m, params, batch = net
    out = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"])
    assert out["obs"].shape == (B, T * (G + 1), K)
    assert out["reward"].shape == (B, T, 3) and out["done"].shape == (B, T, 2)
    assert out["q"].shape == (B, T, 1, A, 11)


def test_causal_mask_hides_the_future(net):
    # Change the action of step 1 (flat position 1 * (G + 1) + G = 7): every output at positions
    # < 7 is unchanged, the one at 7 changes. Q of step 1 (read at position 6) cannot see a_1.
    m, params, batch = net
    other = dict(batch, actions=batch["actions"].at[:, 1].set((batch["actions"][:, 1] + 1) % A))
    h0 = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"], method=m.trunk)
    h1 = m.apply(params, other["obs_tokens"], other["actions"], other["task"], method=m.trunk)
    np.testing.assert_allclose(h0[:, :7], h1[:, :7], atol=1e-6)
    assert np.abs(h0[:, 7] - h1[:, 7]).max() > 1e-3
    q0 = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"])["q"]
    q1 = m.apply(params, other["obs_tokens"], other["actions"], other["task"])["q"]
    np.testing.assert_allclose(q0[:, :2], q1[:, :2], atol=1e-6)


def test_kv_cache_decoding_equals_the_full_forward(net):
    # Prefill the first 5 tokens at once, then feed the rest one at a time: the hidden states
    # equal the uncached causal forward's at every position.
    m, params, batch = net
    tokens = wat.interleave(batch["obs_tokens"], batch["actions"])
    full = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"], method=m.trunk)
    cache = m.apply(params, B, method=m.init_cache)
    h, cache = m.apply(params, tokens[:, :5], 0, batch["task"], cache, method=m.run_cached)
    hidden = [h]
    step = jax.jit(lambda tok, pos, c: m.apply(params, tok, pos, batch["task"], c,
                                               method=m.run_cached))
    for p in range(5, tokens.shape[1]):
        h, cache = step(tokens[:, p:p + 1], p, cache)
        hidden.append(h)
    np.testing.assert_allclose(jnp.concatenate(hidden, 1), full, atol=2e-5)


def test_decoding_after_a_prefix_cache_equals_the_full_forward(net):
    # Beam search's layout: the first 7 tokens in a context cache (prefix), then the rest in a
    # frame cache of their own, prefilled by 2 then one at a time with the prefix read-only,
    # then appended to the context: hidden states and the appended cache equal the full
    # forward's and a one-cache decode's.
    m, params, batch = net
    tokens = wat.interleave(batch["obs_tokens"], batch["actions"])
    full = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"], method=m.trunk)
    run = jax.jit(lambda tok, start, c, prefix, n: m.apply(
        params, tok, start, batch["task"], c, prefix, n, method=m.run_cached))
    context = m.apply(params, B, method=m.init_cache)
    h0, context = m.apply(params, tokens[:, :7], 0, batch["task"], context, method=m.run_cached)
    _, whole = m.apply(params, tokens, 0, batch["task"], m.apply(params, B, method=m.init_cache),
                       method=m.run_cached)
    rest = tokens.shape[1] - 7
    frame = m.apply(params, B, rest, method=m.init_cache)
    h, frame = run(tokens[:, 7:9], 0, frame, context, 7)
    hidden = [h0, h]
    for j in range(2, rest):
        h, frame = run(tokens[:, 7 + j:8 + j], j, frame, context, 7)
        hidden.append(h)
    np.testing.assert_allclose(jnp.concatenate(hidden, 1), full, atol=2e-5)
    joined = wat.append(context, frame, 7)
    np.testing.assert_allclose(joined.k, whole.k, atol=2e-5)
    np.testing.assert_allclose(joined.v, whole.v, atol=2e-5)


def test_c51_projection_hand_worked():
    # Support {0, 1, 2}. r = 0.5, discount 0.5: atoms move to 0.5, 1.0, 1.5. Mass 0.2 at 0.5
    # splits 0.1 / 0.1 between atoms 0 and 1; 0.5 lands on atom 1; 0.3 at 1.5 splits 0.15 /
    # 0.15 between atoms 1 and 2 -> [0.1, 0.75, 0.15]. r = 5, discount 0: clipped to 2 ->
    # [0, 0, 1]. r = -1, discount 1: atoms move to -1 (clipped to 0), 0, 1 -> [0.7, 0.3, 0].
    support = jnp.array([0.0, 1.0, 2.0])
    probs = jnp.array([[0.2, 0.5, 0.3]] * 3)
    out = wat.c51_project(probs, jnp.array([0.5, 5.0, -1.0]), jnp.array([0.5, 0.0, 1.0]),
                          support)
    np.testing.assert_allclose(out, [[0.1, 0.75, 0.15], [0, 0, 1], [0.7, 0.3, 0]], atol=1e-6)


def test_cql_gap_hand_worked():
    # Q = [0, ln 3]: logsumexp = ln(1 + 3) = ln 4. Data action 0: ln 4 - 0; action 1:
    # ln 4 - ln 3 = ln(4/3).
    q = jnp.array([[0.0, math.log(3.0)]] * 2)
    np.testing.assert_allclose(wat.cql_gap(q, jnp.array([0, 1])),
                               [math.log(4.0), math.log(4.0 / 3.0)], rtol=1e-6)


@pytest.mark.parametrize("into_trunk", [True, False])
def test_q_loss_reaches_the_trunk_only_when_switched_on(into_trunk):
    # TD + CQL alone (world-model weight 0): the gradient on the transformer blocks is zero when
    # the Q heads read stop_gradient(h), nonzero otherwise; the Q heads get a gradient always.
    m = model(q_into_trunk=into_trunk)
    batch = random_batch(jax.random.key(2))
    params = m.init(jax.random.key(3), batch["obs_tokens"], batch["actions"], batch["task"])
    grads = jax.grad(lambda p: wat.joint_loss(m, p, params, batch, support=jnp.linspace(
        -10, 30, 11), gamma=0.99, wm_weight=0.0)[0])(params)["params"]
    trunk = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["block_0"]))
    head = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["q_head_0"]))
    assert head > 0
    assert (trunk > 0) == into_trunk


@pytest.mark.slow
def test_learns_a_toy_world():
    # A deterministic toy world: o_t^j = (c + j + a_0 + ... + a_{t-1}) mod K for a random c,
    # the reward is +1 when action 1 is taken, else 0. Every predicted token is determined by
    # the ones before it, so 200 Adam steps bring the next-token and reward-sign
    # cross-entropies far below their chance levels (ln 16 = 2.77, ln 3 = 1.10).
    m = model()
    key = jax.random.key(4)

    def batch_of(k):
        k1, k2 = jax.random.split(k)
        first = jax.random.randint(k1, (16, 1, 1), 0, K) + jnp.arange(G)
        actions = jax.random.randint(k2, (16, T), 0, A)
        shifts = jnp.concatenate([jnp.zeros((16, 1), jnp.int32), jnp.cumsum(actions, 1)[:, :-1]],
                                 1)
        obs = (first + shifts[..., None]) % K
        return {"obs_tokens": obs, "actions": actions,
                "rewards": (actions == 1).astype(jnp.float32), "dones": jnp.zeros((16, T)),
                "task": jnp.zeros(16, jnp.int32), "mask": jnp.ones((16, T))}
    b0 = batch_of(key)
    params = m.init(key, b0["obs_tokens"], b0["actions"], b0["task"])
    opt = optax.adam(3e-3)
    support = jnp.linspace(-10, 30, 11)

    @jax.jit
    def step(params, opt_state, k):
        (_, metrics), g = jax.value_and_grad(lambda p: wat.joint_loss(
            m, p, params, batch_of(k), support=support, gamma=0.9, wm_weight=1.0),
            has_aux=True)(params)
        updates, opt_state = opt.update(g, opt_state)
        return optax.apply_updates(params, updates), opt_state, metrics
    opt_state = opt.init(params)
    for i in range(200):
        params, opt_state, metrics = step(params, opt_state, jax.random.fold_in(key, i))
    assert metrics["obs_loss"] < 0.5 and metrics["reward_loss"] < 0.2, metrics


def test_c51_value_kl_is_the_cross_entropy_minus_the_target_entropy(net):
    # CE(target, prediction) = H(target) + KL(target || prediction) with 0 <= H <= log(atoms):
    # on random params the KL is strictly inside (0, CE) and CE - KL <= log(atoms).
    m, params, batch = net
    support = jnp.linspace(-10.0, 30.0, m.num_atoms)
    _, metrics = wat.joint_loss(m, params, params, batch, support=support, gamma=0.9)
    kl, ce = float(metrics["value_kl"]), float(metrics["value_loss"])
    assert 0.0 < kl < ce, metrics
    assert ce - kl <= np.log(m.num_atoms) + 1e-5


def test_mse_and_bc_value_losses_match_their_definitions():
    # One atom per action. 'mse': mean over valid steps t < T-1 of
    # (Q(s_t, a_t) - (r_t + gamma * (1 - d_t) * max_a Q_target(s_{t+1}, a)))^2, with the greedy
    # action of the target net; 'bc': the mean cross-entropy of softmax(Q(s_t)) at a_t.
    m = wat.WorldActionTransformer(vocab_size=K, tokens_per_obs=G, num_actions=A, num_tasks=2,
                                   max_steps=T, dim=32, depth=2, heads=4, num_atoms=1)
    batch = dict(random_batch(jax.random.key(5)), dones=jnp.array([[0.0, 1, 0, 0], [0, 0, 0, 0]]))
    params = m.init(jax.random.key(6), batch["obs_tokens"], batch["actions"], batch["task"])
    target = m.init(jax.random.key(7), batch["obs_tokens"], batch["actions"], batch["task"])
    support = jnp.zeros(1)
    q = m.apply(params, batch["obs_tokens"], batch["actions"], batch["task"])["q"][:, :, 0, :, 0]
    q_next = m.apply(target, batch["obs_tokens"], batch["actions"], batch["task"])["q"][
        :, 1:, 0, :, 0]
    a = batch["actions"]
    y = batch["rewards"][:, :-1] + 0.9 * (1 - batch["dones"][:, :-1]) * q_next.max(-1)
    taken = jnp.take_along_axis(q, a[..., None], -1)[..., 0]
    expected_mse = jnp.mean(jnp.square(taken[:, :-1] - y))     # every step valid: mask all 1
    expected_ce = jnp.mean(jax.nn.logsumexp(q, -1) - taken)
    for kind, expected in (("mse", expected_mse), ("bc", expected_ce)):
        _, metrics = wat.joint_loss(m, params, target, batch, support=support, gamma=0.9,
                                    wm_weight=0.0, cql_weight=0.0, value_loss=kind)
        np.testing.assert_allclose(metrics["value_loss"], expected, rtol=1e-5, err_msg=kind)
    with pytest.raises(ValueError, match="value_loss='td' is not one of"):
        wat.joint_loss(m, params, target, batch, support=support, gamma=0.9, value_loss="td")
