"""The craftax backend of Craftax Classic: envpool's observation layout, achievement names and
order, limits as truncations, and achievements read at the last step."""
import numpy as np
import pytest

pytest.importorskip("craftax")

from jaxwm import envs  # noqa: E402
from jaxwm.envs import craftax_env, registry  # noqa: E402


def test_achievement_order_is_a_permutation_of_craftax_enum():
    order = craftax_env._achievement_order()
    assert sorted(order.tolist()) == list(range(22))
    from craftax.craftax_classic.constants import Achievement
    for name, index in zip(craftax_env.ACHIEVEMENTS, order):
        assert Achievement(index).name.lower() == name


@pytest.mark.slow   # world generation and the game step compile for ~1 min on 2 cores
@pytest.mark.skipif(not registry.craftax_available(), reason="Craftax needs envpool >= 1.2.7")
def test_matches_envpool_layout_and_ends_episodes_like_it():
    native = envs.make("craftax:Craftax-Classic-Symbolic-v1", 2, seed=0, max_episode_steps=3)
    reference = envs.make("Craftax-Classic-Symbolic-v1", 2, seed=0, max_episode_steps=3)
    assert (native.obs_space, native.act_space) == (reference.obs_space, reference.act_space)
    a, b = native.reset(), reference.reset()
    # Different worlds, same encoding: one-hot map cells and the same inventory / status
    # layout at the start, so the sums of the observations agree.
    np.testing.assert_allclose(a["vector"].sum(1), b["vector"].sum(1), rtol=1e-5)
    for t in range(3):
        a, b = native.step(np.zeros(2, np.int32)), reference.step(np.zeros(2, np.int32))
    for out in (a, b):      # the 3-step limit is a truncation, not a death
        assert out["is_last"].all() and not out["is_terminal"].any()
        assert out["achievements"].shape == (2, 22)
        assert set(np.unique(out["achievements"])) <= {0.0, 1.0}
    out = native.step(np.zeros(2, np.int32))
    assert out["is_first"].all() and (out["reward"] == 0).all()
