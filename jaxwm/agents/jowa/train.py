"""JOWA: offline multi-game pretraining of a world-action transformer, evaluation with and without
beam-search planning, few-shot finetuning on a held-out game (Cheng et al., ICLR 2025).

Stages, checkpointed (numbered by gradient steps over stages) and resumable:
1. tokenizer (`models/vqvae.py`) on frames of every pretraining game;
2. the world-action transformer (`models/world_action_transformer.py`) on windows of
   `model.context` steps from every pretraining game (uniform over games), each game's task id
   its index in `games`; the variant picks the losses (config.py);
3. evaluation on every pretraining game: `eval.episodes` parallel episodes with the JAX-native
   env, acting greedily in Q ('greedy') and (`eval.beam`) by beam search in the model ('beam'),
   the whole episode one `lax.while_loop`; scores normalized by the dataset's random and
   data-generating-agent returns (0 = random, 1 = the agent);
4. (`finetune.enabled`) few-shot: the pretrained model finetuned on the first
   `finetune.transitions` rows of the held-out game (new task id), vs the same model trained
   from scratch on the same rows for the same steps; both evaluated greedily on the held-out
   game.
`eval.json` holds the results; a finished run returns it.

Acting reads only the current frame (positions 0 .. G-1), like step 0 of every training window;
planning appends imagined steps to the KV cache, so `planner.horizon` < `model.context`.
The tokenizer stays frozen after stage 1 and is not trained on the held-out game.
"""
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxwm.agents.jowa import config as jowa_config
from jaxwm.data import datasets
from jaxwm.envs import jax_native
from jaxwm.models import vqvae
from jaxwm.models import world_action_transformer as wat
from jaxwm.planners import beam
from jaxwm.runtime import steps as steps_lib
from jaxwm.runtime.checkpoint import Checkpointer
from jaxwm.runtime.logging import RunLogger, save_config, write_json
from jaxwm.runtime.workdir import check_saved_config, check_values, user_errors

EVAL_FILE = "eval.json"
GRID, CHANNELS, NUM_ACTIONS = 10, 7, 6      # MinAtar frames padded to 7 channels
VALUE_LOSS = {"mse_td": "mse", "bc": "bc"}  # variant -> joint_loss(value_loss=...); else 'c51'


# ------------------------------------------------------------------------------------------------
# Config and data
# ------------------------------------------------------------------------------------------------
def check_config(c: ml_collections.ConfigDict) -> None:
    if c.variant not in jowa_config.VARIANTS:
        raise ValueError(f"variant={c.variant!r} is not one of {jowa_config.VARIANTS}")
    if c.tokenizer.kind != "minatar":
        raise ValueError(f"tokenizer.kind={c.tokenizer.kind!r}: this agent runs the MinAtar "
                         f"games ('minatar'); the Atari 'paper' preset needs accelerators")
    jowa_config.model_size(c)
    if c.planner.horizon >= c.model.context:
        raise ValueError(f"planner.horizon={c.planner.horizon} must be < model.context="
                         f"{c.model.context}")
    if c.heldout in c.games or not c.games:
        raise ValueError(f"heldout={c.heldout!r} must not be one of games={tuple(c.games)}")


def frames(vector):
    """MinAtar 'vector' [..., 100 * C] -> float32 [..., 10, 10, 7] (channels zero-padded);
    NumPy in, NumPy out (the datasets), jax arrays inside jit (acting)."""
    xp = np if isinstance(vector, np.ndarray) else jnp
    c = vector.shape[-1] // (GRID * GRID)
    x = vector.reshape(*vector.shape[:-1], GRID, GRID, c)
    return xp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, CHANNELS - c)]).astype(xp.float32)


def load_game(c: ml_collections.ConfigDict, game: str) -> tuple:
    """(arrays with 'frames' [T, N, 10, 10, 7] and 'action' int32 [T, N], reference returns
    {'random', 'agent'}) of `<data_dir>/<game>/mixed.npz`."""
    path = os.path.join(c.data_dir, game, "mixed.npz")
    arrays, meta = datasets.load(path, env=game)
    refs = {"random": meta.get("random_return"), "agent": meta.get("agent_return")}
    if None in refs.values():
        raise datasets.DatasetError(f"{path}: metadata needs random_return and agent_return "
                                    f"(write it with make_dataset.py --jowa_games)")
    out = {"frames": frames(arrays["vector"]), "action": arrays["action"].argmax(-1).astype(
        np.int32)}
    out.update({k: arrays[k] for k in ("reward", "is_first", "is_last", "is_terminal")})
    return out, {k: float(v) for k, v in refs.items()}


def window_data(arrays: dict, tokens: np.ndarray, context: int, rows: int | None = None) -> dict:
    """Device arrays of one game for `sample_windows`: tokens [T, N, G], actions, rewards,
    terminals, episode ids [T, N] and the valid window starts [K, 2] (row t, stream n) whose
    first row is not an episode's last. `rows` keeps only the first rows of the data
    (stream-major: the few-shot subset)."""
    t_all, n = arrays["action"].shape
    episode = np.cumsum(arrays["is_first"], 0)
    keep = np.ones((t_all, n), bool)
    if rows is not None:
        order = np.arange(t_all * n).reshape(n, t_all).T       # stream-major row order
        keep = order < rows
    t_idx, n_idx = np.nonzero(~arrays["is_last"][:t_all - context] & keep[:t_all - context])
    return {"tokens": jnp.asarray(tokens), "actions": jnp.asarray(arrays["action"]),
            "rewards": jnp.asarray(arrays["reward"]),
            "terminal": jnp.asarray(arrays["is_terminal"]),
            "last": jnp.asarray(arrays["is_last"] | ~keep), "episode": jnp.asarray(episode),
            "starts": jnp.asarray(np.stack([t_idx, n_idx], 1).astype(np.int32))}


def sample_windows(data: dict, key, size: int, context: int, task: int) -> dict:
    """`size` windows of `context` steps: step i of a window starting at row t is o_{t+i},
    a_{t+i}, its reward and termination from row t + i + 1; mask = same episode as row t and
    not an episode's last row (whose action the env ignores)."""
    idx = jax.random.randint(key, (size,), 0, data["starts"].shape[0])
    t, n = data["starts"][idx, 0], data["starts"][idx, 1]
    rows = t[:, None] + jnp.arange(context)[None]                         # [B, T]
    col = n[:, None]
    mask = (data["episode"][rows, col] == data["episode"][t, n][:, None]) & ~data["last"][
        rows, col]
    mask = jnp.cumprod(mask, 1).astype(jnp.float32)
    return {"obs_tokens": data["tokens"][rows, col], "actions": data["actions"][rows, col],
            "rewards": data["rewards"][rows + 1, col],
            "dones": data["terminal"][rows + 1, col].astype(jnp.float32),
            "task": jnp.full((size,), task, jnp.int32), "mask": mask}


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
class Models:
    """Tokenizer, transformer and losses of one config; `positive_weight` balances the
    tokenizer's L1 between the (rare) occupied and the empty cells: (1 - d) / d at density d."""

    def __init__(self, c: ml_collections.ConfigDict, positive_weight: float = 1.0):
        self.c = c
        k = c.tokenizer
        self.tok = vqvae.Tokenizer(kind="minatar", channels=CHANNELS, num_codes=k.num_codes,
                                   code_dim=k.code_dim, depth=k.depth,
                                   positive_weight=positive_weight)
        dim, depth, heads, q_heads = jowa_config.model_size(c)
        self.value_loss = VALUE_LOSS.get(c.variant, "c51")
        atoms = c.model.num_atoms if self.value_loss == "c51" else 1
        self.net = wat.WorldActionTransformer(
            vocab_size=k.num_codes, tokens_per_obs=self.tok.num_tokens, num_actions=NUM_ACTIONS,
            num_tasks=len(c.games) + 1, max_steps=c.model.context, dim=dim, depth=depth,
            heads=heads, num_atoms=atoms, num_q_heads=q_heads,
            q_into_trunk=c.variant != "detach_q")
        self.support = wat.support_of(atoms, c.model.v_min, c.model.v_max)
        t = c.train
        self.wm_weight = 0.0 if c.variant in ("no_wm", "bc") else t.wm_weight
        self.cql_weight = 0.0 if c.variant in ("no_cql", "bc") else t.cql_weight

    def init_net(self, key):
        g, ctx = self.tok.num_tokens, self.c.model.context
        return self.net.init(key, jnp.zeros((1, ctx, g), jnp.int32), jnp.zeros((1, ctx),
                             jnp.int32), jnp.zeros((1,), jnp.int32))

    def optimizer(self, lr):
        return optax.chain(optax.clip_by_global_norm(self.c.train.grad_clip),
                           optax.adamw(lr, weight_decay=1e-4))


@flax.struct.dataclass
class NetState:
    params: dict
    target: dict
    opt_state: optax.OptState
    step: jax.Array


def new_net_state(params, optimizer) -> NetState:
    """Online and target params as separate buffers (the train steps donate the state)."""
    return jax.jit(lambda p: NetState(jax.tree.map(jnp.copy, p), jax.tree.map(jnp.copy, p),
                                      optimizer.init(p), jnp.zeros((), jnp.int32)))(params)


def make_train_step(models: Models, optimizer, tasks: tuple, num_games_batch: int):
    """step(state, key, datas) -> (state, metrics): a batch split evenly over the games of
    `datas` (their task ids `tasks`), the joint loss, target refresh every `target_every`."""
    c = models.c
    per_game = max(c.train.batch_size // num_games_batch, 1)

    def step(state: NetState, key, datas):
        keys = jax.random.split(key, len(datas))
        parts = [sample_windows(d, k, per_game, c.model.context, task)
                 for d, k, task in zip(datas, keys, tasks)]
        batch = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
        (_, metrics), grads = jax.value_and_grad(
            lambda p: wat.joint_loss(models.net, p, state.target, batch, support=models.support,
                                     gamma=c.train.gamma, wm_weight=models.wm_weight,
                                     cql_weight=models.cql_weight,
                                     value_loss=models.value_loss), has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        refresh = (state.step + 1) % c.train.target_every == 0
        target = jax.tree.map(lambda p, t: jnp.where(refresh, p, t), params, state.target)
        return NetState(params, target, opt_state, state.step + 1), metrics
    return step


# ------------------------------------------------------------------------------------------------
# Acting: greedy in Q, or beam search in the model (KV-cached imagination)
# ------------------------------------------------------------------------------------------------
def root_state(models: Models, params, tokens, task):
    """The model state of one env at its current frame tokens [G] (positions 0 .. G-1)."""
    net = models.net
    cache = net.apply(params, 1, method=net.init_cache)
    h, cache = net.apply(params, tokens[None], 0, task[None], cache, method=net.run_cached)
    return {"cache": cache, "h": h[0, -1], "pos": jnp.int32(tokens.shape[0]), "task": task,
            "alive": jnp.float32(1.0)}


def q_of(models: Models, params, h):
    logits = models.net.apply(params, h, method=models.net.q_logits)     # [H, A, atoms]
    return wat.action_values(logits, models.support, models.value_loss).mean(0)


def beam_fns(models: Models) -> beam.BeamFns:
    net, g = models.net, models.tok.num_tokens
    signs = jnp.array([-1.0, 0.0, 1.0])

    def q_values(params, state):
        return q_of(models, params, state["h"]) * state["alive"]

    def step(params, state, action):
        # The frame's 26 tokens go into a cache of their own (write index = the scan counter,
        # shared by every beam) with the context as a read-only prefix, appended once at the end.
        # The prefix is split per layer here: sliced inside the scan, XLA copies it every token.
        prefix = wat.KVCache(tuple(state["cache"].k), tuple(state["cache"].v))

        def run(tokens, start, frame):
            h, frame = net.apply(params, tokens[None, None].astype(jnp.int32), start,
                                 state["task"][None], frame, prefix, state["pos"],
                                 method=net.run_cached)
            return h[0, -1], frame

        h, frame = run(action, 0, net.apply(params, 1, g + 1, method=net.init_cache))
        out = net.apply(params, h, method=net.heads_of)
        reward = jax.nn.softmax(out["reward"]) @ signs
        done = jax.nn.softmax(out["done"])[1] > 0.5

        def next_token(carry, j):
            h_last, frame = carry
            token = jnp.argmax(net.apply(params, h_last, method=lambda m, h: m.obs_head(h)))
            return run(token, 1 + j, frame), None
        (h_last, frame), _ = jax.lax.scan(next_token, (h, frame), jnp.arange(g))
        new = {"cache": wat.append(state["cache"], frame, state["pos"]), "h": h_last,
               "pos": state["pos"] + g + 1, "task": state["task"],
               "alive": state["alive"] * (1.0 - done)}
        return new, reward * state["alive"]
    return beam.BeamFns(q_values=q_values, step=step)


def make_act(models: Models, mode: str):
    """act(net_params, tok_params, vq, obs [E, 10, 10, 7], task [E]) -> actions [E]."""
    cfg = beam.BeamConfig(beam_width=models.c.planner.beam_width,
                          horizon=models.c.planner.horizon, gamma=models.c.train.gamma,
                          expand=models.c.planner.expand)
    fns = beam_fns(models)

    def act(params, tok_params, vq, obs, task):
        tokens = vqvae.tokenize(models.tok, tok_params, vq, obs)
        states = jax.vmap(lambda t, k: root_state(models, params, t, k))(tokens, task)
        if mode == "greedy":
            return jax.vmap(lambda s: jnp.argmax(q_of(models, params, s["h"])))(states)
        return beam.plan_batch(cfg, fns, params, states)[0]
    return act


def evaluate_game(models: Models, params, tok_params, vq, game: str, task: int, mode: str,
                  key) -> np.ndarray:
    """Returns of `eval.episodes` episodes of `game` (capped at eval.max_steps), acting by
    `mode`; the whole rollout is one jitted `lax.while_loop` that stops when every episode
    has ended."""
    c = models.c
    core = jax_native.core(game)
    env_cfg = jax_native.make_config(game)
    act = make_act(models, mode)
    n = c.eval.episodes

    @jax.jit
    def rollout(params, tok_params, vq, key):
        k_reset, k_run = jax.random.split(key)
        env, obs = jax_native.reset_batch(core, env_cfg, k_reset, n)

        def body(carry):
            t, env, obs, ret, done = carry
            k_eps, k_rand = jax.random.split(jax.random.fold_in(k_run, t))
            action = act(params, tok_params, vq, frames(obs), jnp.full((n,), task,
                                                                           jnp.int32))
            explore = jax.random.uniform(k_eps, (n,)) < c.eval.epsilon
            action = jnp.where(explore, jax.random.randint(k_rand, (n,), 0, NUM_ACTIONS), action)
            env, reward, terminal, truncated, _ = jax.vmap(core.step, (0, 0, None))(
                env, action, env_cfg)
            obs = jax.vmap(core.observe, (0, None))(env, env_cfg)
            return t + 1, env, obs, ret + reward * ~done, done | terminal | truncated

        def running(carry):
            return (carry[0] < c.eval.max_steps) & ~jnp.all(carry[4])
        init = (jnp.int32(0), env, obs, jnp.zeros(n), jnp.zeros(n, bool))
        return jax.lax.while_loop(running, body, init)[3]
    return np.asarray(rollout(params, tok_params, vq, key))


def normalized(score: float, refs: dict) -> float:
    return (score - refs["random"]) / max(refs["agent"] - refs["random"], 1e-6)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """All stages per `config` in `workdir` (resumable from the last checkpoint: the end of
    the tokenizer stage and every `train.checkpoint_every` transformer steps; evaluation and
    few-shot rerun from there). Returns the evaluation summary (eval.json)."""
    began = time.time()
    c = config
    with user_errors():
        check_values(c)
        check_config(c)
        games = {g: load_game(c, g) for g in (*c.games, c.heldout)}
        check_saved_config(c, workdir)
    eval_path = os.path.join(workdir, EVAL_FILE)
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            return json.load(f)
    pretrain = [games[g][0] for g in c.games]
    density = float(np.mean([a["frames"].mean() for a in pretrain]))
    models = Models(c, (1.0 - density) / max(density, 1e-6))
    key = jax.random.key(c.seed)
    k_tok, k_net, k_train, k_eval, k_fine = jax.random.split(key, 5)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), 2)
    save_config(c, workdir)
    k = c.tokenizer
    tok_opt = optax.adam(k.lr)
    # Fresh copies: the steps donate their state, which must not hold one buffer twice.
    tok_state = jax.tree.map(jnp.copy, jax.jit(vqvae.create_state, static_argnums=(0, 1))(
        models.tok, tok_opt, k_tok))
    net_opt = models.optimizer(c.train.lr)
    net_state = new_net_state(jax.jit(models.init_net)(k_net), net_opt)
    latest = ckpt.latest_step()
    meta = {}
    if latest is not None:
        _, tree, meta = ckpt.restore_latest({"tok": tok_state, "net": net_state})
        tok_state, net_state = tree["tok"], tree["net"]
    total = k.steps + c.train.steps
    logger = RunLogger(workdir, total=total, start=latest or 0, desc=f"jowa/{c.variant}",
                       enable_bar=c.train.progress_bar,
                       show_keys=("tok/l1", "train/value_loss", "train/obs_loss"),
                       keep_records=meta.get("records", 0) if latest is not None else 0)
    done = latest or 0
    try:
        # --- stage 1: tokenizer -------------------------------------------------------------
        if done < k.steps:
            logger.write(f"stage 1: tokenizer, {k.steps} steps")
            all_frames = jnp.asarray(np.concatenate(
                [a["frames"].reshape(-1, GRID, GRID, CHANNELS) for a in pretrain]))

            def tok_step(state, key, frames_):
                k_idx, k_step = jax.random.split(key)
                batch = frames_[jax.random.randint(k_idx, (k.batch_size,), 0, len(frames_))]
                return vqvae.train_step(models.tok, tok_opt, state, k_step, batch)
            run = steps_lib.repeat_steps(tok_step)     # conv gradients: a host loop on CPU
            chunk = max(c.train.log_every // 5, 1)
            while done < k.steps:
                num = min(chunk, k.steps - done)
                tok_state, metrics = run(tok_state, jax.random.fold_in(k_tok, done), num,
                                         all_frames)
                done += num
                logger.log(done, {f"tok/{m}": v.mean() for m, v in metrics.items()})
                logger.advance(done)
            ckpt.save(done, {"tok": tok_state, "net": net_state},
                      {"stage": "tokenizer", "records": logger.records})
            del all_frames
        tokenize = jax.jit(lambda x: vqvae.tokenize(models.tok, tok_state.params, tok_state.vq,
                                                    x))

        def tokens_of(arrays):
            flat = arrays["frames"].reshape(-1, GRID, GRID, CHANNELS)
            out = np.concatenate([np.asarray(tokenize(flat[i:i + 4096]))
                                  for i in range(0, len(flat), 4096)])
            return out.reshape(*arrays["frames"].shape[:2], -1)
        tokens = {g: tokens_of(games[g][0]) for g in games}
        # --- stage 2: world-action transformer -------------------------------------------
        datas = tuple(window_data(games[g][0], tokens[g], c.model.context) for g in c.games)
        tasks = tuple(range(len(c.games)))
        run = steps_lib.repeat_steps(make_train_step(models, net_opt, tasks, len(tasks)), "scan")
        chunk = min(c.train.log_every, c.train.checkpoint_every)
        if done < total:
            logger.write(f"stage 2: world-action transformer ({c.variant}), {c.train.steps} "
                         f"steps on {len(c.games)} games")
        while done < total:
            num = min(chunk, total - done)
            net_state, metrics = run(net_state, jax.random.fold_in(k_train, done), num, datas)
            done += num
            logger.log(done, {f"train/{m}": v.mean() for m, v in metrics.items()})
            if (done - k.steps) % c.train.checkpoint_every == 0 or done == total:
                ckpt.save(done, {"tok": tok_state, "net": net_state},
                          {"stage": "model", "records": logger.records})
            logger.advance(done)
        del datas
        # --- stage 3: evaluation on the pretraining games -----------------------------------
        modes = ("greedy", "beam") if c.eval.beam and c.variant not in ("no_wm", "bc") else (
            "greedy",)
        logger.write(f"stage 3: evaluation ({', '.join(modes)})")
        result = {"games": {}, "variant": c.variant, "seed": c.seed, "size": c.model.size}
        for i, g in enumerate(c.games):
            refs = games[g][1]
            entry = {"random": refs["random"], "agent": refs["agent"]}
            for mode in modes:
                t0 = time.time()
                returns = evaluate_game(models, net_state.params, tok_state.params,
                                        tok_state.vq, g, i, mode, jax.random.fold_in(k_eval, i))
                entry[mode] = float(returns.mean())
                entry[f"{mode}_normalized"] = normalized(entry[mode], refs)
                entry[f"{mode}_seconds"] = time.time() - t0
            result["games"][g] = entry
        for mode in modes:
            result[f"{mode}_normalized_mean"] = float(np.mean(
                [e[f"{mode}_normalized"] for e in result["games"].values()]))
        # --- stage 4: few-shot finetuning on the held-out game ------------------------------
        if c.finetune.enabled:
            result["fewshot"] = fewshot(models, c, games[c.heldout], tokens[c.heldout],
                                        net_state, tok_state, k_fine, logger)
        logger.log(total, {f"eval/{m}_normalized_mean": result[f"{m}_normalized_mean"]
                           for m in modes})
        result["seconds"] = time.time() - began
        write_json(eval_path, result)
    finally:
        logger.close()
        ckpt.close()
    return result


def fewshot(models: Models, c, game: tuple, tokens: np.ndarray, pretrained: NetState,
            tok_state, key, logger) -> dict:
    """Finetune the pretrained model and train a fresh one on the held-out game's first
    `finetune.transitions` rows, the same steps each; greedy returns of both."""
    arrays, refs = game
    data = (window_data(arrays, tokens, c.model.context, rows=c.finetune.transitions),)
    task = len(c.games)
    opt = models.optimizer(c.finetune.lr)
    run = steps_lib.repeat_steps(make_train_step(models, opt, (task,), 1), "scan")
    out = {"game": c.heldout, "transitions": c.finetune.transitions, "random": refs["random"],
           "agent": refs["agent"]}
    k_fresh, k_train, k_eval = jax.random.split(key, 3)
    fresh = jax.jit(models.init_net)(k_fresh)
    starts = {"finetuned": pretrained.params, "scratch": fresh}
    for name, params in starts.items():
        logger.write(f"stage 4: few-shot on {c.heldout}, {name}, {c.finetune.steps} steps")
        state = new_net_state(params, opt)
        state, metrics = run(state, k_train, c.finetune.steps, data)
        returns = evaluate_game(models, state.params, tok_state.params, tok_state.vq,
                                c.heldout, task, "greedy", k_eval)
        out[name] = float(returns.mean())
        out[f"{name}_normalized"] = normalized(out[name], refs)
        out[f"{name}_value_loss"] = float(metrics["value_loss"][-1])
    return out
