"""First-call compile seconds of every agent's jitted training (and acting) call, `cpu` presets.

  python benchmarks/compile_time.py --k_values=2,5 --out=benchmarks/results
  (all agents: ~6 min on 2 loaded cores; --agents=tdmpc,fowm for a subset)

With JAX's persistent compilation cache off, each row is one ahead-of-time
`jitted.trace(*args).lower().compile()` of the same function, arguments and static values that
the agent's host loop calls, split into tracing (Python -> jaxpr), lowering (jaxpr -> StableHLO)
and XLA compilation; `total` is their sum, i.e. the wall time of `jax.jit(fn).lower(*args).
compile()` and what a run waits before its first training (acting) step. XLA's LLVM level is the
binaries' (`--xla_cpu_optimization_level`, 1 on CPU; -1 measures XLA's default).

Calls: the world-model binary's `make_train_fn` (experiments/configs/world_model.py:cpu, Pong);
the training closure of `jaxwm.runtime.online.run` and `jax.jit(agent.act)` for Dreamer (cpu)
and Plan2Explore (cpu, replay with the walker task labels); `agent.train_steps` and
`agent.jit_act` for TD-MPC (cpu) and TD-MPC2 (cpu_v2); FOWM (cpu) the offline call (dataset only),
the online call (online + dataset buffers) and `jit_act`; CASCADE (cpu: MiniGrid, cpu_walker)
`Learner.train(explore=True)` and `Learner.act(random=False)`. Env spaces and first observations
come from the presets' real envs (`jaxwm.envs.make`); agent states and replay buffers are abstract
(`jax.eval_shape`: nothing is allocated or run; the lowered program is the same text as with real
arrays, checked for the world-model and TD-MPC calls). FOWM's dataset (not generated here) is a
buffer of the same fields shaped like make_dataset.py's default medium-replay data: 1000 agent
steps from the cpu envs.

K: gradient steps per training call. `loop` says how they are traced: 'straight' = K copies of
the step in one program (`jaxwm.utils.scan_gradient_steps` on CPU, so compile time grows with
K), 'scan' = one step body inside a `lax.scan`. --k_values re-measures the world-model binary's
training call for each K. Printed as a table and saved as `compile_time.json`.
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.configs import world_model as wm_configs
from jaxwm.agents.cascade import config as cascade_configs
from jaxwm.agents.cascade.train import Learner
from jaxwm.agents.dreamer import config as dreamer_configs
from jaxwm.agents.dreamer.agent import Dreamer
from jaxwm.agents.fowm import config as fowm_configs
from jaxwm.agents.fowm.agent import make_agent as make_fowm_agent
from jaxwm.agents.plan2explore import config as p2e_configs
from jaxwm.agents.plan2explore.agent import Plan2Explore
from jaxwm.agents.tdmpc import config as tdmpc_configs
from jaxwm.agents.tdmpc.agent import Agent as TDMPCAgent
from jaxwm.data import replay
from jaxwm.envs.tasks import family_for_env, label_keys
from jaxwm.models.dreamer import WorldModel
from jaxwm.runtime import cli, online, world_model_training
from jaxwm.runtime.logging import save_benchmark

AGENTS = ("world_model", "dreamer", "plan2explore", "tdmpc", "fowm", "cascade")
flags.DEFINE_list("agents", list(AGENTS), f"agents to measure, among {AGENTS}")
flags.DEFINE_list("k_values", [], "extra K (train.grad_steps) values for the world-model "
                  "binary's training call, e.g. 1,2,5,10 (empty: the preset's K only)")
flags.DEFINE_string("out", "benchmarks/results", "directory for compile_time.json")
flags.DEFINE_integer("xla_cpu_optimization_level", cli.CPU_OPTIMIZATION_LEVEL,
                     "XLA's LLVM level on CPU, as the binaries' flag of that name (-1: XLA's)")
FLAGS = flags.FLAGS

OFFLINE_DATASET_STEPS = 1000   # make_dataset.py's default --data_stage (FOWM's stand-in dataset)


def k_step_loop(straight_line=None) -> str:
    """How `scan_gradient_steps(..., straight_line)` traces K steps on this backend."""
    if straight_line is None:
        straight_line = jax.default_backend() == "cpu"
    return "straight" if straight_line else "scan"


def measure(agent: str, preset: str, call: str, jitted, *args, k=None, loop=None,
            **kwargs) -> dict:
    """Trace, lower and compile `jitted(*args, **kwargs)` ahead of time; seconds of each stage."""
    start = time.perf_counter()
    traced = jitted.trace(*args, **kwargs)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()
    end = time.perf_counter()
    row = {"agent": agent, "preset": preset, "call": call, "k": k, "loop": loop,
           "trace_s": traced_at - start, "lower_s": lowered_at - traced_at,
           "compile_s": end - lowered_at, "total_s": end - start}
    print(format_row(row), flush=True)
    return row


def format_row(row: dict) -> str:
    k = "" if row["k"] is None else str(row["k"])
    return (f"{row['agent']:<12} {row['preset']:<12} {row['call']:<26} {k:>3} "
            f"{row['loop'] or '':<8} {row['trace_s']:>7.1f} {row['lower_s']:>7.1f} "
            f"{row['compile_s']:>9.1f} {row['total_s']:>7.1f}")


def abstract_replay(spec, capacity: int, num_envs: int) -> replay.ReplayState:
    """Shapes of `replay.init(...)` without allocating it (lowers to the same program as a real
    buffer; `replay.abstract` would add sharding annotations)."""
    return jax.eval_shape(lambda: replay.init(spec, capacity, num_envs))


def env_probe(env_config, seed: int, labeled: bool = False):
    """(obs_space, act_space, replay spec, `policy_inputs` of the first observation, the raw
    first env output, num_envs) of a preset's env; labeled: the replay also holds the task-family
    rewards, as in the loops of Plan2Explore and CASCADE."""
    env = online.make_env(env_config, seed)
    family = family_for_env(env_config.name, env) if labeled else None
    first = env.reset()
    probe = (env.obs_space, env.act_space, replay.env_spec(env, label_keys(family)),
             online.policy_inputs(env, first), first, env.num_envs)
    env.close()
    return probe


def world_model_rows(k_values) -> list:
    config = wm_configs.get_config("cpu")
    obs_space, act_space, spec, _, _, num_envs = env_probe(config.env, config.seed)
    wm = WorldModel(config.model, obs_space, act_space)
    key = jax.random.PRNGKey(0)
    args = (jax.eval_shape(wm.init_state, key),
            abstract_replay(spec, config.train.replay_capacity, num_envs), key)
    rows = []
    for i, k in enumerate([config.train.grad_steps] + k_values):
        config.train.grad_steps = k     # read when make_train_fn's function is traced
        call = "make_train_fn" + (" (--k_values)" if i else "")
        rows.append(measure("world_model", "cpu", call,
                            world_model_training.make_train_fn(wm, config), *args, k=k,
                            loop=k_step_loop(wm.straight_line)))
    return rows


def online_agent_rows(name: str, agent_class, config, labeled: bool) -> list:
    """The training call and `act` of `jaxwm.runtime.online.run` (Dreamer, Plan2Explore)."""
    c = config.run
    obs_space, act_space, spec, obs, _, num_envs = env_probe(config.env, config.seed, labeled)
    agent = agent_class(config, obs_space, act_space)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(agent.init, key)
    replay_state = abstract_replay(spec, c.replay_capacity, num_envs)

    def train(agent_state, replay_state, key):   # the training call of `online.run`
        k_sample, k_train = jax.random.split(key)
        batches = online.sample_batches(replay_state, k_sample, c.grad_steps, c.batch_size,
                                        c.seq_len)
        return agent.train_steps(agent_state, batches, k_train)

    explore = jnp.int32(online.MODES.index("explore"))
    return [measure(name, config.preset, "train", jax.jit(train, donate_argnums=0), state,
                    replay_state, key, k=c.grad_steps, loop=k_step_loop(agent.wm.straight_line)),
            measure(name, config.preset, "act", jax.jit(agent.act), state,
                    agent.initial_carry(num_envs), obs, key, explore)]


def tdmpc_rows(name: str, config, make_agent) -> list:
    """`train_steps` and `jit_act` as `tdmpc.train.run_online` (and FOWM's offline phase) call
    them."""
    r = config.run
    obs_space, act_space, _, _, first, num_envs = env_probe(config.env, config.seed)
    agent = make_agent(config, obs_space["vector"].shape[0], act_space.size)
    key = jax.random.key(0)
    state = jax.eval_shape(agent.init, key)
    online_replay = abstract_replay(agent.replay_spec(), max(r.replay_capacity // num_envs, 1),
                                    num_envs)
    train = jax.jit(agent.train_steps, static_argnames=("num_steps", "sizes"), donate_argnums=0)
    updates = tdmpc_configs.updates_per_call(config)
    rows = []
    if name == "fowm":
        dataset = abstract_replay(agent.replay_spec(), OFFLINE_DATASET_STEPS // num_envs,
                                  num_envs)
        rows.append(measure(name, config.preset, "train_steps (offline)", train, state,
                            (dataset,), key, config.offline.updates_per_call, (r.batch_size,),
                            k=config.offline.updates_per_call, loop="scan"))
        rows.append(measure(name, config.preset, "train_steps (online)", train, state,
                            (online_replay, dataset), key, updates,
                            fowm_configs.batch_sizes(config), k=updates, loop="scan"))
    else:
        rows.append(measure(name, config.preset, "train_steps", train, state, (online_replay,),
                            key, updates, (r.batch_size,), k=updates, loop="scan"))
    rows.append(measure(name, config.preset, "jit_act", agent.jit_act, state, first["vector"],
                        agent.initial_plan(num_envs), first["is_first"], key, True,
                        tdmpc_configs.exploration_std(config, r.seed_steps)))
    return rows


def cascade_rows(preset: str) -> list:
    config = cascade_configs.get_config(preset)
    d = config.deploy
    obs_space, act_space, spec, obs, _, num_envs = env_probe(config.env, config.seed,
                                                             labeled=True)
    learner = Learner(config, obs_space, act_space)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(learner.init, key)
    capacity = (d.deployments + 1) * (d.steps_per_deployment // num_envs)   # as `train.run`
    return [measure("cascade", preset, "Learner.train", learner.train, state,
                    abstract_replay(spec, capacity, num_envs), key, explore=True,
                    k=d.model_grad_steps, loop=k_step_loop(learner.wm.straight_line)),
            measure("cascade", preset, "Learner.act", learner.act, state.wm.params,
                    state.population.members.actor.params, learner.wm.initial_carry(num_envs),
                    obs, key, random=False)]


def agent_rows(agent: str, k_values) -> list:
    if agent == "world_model":
        return world_model_rows(k_values)
    if agent == "dreamer":
        return online_agent_rows(agent, Dreamer, dreamer_configs.get_config("cpu"), False)
    if agent == "plan2explore":
        return online_agent_rows(agent, Plan2Explore, p2e_configs.get_config("cpu"), True)
    if agent == "tdmpc":
        return [row for preset in ("cpu", "cpu_v2")
                for row in tdmpc_rows(agent, tdmpc_configs.get_config(preset), TDMPCAgent)]
    if agent == "fowm":
        return tdmpc_rows(agent, fowm_configs.get_config("cpu"), make_fowm_agent)
    if agent == "cascade":
        return cascade_rows("cpu") + cascade_rows("cpu_walker")
    raise ValueError(f"--agents: {agent!r} is not one of {AGENTS}")


def main(argv):
    del argv
    cli.set_cpu_optimization_level(FLAGS.xla_cpu_optimization_level)   # as the binaries
    jax.config.update("jax_enable_compilation_cache", False)  # compile seconds from scratch
    unknown = sorted(set(FLAGS.agents) - set(AGENTS))
    if unknown:
        raise app.UsageError(f"--agents: {unknown} not among {AGENTS}")
    k_values = [int(k) for k in FLAGS.k_values]
    jax.jit(lambda x: x + 1).lower(1.0).compile()   # one-off XLA start-up, outside the rows
    print(f"{'agent':<12} {'preset':<12} {'call':<26} {'K':>3} {'loop':<8} {'trace s':>7} "
          f"{'lower s':>7} {'compile s':>9} {'total s':>7}", flush=True)
    start, load = time.perf_counter(), os.getloadavg()[0]
    rows = [row for agent in FLAGS.agents for row in agent_rows(agent, k_values)]
    slow = [r for r in rows if r["total_s"] > 20]
    print(f"{len(rows)} calls in {time.perf_counter() - start:.0f} s; 1-min load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
          + (f"; over 20 s: {', '.join(r['agent'] + ' ' + r['call'] for r in slow)}"
             if slow else ""))
    save_benchmark(FLAGS.out, "compile_time", {"agents": FLAGS.agents, "k_values": k_values,
                                               "xla_flags": os.environ.get("XLA_FLAGS", ""),
                                               "rows": rows})


if __name__ == "__main__":
    app.run(main)
