"""Walker task family: labels equal dm_control's own rewards and obey the family's invariants."""
import numpy as np
import pytest

from jaxwm.envs import make, tasks


@pytest.fixture(scope="module")
def rollout():
    """A random-action walker rollout (action repeat 1) with every output labelled."""
    env = make("dmc:walker_walk", 2, seed=0, obs="vector", action_repeat=1, max_episode_steps=60)
    family = tasks.family_for_env("dmc:walker_walk", env)
    rng = np.random.default_rng(0)
    outs = [env.reset()]
    for _ in range(130):
        outs.append(env.step(rng.uniform(-1, 1, (2, 6)).astype(np.float32)))
    env.close()
    return family, outs, [family.label(o) for o in outs]


def test_walk_label_equals_dm_control_reward(rollout):
    _, outs, labels = rollout
    for out, lab in zip(outs, labels):
        np.testing.assert_allclose(lab["reward/walk"], out["reward"], atol=1e-5)


def test_invariants(rollout):
    family, outs, labels = rollout
    assert family.tasks == ("stand", "walk", "run", "flip")
    for out, lab in zip(outs, labels):
        stand, walk, run, flip = (lab[f"reward/{t}"] for t in family.tasks)
        assert all(v.dtype == np.float32 and v.shape == (2,) for v in (stand, walk, run, flip))
        live = ~out["is_first"]
        # walk/run = stand * (5 * move + 1) / 6 with move in [0, 1]; run's target is faster.
        assert (stand[live] + 1e-6 >= walk[live]).all() and (walk[live] + 1e-6 >= run[live]).all()
        assert (run[live] + 1e-6 >= stand[live] / 6).all()
        assert ((flip >= 0) & (flip <= 1) & (stand <= 1)).all()
        for v in (stand, walk, run, flip):                   # 0 at the first step, like rewards
            assert (v[out["is_first"]] == 0).all()


def test_rewards_of_a_standing_upright_state():
    family = tasks.WalkerTasks()
    physics = family._physics
    with physics.reset_context():
        physics.named.data.qpos["rootz"] = 0.3            # torso lifted: height >= 1.2, upright
    r = family.rewards(physics.get_state())
    # standing = 1, upright = 1 -> stand = 1; speed 0 -> walk = run = (5 * 0 + 1) / 6; no spin.
    assert physics.torso_height() >= 1.2
    np.testing.assert_allclose([r["stand"], r["walk"], r["run"], r["flip"]],
                               [1.0, 1 / 6, 1 / 6, 0.0], atol=1e-6)


def test_action_repeat_scales_labels_and_errors():
    out = {"physics/state": np.zeros((1, 18), np.float32), "is_first": np.array([False])}
    one, two = tasks.WalkerTasks(1).label(out), tasks.WalkerTasks(2).label(out)
    np.testing.assert_allclose(two["reward/stand"], 2 * one["reward/stand"], rtol=1e-6)
    with pytest.raises(ValueError, match="physics/state"):
        tasks.WalkerTasks().label({"is_first": np.array([False])})
    with pytest.raises(ValueError, match="task family"):
        tasks.make_family("cheetah")
    assert tasks.family_for_env("CartpoleBalance-v1") is None


def test_extrinsic_family_labels_the_game_reward():
    out = {"reward": np.array([0.0, 1.0, -0.5], np.float32), "is_first": np.array([True, False, False])}
    family = tasks.family_for_env("Freeway-v5")
    assert family.tasks == ("extrinsic",)
    np.testing.assert_array_equal(family.label(out)["reward/extrinsic"], [0.0, 1.0, -0.5])
    assert tasks.family_for_env("Craftax-Classic-Symbolic-v1").tasks == ("extrinsic",)
    assert tasks.family_for_env("MiniGrid-FourRooms-v0") is None
