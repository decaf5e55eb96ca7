"""envpool suites (Atari, DMC states, MiniGrid, Craftax Classic) on real environments."""
import numpy as np
import pytest

import jaxwm.envs
from jaxwm.envs import base, envpool_envs, registry

needs_craftax = pytest.mark.skipif(
    not registry.craftax_available(),
    reason=f'Craftax needs envpool >= {registry.CRAFTAX_ENVPOOL} (Python >= 3.12)')


def random_action(env, rng):
    n, space = env.num_envs, env.act_space
    if space.discrete:
        return rng.integers(0, space.size, n).astype(np.int32)
    return rng.uniform(-1, 1, (n, space.size)).astype(np.float32)


def rollout(env, steps, seed=0):
    """Reset + `steps` random steps; checks shapes/dtypes and the autoreset flags. Returns the
    list of outputs [reset, step 1, ..., step `steps`]."""
    rng = np.random.default_rng(seed)
    outs = [env.reset()]
    assert outs[0]['is_first'].all() and not outs[0]['is_last'].any()
    for _ in range(steps):
        outs.append(env.step(random_action(env, rng)))
    for prev, out in zip(outs, outs[1:]):
        base.check_outputs(env, out)
        np.testing.assert_array_equal(out['is_first'], prev['is_last'])  # autoreset
        assert (out['reward'][out['is_first']] == 0).all()
        assert not (out['is_first'] & out['is_last']).any()
        assert not (out['is_terminal'] & ~out['is_last']).any()
    return outs


def last_steps(outs):
    return [t for t, o in enumerate(outs) if o['is_last'].any()]


def test_atari_pong_shapes_and_autoreset():
    with jaxwm.envs.make('Pong-v5', 2, seed=1, max_episode_steps=3) as env:
        assert env.act_space == jaxwm.envs.ActionSpace(True, 6)
        assert env.obs_space == {'image': jaxwm.envs.Space((64, 64, 1), np.dtype(np.uint8))}
        outs = rollout(env, 7)
        assert last_steps(outs) == [3, 7]  # time limit: truncation, not termination
        assert not any(o['is_terminal'].any() for o in outs)
        assert outs[4]['is_first'].all() and outs[4]['lives'].dtype == np.int32
        assert outs[2]['image'].std() > 0


def test_atari_game_over_is_terminal():
    """Pong with NOOPs loses 0:21 in ~760 agent steps: a true termination."""
    with jaxwm.envs.make('Pong-v5', 1, sticky=0.0) as env:
        env.reset()
        for _ in range(2000):
            out = env.step(np.zeros(1, np.int32))
            if out['is_last'][0]:
                break
        assert out['is_terminal'][0] and out['reward'][0] == -1
        out = env.step(np.zeros(1, np.int32))
        assert out['is_first'][0] and out['reward'][0] == 0


def test_atari_rgb_override():
    with jaxwm.envs.make('Freeway-v5', 1, size=32, gray=False, action_repeat=2, sticky=0.0) as env:
        assert env.obs_space['image'].shape == (32, 32, 3)
        rollout(env, 2)


def test_dmc_state_shapes_and_autoreset():
    with jaxwm.envs.make('WalkerWalk-v1', 2, seed=0, max_episode_steps=3) as env:
        assert env.act_space == jaxwm.envs.ActionSpace(False, 6)
        assert env.obs_space == {'vector': jaxwm.envs.Space((24,), np.dtype(np.float32))}
        outs = rollout(env, 8)
        assert last_steps(outs) == [3, 7]
        assert all((o['reward'][~o['is_first']] > 0).all() for o in outs[1:])


def test_dmc_state_action_repeat_sums_rewards():
    """One step with repeat 2 == two steps with repeat 1 (same seed, same action)."""
    action = np.full((2, 6), 0.3, np.float32)
    with jaxwm.envs.make('WalkerWalk-v1', 2, seed=5) as rep2, \
            jaxwm.envs.make('WalkerWalk-v1', 2, seed=5, action_repeat=1) as rep1:
        np.testing.assert_array_equal(rep2.reset()['vector'], rep1.reset()['vector'])
        out2 = rep2.step(action)
        r1 = rep1.step(action)['reward']
        out1 = rep1.step(action)
        np.testing.assert_allclose(out2['reward'], r1 + out1['reward'], rtol=1e-6)
        np.testing.assert_array_equal(out2['vector'], out1['vector'])


def test_dmc_state_episode_ending_mid_repeat():
    """An episode that ends inside the repeat stops there and resets on the next step."""
    action = np.zeros((1, 1), np.float32)
    # envpool limit: 2 agent steps x repeat 2 = 4 control steps; then repeat 3 per agent step.
    with jaxwm.envs.make('CartpoleBalance-v1', 1, seed=2, max_episode_steps=2) as env, \
            jaxwm.envs.make('CartpoleBalance-v1', 1, seed=2, action_repeat=1) as ref:
        env._repeat = 3
        env.reset(), ref.reset()
        out = env.step(action)
        refs = [ref.step(action) for _ in range(4)]
        np.testing.assert_allclose(out['reward'], sum(r['reward'] for r in refs[:3]), rtol=1e-6)
        out = env.step(action)  # one control step left in the episode
        assert out['is_last'].all() and not out['is_terminal'].any()
        np.testing.assert_allclose(out['reward'], refs[3]['reward'], rtol=1e-6)
        np.testing.assert_array_equal(out['vector'], refs[3]['vector'])
        out = env.step(action)
        assert out['is_first'].all() and out['reward'][0] == 0


@pytest.mark.parametrize('obs', ['image', 'vector'])
def test_minigrid_shapes_and_autoreset(obs):
    with jaxwm.envs.make('MiniGrid-FourRooms-v0', 3, seed=0, obs=obs, max_episode_steps=4) as env:
        assert env.act_space == jaxwm.envs.ActionSpace(True, 7)
        outs = rollout(env, 10)
        assert last_steps(outs) == [4, 9]
        for o in outs:
            assert o['agent_pos'].shape == (3, 2) and o['agent_pos'].dtype == np.int32
            assert o['direction'].shape == (3,) and set(o['direction']) <= {0, 1, 2, 3}
        if obs == 'vector':
            np.testing.assert_array_equal(outs[-1]['vector'].reshape(3, 49, 20).sum(-1), 3)


def test_minigrid_other_ids():
    for name in ['MiniGrid-KeyCorridorS6R3-v0', 'MiniGrid-MultiRoom-N6-v0']:
        with jaxwm.envs.make(name, 2) as env:
            rollout(env, 3)


def test_minigrid_rendering_deterministic_and_distinct():
    with jaxwm.envs.make('MiniGrid-FourRooms-v0', 2, seed=3) as a, \
            jaxwm.envs.make('MiniGrid-FourRooms-v0', 2, seed=3) as b:
        np.testing.assert_array_equal(a.reset()['image'], b.reset()['image'])
    view = np.ones((2, 7, 7, 3), np.uint8) * np.array([1, 0, 0], np.uint8)  # all empty
    view[1, 2, 1] = (5, 4, 0)  # a yellow key left of the centre, two cells ahead
    img = envpool_envs.render_minigrid(view)
    np.testing.assert_array_equal(img, envpool_envs.render_minigrid(view))
    assert img.shape == (2, 64, 64, 3) and img.dtype == np.uint8
    changed = np.argwhere((img[0] != img[1]).any(-1))
    assert (changed // 9 == (1, 2)).all()  # only the key's tile (row y=1, column x=2)
    assert (img[:, 6 * 9 + 5, 3 * 9 + 4] == 255).all()  # agent marker, bottom centre
    assert (img[:, 63] == 0).all() and (img[:, :, 63] == 0).all()  # padding


def test_minigrid_palette_distinct():
    lut = envpool_envs.minigrid_tiles(9)
    valid = [(0, 0, 0), (1, 0, 0), (2, 5, 0), (8, 1, 0), (9, 0, 0)]
    valid += [(o, c, 0) for o in (3, 5, 6, 7) for c in range(6)]
    valid += [(4, c, s) for c in range(6) for s in range(3)]
    tiles = {lut[o, c, s].tobytes() for o, c, s in valid}
    assert len(tiles) == len(valid)


@needs_craftax
@pytest.mark.parametrize('name,key,shape,dtype', [
    ('Craftax-Classic-Pixels-v1', 'image', (64, 64, 3), np.uint8),
    ('Craftax-Classic-Symbolic-v1', 'vector', (1345,), np.float32)])
def test_craftax_classic(name, key, shape, dtype):
    with jaxwm.envs.make(name, 2, seed=0, max_episode_steps=3) as env:
        assert env.obs_space == {key: jaxwm.envs.Space(shape, np.dtype(dtype))}
        assert env.act_space == jaxwm.envs.ActionSpace(True, 17)
        outs = rollout(env, 5)
        assert last_steps(outs) == [3]
        for out in outs:  # unlocked achievements are reported on an episode's last step only
            assert out['achievements'].shape == (2, len(env.ACHIEVEMENTS))
            assert set(np.unique(out['achievements'])) <= {0.0, 1.0}
            assert not out['achievements'][~out['is_last']].any()
