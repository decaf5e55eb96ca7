"""Plan2Explore agent (Sekar et al. 2020, as in DreamerV2's expl.py): a reward-free world model,
an ensemble of one-step latent predictors, and an explorer actor-critic trained in imagination
on their disagreement.

Composition only: the world model is trained with `model.reward_grad = False` (its reward head
sees stop-gradient features and is only used for evaluation), the `Disagreement` ensemble
(jaxwm.behaviors.plan2explore) on (feat_t, a_t) -> z_{t+1} pairs of each replay batch, and the
explorer (jaxwm.behaviors.actor_critic) on r = intr_scale * r_int (+ extr_scale * r_ext).
Implements the protocol of `jaxwm.runtime.online`.
"""
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jaxwm.agents.dreamer.agent import policy_step
from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.behaviors import plan2explore as p2e
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import openloop
from jaxwm.types import TrainState
from jaxwm.utils import train_on_batches


@flax.struct.dataclass
class P2EState:
    wm: TrainState                     # reward-free world model
    disag: TrainState                  # ensemble params [E, ...] + optimizer
    expl: ac_lib.ACState               # explorer actor-critic
    step: jax.Array                    # int32 [] gradient steps


class Plan2Explore:
    """config: ConfigDict with `model`, `behavior` and `disag` blocks
    (`jaxwm.agents.plan2explore.config`). Raises ValueError if `model.reward_grad` is True."""

    def __init__(self, config: ml_collections.ConfigDict, obs_space: dict, act_space):
        if config.model.reward_grad:
            raise ValueError("model.reward_grad=True: Plan2Explore trains its world model "
                             "reward-free; allowed: False")
        self.config = config
        m = config.model
        self.wm = WorldModel(m, obs_space, act_space)
        feat = ac_lib.feat_size(m)
        target = m.stoch * (m.classes if m.latent == "discrete" else 1)
        self.disag = p2e.Disagreement(config.disag, feat, act_space.size, target)
        self.ac = ac_lib.ActorCritic(config.behavior, feat, act_space)

    def init(self, key) -> P2EState:
        k_wm, k_disag, k_ac = jax.random.split(key, 3)
        return P2EState(wm=self.wm.init_state(k_wm), disag=self.disag.init_state(k_disag),
                        expl=self.ac.init(k_ac), step=jnp.zeros((), jnp.int32))

    def initial_carry(self, num_envs: int) -> dict:
        return self.wm.initial_carry(num_envs)

    def act(self, state: P2EState, carry, obs, key, mode=0):
        return policy_step(self.wm, self.ac, state.wm.params, state.expl.actor.params, carry,
                           obs, key, mode)

    def reward_fn(self, wm_params, disag_params):
        """reward_fn(traj) -> [H, N]: intr_scale * r_int(s_t, a_t) + extr_scale * r_ext(s_t+1)."""
        extr = self.config.disag.extr_scale

        def reward(traj):
            r = self.disag.intrinsic_reward(disag_params, traj.feat[:-1], traj.actions)
            if extr:
                r = r + extr * self.wm.reward(wm_params, traj.feat[1:])
            return r
        return reward

    def train_step(self, state: P2EState, batch, key):
        """World model, ensemble, then explorer from the batch's posteriors."""
        k_wm, k_start, k_ac = jax.random.split(key, 3)
        wm_state, metrics, posts = self.wm.train_step(state.wm, batch, k_wm)
        pairs = p2e.one_step_pairs(posts, self.wm.action_features(batch["action"]),
                                   batch["is_first"])
        disag_state, disag_metrics = self.disag.train_step(state.disag, *pairs)
        start, start_cont = ac_lib.replay_starts(posts, batch, self.config.behavior.imag_starts,
                                                 k_start)
        expl, ac_metrics = self.ac.update(state.expl, self.wm, wm_state.params, start,
                                          self.reward_fn(wm_state.params, disag_state.params),
                                          k_ac, start_cont)
        new = P2EState(wm=wm_state, disag=disag_state, expl=expl, step=state.step + 1)
        return new, {**metrics, **disag_metrics, **ac_metrics}

    def train_steps(self, state: P2EState, batches, key):
        """K `train_step`s scanned over batches [K, T, B]; returns (state, mean metrics)."""
        return train_on_batches(self.train_step, state, batches, key, self.wm.straight_line)

    def video(self, state: P2EState, batch, key, stem: str):
        return openloop.write_openloop(self.wm, state.wm.params, batch, key, stem)
