"""dm_control from pixels ('dmc:walker_walk'): one env, a few steps."""
import numpy as np

import jaxwm.envs
from jaxwm.envs import base


def test_walker_pixels_shapes_autoreset_and_physics():
    with jaxwm.envs.make('dmc:walker_walk', 1, seed=0, max_episode_steps=2) as env:
        assert env.act_space == jaxwm.envs.ActionSpace(False, 6)
        assert env.obs_space == {'image': jaxwm.envs.Space((64, 64, 3), np.dtype(np.uint8))}
        outs = [env.reset()]
        for _ in range(3):
            outs.append(env.step(np.full((1, 6), 0.5, np.float32)))
        for out in outs:
            base.check_outputs(env, out)
            assert out['physics/orientations'].shape == (1, 14)
            assert out['physics/state'].dtype == np.float32
        assert [bool(o['is_last'][0]) for o in outs] == [False, False, True, False]
        assert [bool(o['is_first'][0]) for o in outs] == [True, False, False, True]
        assert outs[3]['reward'][0] == 0 and not any(o['is_terminal'][0] for o in outs)
        assert outs[1]['image'].std() > 5
        np.testing.assert_allclose(env.physics(0).get_state(), outs[3]['physics/state'][0],
                                   rtol=1e-6, atol=1e-6)


def test_vector_obs_without_rendering():
    with jaxwm.envs.make('dmc:cartpole_balance', 2, obs='vector', action_repeat=1) as env:
        assert env.obs_space['vector'].shape == (5,)
        out = env.reset()
        out = env.step(np.zeros((2, 1), np.float32))
        base.check_outputs(env, out)
        assert 'image' not in out and (out['reward'] > 0).all()
