"""Probes of frozen image latents: how much of a known quantity a small MLP reads from them.

LDP's inverse-dynamics model sees only consecutive latents (z_t, z_{t+1}), so it can recover an
action no better than the latents keep the agent's motion. `latent_probes` measures that on
held-out demonstration episodes: the agent's position from z_t, the action a_t from
(z_t, z_{t+1}), and, as the ceiling of two-frame inverse dynamics on that task, a_t from the
true positions (p_t, p_{t+1}). Scores are relative MSEs: 0 = exact, ~1 = no better than
predicting the mean.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxwm.nn.blocks import MLP


def mlp_probe(x: np.ndarray, y: np.ndarray, held_out: int, key: jax.Array, steps: int = 3000,
              hidden: int = 256, batch_size: int = 256, lr: float = 1e-3) -> float:
    """Relative MSE on the last `held_out` episodes of an MLP regression x -> y trained on the
    others: mean over y's dimensions of MSE / variance. x [T, E, D], y [T, E, K]."""
    if not 0 < held_out < x.shape[1]:
        raise ValueError(f"held_out={held_out} must be in [1, {x.shape[1] - 1}] (episodes)")
    flat = lambda a: a.reshape(-1, a.shape[-1]).astype(np.float32)
    x_train, y_train = flat(x[:, :-held_out]), flat(y[:, :-held_out])
    x_test, y_test = flat(x[:, -held_out:]), flat(y[:, -held_out:])
    x_mean, x_std = x_train.mean(0), x_train.std(0) + 1e-6
    y_mean, y_std = y_train.mean(0), y_train.std(0) + 1e-6
    xs, ys = jnp.asarray((x_train - x_mean) / x_std), jnp.asarray((y_train - y_mean) / y_std)
    net = MLP((hidden, hidden), out=y.shape[-1], act="relu")
    k_init, k_train = jax.random.split(key)
    params = net.init(k_init, xs[:1])
    opt = optax.adam(lr)

    @jax.jit
    def fit(params):
        def step(carry, k):
            params, opt_state = carry
            i = jax.random.randint(k, (batch_size,), 0, len(xs))
            grads = jax.grad(lambda p: jnp.mean(jnp.square(net.apply(p, xs[i]) - ys[i])))(params)
            updates, opt_state = opt.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None
        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)),
                                      jax.random.split(k_train, steps))
        return params

    params = fit(params)
    pred = np.asarray(net.apply(params, jnp.asarray((x_test - x_mean) / x_std))) * y_std + y_mean
    return float(np.mean(np.square(pred - y_test).mean(0) / (y_test.var(0) + 1e-12)))


def latent_probes(z: np.ndarray, position: np.ndarray, action: np.ndarray, held_out: int,
                  key: jax.Array, steps: int = 3000) -> dict:
    """{'position', 'action', 'action_from_positions'} relative MSEs (module docstring) of
    latents z [T, E, L], agent positions [T, E, P] and actions [T, E, A] (a_t leads from frame
    t to frame t + 1)."""
    k_pos, k_act, k_ref = jax.random.split(key, 3)
    pairs = lambda a: np.concatenate([a[:-1], a[1:]], -1)
    return {"position": mlp_probe(z, position, held_out, k_pos, steps),
            "action": mlp_probe(pairs(z), action[:-1], held_out, k_act, steps),
            "action_from_positions": mlp_probe(pairs(position), action[:-1], held_out, k_ref,
                                               steps)}
