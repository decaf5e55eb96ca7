"""Dreamer agent (DreamerV2, Hafner et al. 2021): world model + actor-critic in imagination.

Composition only: `WorldModel` (jaxwm.models.dreamer) learns from replay batches [T, B]; the
actor-critic (jaxwm.behaviors.actor_critic) learns from imagined rollouts started at all posterior
states of the batch, maximizing the world model's reward head. Implements the protocol of
`jaxwm.runtime.online` (init / initial_carry / act / train_steps / video).
"""
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.models import rssm
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import openloop
from jaxwm.types import TrainState
from jaxwm.utils import random_action, train_on_batches

MODES = ("explore", "eval", "random")


@flax.struct.dataclass
class DreamerState:
    wm: TrainState                     # world model params + optimizer
    ac: ac_lib.ACState                 # task actor-critic
    step: jax.Array                    # int32 [] gradient steps


def policy_step(wm: WorldModel, ac: ac_lib.ActorCritic, wm_params, actor_params, carry, obs,
                key, mode):
    """Filter o_t and pick a_t. mode: int32 [] (traced, so one compile serves all modes) or a
    name: 0 'explore' (sample), 1 'eval' (mode of the policy), 2 'random' (uniform).
    Returns (action int32 [N] / float32 [N, A], new carry)."""
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        mode = MODES.index(mode)
    k_obs, k_sample, k_random = jax.random.split(key, 3)
    post = wm.observe_step(wm_params, carry, obs, k_obs)
    feat = rssm.features(post)
    sampled = ac.act(actor_params, feat, k_sample, sample=True)
    greedy = ac.act(actor_params, feat, k_sample, sample=False)
    uniform = random_action(wm.act_space, obs["is_first"].shape[0], k_random)
    action = jnp.where(mode == 0, sampled, jnp.where(mode == 1, greedy, uniform))
    return action, {"state": post, "action": wm.action_features(action)}


class Dreamer:
    """config: ConfigDict with `model` and `behavior` blocks (`jaxwm.agents.dreamer.config`)."""

    def __init__(self, config: ml_collections.ConfigDict, obs_space: dict, act_space):
        self.config = config
        self.wm = WorldModel(config.model, obs_space, act_space)
        self.ac = ac_lib.ActorCritic(config.behavior, ac_lib.feat_size(config.model), act_space)

    def init(self, key) -> DreamerState:
        k_wm, k_ac = jax.random.split(key)
        return DreamerState(wm=self.wm.init_state(k_wm), ac=self.ac.init(k_ac),
                            step=jnp.zeros((), jnp.int32))

    def initial_carry(self, num_envs: int) -> dict:
        return self.wm.initial_carry(num_envs)

    def act(self, state: DreamerState, carry, obs, key, mode=0):
        return policy_step(self.wm, self.ac, state.wm.params, state.ac.actor.params, carry, obs,
                           key, mode)

    def train_step(self, state: DreamerState, batch, key):
        """World-model step on batch [T, B], then an actor-critic update from its T * B
        posteriors (imagined with the updated model). Returns (state, metrics)."""
        k_wm, k_start, k_ac = jax.random.split(key, 3)
        wm_state, metrics, posts = self.wm.train_step(state.wm, batch, k_wm)
        reward_fn = ac_lib.extrinsic_reward(self.wm, wm_state.params)
        start, start_cont = ac_lib.replay_starts(posts, batch, self.config.behavior.imag_starts,
                                                 k_start)
        ac_state, ac_metrics = self.ac.update(state.ac, self.wm, wm_state.params, start,
                                              reward_fn, k_ac, start_cont)
        return (DreamerState(wm=wm_state, ac=ac_state, step=state.step + 1),
                {**metrics, **ac_metrics})

    def train_steps(self, state: DreamerState, batches, key):
        """K `train_step`s scanned over batches [K, T, B]; returns (state, mean metrics)."""
        return train_on_batches(self.train_step, state, batches, key, self.wm.straight_line)

    def video(self, state: DreamerState, batch, key, stem: str):
        """Real vs open-loop imagined rollout (`openloop.write_openloop`); returns its path."""
        return openloop.write_openloop(self.wm, state.wm.params, batch, key, stem)
