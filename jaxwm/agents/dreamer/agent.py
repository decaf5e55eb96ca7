"""Dreamer agent (DreamerV2, Hafner et al. 2021): world model + actor-critic in imagination.

Composition only: `WorldModel` (jaxwm.models.dreamer) learns from replay batches [T, B]; the
actor-critic (jaxwm.behaviors.actor_critic) learns from imagined rollouts started at all posterior
states of the batch, maximizing the world model's reward head. Implements the protocol of
`jaxwm.runtime.online` (init / initial_carry / act / train_steps / video).

With `reversibility.penalty` > 0, RAE moves into imagination (Grinsztajn et al., NeurIPS 2021,
applied to latents, which the paper does not do): a precedence estimator psi
(`jaxwm.models.precedence`) learns the order of posterior features within each replay sequence,
and the imagined reward of s_t -> s_{t+1} becomes r - w * max(sigmoid(psi(s_t, s_{t+1})) - beta, 0).
"""
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxwm.behaviors import actor_critic as ac_lib
from jaxwm.models import precedence, rssm
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
    psi: TrainState | None = None      # precedence estimator (reversibility.penalty > 0)


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
        rev = config.get("reversibility")
        self.rae = rev if rev is not None and rev.penalty > 0 else None
        if self.rae is not None:
            self.psi = precedence.Precedence((rev.units,) * rev.layers, rev.embed)
            self.psi_opt = optax.adam(rev.lr)

    def init(self, key) -> DreamerState:
        k_wm, k_ac, k_psi = jax.random.split(key, 3)
        psi = None
        if self.rae is not None:
            feat = jnp.zeros((1, ac_lib.feat_size(self.config.model)))
            psi = TrainState.create(self.psi.init(k_psi, feat, feat), self.psi_opt)
        return DreamerState(wm=self.wm.init_state(k_wm), ac=self.ac.init(k_ac),
                            step=jnp.zeros((), jnp.int32), psi=psi)

    def initial_carry(self, num_envs: int) -> dict:
        return self.wm.initial_carry(num_envs)

    def act(self, state: DreamerState, carry, obs, key, mode=0):
        return policy_step(self.wm, self.ac, state.wm.params, state.ac.actor.params, carry, obs,
                           key, mode)

    def train_step(self, state: DreamerState, batch, key):
        """World-model step on batch [T, B], then an actor-critic update from its T * B
        posteriors (imagined with the updated model). Returns (state, metrics)."""
        k_wm, k_start, k_ac, k_psi = jax.random.split(key, 4)
        wm_state, metrics, posts = self.wm.train_step(state.wm, batch, k_wm)
        reward_fn = ac_lib.extrinsic_reward(self.wm, wm_state.params)
        psi = state.psi
        if self.rae is not None:
            psi, psi_metrics = self._psi_step(psi, posts, batch, k_psi)
            metrics = {**metrics, **psi_metrics}
            reward_fn = self._rae_reward(reward_fn, psi.params)
        start, start_cont = ac_lib.replay_starts(posts, batch, self.config.behavior.imag_starts,
                                                 k_start)
        ac_state, ac_metrics = self.ac.update(state.ac, self.wm, wm_state.params, start,
                                              reward_fn, k_ac, start_cont)
        return (DreamerState(wm=wm_state, ac=ac_state, step=state.step + 1, psi=psi),
                {**metrics, **ac_metrics})

    def _psi_step(self, psi: TrainState, posts, batch, key):
        """One psi update on pairs of posterior features [T, B, F] within each sequence's
        episodes (ids from is_first)."""
        feat = jax.lax.stop_gradient(rssm.features(posts))
        episode = jnp.cumsum(batch["is_first"].astype(jnp.int32), 0)
        return precedence.train_step(self.psi, self.psi_opt, psi, feat, episode,
                                     self.rae.window, self.rae.batch_size, key)

    def _rae_reward(self, reward_fn, psi_params):
        """reward_fn with RAE's penalty on each imagined transition feat[t] -> feat[t + 1]."""
        def shaped(traj):
            reward = reward_fn(traj)
            p = jax.nn.sigmoid(self.psi.apply(psi_params, traj.feat[:-1], traj.feat[1:]))
            return precedence.rae_reward(reward, p, self.rae.penalty, self.rae.beta)
        return shaped

    def train_steps(self, state: DreamerState, batches, key):
        """K `train_step`s scanned over batches [K, T, B]; returns (state, mean metrics)."""
        return train_on_batches(self.train_step, state, batches, key, self.wm.straight_line)

    def video(self, state: DreamerState, batch, key, stem: str):
        """Real vs open-loop imagined rollout (`openloop.write_openloop`); returns its path."""
        return openloop.write_openloop(self.wm, state.wm.params, batch, key, stem)
