"""Beam search (JOWA): hand-worked search on a fake tabular model where greedy-in-Q is wrong, K = 1
and H = 0 reduce to greedy, the gamma^H leaf value breaks reward ties, vmap over envs under jit
equals per-env plans, config errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.planners import beam

# Fake deterministic tabular model, tables in params: NEXT[s, a], REWARD[s, a], Q[s, a] over
# S = 7 states and A = 3 actions. Every transition not listed goes to the absorbing state 6 with
# reward 0, and Q is 0 where not listed. The state is a pytree {'pos', 't'} (t counts imagined
# steps) so that beams carry more than one leaf.
S, A = 7, 3


def tables(moves, q_rows):
    """moves {(s, a): (s', r)}, q_rows {s: [Q(s, a) for a]} -> params."""
    nxt = np.full((S, A), 6, np.int32)
    rew = np.zeros((S, A), np.float32)
    q = np.zeros((S, A), np.float32)
    for (s, a), (s_next, r) in moves.items():
        nxt[s, a], rew[s, a] = s_next, r
    for s, row in q_rows.items():
        q[s] = row
    return {"next": jnp.asarray(nxt), "reward": jnp.asarray(rew), "q": jnp.asarray(q)}


def step(params, state, action):
    assert action.shape == () and action.dtype == jnp.int32  # the documented contract
    s = state["pos"]
    return ({"pos": params["next"][s, action], "t": state["t"] + 1},
            params["reward"][s, action])


FNS = beam.BeamFns(q_values=lambda p, state: p["q"][state["pos"]], step=step)

# Table 1, a trap for greedy: from s0, action 0 pays 1 now, action 1 pays 0 now but leads to s2,
# where action 1 pays 10.
#   s0: Q = [3, 2, 0];  a0 -> s1, r 1;   a1 -> s2, r 0
#   s1: Q = [1, 0.5, 0]; a0 -> s4, r 1;  a1 -> s4, r 0
#   s2: Q = [0, 1, 0.5]; a1 -> s5, r 10; a2 -> s4, r 2
#   s4: Q = [2, 0, 0];   s5: Q = [0, 4, 0]
TRAP = tables({(0, 0): (1, 1.0), (0, 1): (2, 0.0), (1, 0): (4, 1.0), (1, 1): (4, 0.0),
               (2, 1): (5, 10.0), (2, 2): (4, 2.0)},
              {0: [3, 2, 0], 1: [1, 0.5, 0], 2: [0, 1, 0.5], 4: [2, 0, 0], 5: [0, 4, 0]})


def start(pos):
    return {"pos": jnp.asarray(pos, jnp.int32), "t": jnp.zeros((), jnp.int32)}


def run(params, pos, **config):
    return jax.jit(functools.partial(beam.plan, beam.BeamConfig(**config), FNS))(
        params, start(pos))


def test_beam_search_escapes_the_greedy_trap_with_exact_score():
    # K = 2, E = 2, H = 2, gamma = 0.5.
    # Depth 0 (gamma^0 = 1), root top-2 by Q = {0, 1}: a0 -> s1 score 1; a1 -> s2 score 0.
    # Depth 1 (gamma^1 = 0.5): s1 top-2 {0, 1}: 1 + 0.5 * 1 = 1.5 (s4), 1 + 0.5 * 0 = 1 (s4);
    #   s2 top-2 {1, 2}: 0 + 0.5 * 10 = 5 (s5), 0 + 0.5 * 2 = 1 (s4)  -> keep 5 and 1.5.
    # Leaves (gamma^2 = 0.25): s5: 5 + 0.25 * 4 = 6 (first action 1); s4: 1.5 + 0.25 * 2 = 2
    # (first action 0).
    assert int(beam.greedy(FNS, TRAP, start(0))) == 0
    action, info = run(TRAP, 0, beam_width=2, horizon=2, gamma=0.5)
    assert action.dtype == jnp.int32 and int(action) == 1
    assert float(info["score"]) == 6.0
    np.testing.assert_array_equal(info["first_actions"], [1, 0])
    np.testing.assert_array_equal(info["scores"], [6.0, 2.0])
    # One step is too short to see the 10: H = 1 leaves s1: 1 + 0.5 * max Q(s1) = 1.5 and
    # s2: 0 + 0.5 * 1 = 0.5 -> action 0, score 1.5.
    action, info = run(TRAP, 0, beam_width=2, horizon=1, gamma=0.5)
    assert int(action) == 0 and float(info["score"]) == 1.5
    np.testing.assert_array_equal(info["scores"], [1.5, 0.5])


@pytest.mark.parametrize("expand", [None, 3])
def test_a_single_beam_is_myopic_and_returns_the_greedy_action(expand):
    # K = 1 keeps only the best child by reward so far. E = 1 (default = K): s0 -a0-> s1 (1),
    # s1 -a0-> s4 (1 + 0.5 = 1.5), leaf 1.5 + 0.25 * 2 = 2. E = 3: depth 0 scores a0: 1,
    # a1: 0, a2: 0 -> keep a0 (the 10 behind a1 is pruned); depth 1 from s1: 1.5, 1, 1 (a2 -> s6)
    # -> s4, leaf 2 again.
    action, info = run(TRAP, 0, beam_width=1, horizon=2, gamma=0.5, expand=expand)
    assert int(action) == int(beam.greedy(FNS, TRAP, start(0))) == 0
    assert float(info["score"]) == 2.0 and info["first_actions"].shape == (1,)


def test_horizon_zero_is_greedy_in_q_on_every_state():
    # H = 0: no imagined step, the leaf is the root: score gamma^0 max Q = max Q, and the beams
    # are the K best root actions by Q (K = 4 > A = 3: the fourth beam does not exist, -inf).
    plan = jax.jit(functools.partial(beam.plan, beam.BeamConfig(beam_width=4, horizon=0), FNS))
    for s in range(S):
        action, info = plan(TRAP, start(s))
        assert int(action) == int(beam.greedy(FNS, TRAP, start(s)))
        assert float(info["score"]) == float(TRAP["q"][s].max())
    _, info = plan(TRAP, start(0))  # Q(s0) = [3, 2, 0]
    np.testing.assert_array_equal(info["first_actions"][:3], [0, 1, 2])
    np.testing.assert_array_equal(info["scores"], [3.0, 2.0, 0.0, -np.inf])


def test_leaf_value_breaks_reward_ties_with_gamma_to_the_h():
    # Every path pays 1 per step, so rewards tie; only the leaf Q differs: after a0 the model is
    # at s3 (max Q 2), after a1 at s4 (max Q 6). Greedy picks a0 (Q(s0) = [1, 0.9, 0]).
    #   s0: a0 -> s1, a1 -> s2 (r 1);  s1: any -> s3, s2: any -> s4 (r 1)
    # K = 4, E = 2, H = 2: depth 0 has 2 children (+ 2 beams at -inf), depth 1 keeps the 4 real
    # children, all at 1 + gamma * 1; leaves add gamma^2 max Q.
    moves = {(0, 0): (1, 1.0), (0, 1): (2, 1.0)}
    moves.update({(1, a): (3, 1.0) for a in range(A)})
    moves.update({(2, a): (4, 1.0) for a in range(A)})
    params = tables(moves, {0: [1, 0.9, 0], 3: [2, 0, 1], 4: [0, 6, 0]})
    # gamma = 0.5: a1 paths 1 + 0.5 + 0.25 * 6 = 3, a0 paths 1 + 0.5 + 0.25 * 2 = 2.
    action, info = run(params, 0, beam_width=4, horizon=2, gamma=0.5, expand=2)
    assert int(action) == 1 and float(info["score"]) == 3.0
    np.testing.assert_array_equal(info["first_actions"], [1, 1, 0, 0])
    np.testing.assert_array_equal(info["scores"], [3.0, 3.0, 2.0, 2.0])
    # gamma = 0.25: 1 + 0.25 + 0.0625 * 6 = 1.625 (a gamma^1 leaf factor would give 2.75).
    action, info = run(params, 0, beam_width=4, horizon=2, gamma=0.25, expand=2)
    assert int(action) == 1 and float(info["score"]) == 1.625


def test_plan_batch_under_jit_equals_per_env_plans():
    # Table 1, K = 2, H = 2, gamma = 0.5, from s0, s1, s2:
    #   s0: 6 with action 1 (first test).
    #   s1: a0 -> s4 (1), a1 -> s4 (0); s4's top-2 actions {0, 1} both go to s6 with r 0:
    #       1, 1, 0, 0 -> keep the two 1s, leaf max Q(s6) = 0 -> action 0, score 1.
    #   s2: a1 -> s5 (10), a2 -> s4 (2); both then reach s6 with r 0 -> action 1, score 10.
    config = beam.BeamConfig(beam_width=2, horizon=2, gamma=0.5)
    states = {"pos": jnp.array([0, 1, 2], jnp.int32), "t": jnp.zeros(3, jnp.int32)}
    actions, info = jax.jit(functools.partial(beam.plan_batch, config, FNS))(TRAP, states)
    assert actions.shape == (3,) and actions.dtype == jnp.int32
    assert info["first_actions"].shape == (3, 2) and info["scores"].shape == (3, 2)
    np.testing.assert_array_equal(actions, [1, 0, 1])
    np.testing.assert_array_equal(info["score"], [6.0, 1.0, 10.0])
    one = jax.jit(functools.partial(beam.plan, config, FNS))
    for i in range(3):
        a, single = one(TRAP, jax.tree.map(lambda x: x[i], states))
        assert int(actions[i]) == int(a)
        for name in ("score", "first_actions", "scores"):
            np.testing.assert_array_equal(info[name][i], single[name])
    np.testing.assert_array_equal(beam.greedy_batch(FNS, TRAP, states), [0, 0, 1])


@pytest.mark.parametrize("changes,match", [
    (dict(beam_width=0), "planner.beam_width=0 must be an int >= 1"),
    (dict(beam_width=2.0), "planner.beam_width=2.0 must be an int >= 1"),
    (dict(expand=0), "planner.expand=0 must be an int >= 1"),
    (dict(horizon=-1), "planner.horizon=-1 must be an int >= 0"),
    (dict(horizon=True), "planner.horizon=True must be an int >= 0"),
    (dict(gamma=0.0), r"planner.gamma=0.0 must be in \(0, 1\]"),
    (dict(gamma=1.5), r"planner.gamma=1.5 must be in \(0, 1\]"),
])
def test_bad_config_raises_naming_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        beam.BeamConfig(**changes)


def test_expand_defaults_to_beam_width_and_from_config():
    assert beam.BeamConfig(beam_width=3).expand == 3
    c = beam.BeamConfig.from_config({"beam_width": 4}, horizon=1)
    assert (c.beam_width, c.horizon, c.expand) == (4, 1, 4)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['width'\]"):
        beam.BeamConfig.from_config({"width": 3})
