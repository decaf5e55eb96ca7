"""The asynchronous runner (DayDreamer): every transition an actor produces reaches the replay
exactly once (threads, sync and Ray backends), also across a failing actor and a killed and
resumed run; parameter versions reach the actors and the episode log; the sync schedule; the
real-time wrapper's pacing."""
import json
import os

import numpy as np
import pytest

from jaxwm.agents.daydreamer.config import get_config
from jaxwm.agents.daydreamer.train import train_and_evaluate
from jaxwm.data import replay
from jaxwm.envs.realtime import RealTimeEnv
from jaxwm.runtime import async_runner
from jaxwm.runtime.logging import read_metrics
from jaxwm.runtime.workdir import UserError


def smoke(backend: str, **runner):
    config = get_config("smoke")
    config.runner.backend = backend
    config.runner.update(runner)
    return config


def replay_ids(state: dict) -> list:
    """Per actor, the step ids in replay order [count, num_envs] (capacity is never reached)."""
    out = []
    for ids in state["ids"]:
        arrays = replay.to_numpy(ids)
        out.append(arrays["data"]["step_id"][: arrays["count"]])
    return out


def assert_exactly_once(summary: dict, state: dict) -> None:
    """Each actor's ids 0 .. produced - 1 are in its replay once each, in order, for every env
    of the actor; the env steps add up."""
    assert summary["produced"] == summary["inserted"]
    for produced, ids in zip(summary["produced"], replay_ids(state)):
        assert ids.shape[0] == produced
        np.testing.assert_array_equal(ids, np.arange(produced)[:, None].repeat(ids.shape[1], 1))
    num_envs = state["ids"][0].num_envs
    assert summary["env_steps"] == sum(summary["produced"]) * num_envs


class FailOnce:
    """An env that raises at its `at`-th step, once per test session (an actor failure)."""
    raised = False

    def __init__(self, env, at):
        self.env, self.at, self.steps = env, at, 0
        self.num_envs, self.obs_space, self.act_space = env.num_envs, env.obs_space, env.act_space

    def reset(self):
        return self.env.reset()

    def step(self, action):
        self.steps += 1
        if self.steps == self.at and not FailOnce.raised:
            FailOnce.raised = True
            raise RuntimeError("robot fell over")
        return self.env.step(action)

    def close(self):
        self.env.close()


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """Two thread actors; the learner is killed once 100 env steps are in (after a
    checkpoint), then the run is resumed to its end, where an actor fails once: only envs
    restarted after a checkpoint (first id > 0, i.e. in the resumed run) fail."""
    workdir = str(tmp_path_factory.mktemp("async") / "run")
    config = smoke("threads", num_actors=2, steps=160, checkpoint_every=40, sync_every=1,
                   log_every=16, replay_capacity=200)

    def env_fn(actor, first):
        env = async_runner.actor_env(config.env, config.seed, 0.0, actor, first)
        return FailOnce(env, at=3) if first > 0 else env

    class Killed(Exception):
        pass

    def kill(env_step, calls):
        if env_step >= 100:
            raise Killed

    with pytest.raises(Killed):
        train_and_evaluate(config, workdir, env_fn=env_fn, on_step=kill)
    killed_at = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
    final = {}
    summary = train_and_evaluate(config, workdir, env_fn=env_fn, on_end=final.update)
    return workdir, killed_at, summary, final


def test_killed_run_resumes_with_every_transition_once(killed_and_resumed):
    workdir, killed_at, summary, state = killed_and_resumed
    assert 40 <= killed_at < 160 <= summary["env_steps"]
    assert_exactly_once(summary, state)
    steps = [r["step"] for r in read_metrics(workdir)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)   # no record twice


def test_failing_actor_is_restarted_and_reported(killed_and_resumed):
    _, _, summary, _ = killed_and_resumed
    assert FailOnce.raised and summary["actor_restarts"] == 1


def test_versions_reach_the_actors_and_the_episode_log(killed_and_resumed):
    workdir, _, summary, _ = killed_and_resumed
    episodes = [json.loads(line) for line in open(os.path.join(workdir, "episodes.jsonl"))]
    assert summary["episodes"] == len(episodes) > 0
    for e in episodes:
        assert 0 <= e["version_first"] <= e["version_last"] <= summary["version"]
    # pretrain 1, sync_every 1: version k after the k-th train call (whether an episode ends
    # after the first version reached the actors depends on thread timing: see the sync test)
    assert summary["version"] == summary["train_calls"]
    keys = [(e["actor"], e["env_step"], e["return"], e["length"]) for e in episodes]
    assert len(set(keys)) == len(keys)
    assert all("version" in r for r in read_metrics(workdir) if "actor_steps_per_s" in r)


def test_sync_backend_trains_on_schedule(tmp_path):
    """Smoke, 2 actors taking turns (the fixture's shapes, so compiled programs are shared):
    2 envs each, chunks of 4 steps (8 env steps), prefill 20, seq_len 8, pretrain 1,
    train_every 20, 60 steps. Ready once each replay holds 8 rows, after the 4th chunk (env
    step 32 >= 20): 1 pretrain call, the debt restarts at 0; then +8 per chunk at 40, 48,
    56 (24: 1 call, 4 left), 64 (12; 64 >= 60 ends the run) -> 2 calls and 2 versions."""
    final = {}
    summary = train_and_evaluate(smoke("sync", num_actors=2, replay_capacity=200),
                                 str(tmp_path), on_end=final.update)
    assert summary["env_steps"] == 64
    assert summary["train_calls"] == 2 and summary["version"] == 2
    # 10-step episodes: actor 0's first ones end in its 3rd chunk (env step 40), after version 1
    episodes = [json.loads(line) for line in open(tmp_path / "episodes.jsonl")]
    assert max(e["version_last"] for e in episodes) >= 1
    assert_exactly_once(summary, final)


@pytest.mark.parametrize("field,value,match", [
    ("runner.backend", "process", r"runner.backend='process' is not one of \('sync'"),
    ("agent", "tdmpc", r"agent='tdmpc' needs a preset of that agent"),
    ("runner.control_hz", float("inf"), r"runner.control_hz=inf: must be finite")])
def test_bad_config_names_the_field_and_writes_nothing(tmp_path, field, value, match):
    workdir = tmp_path / "run"
    config = smoke("threads")
    block, _, name = field.rpartition(".")
    (config[block] if block else config)[name] = value
    with pytest.raises(UserError, match=match):
        train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


def test_realtime_env_paces_steps_and_counts_overruns():
    """Period 0.05 s on a fake clock: a step asked for 0.01 s after the previous start sleeps
    0.04 s; one asked for 0.08 s after it does not sleep and is an overrun."""
    now = [0.0]
    slept = []

    class Env:
        num_envs, obs_space, act_space = 1, {}, None

        def reset(self):
            return {}

        def step(self, action):
            now[0] += 0.002           # the simulator's own time
            return {}

    def sleep(dt):
        slept.append(round(dt, 6))
        now[0] += dt

    env = RealTimeEnv(Env(), hz=20, clock=lambda: now[0], sleep=sleep)
    env.reset()                       # starts the clock at 0
    now[0] += 0.01
    env.step(None)                    # at 0.01: sleeps until 0.05, steps
    assert slept == [0.04] and env.overruns == 0
    now[0] += 0.08                    # agent thinks 0.08 s (from 0.052 to 0.132)
    env.step(None)                    # 0.132 > 0.05 + 0.05: late, no sleep
    assert slept == [0.04] and env.overruns == 1
    env.step(None)                    # at 0.134: sleeps until 0.132 + 0.05
    assert slept == [0.04, 0.048] and env.overruns == 1
    with pytest.raises(ValueError, match="control_hz"):
        RealTimeEnv(Env(), hz=0)


@pytest.mark.slow
def test_ray_backend_gives_the_same_counts(tmp_path, monkeypatch):
    """Two Ray actors on a local Ray instance; one actor's process is killed mid-run, Ray
    restarts it and the run goes on with every transition once."""
    ray = pytest.importorskip("ray")
    actors = []
    original = async_runner.RayBackend.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        actors.extend(self.actors)

    def kill_one(env_step, calls):
        if calls == 1 and not killed:
            killed.append(env_step)
            os.kill(ray.get(actors[0].pid.remote()), 9)

    killed = []
    monkeypatch.setattr(async_runner.RayBackend, "__init__", spy)
    config = smoke("ray", num_actors=2, steps=160, replay_capacity=200)
    final = {}
    try:
        summary = train_and_evaluate(config, str(tmp_path), on_step=kill_one,
                                     on_end=final.update)
    finally:
        ray.shutdown()
    assert killed and summary["actor_restarts"] >= 1
    assert_exactly_once(summary, final)


@pytest.mark.slow   # ~30 s cold each
@pytest.mark.parametrize("preset", ["smoke_tdmpc", "smoke_v3"])
def test_other_agents_run_through_the_runner(tmp_path, preset):
    """TD-MPC (through `OnlineTDMPC`: MPPI acting, updates on the runner's batches) and
    DreamerV3 train with the sync backend; every transition is inserted once."""
    config = get_config(preset)
    config.runner.backend = "sync"
    final = {}
    summary = train_and_evaluate(config, str(tmp_path), on_end=final.update)
    assert summary["train_calls"] >= 2 and summary["version"] >= 1
    assert np.isfinite(summary["eval/return"])
    assert_exactly_once(summary, final)
