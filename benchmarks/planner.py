"""MPPI planning throughput: the jitted, vmapped JAX planner against a plain NumPy loop.

  python benchmarks/planner.py --presets=cpu,paper --num_envs=8 --out=benchmarks/results

Both plan for a batch of `num_envs` latents with the same TD-MPC TOLD parameters (the `tdmpc`
agent preset's model and planner sizes; obs/action sizes of walker: 24 / 6). The NumPy version is
the reference implementation written the usual way (as in TD-MPC's PyTorch code): Python loops
over envs, MPPI iterations, horizon steps and ensemble members, NumPy matmuls over the samples.
Plans/s = envs planned per second. Before timing, both value estimators score one identical set
of action sequences and their max difference is reported (they compute the same function).
NumPy's BLAS is pinned to one thread (OPENBLAS_NUM_THREADS=1 unless set): for these small
matmuls multi-threaded OpenBLAS was ~30x slower on this shared 2-core machine, which would
flatter the ratio. Printed and saved as JSON (planner.json).
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxwm.agents.tdmpc import config as tdmpc_config  # noqa: E402
from jaxwm.agents.tdmpc.agent import Agent  # noqa: E402
from jaxwm.planners import mppi  # noqa: E402
from jaxwm.runtime.logging import save_benchmark  # noqa: E402

flags.DEFINE_list("presets", ["cpu", "paper"], "tdmpc presets whose model/planner sizes are timed")
flags.DEFINE_integer("num_envs", 8, "latents planned per call (a batch of environments)")
flags.DEFINE_integer("obs_size", 24, "observation size D")
flags.DEFINE_integer("action_size", 6, "action size A")
flags.DEFINE_integer("repeats", 5, "timed calls (JAX after one compile call)")
flags.DEFINE_string("out", "benchmarks/results", "directory for planner.json")
FLAGS = flags.FLAGS


# ------------------------------------------------------------------------------------------------
# NumPy reference: TOLD forward passes on flax params (tdmpc variant: ELU, scalar heads)
# ------------------------------------------------------------------------------------------------
def np_elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def np_layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_mlp(p, x):
    """flax `MLP` (no LayerNorm): Dense_i + ELU for hidden layers, last Dense linear."""
    n = len([k for k in p if k.startswith("Dense_")])
    for i in range(n):
        x = x @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
        if i < n - 1:
            x = np_elu(x)
    return x


def np_q(p, x):
    """`ValueNet` with TD-MPC's first layer Dense -> LayerNorm -> tanh."""
    h = np.tanh(np_layer_norm(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], p["LayerNorm_0"]))
    return np_mlp(p["MLP_0"], h)[..., 0]


class NumpyTOLD:
    """The model functions the planner needs, on host numpy copies of the params."""

    def __init__(self, params, pi_params, num_q, policy_std):
        host = jax.tree.map(np.asarray, jax.device_get(params))
        self.enc = host["encoder"]["params"]["MLP_0"]
        self.dyn = host["dynamics"]["params"]["MLP_0"]
        self.rew = host["reward"]["params"]
        self.qs = [jax.tree.map(lambda x: x[e], host["q"]["params"]) for e in range(num_q)]
        self.pi_p = jax.tree.map(np.asarray, jax.device_get(pi_params))["params"]
        self.policy_std = policy_std

    def encode(self, obs):
        return np_mlp(self.enc, obs)

    def next(self, z, a):
        return np_mlp(self.dyn, np.concatenate([z, a], -1))

    def reward(self, z, a):
        return np_mlp(self.rew, np.concatenate([z, a], -1))[..., 0]

    def q_ensemble(self, z, a):
        za = np.concatenate([z, a], -1)
        return np.stack([np_q(q, za) for q in self.qs])

    def policy(self, z, rng):
        mean = np.tanh(np_mlp(self.pi_p, z))
        noise = np.clip(self.policy_std * rng.standard_normal(mean.shape), -0.3, 0.3)
        return np.clip(mean + noise, -1.0, 1.0)


def np_values(c: mppi.MPPIConfig, model: NumpyTOLD, z, actions, rng):
    """Same as `mppi.estimate_values` (no penalty): z [N, L], actions [N, H, A] -> [N]."""
    value, discount = np.zeros(len(z)), 1.0
    for t in range(c.horizon):
        value += discount * model.reward(z, actions[:, t])
        z = model.next(z, actions[:, t])
        discount *= c.gamma
    qs = model.q_ensemble(z, model.policy(z, rng))
    return value + discount * (qs.min(0) if c.value_aggregation == "min" else qs.mean(0))


def np_plan(c: mppi.MPPIConfig, model: NumpyTOLD, rng, latent, prev_mean, is_first):
    """NumPy MPPI for one latent [L] (loops over iterations and horizon)."""
    horizon, a_size = prev_mean.shape
    z = np.repeat(latent[None], c.num_samples + c.num_pi_trajs, 0)
    pi_actions = np.zeros((c.num_pi_trajs, horizon, a_size))
    z_pi = z[:c.num_pi_trajs]
    for t in range(horizon):
        pi_actions[:, t] = model.policy(z_pi, rng)
        z_pi = model.next(z_pi, pi_actions[:, t])
    mean = np.zeros_like(prev_mean) if is_first else np.concatenate(
        [prev_mean[1:], np.zeros_like(prev_mean[:1])])
    std = np.full_like(prev_mean, c.max_std)
    for _ in range(c.iterations):
        samples = np.clip(mean + std * rng.standard_normal((c.num_samples, horizon, a_size)),
                          -1, 1)
        actions = np.concatenate([samples, pi_actions], 0)
        values = np.nan_to_num(np_values(c, model, z, actions, rng))
        idx = np.argpartition(-values, c.num_elites - 1)[:c.num_elites]
        elites, elite_values = actions[idx], values[idx]
        w = np.exp(c.temperature * (elite_values - elite_values.max()))
        w /= w.sum()
        elite_mean = np.einsum("k,kha->ha", w, elites)
        elite_std = np.sqrt(np.einsum("k,kha->ha", w, (elites - elite_mean) ** 2))
        mean = c.momentum * mean + (1 - c.momentum) * elite_mean
        std = np.clip(elite_std, c.min_std, c.max_std)
    action = elites[rng.choice(len(w), p=w), 0]
    return np.clip(action, -1, 1), mean


def np_plan_batch(c, model, rng, latents, prev_means, is_first):
    out = [np_plan(c, model, rng, latents[i], prev_means[i], is_first[i])
           for i in range(len(latents))]
    return np.stack([a for a, _ in out]), np.stack([m for _, m in out])


# ------------------------------------------------------------------------------------------------
def time_preset(preset: str) -> dict:
    config = tdmpc_config.get_config(preset)
    if config.model.latent_norm != "none" or config.model.head != "scalar":
        raise ValueError(f"preset={preset!r}: the NumPy reference covers TD-MPC (v1) presets")
    agent = Agent(config, FLAGS.obs_size, FLAGS.action_size)
    c, n = agent.planner, FLAGS.num_envs
    state = jax.jit(agent.init)(jax.random.key(0))
    # Non-zero output layers so rewards/Qs (zero-initialized) vary with the actions.
    perturb = lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)  # noqa: E731
    params = jax.tree.map(perturb, state.model.params)
    state = state.replace(model=state.model.replace(params=params))
    obs = np.random.default_rng(0).standard_normal((n, FLAGS.obs_size)).astype(np.float32)
    prev = np.zeros((n, c.horizon, FLAGS.action_size), np.float32)
    is_first = np.ones(n, bool)
    model = NumpyTOLD(params, state.pi.params, config.model.num_q, config.model.policy_std)

    # Same function: value estimates of one set of action sequences (deterministic policy mean
    # at the terminal state: zero policy noise on both sides).
    check = jax.random.uniform(jax.random.key(2), (64, c.horizon, FLAGS.action_size), minval=-1)
    z = agent.model.encode(params, jnp.asarray(obs[:1]))
    z = jnp.repeat(z, 64, 0)
    fns = agent.fns._replace(policy=lambda p, z, key: agent.model.pi(p["pi"], z, key, False)[0])
    jax_values = mppi.estimate_values(c, fns, {"model": params, "pi": state.pi.params}, z, check,
                                      jax.random.key(3))
    model.policy_std = 0.0
    np_vals = np_values(c, model, np.asarray(z, np.float64), np.asarray(check, np.float64),
                        np.random.default_rng(0))
    model.policy_std = config.model.policy_std
    value_gap = float(np.abs(np.asarray(jax_values) - np_vals).max())
    value_scale = float(np.abs(np_vals).max())

    act = agent.jit_act
    start = time.perf_counter()
    jax.block_until_ready(act(state, obs, prev, is_first, jax.random.key(0), False))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(FLAGS.repeats):
        action, _, _ = act(state, obs, prev, is_first, jax.random.key(i), False)
        np.asarray(action)
    jax_s = (time.perf_counter() - start) / FLAGS.repeats

    rng = np.random.default_rng(0)
    latents = model.encode(obs.astype(np.float64))
    start = time.perf_counter()
    for _ in range(FLAGS.repeats):
        np_plan_batch(c, model, rng, latents, prev, is_first)
    np_s = (time.perf_counter() - start) / FLAGS.repeats
    return {"preset": preset, "num_envs": n, "num_samples": c.num_samples,
            "num_pi_trajs": c.num_pi_trajs, "iterations": c.iterations, "horizon": c.horizon,
            "mlp_dim": config.model.mlp_dim, "latent_dim": config.model.latent_dim,
            "jax_plans_per_s": n / jax_s, "numpy_plans_per_s": n / np_s,
            "speedup_jax_over_numpy": np_s / jax_s, "jax_compile_s": round(compile_s, 2),
            "value_max_abs_diff": value_gap, "value_max_abs": value_scale}


def main(argv):
    del argv
    rows = []
    for preset in FLAGS.presets:
        row = time_preset(preset)
        rows.append(row)
        print(f"{preset:>6}: JAX {row['jax_plans_per_s']:8.1f} plans/s | NumPy "
              f"{row['numpy_plans_per_s']:7.2f} plans/s | "
              f"ratio {row['speedup_jax_over_numpy']:.1f}x"
              f" ({row['num_envs']} envs, {row['num_samples']}+{row['num_pi_trajs']} samples, "
              f"{row['iterations']} it, H={row['horizon']}; value gap "
              f"{row['value_max_abs_diff']:.1e} of max |V| {row['value_max_abs']:.1f})")
    save_benchmark(FLAGS.out, "planner", {
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "rows": rows})


if __name__ == "__main__":
    app.run(main)
