"""Asynchronous acting and learning (DayDreamer, Wu et al., CoRL 2022, Sec. 3) for any agent of
the online protocol (`jaxwm.runtime.online`: init / initial_carry / act / train_steps).

Actors step their envs at their own rate (a robot at its control rate: `envs.realtime`) and send
chunks of `runner.chunk` batched steps to the learner; the learner inserts them into replay and
trains continuously; every `runner.sync_every` train calls it publishes a new parameter version,
which the actors pick up at their next chunk. Every finished episode is logged with the versions
it acted with (`episodes.jsonl`). Backends (`runner.backend`):

- 'sync': one thread alternates a chunk of acting with the train calls it is owed
  (`runner.train_every` env steps per call), as `online.run` does: the baseline.
- 'threads': actors are threads of this process; chunks flow through a queue of
  `runner.queue_size` chunks (a full queue makes the actors wait).
- 'ray': actors are Ray actors (`pip install -e '.[distributed]'`), on a local Ray instance or a
  cluster at `runner.ray_address`; each has `runner.ray_inflight` chunks in flight.

The learner owns the ledger: transition ids are per-actor step numbers, a chunk carries the id
of its first step, and it is inserted only if that id is the next one expected (a replay field
'step_id' beside every actor's replay records them). An actor that raises (threads) or whose
process dies (Ray) is reported and restarted: its unsent chunk is dropped and redone from the
same id. A checkpoint holds the agent, the replays, the ledger and the parameter version; after
a kill, the run resumes from it, actors included (their envs restart), with no id lost or
inserted twice. The budget is `runner.steps` env steps and, if set, `runner.minutes` of
wall-clock time (counted across resumes).

Several processes (`jax.distributed`, one per host; `jaxwm.runtime.distributed`): each has its
own actors, replays, ledger and workdir, and all train one learner in lockstep. The learner
state is replicated over every device of every process; each train call draws
`runner.batch_size` sequences from the process's own replays and trains on the global batch of
all processes' draws. Every turn the processes agree (an allgather of flags) on going on (while
any has budget left), on checkpointing (when any is due) and on training (only when all are
ready), so their jitted calls match. Checkpoints are per process (`ProcessCheckpointer`),
numbered by the shared turn count; a resume requires the same latest one in every process.
"""
import dataclasses
import functools
import json
import os
import queue
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax.experimental import multihost_utils

from jaxwm.data import replay
from jaxwm.envs.realtime import RealTimeEnv
from jaxwm.runtime import distributed, online, sharding
from jaxwm.runtime.checkpoint import Checkpointer, ProcessCheckpointer
from jaxwm.runtime.logging import RunLogger, _rewrite_records, save_config, to_python

BACKENDS = ("sync", "threads", "ray")
EXPLORE, EVAL, RANDOM = (online.MODES.index(m) for m in ("explore", "eval", "random"))


def runner_config() -> ml_collections.ConfigDict:
    """The runner block: backend, actors, budgets and the training schedule."""
    c = ml_collections.ConfigDict()
    c.backend = "threads"      # 'sync' | 'threads' | 'ray'
    c.num_actors = 1           # actors, each with env.num_envs envs and its own replay
    c.chunk = 8                # batched env steps an actor sends at a time
    c.queue_size = 256         # chunks waiting for the learner ('threads'; full: actors wait)
    c.sync_every = 10          # train calls between parameter versions sent to the actors
    c.max_ratio = 0.0          # async cap: calls <= max_ratio * env steps / train_every (0: none)
    c.minutes = 0.0            # wall-clock budget in minutes (0: env steps only)
    c.control_hz = 0.0         # real-time control rate of every actor's envs (0: unpaced)
    c.ray_address = ""         # Ray cluster address ('': start a local instance)
    c.ray_num_cpus = 2         # CPUs of a local Ray instance
    c.ray_inflight = 4         # chunks each Ray actor has in flight (its calls run in order)
    c.steps = 20_000           # env steps over all actors and envs
    c.prefill = 1000           # env steps with uniform random actions before training
    c.pretrain = 100           # train calls right after prefill
    c.train_every = 5          # env steps per train call ('sync'; the async cap's unit)
    c.grad_steps = 1           # gradient steps per train call
    c.batch_size = 16          # sequences per gradient step (split over the actors' replays)
    c.seq_len = 32             # steps per sequence
    c.replay_capacity = 20_000  # steps per env kept in replay
    c.log_every = 1000         # env steps between metric records
    c.checkpoint_every = 5000  # env steps between checkpoints (and at the end)
    c.checkpoints_to_keep = 2  # newest checkpoints kept (0: all)
    c.eval_episodes = 0        # unpaced evaluation episodes (eval mode) at the end
    return c


EXTENDABLE = ("runner.steps", "runner.minutes", "runner.checkpoints_to_keep")


def check_runner_config(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first bad field of a runner block."""
    if c.backend not in BACKENDS:
        raise ValueError(f"runner.backend={c.backend!r} is not one of {BACKENDS}")
    for field in ("num_actors", "chunk", "queue_size", "sync_every", "steps", "train_every",
                  "grad_steps", "batch_size", "seq_len", "replay_capacity", "log_every",
                  "checkpoint_every", "ray_num_cpus", "ray_inflight"):
        if int(c[field]) < 1:
            raise ValueError(f"runner.{field}={c[field]!r} must be an int >= 1")
    for field in ("prefill", "pretrain", "checkpoints_to_keep", "eval_episodes"):
        if int(c[field]) < 0:
            raise ValueError(f"runner.{field}={c[field]!r} must be an int >= 0")
    for field in ("max_ratio", "minutes", "control_hz"):
        if not 0 <= float(c[field]) < float("inf"):
            raise ValueError(f"runner.{field}={c[field]!r} must be a finite number >= 0")
    if c.batch_size < c.num_actors:
        raise ValueError(f"runner.batch_size={c.batch_size} must be >= runner.num_actors="
                         f"{c.num_actors} (every actor's replay gives sequences)")
    if c.seq_len > c.replay_capacity:
        raise ValueError(f"runner.seq_len={c.seq_len} must be <= runner.replay_capacity="
                         f"{c.replay_capacity}")


def actor_env(env_config: ml_collections.ConfigDict, seed: int, control_hz: float, actor: int,
              first: int):
    """The envs of `actor` (re)started at its step `first`, paced at `control_hz` if > 0."""
    env = online.make_env(env_config, online.env_seed(seed + 7919 * actor, first))
    return RealTimeEnv(env, control_hz) if control_hz else env


@dataclasses.dataclass
class Chunk:
    """`len(rows['reward'])` batched steps of one actor, starting at its step id `first`."""
    actor: int
    first: int
    rows: dict            # replay fields [chunk, N, ...] (numpy)
    episodes: list        # episodes finished in the chunk (dicts, see `ActorWorker`)
    overruns: int         # real-time steps asked for late (RealTimeEnv)

    @property
    def length(self) -> int:
        return len(self.rows["reward"])


class ActorWorker:
    """One actor: its envs, the agent's jitted `act` and the newest parameters it was sent.
    agent_fn(env) -> agent; env_fn(actor, first) -> envs. Both must pickle for Ray."""

    def __init__(self, agent_fn: Callable, env_fn: Callable, actor: int, seed: int):
        self.env_fn, self.actor = env_fn, actor
        self.env = env_fn(actor, 0)
        self.agent = agent_fn(self.env)
        self.spec = replay.env_spec(self.env)
        self.act = jax.jit(self.agent.act)
        self.key = jax.random.fold_in(jax.random.PRNGKey(seed), 1_000 + actor)
        self.params, self.version = None, -1
        self.next = None      # id of the next step of the running envs (None: restart them)

    def restart(self, first: int) -> None:
        """Recreate the envs at step id `first` (after a checkpoint, a failure or a resume)."""
        if self.env is not None:
            self.env.close()
        self.env = self.env_fn(self.actor, first)
        self.out = self.env.reset()
        self.carry = self.agent.initial_carry(self.env.num_envs)
        self.stats = online.EpisodeStats(self.env.num_envs)
        self.started = np.full(self.env.num_envs, self.version)
        self.next = first

    def collect(self, length: int, first: int, version: int, params) -> Chunk:
        """`length` batched steps from step id `first` with parameters `params` of `version`
        (None, or the version it holds: keep the current ones). Version 0 (untrained) acts
        uniformly at random."""
        if params is not None and version != self.version:
            self.params, self.version = params, version
        if self.next != first:
            self.restart(first)
        overruns0 = getattr(self.env, "overruns", 0)
        rows, episodes = [], []
        mode = jnp.int32(RANDOM if self.version == 0 else EXPLORE)
        for t in range(length):
            key = jax.random.fold_in(self.key, first + t)
            action, self.carry = self.act(self.params, self.carry,
                                          online.policy_inputs(self.env, self.out), key, mode)
            action = np.asarray(action)
            rows.append(replay.env_row(self.spec, self.out, action))
            self.out = self.env.step(action)
            self.stats.observe(self.out)
            ended = np.flatnonzero(self.out["is_last"])    # appended in this order by observe
            new = self.stats.finished[len(self.stats.finished) - len(ended):]
            for i, episode in zip(ended, new):
                episodes.append(dict(episode, actor=self.actor, version_first=int(self.started[i]),
                                     version_last=self.version))
            self.started = np.where(self.out["is_first"], self.version, self.started)
        self.stats.finished, self.stats.history = [], []
        self.next = first + length
        rows = {k: np.stack([r[k] for r in rows]) for k in self.spec}
        return Chunk(self.actor, first, rows, episodes,
                     getattr(self.env, "overruns", 0) - overruns0)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def pid(self) -> int:
        """The process this actor runs in (Ray: a worker process)."""
        return os.getpid()


class SyncBackend:
    """Acting and learning take turns in the learner's thread."""

    def __init__(self, workers: list, next_ids: list, chunk: int):
        self.workers, self.next_ids, self.chunk = workers, next_ids, chunk
        self.params, self.version, self.turn = None, 0, 0

    def publish(self, version: int, params) -> None:
        self.params, self.version = params, version

    def poll(self, timeout: float) -> list:
        i = self.turn % len(self.workers)
        self.turn += 1
        return [self.workers[i].collect(self.chunk, self.next_ids[i], self.version, self.params)]

    @property
    def produced(self) -> list:
        return list(self.next_ids)

    def pending(self) -> int:
        return 0

    def close(self) -> list:
        for w in self.workers:
            w.close()
        return []


class ThreadBackend:
    """Actor threads stream chunks into a bounded queue; an actor that raises is reported (to
    `report`) and restarted in its thread from its last sent step."""

    def __init__(self, workers: list, next_ids: list, chunk: int, queue_size: int,
                 report: Callable[[str], None]):
        self.workers, self.chunk, self.report = workers, chunk, report
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.latest = (0, None)
        self.produced = list(next_ids)    # per actor: the id after its last queued step
        self.threads = [threading.Thread(target=self._loop, args=(i, next_ids[i]), daemon=True,
                                         name=f"actor-{i}") for i in range(len(workers))]
        self.started = False

    def publish(self, version: int, params) -> None:
        with self.lock:
            self.latest = (version, params)
        if not self.started:        # actors start once they have parameters
            self.started = True
            for t in self.threads:
                t.start()

    def _loop(self, i: int, next_id: int) -> None:
        w = self.workers[i]
        while not self.stop.is_set():
            with self.lock:
                version, params = self.latest
            try:
                chunk = w.collect(self.chunk, next_id, version, params)
            except Exception as e:  # noqa: BLE001 -- any actor failure: report, restart
                self.report(f"actor {i} failed at step id {next_id} ({type(e).__name__}: {e}); "
                            f"restarting it there")
                w.next = None
                continue
            next_id += chunk.length
            self.produced[i] = next_id
            self.queue.put(chunk)     # a full queue makes the actor wait

    def poll(self, timeout: float) -> list:
        chunks = []
        try:
            chunks.append(self.queue.get(timeout=timeout) if timeout > 0
                          else self.queue.get_nowait())
            while True:
                chunks.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return chunks

    def pending(self) -> int:
        return self.queue.qsize()

    def close(self) -> list:
        """Stop the actors after their current chunk; returns the chunks not yet polled."""
        self.stop.set()
        chunks = []
        while any(t.is_alive() for t in self.threads) or not self.queue.empty():
            chunks += self.poll(0.05)
        for w in self.workers:
            w.close()
        return chunks


class RayBackend:
    """Ray actors (restarted by Ray if their process dies), each with `depth` chunks in flight:
    Ray runs an actor's calls in order, so it goes on acting while the learner trains.
    Parameters are put in the object store once per version and go with the next call to an
    actor that lacks them. A failed call voids the later calls of that actor (a generation
    count), which are resubmitted from its id."""

    def __init__(self, worker_args: list, next_ids: list, chunk: int, depth: int,
                 address: str, num_cpus: int, report: Callable[[str], None]):
        try:
            import ray
        except ImportError as e:
            raise ValueError("runner.backend='ray' needs Ray: pip install -e '.[distributed]'") \
                from e
        self.ray, self.report = ray, report
        if not ray.is_initialized():
            ray.init(address=address or None, num_cpus=None if address else num_cpus,
                     include_dashboard=False, log_to_driver=False)
        remote = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)(ActorWorker)
        self.actors = [remote.remote(*args) for args in worker_args]
        n = len(self.actors)
        self.next_ids, self.chunk, self.depth = next_ids, chunk, depth
        self.submitted = list(next_ids)    # per actor: the id after its last submitted call
        self.generation = [0] * n
        self.inflight: dict = {}           # ref -> (actor, generation, first id)
        self.sent = [None] * n             # the parameter version each actor holds
        self.version, self.params_ref = 0, None

    def publish(self, version: int, params) -> None:
        self.version, self.params_ref = version, self.ray.put(jax.device_get(params))
        self._fill()

    def _fill(self) -> None:
        for i in range(len(self.actors)):
            live = sum(1 for a, g, _ in self.inflight.values()
                       if a == i and g == self.generation[i])
            for _ in range(self.depth - live):
                params = self.params_ref if self.sent[i] != self.version else None
                self.sent[i] = self.version
                ref = self.actors[i].collect.remote(self.chunk, self.submitted[i], self.version,
                                                    params)
                self.inflight[ref] = (i, self.generation[i], self.submitted[i])
                self.submitted[i] += self.chunk

    def _collect(self, refs) -> list:
        """The chunks of finished calls `refs`, in id order per actor; a failed call is
        reported and voids its actor's later calls."""
        chunks = []
        for ref in sorted(refs, key=lambda r: self.inflight[r][::2]):
            i, generation, first = self.inflight.pop(ref)
            if generation != self.generation[i]:
                continue
            try:
                chunk = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as e:
                self.generation[i] += 1
                self.submitted[i], self.sent[i] = first, None   # restarted: no parameters
                self.report(f"actor {i} failed at step id {first} ({type(e).__name__}); "
                            f"Ray restarts it there")
                continue
            self.next_ids[i] = chunk.first + chunk.length
            chunks.append(chunk)
        return chunks

    def poll(self, timeout: float) -> list:
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(list(self.inflight), num_returns=len(self.inflight),
                                     timeout=0)
        chunks = self._collect(ready)
        self._fill()
        return chunks

    @property
    def produced(self) -> list:
        return list(self.next_ids)

    def pending(self) -> int:
        return len(self.inflight)

    def close(self) -> list:
        """Collect the chunks in flight, then stop the actors; returns those chunks."""
        chunks = []
        while any(g == self.generation[i] for i, g, _ in self.inflight.values()):
            chunks += self._collect(list(self.inflight))
        for a in self.actors:
            self.ray.kill(a)
        return chunks


class EpisodeLog:
    """`episodes.jsonl`: one line per finished episode; truncated on resume to the lines the
    checkpoint covers, so that no episode is recorded twice."""

    def __init__(self, workdir: str, keep: int | None):
        self.path = os.path.join(workdir, "episodes.jsonl")
        self.count = _rewrite_records(self.path, keep) if os.path.exists(self.path) else 0
        self._file = open(self.path, "a")

    def write(self, episode: dict) -> None:
        self._file.write(json.dumps(episode) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


def batch_sizes(batch_size: int, num_actors: int) -> tuple:
    """Sequences drawn from each actor's replay: `batch_size` split as evenly as possible."""
    return tuple(batch_size // num_actors + (i < batch_size % num_actors)
                 for i in range(num_actors))


def run(agent_fn: Callable, config: ml_collections.ConfigDict, workdir: str, *,
        env_fn: Callable | None = None, desc: str = "async",
        on_step: Callable[[int, int], None] | None = None,
        on_end: Callable[[dict], None] | None = None) -> dict:
    """Train the agent `agent_fn(env)` with the runner of `config.runner` (see the module
    docstring), or resume it from `workdir`. env_fn(actor, first) -> envs (default `actor_env`
    of `config.env`, paced at `runner.control_hz`). on_step(env_step, train_calls): called every
    turn of the learner's loop (tests use it to kill a run); on_end(state): called with the
    final state (agent, replays, 'ids' replays). Returns a summary dict, with the step ids each
    actor 'produced' and the learner 'inserted'."""
    c = config.runner
    check_runner_config(c)
    multi, process = jax.process_count() > 1, jax.process_index()   # 'sync': one process
    # every process has its own actors and envs (seeded apart) and its own replays
    env_fn = env_fn or functools.partial(actor_env, config.env, config.seed + 104_729 * process,
                                         c.control_hz)
    probe = env_fn(0, 0)
    try:
        agent = agent_fn(probe)
        spec, num_envs = replay.env_spec(probe), probe.num_envs
        name = getattr(probe, "name", "")
    finally:
        probe.close()
    A = c.num_actors
    key = jax.random.PRNGKey(config.seed)
    key, key_init = jax.random.split(key)
    id_spec = {"step_id": ((), np.int32)}
    state = {"agent": jax.jit(agent.init)(key_init),
             "replays": tuple(replay.init(spec, c.replay_capacity, num_envs) for _ in range(A)),
             "ids": tuple(replay.init(id_spec, c.replay_capacity, num_envs) for _ in range(A)),
             "key": key}
    checkpoints = os.path.join(workdir, "checkpoints")
    if multi:
        ckpt = ProcessCheckpointer(checkpoints, c.checkpoints_to_keep or None)
        restored = ckpt.restore_latest(state)
        steps = multihost_utils.process_allgather(np.int64(-1 if restored is None
                                                            else restored[0]))
        if len(set(steps.tolist())) > 1:
            raise ValueError(f"the processes' latest checkpoints differ ({steps.tolist()}): "
                             "resume needs the same one in every process")
    else:
        ckpt = Checkpointer(checkpoints, c.checkpoints_to_keep or None)
        restored = ckpt.restore_latest(state)
    env_step, meta = 0, {}
    if restored is not None:
        _, state, meta = restored
        env_step = meta["env_step"]
    mesh = None
    if multi:                      # the learner state lives on every device of every process
        mesh = sharding.make_mesh()
        state["agent"] = distributed.replicate(state["agent"], mesh)
    save_config(config, workdir)
    loop = {"next_ids": [0] * A, "version": 0, "calls": 0, "pretrained": False, "owed": 0,
            "seconds": 0.0, "restarts": 0, "metrics": {}, "turns": 0, **meta.get("loop", {})}
    next_ids = list(loop["next_ids"])
    version, calls, pretrained, owed = (loop["version"], loop["calls"], loop["pretrained"],
                                        loop["owed"])
    restarts, metrics = loop["restarts"], loop["metrics"]
    logger = RunLogger(workdir, total=c.steps, start=env_step, desc=desc,
                       show_keys=("episode/return", "version", "learner_steps_per_s"),
                       keep_records=meta.get("records") if restored is not None else 0)
    episode_log = EpisodeLog(workdir, meta.get("episodes") if restored is not None else 0)

    add_chunk = jax.jit(lambda r, rows: jax.lax.scan(
        lambda r, row: (replay.add(r, row), None), r, rows)[0], donate_argnums=0)
    sizes = batch_sizes(c.batch_size, A)

    def sample(replays, key):
        """[K, T, B] from the actors' replays (B split over them), concatenated on B."""
        keys = jax.random.split(key, A)
        parts = [online.sample_batches(r, k, c.grad_steps, n, c.seq_len)
                 for r, k, n in zip(replays, keys, sizes)]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=2), *parts)

    if multi:   # sample here, train on the global batch of every process's samples
        sample_local = jax.jit(sample)
        train_global = jax.jit(agent.train_steps, donate_argnums=0)

        def train(agent_state, replays, key):
            local = sample_local(replays, jax.random.fold_in(key, 1 + process))
            batches = distributed.global_batch(jax.device_get(local), mesh, axis=2)
            return train_global(agent_state, batches, distributed.replicate(key, mesh))
    else:
        def train(agent_state, replays, key):
            k_sample, k_train = jax.random.split(key)
            return agent.train_steps(agent_state, sample(replays, k_sample), k_train)

        # compiled before the clock starts and the actors move (a robot would wait too)
        train = jax.jit(train, donate_argnums=0).lower(
            state["agent"], state["replays"], state["key"]).compile()
    worker_args = [(agent_fn, env_fn, i, config.seed) for i in range(A)]
    messages: list = []
    if c.backend == "ray":
        backend = RayBackend(worker_args, list(next_ids), c.chunk, c.ray_inflight,
                             c.ray_address, c.ray_num_cpus, messages.append)
    else:
        workers = [ActorWorker(*args) for args in worker_args]
        backend = (SyncBackend(workers, next_ids, c.chunk) if c.backend == "sync" else
                   ThreadBackend(workers, list(next_ids), c.chunk, c.queue_size,
                                 messages.append))

    def local_params():
        """The agent state on this process's device, apart from the learner's buffers (which
        training donates)."""
        if multi:
            return jax.tree.map(lambda x: jnp.asarray(distributed.local_value(x)), state["agent"])
        return state["agent"] if c.backend == "sync" else jax.tree.map(jnp.copy, state["agent"])

    def publish():
        backend.publish(version, local_params())

    def insert(chunk: Chunk) -> None:
        nonlocal env_step, owed
        i = chunk.actor
        if chunk.first != next_ids[i]:
            raise RuntimeError(f"actor {i} sent step ids from {chunk.first}; the ledger expects "
                               f"{next_ids[i]}")
        n = chunk.length
        ids = np.broadcast_to(np.arange(chunk.first, chunk.first + n, dtype=np.int32)[:, None],
                              (n, num_envs))
        replays, id_replays = list(state["replays"]), list(state["ids"])
        replays[i] = add_chunk(replays[i], chunk.rows)
        id_replays[i] = add_chunk(id_replays[i], {"step_id": ids})
        state["replays"], state["ids"] = tuple(replays), tuple(id_replays)
        next_ids[i] += n
        env_step += n * num_envs
        owed += n * num_envs     # env steps not yet paid for by 'sync' train calls
        minutes = elapsed() / 60.0
        for e in chunk.episodes:
            episode_log.write(dict(e, env_step=env_step, minutes=round(minutes, 4)))
            window["episodes"].append(e)
        window["overruns"] += chunk.overruns

    def log(extra=None):
        logger.log(env_step, {**log_values(window, metrics, env_step, calls, version, restarts,
                                           elapsed(), backend.pending()), **(extra or {})})

    def train_once():
        nonlocal calls, metrics
        state["key"], k = jax.random.split(state["key"])
        state["agent"], metrics = train(state["agent"], state["replays"], k)
        # wait for the step (the GIL is free meanwhile): a learner dispatching ahead without
        # waiting would hold the GIL and starve the actor threads (measured: 5.7 of 20 Hz)
        metrics = jax.tree.map(distributed.local_value, metrics)
        calls += 1

    def save(replace: bool = False):
        state_loop = {"next_ids": list(next_ids), "version": version, "calls": calls,
                      "pretrained": pretrained, "owed": owed, "seconds": elapsed(),
                      "restarts": restarts, "metrics": to_python(metrics), "turns": turns}
        # numbered by env step, or by the learner's turn, which all processes share
        ckpt.save(turns if multi else env_step, state,
                  {"env_step": env_step, "loop": state_loop, "records": logger.records,
                   "episodes": episode_log.count}, replace=replace)

    t_start = time.monotonic() - loop["seconds"]
    elapsed = lambda: time.monotonic() - t_start  # noqa: E731 -- across resumes
    window = {"episodes": [], "overruns": 0, "t": time.monotonic(), "steps": env_step,
              "calls": calls}
    last_log, last_ckpt = env_step // c.log_every, env_step // c.checkpoint_every
    out_of_time = lambda: c.minutes and elapsed() >= c.minutes * 60  # noqa: E731

    def ready() -> bool:
        """Prefill done and every replay holds a sequence: actor i's replay has received rows
        0 .. next_ids[i] - 1 (the ledger), so no device read is needed."""
        return env_step >= c.prefill and all(n >= c.seq_len for n in next_ids)

    def capped() -> bool:
        """The async learner is ahead of `max_ratio` train calls per `train_every` env steps."""
        return bool(c.max_ratio) and calls >= c.max_ratio * env_step / c.train_every

    def agree(*wanted) -> list:
        """Per flag, whether any process wants it (one process: its own flags)."""
        if not multi:
            return [bool(w) for w in wanted]
        return multihost_utils.process_allgather(np.array(wanted, bool)).any(0).tolist()

    publish()
    turns, turns0 = loop["turns"], loop["turns"]
    try:
        while True:
            # processes: go on while any has budget left; save when any is due
            going, due = agree(env_step < c.steps and not out_of_time(),
                               env_step // c.checkpoint_every > last_ckpt)
            if not going:
                break
            if due:
                last_ckpt = env_step // c.checkpoint_every
                save()
            turns += 1
            idle = not ready() or capped() or c.backend == "sync"
            for chunk in backend.poll(0.05 if idle else 0.0):
                insert(chunk)
            while messages:
                restarts += 1
                logger.write(messages.pop(0))
            if ready() and c.backend == "sync":
                due = 0
                if not pretrained:
                    due, pretrained, owed = c.pretrain, True, 0
                due, owed = due + owed // c.train_every, owed % c.train_every
                for _ in range(due):
                    train_once()
                if due:
                    version += 1
                    publish()
            elif c.backend != "sync" and not agree(not ready() or capped())[0]:
                train_once()           # async: one call per turn, the queue drained between
                pretrained = calls >= c.pretrain
                if pretrained and (calls - c.pretrain) % c.sync_every == 0:
                    version += 1
                    publish()
            if env_step // c.log_every > last_log:
                last_log = env_step // c.log_every
                log()
            if env_step != logger._last:
                logger.advance(env_step)
            if on_step is not None:
                on_step(env_step, calls)
    except BaseException:
        backend.close()          # a crash: the chunks not inserted are redone after resume
        raise
    for chunk in backend.close():  # every transition the actors produced reaches the replay
        insert(chunk)
    restarts += len(messages)
    for message in messages:
        logger.write(message)
    summary = {"env_steps": float(env_step), "train_calls": float(calls),
               "version": float(version), "actor_restarts": float(restarts),
               "produced": backend.produced, "inserted": list(next_ids)}
    if turns > turns0:                   # else: a finished run, rerun
        final = {}
        if c.eval_episodes:
            final["eval/return"] = summary["eval/return"] = evaluate(
                agent, local_params(), config)
        log(final)                       # the end of the budget (steps or minutes)
        save(replace=True)
    summary["minutes"] = elapsed() / 60.0
    if on_end is not None:
        on_end(state)
    returns = [json.loads(line)["return"] for line in open(episode_log.path)]
    if returns:
        summary["return_last10"] = float(np.mean(returns[-10:]))
        summary["episodes"] = float(len(returns))
    try:
        from jaxwm.runtime.plots import plot_metrics
        plot = plot_metrics(workdir, ("episode/return", "model_loss", "learner_steps_per_s",
                                      "actor_steps_per_s"), title=f"{desc}: {name}")
        logger.write(f"metrics: {logger.metrics_path}  episodes: {episode_log.path}  "
                     f"plot: {plot}")
    except ImportError:
        pass
    episode_log.close()
    logger.close()
    ckpt.close()
    return summary


def evaluate(agent, params, config: ml_collections.ConfigDict) -> float:
    """Mean return of `runner.eval_episodes` unpaced episodes of the agent's eval mode."""
    env = online.make_env(config.env, config.seed + 10_000, num_envs=config.runner.eval_episodes)
    act = jax.jit(agent.act)
    try:
        res = online.run_episodes(
            env, lambda carry, obs, k: act(params, carry, obs, k, jnp.int32(EVAL)),
            agent.initial_carry(env.num_envs), jax.random.PRNGKey(config.seed + 10_000))
    finally:
        env.close()
    return float(np.mean(res["return"]))


def log_values(window: dict, metrics: dict, env_step: int, calls: int, version: int,
               restarts: int, seconds: float, pending: int) -> dict:
    """One metrics record; rates over the time since the previous record (window, reset here)."""
    now = time.monotonic()
    dt = max(now - window["t"], 1e-6)
    values = {**metrics, "actor_steps_per_s": (env_step - window["steps"]) / dt,
              "learner_steps_per_s": (calls - window["calls"]) / dt, "train_calls": calls,
              "version": version, "minutes": seconds / 60.0, "actor_restarts": restarts,
              "queue": pending, "overruns": window["overruns"]}
    episodes = window["episodes"]
    if episodes:
        values["episode/return"] = float(np.mean([e["return"] for e in episodes]))
        values["episode/length"] = float(np.mean([e["length"] for e in episodes]))
        values["episode/version"] = float(np.mean([e["version_last"] for e in episodes]))
        values["episode/count"] = len(episodes)
    window.update(episodes=[], overruns=0, t=now, steps=env_step, calls=calls)
    return values
