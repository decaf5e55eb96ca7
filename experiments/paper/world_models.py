r"""The world-model agents side by side: PlaNet, DreamerV1, V2, V3, TD-MPC and TD-MPC2 on the
same tasks with the same env-step budget (their cpu presets otherwise).

For every (task, agent, seed) it runs (or reuses, or resumes) the agent's binary in
`<out_dir>/<task>/<agent>/seed_<s>` and reports per task: the IQM over seeds of the final
evaluation return and of the mean over evaluations with 95% stratified-bootstrap CIs (rliable),
the uniform random policy's return (scored by the TD-MPC runs on the same envs), wall-clock
minutes per run and gradient steps per wall-clock second (the config's gradient steps over the
whole run's time, acting and evaluation included), plus each agent's paired per-seed difference
over the random policy. Writes table.md, results.json and curves.png (IQM learning curves).

Tasks (action repeat, agent-step budget; TD-MPC's cartpole and reacher repeats):
  CartpoleSwingup-v1 (8, 5k), ReacherEasy-v1 (4, 5k) from states; Pong-v5 (4, 50k) from 64x64
  gray frames, for the agents with discrete actions (the Dreamers: PlaNet's CEM and TD-MPC's
  MPPI plan continuous actions).

  .venv/bin/python experiments/paper/world_models.py --tasks=CartpoleSwingup-v1 --seeds=3 --jobs=2
"""
import os

from absl import app
from absl import flags
import numpy as np

from jaxwm.agents.dreamer import config as dreamer_config
from jaxwm.agents.planet import config as planet_config
from jaxwm.agents.tdmpc import config as tdmpc_config
from jaxwm.runtime import grid
from jaxwm.runtime import stats as run_stats

TASKS = {
    "CartpoleSwingup-v1": {"action_repeat": 8, "steps": 5_000, "eval_every": 1_000},
    "ReacherEasy-v1": {"action_repeat": 4, "steps": 5_000, "eval_every": 1_000},
    "Pong-v5": {"steps": 50_000, "eval_every": 10_000, "discrete": True},
}
# agent -> (preset, train function); presets of jaxwm.agents.<family>.config
AGENTS = {
    "planet": ("cpu", "jaxwm.agents.planet.train:train_and_evaluate"),
    "dreamerv1": ("cpu_v1", "jaxwm.agents.dreamer.train:train_and_evaluate"),
    "dreamerv2": ("cpu", "jaxwm.agents.dreamer.train:train_and_evaluate"),
    "dreamerv3": ("cpu_v3", "jaxwm.agents.dreamer.train:train_and_evaluate"),
    "tdmpc": ("cpu", "jaxwm.agents.tdmpc.train:train_and_evaluate"),
    "tdmpc2": ("cpu_v2", "jaxwm.agents.tdmpc.train:train_and_evaluate"),
}
CONTINUOUS_ONLY = ("planet", "tdmpc", "tdmpc2")
NAMES = {"planet": "PlaNet", "dreamerv1": "DreamerV1", "dreamerv2": "DreamerV2",
         "dreamerv3": "DreamerV3", "tdmpc": "TD-MPC", "tdmpc2": "TD-MPC2",
         "random": "uniform random policy"}
EVAL_EPISODES = 4

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_list("tasks", ["CartpoleSwingup-v1", "ReacherEasy-v1"],
                      "Tasks; allowed: " + ", ".join(TASKS))
    flags.DEFINE_list("agents", list(AGENTS), "Agents; allowed: " + ", ".join(AGENTS))
    flags.DEFINE_integer("seeds", 3, "Seeds per agent: 0 .. seeds - 1.")
    flags.DEFINE_string("out_dir", "runs/paper/world_models", "Output directory.")
    flags.DEFINE_integer("jobs", 1, "Runs in parallel processes.")
    flags.DEFINE_integer("reps", 2000, "Bootstrap resamples per confidence interval.")
    flags.DEFINE_bool("report_only", False, "Run nothing: aggregate the finished runs only "
                      "(each row states its number of seeds).")


def build_config(task: str, agent: str, seed: int):
    """The agent's preset with the task, its action repeat, the shared budget and evaluation."""
    preset, _ = AGENTS[agent]
    settings = TASKS[task]
    if agent == "planet":
        c = planet_config.get_config(preset)
    elif agent.startswith("dreamer"):
        c = dreamer_config.get_config(preset)
    else:
        c = tdmpc_config.get_config(preset)
    c.env.name, c.seed = task, seed
    if "action_repeat" in settings:
        c.env.overrides.action_repeat = settings["action_repeat"]
    else:                                   # Atari: the suite's own frame skip
        c.env.overrides = {}
    r = c.run
    if "env_steps" in r:                    # TD-MPC's loop
        r.env_steps, r.progress_bar = settings["steps"], False
    else:                                   # jaxwm.runtime.online
        r.steps = settings["steps"]
    r.eval_every, r.eval_episodes = settings["eval_every"], EVAL_EPISODES
    r.checkpoint_every = settings["steps"] // 2
    return c


def gradient_steps(c) -> float:
    """Gradient steps of a whole run, from its config."""
    r = c.run
    if "env_steps" in r:
        return r.pretrain_updates + r.updates_per_step * (r.env_steps - r.seed_steps)
    calls = r.pretrain + (r.steps - r.prefill) / r.train_every
    return calls * r.grad_steps


def cells(tasks, agents, seeds: int) -> list:
    """(task, agent, seed) of the grid, seed-major; continuous-only agents skip discrete tasks."""
    return [(t, a, s) for t in tasks for s in range(seeds) for a in agents
            if not (TASKS[t].get("discrete") and a in CONTINUOUS_ONLY)]


def run_grid(tasks, agents, out_dir: str) -> dict:
    """Runs (or reuses) every cell; returns {task: {agent: {seed: workdir}}}."""
    todo, runs = [], {}
    grid_cells = cells(tasks, agents, FLAGS.seeds)
    for i, (task, agent, seed) in enumerate(grid_cells):
        config = build_config(task, agent, seed)
        workdir = os.path.join(out_dir, task, agent, f"seed_{seed}")
        runs.setdefault(task, {}).setdefault(agent, {})[seed] = workdir
        tag = f"[{i + 1}/{len(grid_cells)}] {task} {agent} seed {seed}"
        if grid.is_finished(workdir, TASKS[task]["steps"]):
            print(f"{tag}: finished run reused", flush=True)
            continue
        if FLAGS.report_only:
            print(f"{tag}: not finished, left out", flush=True)
            del runs[task][agent][seed]
            continue
        todo.append(grid.Run(tag, AGENTS[agent][1], config.to_dict(), workdir))
    grid.run_all(todo, FLAGS.jobs)
    return {t: {a: seeds for a, seeds in agents.items() if seeds} for t, agents in runs.items()}


def task_rows(task: str, runs: dict) -> dict:
    """{row: {seed: scores}}: every agent's `grid.run_scores` with its gradient steps/s, and the
    random policy's return where a TD-MPC run scored it."""
    rows = {}
    for agent, seeds in runs.items():
        rows[agent] = {}
        for seed, workdir in seeds.items():
            s = grid.run_scores(workdir)
            if "minutes" in s:
                s["grad_per_s"] = gradient_steps(build_config(task, agent, seed)) / (
                    60.0 * s["minutes"])
            rows[agent][seed] = s
    random = {seed: s["random"] for seeds in rows.values() for seed, s in seeds.items()
              if "random" in s}
    if random:
        rows["random"] = {seed: {"final": v, "mean": v} for seed, v in random.items()}
    return rows


def _mean_of(rows_seeds: dict, key: str) -> str:
    values = [v[key] for v in rows_seeds.values() if key in v]
    return f"{np.mean(values):.1f}" if values else "-"


def report(scores: dict, reps: int) -> tuple:
    """Markdown per task and the aggregates for results.json."""
    text, results = [], {}
    for task, rows in scores.items():
        finals = run_stats.iqm_of(rows, "final", reps)
        means = run_stats.iqm_of(rows, "mean", reps)
        s = TASKS[task]
        lines = [f"## {task} ({s['steps']} agent steps"
                 + (f", action repeat {s['action_repeat']}" if "action_repeat" in s else "")
                 + f", {EVAL_EPISODES} evaluation episodes)\n",
                 "| agent | final eval return | mean over evaluations | minutes per run | "
                 "gradient steps / s | vs random (paired, final) |", "|---|---|---|---|---|---|"]
        diffs = {}
        for m, seeds in rows.items():
            versus = "-"
            if m != "random" and "random" in rows:
                d = diffs[m] = run_stats.paired_of(seeds, rows["random"], "final", reps)
                versus = run_stats.format_difference(d)
            lines.append(f"| {NAMES[m]} (n={finals[m]['runs']}) | {run_stats.format_iqm(finals[m])} | "
                         f"{run_stats.format_iqm(means[m])} | {_mean_of(seeds, 'minutes')} | "
                         f"{_mean_of(seeds, 'grad_per_s')} | {versus} |")
        text.append("\n".join(lines))
        results[task] = {"final": finals, "mean": means, "versus_random": diffs}
    return "\n\n".join(text) + "\n", results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name, values, allowed in (("tasks", FLAGS.tasks, TASKS), ("agents", FLAGS.agents,
                                                                   AGENTS)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise app.UsageError(f"--{name}: {bad or 'empty'} not allowed; allowed: "
                                 f"{list(allowed)}")
    if FLAGS.seeds < 1:
        raise app.UsageError(f"--seeds={FLAGS.seeds} must be >= 1")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    runs = run_grid(FLAGS.tasks, FLAGS.agents, FLAGS.out_dir)
    scores = {task: task_rows(task, task_runs) for task, task_runs in runs.items()}
    body, results = report(scores, FLAGS.reps)
    grid.save_report(FLAGS.out_dir, f"World-model agents at the cpu budget: IQM over up to "
                     f"{FLAGS.seeds} seeds", body,
                     {"tasks": FLAGS.tasks, "agents": FLAGS.agents, "seeds": FLAGS.seeds,
                      "runs": runs, "aggregates": results}, scores, NAMES, FLAGS.reps)

if __name__ == "__main__":
    define_flags()
    app.run(main)
