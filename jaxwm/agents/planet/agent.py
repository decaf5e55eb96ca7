"""PlaNet (Hafner et al., ICML 2019, "Learning Latent Dynamics for Planning from Pixels").

A Gaussian RSSM world model (reconstruction, reward, KL with free nats, optionally latent
overshooting: `jaxwm.models.dreamer.WorldModel` with `latent='gaussian'`) and no policy network:
at every env step the agent filters the observation into the posterior and plans with CEM
(`jaxwm.planners.cem`) over action sequences rolled out in the prior, scored by the reward head.
It executes the first action of the plan, plus N(0, 0.3^2) noise while collecting data.
Implements the protocol of `jaxwm.runtime.online` (init / initial_carry / act / train_steps /
video); the acting carry holds the RSSM state, the previous action and the CEM mean.
"""
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jaxwm.models import rssm
from jaxwm.models.dreamer import WorldModel
from jaxwm.planners import cem
from jaxwm.runtime import openloop
from jaxwm.types import TrainState
from jaxwm.utils import random_action, train_on_batches

MODES = ("explore", "eval", "random")


@flax.struct.dataclass
class PlaNetState:
    wm: TrainState                     # world model params + optimizer
    step: jax.Array                    # int32 [] gradient steps


class PlaNet:
    """config: ConfigDict with `model` and `planner` blocks (`jaxwm.agents.planet.config`)."""

    def __init__(self, config: ml_collections.ConfigDict, obs_space: dict, act_space):
        if act_space.discrete:
            raise ValueError(f"env.name={config.env.name!r} has discrete actions; PlaNet's CEM "
                             f"plans continuous actions in [-1, 1] (a DMC task)")
        self.config = config
        self.wm = WorldModel(config.model, obs_space, act_space)
        self.planner = cem.CEMConfig.from_config(config.planner)
        cell = self.wm.cell
        self.fns = cem.ModelFns(
            next=lambda p, s, a, k: cell.apply(self.wm.cell_params(p), s, a, k,
                                               method=rssm.RSSMCell.img_step),
            reward=lambda p, s, a: self.wm.reward(p, rssm.features(s)))

    def init(self, key) -> PlaNetState:
        return PlaNetState(wm=self.wm.init_state(key), step=jnp.zeros((), jnp.int32))

    def initial_carry(self, num_envs: int) -> dict:
        return {**self.wm.initial_carry(num_envs),
                "plan": cem.initial_plan(self.planner, self.wm.act_space.size, (num_envs,))}

    def act(self, state: PlaNetState, carry: dict, obs: dict, key, mode=0):
        """Filter o_t and plan a_t. mode: int32 [] or a name: 0 'explore' (plan + noise),
        1 'eval' (plan), 2 'random' (uniform). Returns (action float32 [N, A], new carry)."""
        if isinstance(mode, str):
            if mode not in MODES:
                raise ValueError(f"mode={mode!r} is not one of {MODES}")
            mode = MODES.index(mode)
        k_obs, k_plan, k_random = jax.random.split(key, 3)
        params = state.wm.params
        post = self.wm.observe_step(params, carry, obs, k_obs)
        planned, plan, _ = cem.plan_batch(self.planner, self.fns, params, k_plan, post,
                                          carry["plan"], obs["is_first"], mode == 0)
        uniform = random_action(self.wm.act_space, planned.shape[0], k_random)
        action = jnp.where(mode == 2, uniform, planned)
        return action, {"state": post, "action": self.wm.action_features(action), "plan": plan}

    def train_step(self, state: PlaNetState, batch, key):
        """One world-model step on a batch [T, B]. Returns (state, metrics)."""
        wm_state, metrics, _ = self.wm.train_step(state.wm, batch, key)
        return PlaNetState(wm=wm_state, step=state.step + 1), metrics

    def train_steps(self, state: PlaNetState, batches, key):
        """K `train_step`s scanned over batches [K, T, B]; returns (state, mean metrics)."""
        return train_on_batches(self.train_step, state, batches, key, self.wm.straight_line)

    def video(self, state: PlaNetState, batch, key, stem: str):
        """Real vs open-loop imagined rollout (`openloop.write_openloop`); returns its path."""
        return openloop.write_openloop(self.wm, state.wm.params, batch, key, stem)
