"""A wall-clock control rate for any batched env: a stand-in for a robot, which keeps moving at
its own rate whether or not the agent is ready (DayDreamer, Wu et al., CoRL 2022, Sec. 3).

`RealTimeEnv(env, hz)` starts each `step` at least 1/hz seconds after the previous one started:
it sleeps out the rest of the period. A step asked for late (the agent spent longer
than the period choosing the action, e.g. a synchronous learner training in between) is not
slowed further and counts as an overrun; the simulator cannot tell, unlike a real robot, which
would have kept moving on the stale action.
"""
import time
from typing import Callable

import numpy as np

from jaxwm.envs import base


class RealTimeEnv(base.Env):
    """`env` stepped at most `hz` times per wall-clock second (`clock`/`sleep` injectable for
    tests). `overruns` counts steps asked for later than one period after the previous start."""

    def __init__(self, env: base.Env, hz: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not hz > 0:
            raise ValueError(f"control_hz={hz!r} must be > 0")
        self.env, self.period = env, 1.0 / float(hz)
        self.num_envs, self.obs_space, self.act_space = env.num_envs, env.obs_space, env.act_space
        self.name = getattr(env, "name", type(env).__name__)
        self._clock, self._sleep = clock, sleep
        self._last: float | None = None
        self.overruns = 0

    def reset(self) -> dict:
        out = self.env.reset()
        self._last = self._clock()
        return out

    def step(self, action: np.ndarray) -> dict:
        if self._last is not None:
            wait = self._last + self.period - self._clock()
            if wait > 0:
                self._sleep(wait)
            elif wait < 0:
                self.overruns += 1
        self._last = self._clock()
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()
