"""RAC: reversibility-aware control (Grinsztajn et al., NeurIPS 2021, Sec. 4.2) on a
classic-control task (CartPole-v1), with DQN as the learner.

Offline, from uniform random trajectories: psi by order classification of pairs, then phi(s, a)
distilled from sigmoid(psi(s, s')) on the observed transitions. Online, DQN acts through
`precedence.rac_action`: epsilon-greedy among the actions with sigmoid(phi) <= beta (the least
irreversible action when none is). `rac.enabled = False` is the unconstrained DQN. A fall
(CartPole's termination) is the irreversible event the filter should prevent.

The authors' Cartpole experiment uses PPO as the learner; DQN here, as this project's issue
asks (RAC filters any learner's action preferences: Q-values here).
"""
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxwm.behaviors import model_free
from jaxwm.models import precedence
from jaxwm.types import TrainState


class Nets(NamedTuple):
    psi: precedence.Precedence
    phi: precedence.Irreversibility
    q: model_free.QNetwork
    psi_tx: optax.GradientTransformation
    q_tx: optax.GradientTransformation


def build(c: ml_collections.ConfigDict, num_actions: int) -> Nets:
    p = c.precedence
    hidden = (p.units,) * p.layers
    return Nets(psi=precedence.Precedence(hidden, p.embed),
                phi=precedence.Irreversibility(num_actions, hidden),
                q=model_free.QNetwork(num_actions, hidden),
                psi_tx=optax.adam(p.lr), q_tx=optax.adam(c.rac.lr))


def collect_random(env, steps: int, key: jax.Array) -> dict:
    """`steps // N` steps of the uniform random policy in `env` (a base.Env with a 'vector'
    obs): 'obs' [T + 1, N, D], 'action' int32 [T, N], 'episode' int32 [T + 1, N] (unique ids),
    'valid' bool [T, N] (obs[t] -> obs[t+1] is a real transition, not an autoreset), 'falls',
    'episodes' (ended episodes, and how many by termination)."""
    n = env.num_envs
    length = max(1, steps // n)
    actions = np.asarray(jax.random.randint(key, (length, n), 0, env.act_space.size), np.int32)
    out = env.reset()
    obs, first = [out['vector']], [out['is_first']]
    falls = episodes = 0
    for t in range(length):
        out = env.step(actions[t])
        obs.append(out['vector'])
        first.append(out['is_first'])
        falls += int(out['is_terminal'].sum())
        episodes += int(out['is_last'].sum())
    first = np.stack(first)
    episode = (np.cumsum(first, 0) - 1) * n + np.arange(n)
    return dict(obs=np.stack(obs), action=actions, episode=episode.astype(np.int32),
                valid=~first[1:], falls=falls, episodes=episodes)


def train_psi(c, nets: Nets, data: dict, key: jax.Array) -> tuple:
    """psi trained for `rac.psi_updates` steps on pairs of `data` (`collect_random`):
    (params, metrics of the last 10% of steps)."""
    p = c.precedence
    k_init, k_steps = jax.random.split(key)
    obs, episode = jnp.asarray(data['obs']), jnp.asarray(data['episode'])
    state = TrainState.create(nets.psi.init(k_init, obs[0, :1], obs[0, :1]), nets.psi_tx)

    def step(state, key):
        return precedence.train_step(nets.psi, nets.psi_tx, state, obs, episode, p.window,
                                     p.batch_size, key)

    state, metrics = jax.jit(lambda s, k: jax.lax.scan(step, s, k))(
        state, jax.random.split(k_steps, c.rac.psi_updates))
    tail = max(1, c.rac.psi_updates // 10)
    return state.params, {k: float(v[-tail:].mean()) for k, v in metrics.items()}


def train_phi(c, nets: Nets, psi_params, data: dict, key: jax.Array) -> tuple:
    """phi trained for `rac.phi_updates` steps on minibatches of the valid transitions of
    `data`, against sigmoid(psi(s, s')): (params, metrics)."""
    valid = data['valid'].reshape(-1)
    obs = jnp.asarray(data['obs'][:-1].reshape(-1, data['obs'].shape[-1])[valid])
    next_obs = jnp.asarray(data['obs'][1:].reshape(-1, data['obs'].shape[-1])[valid])
    action = jnp.asarray(data['action'].reshape(-1)[valid])
    target = jax.nn.sigmoid(nets.psi.apply(psi_params, obs, next_obs))
    k_init, k_steps = jax.random.split(key)
    state = TrainState.create(nets.phi.init(k_init, obs[:1]), nets.psi_tx)
    size = c.precedence.batch_size

    def step(state, key):
        idx = jax.random.randint(key, (size,), 0, obs.shape[0])
        loss, grads = jax.value_and_grad(
            lambda params: precedence.phi_loss(nets.phi.apply(params, obs[idx]), action[idx],
                                               target[idx]))(state.params)
        return state.apply_gradients(nets.psi_tx, grads), loss

    state, loss = jax.jit(lambda s, k: jax.lax.scan(step, s, k))(
        state, jax.random.split(k_steps, c.rac.phi_updates))
    phi = jax.nn.sigmoid(nets.phi.apply(state.params, obs))
    taken = jnp.take_along_axis(phi, action[:, None], 1)[:, 0]
    tail = max(1, c.rac.phi_updates // 10)
    return state.params, {"phi_loss": float(loss[-tail:].mean()),
                          "phi_error": float(jnp.mean(jnp.abs(taken - target))),
                          "psi_irreversible_fraction": float(jnp.mean(target > c.rac.beta))}


@flax.struct.dataclass
class DqnState:
    q: TrainState
    target: dict
    replay: dict          # obs [C, D], action [C], reward [C], next_obs [C, D], discount [C],
    cursor: jax.Array     # weight [C] (0 = empty slot or autoreset step); int32 []
    key: jax.Array


def init_dqn(c, nets: Nets, obs_dim: int, key: jax.Array) -> DqnState:
    q = c.rac
    k_init, key = jax.random.split(key)
    params = nets.q.init(k_init, jnp.zeros((1, obs_dim)))
    cap = q.replay_capacity
    replay = dict(obs=jnp.zeros((cap, obs_dim)), action=jnp.zeros(cap, jnp.int32),
                  reward=jnp.zeros(cap), next_obs=jnp.zeros((cap, obs_dim)),
                  discount=jnp.zeros(cap), weight=jnp.zeros(cap))
    return DqnState(q=TrainState.create(params, nets.q_tx), target=jax.tree.map(jnp.copy, params),
                    replay=replay,
                    cursor=jnp.zeros((), jnp.int32), key=key)


def act(c, nets: Nets, q_params, phi_params, obs, epsilon, key) -> jax.Array:
    """Epsilon-greedy actions int32 [N] for obs [N, D]; through RAC when `rac.enabled` (the
    exploratory draws then also avoid actions with phi > beta)."""
    q_values = nets.q.apply(q_params, obs)
    k_explore, k_pick = jax.random.split(key)
    explore = jax.random.uniform(k_explore, obs.shape[:1]) < epsilon
    noise = jax.random.uniform(k_pick, q_values.shape)
    preference = jnp.where(explore[:, None], noise, q_values)
    if not c.rac.enabled:
        return jnp.argmax(preference, -1).astype(jnp.int32)
    phi = jax.nn.sigmoid(nets.phi.apply(phi_params, obs))
    return jax.vmap(precedence.rac_action, (0, 0, None))(preference, phi, c.rac.beta)


def store_and_update(c, nets: Nets, state: DqnState, obs, action, out: dict,
                     train: jax.Array) -> tuple:
    """Writes the N transitions obs -> out['vector'] (weight 0 for autoreset steps) and, if
    `train`, takes one DQN step on a uniform replay minibatch; copies the target every
    `target_every` steps. Returns (state, td loss)."""
    q = c.rac
    n = obs.shape[0]
    slots = (state.cursor + jnp.arange(n)) % q.replay_capacity
    new = dict(obs=obs, action=action, reward=out['reward'], next_obs=out['vector'],
               discount=q.gamma * (1.0 - out['is_terminal']),
               weight=1.0 - out['is_first'].astype(jnp.float32))
    replay = {k: state.replay[k].at[slots].set(v.astype(state.replay[k].dtype))
              for k, v in new.items()}
    key, k_batch = jax.random.split(state.key)
    idx = jax.random.randint(k_batch, (q.batch_size,), 0, q.replay_capacity)
    b = {k: v[idx] for k, v in replay.items()}

    def loss_fn(params):
        return model_free.dqn_loss(nets.q.apply(params, b['obs']),
                                   nets.q.apply(state.target, b['next_obs']), b['action'],
                                   b['reward'], b['discount'], b['weight'] * train)

    loss, grads = jax.value_and_grad(loss_fn)(state.q.params)
    q_state = jax.lax.cond(train, lambda: state.q.apply_gradients(nets.q_tx, grads),
                           lambda: state.q)
    copy = train & (q_state.step % q.target_every == 0)
    target = jax.tree.map(lambda t, o: jnp.where(copy, o, t), state.target, q_state.params)
    state = state.replace(q=q_state, target=target, replay=replay,
                          cursor=(state.cursor + n) % q.replay_capacity, key=key)
    return state, loss
