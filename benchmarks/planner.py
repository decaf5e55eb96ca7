"""MPPI and CEM planning throughput: the jitted, vmapped JAX planners against plain NumPy loops.

  python benchmarks/planner.py --presets=cpu,paper --cem_presets=cpu,paper --num_envs=8 \
      --out=benchmarks/results

Both plan for a batch of `num_envs` latents with the same TD-MPC TOLD parameters (the `tdmpc`
agent preset's model and planner sizes; obs/action sizes of walker: 24 / 6). The NumPy version is
the reference implementation written the usual way (as in TD-MPC's PyTorch code): Python loops
over envs, MPPI iterations, horizon steps and ensemble members, NumPy matmuls over the samples.
Plans/s = envs planned per second. Before timing, both value estimators score one identical set
of action sequences and their max difference is reported (they compute the same function).
NumPy's BLAS is pinned to one thread (OPENBLAS_NUM_THREADS=1 unless set): for these small
matmuls multi-threaded OpenBLAS was ~30x slower on this shared 2-core machine, which would
flatter the ratio. Printed and saved as JSON (planner.json: MPPI in 'rows', CEM in 'cem').

CEM (PlaNet's planner, `jaxwm.planners.cem`) plans in a deterministic stand-in for PlaNet's RSSM at
its sizes (state 230 = deter 200 + stoch 30, hidden 200): s' = tanh MLP([s, a]), reward = tanh MLP
head on s', random weights. `paper` plans with PlaNet's J=1000 candidates, top 100, 10 iterations,
H=12; `cpu` with J=200, top 20, 5 iterations, H=12. The NumPy CEM loops over envs, iterations and
horizon steps with float32 matmuls over the candidates (the value check runs it in float64).
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
from jaxwm.planners import cem, mppi  # noqa: E402
from jaxwm.runtime.logging import save_benchmark  # noqa: E402

flags.DEFINE_list("presets", ["cpu", "paper"],
                  "tdmpc presets whose model/planner sizes are timed with MPPI (empty: none)")
flags.DEFINE_list("cem_presets", ["cpu", "paper"], "CEM planner sizes timed (cpu, paper; empty: "
                  "none)")
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


# ------------------------------------------------------------------------------------------------
# CEM: a PlaNet-sized deterministic model, written once for numpy and jax.numpy (xp)
# ------------------------------------------------------------------------------------------------
CEM_PRESETS = {"cpu": dict(horizon=12, num_candidates=200, num_elites=20, iterations=5),
               "paper": dict(horizon=12, num_candidates=1000, num_elites=100, iterations=10)}
STATE_SIZE, HIDDEN = 230, 200  # PlaNet: deter 200 + stoch 30, hidden 200


def planet_like_params(action_size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        return {"w": (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32),
                "b": (0.1 * rng.standard_normal(n_out)).astype(np.float32)}
    return {"t0": dense(STATE_SIZE + action_size, HIDDEN), "t1": dense(HIDDEN, STATE_SIZE),
            "r0": dense(STATE_SIZE, HIDDEN), "r1": dense(HIDDEN, 1)}


def transition(xp, p, s, a):
    h = xp.tanh(xp.concatenate([s, a], -1) @ p["t0"]["w"] + p["t0"]["b"])
    return xp.tanh(h @ p["t1"]["w"] + p["t1"]["b"])


def reward_head(xp, p, s):
    return (xp.tanh(s @ p["r0"]["w"] + p["r0"]["b"]) @ p["r1"]["w"] + p["r1"]["b"])[..., 0]


CEM_FNS = cem.ModelFns(next=lambda p, s, a, key: transition(jnp, p, s, a),
                       reward=lambda p, s, a: reward_head(jnp, p, s))


def np_cem_returns(c: cem.CEMConfig, p, states, actions):
    """Same as `cem.candidate_returns` (no terminal value): states [J, S], actions [J, H, A]."""
    returns, discount = np.zeros(len(states), states.dtype), 1.0
    for t in range(actions.shape[1]):
        states = transition(np, p, states, actions[:, t])
        returns += discount * reward_head(np, p, states)
        discount *= c.gamma
    return returns


def np_cem_plan(c: cem.CEMConfig, p, rng, state, prev_mean, is_first):
    """NumPy CEM for one state [S] (loops over iterations and horizon)."""
    horizon, a_size = prev_mean.shape
    states = np.repeat(state[None], c.num_candidates, 0)
    if is_first or not c.warm_start:
        mean = np.zeros_like(prev_mean)
    else:
        mean = np.concatenate([prev_mean[1:], np.zeros_like(prev_mean[:1])])
    std = np.full_like(prev_mean, c.init_std)
    for _ in range(c.iterations):
        noise = rng.standard_normal((c.num_candidates, horizon, a_size), dtype=np.float32)
        actions = np.clip(mean + std * noise, -1, 1)
        returns = np.nan_to_num(np_cem_returns(c, p, states, actions), nan=-np.inf)
        elites = actions[np.argpartition(-returns, c.num_elites - 1)[:c.num_elites]]
        mean = elites.mean(0)
        std = np.sqrt(elites.var(0) + c.min_std ** 2)
    return mean[0], mean


def time_cem(preset: str) -> dict:
    c = cem.CEMConfig(**CEM_PRESETS[preset])
    n, a_size = FLAGS.num_envs, FLAGS.action_size
    np_params = planet_like_params(a_size)
    params = jax.tree.map(jnp.asarray, np_params)
    rng = np.random.default_rng(0)
    states = np.tanh(rng.standard_normal((n, STATE_SIZE))).astype(np.float32)
    prev = np.zeros((n, c.horizon, a_size), np.float32)
    is_first = np.ones(n, bool)

    # Same function: returns of one set of action sequences (NumPy in float64).
    check = jax.random.uniform(jax.random.key(2), (64, c.horizon, a_size), minval=-1)
    start = jnp.repeat(jnp.asarray(states[:1]), 64, 0)
    jax_returns = cem.candidate_returns(c, CEM_FNS, params, start, check, jax.random.key(3))
    np_returns = np_cem_returns(c, jax.tree.map(lambda x: x.astype(np.float64), np_params),
                                np.asarray(start, np.float64), np.asarray(check, np.float64))
    gap = float(np.abs(np.asarray(jax_returns) - np_returns).max())

    act = jax.jit(lambda p, key, s, m, f: cem.plan_batch(c, CEM_FNS, p, key, s, m, f))
    begin = time.perf_counter()
    jax.block_until_ready(act(params, jax.random.key(0), states, prev, is_first))
    compile_s = time.perf_counter() - begin
    begin = time.perf_counter()
    for i in range(FLAGS.repeats):
        np.asarray(act(params, jax.random.key(i), states, prev, is_first)[0])
    jax_s = (time.perf_counter() - begin) / FLAGS.repeats

    begin = time.perf_counter()
    for _ in range(FLAGS.repeats):
        for i in range(n):
            np_cem_plan(c, np_params, rng, states[i], prev[i], is_first[i])
    np_s = (time.perf_counter() - begin) / FLAGS.repeats
    # Matmul FLOPs of the model per plan (transition and reward head of every candidate step).
    step_flops = 2 * ((STATE_SIZE + a_size) * HIDDEN + HIDDEN * STATE_SIZE + STATE_SIZE * HIDDEN
                      + HIDDEN)
    gflop = c.iterations * c.num_candidates * c.horizon * step_flops / 1e9
    return {"preset": preset, "num_envs": n, **CEM_PRESETS[preset], "state_size": STATE_SIZE,
            "hidden": HIDDEN, "action_size": a_size, "model_gflop_per_plan": gflop,
            "jax_gflop_per_s": gflop * n / jax_s, "numpy_gflop_per_s": gflop * n / np_s,
            "jax_plans_per_s": n / jax_s,
            "numpy_plans_per_s": n / np_s, "speedup_jax_over_numpy": np_s / jax_s,
            "jax_compile_s": round(compile_s, 2), "return_max_abs_diff": gap,
            "return_max_abs": float(np.abs(np_returns).max())}


def main(argv):
    del argv
    rows = []
    for preset in FLAGS.presets:
        row = time_preset(preset)
        rows.append(row)
        print(f"MPPI {preset:>6}: JAX {row['jax_plans_per_s']:8.1f} plans/s | NumPy "
              f"{row['numpy_plans_per_s']:7.2f} plans/s | "
              f"ratio {row['speedup_jax_over_numpy']:.1f}x"
              f" ({row['num_envs']} envs, {row['num_samples']}+{row['num_pi_trajs']} samples, "
              f"{row['iterations']} it, H={row['horizon']}; value gap "
              f"{row['value_max_abs_diff']:.1e} of max |V| {row['value_max_abs']:.1f})")
    cem_rows = []
    for preset in FLAGS.cem_presets:
        row = time_cem(preset)
        cem_rows.append(row)
        print(f"CEM  {preset:>6}: JAX {row['jax_plans_per_s']:8.1f} plans/s | NumPy "
              f"{row['numpy_plans_per_s']:7.2f} plans/s | "
              f"ratio {row['speedup_jax_over_numpy']:.1f}x"
              f" ({row['num_envs']} envs, J={row['num_candidates']}, K={row['num_elites']}, "
              f"{row['iterations']} it, H={row['horizon']}; model matmuls "
              f"{row['jax_gflop_per_s']:.0f} vs {row['numpy_gflop_per_s']:.0f} GFLOP/s; return gap "
              f"{row['return_max_abs_diff']:.1e} of max |R| {row['return_max_abs']:.1f})")
    save_benchmark(FLAGS.out, "planner", {
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "rows": rows,
        "cem": cem_rows})


if __name__ == "__main__":
    app.run(main)
