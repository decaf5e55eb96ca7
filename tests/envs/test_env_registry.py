"""jaxwm.envs.make: name resolution and error messages."""
import numpy as np
import pytest

import jaxwm.envs
from jaxwm.envs import registry


@pytest.mark.parametrize('name,match', [
    ('Pong-v4', 'Pong-v5'), ('MiniGrid-FourRoom-v0', 'MiniGrid-FourRooms-v0'),
    ('WalkerWalk', 'WalkerWalk-v1'), ('dmc:walker_wlak', 'dmc:walker_walk'),
    ('Craftax-Classic-Pixels-AutoReset-v1', 'Craftax-Classic-Pixels-v1')])
def test_unknown_name_lists_close_matches(name, match):
    with pytest.raises(ValueError, match='Unknown environment') as err:
        jaxwm.envs.make(name, 1)
    assert repr(name) in str(err.value) and match in str(err.value)


def test_supported_ids_cover_suites():
    ids = set(jaxwm.envs.supported_ids())
    assert {'Pong-v5', 'MontezumaRevenge-v5', 'Freeway-v5', 'Frostbite-v5', 'Hero-v5',
            'WalkerWalk-v1', 'CartpoleBalance-v1', 'MiniGrid-FourRooms-v0',
            'MiniGrid-KeyCorridorS6R3-v0', 'MiniGrid-MultiRoom-N6-v0',
            'Craftax-Classic-Symbolic-v1', 'dmc:walker_walk', 'dmc:quadruped_run'} <= ids


def test_craftax_without_envpool_support_names_the_version(monkeypatch):
    """Python 3.11 gets envpool 1.2.5, which has no Craftax: say what to install."""
    monkeypatch.setattr(registry, 'craftax_available', lambda: False)
    with pytest.raises(ValueError, match=r'Craftax-Classic-Symbolic-v1 needs envpool >= 1\.2\.7 '
                                         r'\(installed: .*Python >= 3\.12'):
        jaxwm.envs.make('Craftax-Classic-Symbolic-v1', 1)


@pytest.mark.parametrize('name,overrides,field', [
    ('Pong-v5', {'colour': True}, 'colour'),
    ('Pong-v5', {'obs': 'vector'}, 'obs'),
    ('Pong-v5', {'noop_max': 0}, 'noop_max'),
    ('Pong-v5', {'sticky': 1.5}, 'sticky'),
    ('WalkerWalk-v1', {'action_repeat': 0}, 'action_repeat'),
    ('MiniGrid-FourRooms-v0', {'obs': 'pixels'}, 'obs'),
    ('MiniGrid-FourRooms-v0', {'size': 5}, 'size'),
    ('dmc:walker_walk', {'camera': -1}, 'camera')])
def test_bad_override_names_field(name, overrides, field):
    with pytest.raises(ValueError, match=field) as err:
        jaxwm.envs.make(name, 1, **overrides)
    assert 'allowed' in str(err.value)


def test_dmc_state_time_limit_must_fit_envpool():
    """envpool's time limit is max_episode_steps * action_repeat control steps, a C int."""
    with pytest.raises(ValueError, match=r'max_episode_steps=10 \* action_repeat=2147483647 = '
                                         r'21474836470 control steps must be < 2\*\*31'):
        jaxwm.envs.make('CartpoleBalance-v1', 1, action_repeat=2**31 - 1, max_episode_steps=10)


def test_action_checks():
    with jaxwm.envs.make('Pong-v5', 2) as env:
        with pytest.raises(RuntimeError, match='reset'):
            env.step(np.zeros(2, np.int32))
        env.reset()
        with pytest.raises(ValueError, match=r'shape \(2,\)'):
            env.step(np.zeros(3, np.int32))
        with pytest.raises(ValueError, match=r'\[0, 6\)'):
            env.step(np.array([0, 6], np.int32))
    with jaxwm.envs.make('WalkerWalk-v1', 2) as env:
        env.reset()
        with pytest.raises(ValueError, match=r'shape \(2, 6\)'):
            env.step(np.zeros((2, 5), np.float32))
