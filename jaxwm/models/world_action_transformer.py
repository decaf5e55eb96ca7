"""JOWA's world-action transformer: one causal transformer for world modelling and action values.

Cheng et al., "Scaling Offline Model-Based RL via Jointly-Optimized World-Action Model
Pretraining" (ICLR 2025). A frozen VQ tokenizer (`models/vqvae.py`) turns each frame into G
tokens; a step is G observation tokens followed by one action token, and T steps make a sequence
of L = T * (G + 1) tokens. Token p = t * (G + 1) + j is o_t^j (j < G) or a_t (j = G). Each token
is the sum of its token embedding (observation codes and actions have separate tables), a
learned position embedding and the game's task embedding. A causal transformer (pre-norm blocks,
attention by `jax.nn.dot_product_attention`) gives hidden states h_p, read by:
  - the observation head at every p whose next token is an observation token: logits of
    token p + 1 (o_t^{j+1} from o_t^j; o_{t+1}^0 from a_t);
  - the reward-sign head (3 classes: -1, 0, +1) and the termination head (2 classes) at a_t;
  - the Q head(s) at o_t^{G-1}, the last observation token (it has seen o_t, not a_t):
    C51 distributions (Bellemare et al. 2017) over `num_atoms` atoms on [v_min, v_max] for
    every action; the 150M model has 3 heads, whose mean expected Q picks actions.
Losses (`joint_loss`): world model = CE(obs) + CE(reward sign) + CE(termination), weighted 0.1;
distributional TD with targets from a target network on the same sequence, s_{t+1} = the next
step's last observation token; CQL(H) (Kumar et al. 2020, eq. 4: logsumexp_a Q(s, a) -
Q(s, a_data)) on the expected Q, weight 0.1. With
`q_into_trunk=False` (the paper's ablation) the Q heads read stop_gradient(h).

Generation (imagination for beam search) uses a KV cache: `run_cached` runs tokens at
positions start .. start + S - 1 of a cache, attending causally to their own and to the cached
positions before `start`, and optionally to a read-only `prefix` cache first (its first
`prefix_len` positions, the tokens then sit at absolute positions prefix_len + start + ...).
Beam search decodes each imagined frame into a small cache of its own with the long context as
the prefix, and appends it to the context once per frame (`append`): writing every token into a
per-beam context at a per-beam position is a scatter that XLA:CPU does by copying the whole
cache, 26 times per frame. Keys are cached transposed ([head_dim, L]) and values [L, head_dim],
the layouts XLA:CPU's dot reads without copying. Measured here (cpu `small`, 16 envs, loaded
machine): beam search 1.5-2.1x faster than with one cache written per token in the layout of
`jax.nn.dot_product_attention`, which is what training (no cache) uses.
"""
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

REWARD_CLASSES = 3          # sign of the reward: -1, 0, +1 -> classes 0, 1, 2
VALUE_LOSSES = ("c51", "mse", "bc")


class KVCache(NamedTuple):
    """Keys and values of every block: k [depth, B, heads, head_dim, L] (transposed), v [depth,
    B, heads, L, head_dim]."""
    k: jax.Array
    v: jax.Array


class CausalBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)) (GELU, width 4 * dim).

    x [B, S, dim]. Without `segments`: causal attention within x. With `segments`, a list of
    cached (k [B, heads, head_dim, L], v [B, heads, L, head_dim], valid length), each query
    also attends to the first `valid length` positions of every segment (in the order given,
    before x). Returns (x, (k, v)) with x's own keys and values in the cache layout.
    """
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x, segments=None):
        b, s, _ = x.shape
        hd = self.dim // self.heads
        h = nn.LayerNorm(name="norm1")(x)
        q, k, v = jnp.split(nn.Dense(3 * self.dim, name="qkv")(h).reshape(b, s, 3 * self.heads,
                                                                            hd), 3, axis=2)
        if segments is None:
            out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        else:
            out = _cached_attention(q, k, v, segments)
        x = x + nn.Dense(self.dim, name="proj")(out.reshape(b, s, self.dim))
        h = nn.LayerNorm(name="norm2")(x)
        h = nn.Dense(self.dim, name="fc2")(nn.gelu(nn.Dense(4 * self.dim, name="fc1")(h)))
        return x + h, (k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3))


def _cached_attention(q, k, v, segments):
    """Softmax attention of q [B, S, heads, hd] over the valid positions of every cached segment
    and causally over its own k, v [B, S, heads, hd] -> [B, S, heads, hd], one softmax over all
    score blocks (so it equals attention over the concatenated sequence)."""
    s = q.shape[1]
    q = q * (q.shape[-1] ** -0.5)
    scores, values = [], []
    for ck, cv, valid in segments:
        sc = jnp.einsum("bshd,bhdl->bhsl", q, ck.astype(q.dtype))
        scores.append(jnp.where((jnp.arange(ck.shape[-1]) < valid)[None, None, None], sc,
                                -jnp.inf))
        values.append(("bhsl,bhld->bshd", cv.astype(q.dtype)))
    own = jnp.einsum("bshd,bthd->bhst", q, k)
    scores.append(jnp.where(jnp.tril(jnp.ones((s, s), bool))[None, None], own, -jnp.inf))
    values.append(("bhst,bthd->bshd", v))
    probs = jax.nn.softmax(jnp.concatenate(scores, -1), -1)
    out, first = 0.0, 0
    for sc, (spec, val) in zip(scores, values):
        out = out + jnp.einsum(spec, probs[..., first:first + sc.shape[-1]], val)
        first += sc.shape[-1]
    return out


class WorldActionTransformer(nn.Module):
    """See the module docstring. Inputs: obs_tokens int32 [B, T, G] (codes < vocab_size),
    actions int32 [B, T], task int32 [B]."""
    vocab_size: int
    tokens_per_obs: int            # G
    num_actions: int
    num_tasks: int
    max_steps: int                 # T, the context in steps
    dim: int = 256
    depth: int = 4
    heads: int = 4
    num_atoms: int = 51
    num_q_heads: int = 1
    q_into_trunk: bool = True

    @property
    def max_len(self) -> int:
        return self.max_steps * (self.tokens_per_obs + 1)

    def setup(self):
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be a multiple of heads={self.heads}")
        init = nn.initializers.normal(0.02)
        self.obs_embed = nn.Embed(self.vocab_size, self.dim, embedding_init=init)
        self.action_embed = nn.Embed(self.num_actions, self.dim, embedding_init=init)
        self.task_embed = nn.Embed(self.num_tasks, self.dim, embedding_init=init)
        self.pos_embed = self.param("pos_embed", init, (self.max_len, self.dim))
        self.blocks = [CausalBlock(self.dim, self.heads, name=f"block_{i}")
                       for i in range(self.depth)]
        self.norm = nn.LayerNorm()
        self.obs_head = nn.Dense(self.vocab_size)
        self.reward_head = nn.Dense(REWARD_CLASSES)
        self.done_head = nn.Dense(2)
        self.q_heads = [nn.Dense(self.num_actions * self.num_atoms, name=f"q_head_{i}")
                        for i in range(self.num_q_heads)]

    # --- embedding and trunk ---------------------------------------------------------------
    def is_action_position(self, pos):
        return pos % (self.tokens_per_obs + 1) == self.tokens_per_obs

    def embed_tokens(self, tokens, pos, task):
        """tokens int32 [B, S] at absolute positions pos [S] (obs or action by position)."""
        is_action = self.is_action_position(pos)[None, :]
        obs = self.obs_embed(jnp.where(is_action, 0, tokens))
        act = self.action_embed(jnp.where(is_action, tokens, 0))
        x = jnp.where(is_action[..., None], act, obs)
        return x + self.pos_embed[pos][None] + self.task_embed(task)[:, None]

    def trunk(self, obs_tokens, actions, task):
        """Hidden states [B, L, dim] of a full sequence (no cache)."""
        tokens = interleave(obs_tokens, actions)
        x = self.embed_tokens(tokens, jnp.arange(tokens.shape[1]), task)
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    # --- heads ---------------------------------------------------------------------------
    def q_logits(self, h):
        """h [..., dim] -> C51 logits [..., num_q_heads, A, atoms]."""
        if not self.q_into_trunk:
            h = jax.lax.stop_gradient(h)
        out = jnp.stack([head(h) for head in self.q_heads], -2)
        return out.reshape(*h.shape[:-1], self.num_q_heads, self.num_actions, self.num_atoms)

    def heads_of(self, h):
        """Every head on hidden states [..., dim] (what each position uses is the caller's)."""
        return {"obs": self.obs_head(h), "reward": self.reward_head(h),
                "done": self.done_head(h), "q": self.q_logits(h)}

    def __call__(self, obs_tokens, actions, task):
        """Training outputs of a sequence: 'obs' logits [B, L, vocab] (at p: token p + 1),
        'reward' [B, T, 3] and 'done' [B, T, 2] at the action tokens, 'q' logits
        [B, T, heads, A, atoms] at the last observation token of every step."""
        h = self.trunk(obs_tokens, actions, task)
        b, t, g = obs_tokens.shape
        steps = h.reshape(b, t, g + 1, self.dim)
        at_action, at_last_obs = steps[:, :, g], steps[:, :, g - 1]
        return {"obs": self.obs_head(h), "reward": self.reward_head(at_action),
                "done": self.done_head(at_action), "q": self.q_logits(at_last_obs)}

    # --- cached generation -----------------------------------------------------------------
    def init_cache(self, batch: int, length: int | None = None, dtype=jnp.float32) -> KVCache:
        """An empty cache of `length` positions (default max_len) for `batch` sequences."""
        length = self.max_len if length is None else length
        hd = self.dim // self.heads
        return KVCache(jnp.zeros((self.depth, batch, self.heads, hd, length), dtype),
                       jnp.zeros((self.depth, batch, self.heads, length, hd), dtype))

    def run_cached(self, tokens, start, task, cache: KVCache, prefix: KVCache | None = None,
                   prefix_len=0):
        """tokens [B, S] at positions start .. start + S - 1 of `cache`, after the first
        `prefix_len` positions of `prefix` if given (absolute positions prefix_len + start + i)
        -> (normalized hidden [B, S, dim], the cache with their keys and values written).
        `prefix` may hold per-layer sequences instead of stacked arrays (`prefix.k[i]`)."""
        pos = prefix_len + start + jnp.arange(tokens.shape[1])
        x = self.embed_tokens(tokens, pos, task)
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            segments = [(cache.k[i], cache.v[i], start)]
            if prefix is not None:
                segments.insert(0, (prefix.k[i], prefix.v[i], prefix_len))
            x, (k, v) = block(x, segments)
            ks.append(k)
            vs.append(v)
        return self.norm(x), append(cache, KVCache(jnp.stack(ks), jnp.stack(vs)), start)


def append(cache: KVCache, new: KVCache, start) -> KVCache:
    """`cache` with every position of `new` (same depth and batch) written from `start` on."""
    return KVCache(jax.lax.dynamic_update_slice_in_dim(cache.k, new.k.astype(cache.k.dtype),
                                                       start, 4),
                   jax.lax.dynamic_update_slice_in_dim(cache.v, new.v.astype(cache.v.dtype),
                                                       start, 3))


def interleave(obs_tokens, actions):
    """[B, T, G] and [B, T] -> the flat sequence [B, T * (G + 1)]."""
    b = obs_tokens.shape[0]
    return jnp.concatenate([obs_tokens, actions[..., None]], -1).reshape(b, -1)


def expected_q(logits, support):
    """C51 logits [..., A, atoms] -> expected values [..., A]."""
    return jnp.sum(jax.nn.softmax(logits, -1) * support, -1)


def action_values(logits, support, value_loss: str = "c51"):
    """Q-head logits [..., A, atoms] -> action values [..., A]: the C51 expectation, or the
    single atom itself ('mse', 'bc': num_atoms = 1)."""
    return expected_q(logits, support) if value_loss == "c51" else logits[..., 0]


def support_of(num_atoms: int, v_min: float, v_max: float) -> jax.Array:
    return jnp.linspace(v_min, v_max, num_atoms)


def c51_project(next_probs, reward, discount, support):
    """Categorical projection of Bellemare et al. (2017), Alg. 1: the distribution of
    r + discount * Z (Z ~ next_probs [..., atoms] on `support`) onto `support`, each atom's
    mass split between its two neighbours by distance (clipped to [v_min, v_max]).
    reward, discount [...] -> target probabilities [..., atoms]."""
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (support.shape[0] - 1)
    tz = jnp.clip(reward[..., None] + discount[..., None] * support, v_min, v_max)
    b = (tz - v_min) / delta                                   # fractional atom index
    lower, upper = jnp.floor(b), jnp.ceil(b)
    # When b is an integer both neighbours are the same atom: it gets the whole mass.
    w_lower = jnp.where(upper == lower, 1.0, upper - b)
    w_upper = b - lower
    atoms = jnp.arange(support.shape[0])
    onto = (next_probs[..., None] * (
        w_lower[..., None] * (lower[..., None] == atoms)
        + w_upper[..., None] * (upper[..., None] == atoms)))   # [..., atoms (from), atoms (to)]
    return onto.sum(-2)


def cql_gap(q_values, actions):
    """CQL(H) for discrete actions (Kumar et al. 2020, eq. 4), per state:
    logsumexp_a Q(s, a) - Q(s, a_data). q_values [..., A], actions int [...] -> [...]."""
    data_q = jnp.take_along_axis(q_values, actions[..., None], -1)[..., 0]
    return jax.nn.logsumexp(q_values, -1) - data_q


def reward_class(reward):
    """Reward -> its sign class (0: negative, 1: zero, 2: positive)."""
    return (jnp.sign(reward) + 1).astype(jnp.int32)


def joint_loss(model: WorldActionTransformer, params, target_params, batch, *, support,
               gamma: float, wm_weight: float = 0.1, cql_weight: float = 0.1,
               value_loss: str = "c51"):
    """The JOWA objective on a batch of windows: obs_tokens [B, T, G], actions [B, T],
    rewards [B, T] (r_t, received after a_t), dones [B, T] (terminal after a_t), task [B],
    mask [B, T] (1 for steps of the window's first episode; a window never continues into
    another episode). Returns (loss, metrics).

    TD targets use step t + 1 of the same window: steps with dones[t] bootstrap nothing, steps
    whose successor is masked (an episode truncated by a time limit, or the window's end) are
    left out of the TD loss. `value_loss`: 'c51' (the paper), 'mse' (the ablation: one atom
    per action read as a scalar Q, squared TD error against the target network's greedy
    value) or 'bc' (one atom per action read as policy logits, cross-entropy on a_t; the
    behavior-cloning baseline on the same trunk).
    """
    if value_loss not in VALUE_LOSSES:
        raise ValueError(f"value_loss={value_loss!r} is not one of {VALUE_LOSSES}")
    obs, act = batch["obs_tokens"], batch["actions"]
    mask, dones = batch["mask"].astype(jnp.float32), batch["dones"].astype(jnp.float32)
    b, t, g = obs.shape
    length = t * (g + 1)
    out = model.apply(params, obs, act, batch["task"])
    # World model: position p predicts token p + 1 when that is an observation token of a
    # valid step.
    tokens = interleave(obs, act)
    pos = jnp.arange(length - 1)
    next_is_obs = (pos + 1) % (g + 1) != g
    weight = next_is_obs[None] * mask[:, (pos + 1) // (g + 1)]              # [B, L - 1]
    log_probs = jax.nn.log_softmax(out["obs"][:, :-1])
    obs_ce = -jnp.take_along_axis(log_probs, tokens[:, 1:, None], -1)[..., 0]
    obs_loss = jnp.sum(obs_ce * weight) / jnp.maximum(weight.sum(), 1.0)
    denom = jnp.maximum(mask.sum(), 1.0)

    def masked_ce(logits, labels):
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1)[..., 0]
        return jnp.sum(ce * mask) / denom
    reward_loss = masked_ce(out["reward"], reward_class(batch["rewards"]))
    done_loss = masked_ce(out["done"], batch["dones"].astype(jnp.int32))
    wm_loss = obs_loss + reward_loss + done_loss
    extra = {}
    if value_loss == "bc":   # the Q head's single atom as action logits: cross-entropy on a_t
        logits = out["q"][..., 0].mean(-2)                                # [B, T, A]
        td_loss = masked_ce(logits, act)
        q = logits[:, :, None]
    else:
        next_q_logits = jax.lax.stop_gradient(
            model.apply(target_params, obs, act, batch["task"])["q"][:, 1:])  # [B,T-1,H,A,N]
        q = action_values(out["q"], support, value_loss)                  # [B, T, H, A]
        next_q = action_values(next_q_logits, support, value_loss)
        best = jnp.argmax(next_q.mean(-2), -1)                            # [B, T-1]
        discount = gamma * (1.0 - dones[:, :-1])
        taken_q = jnp.take_along_axis(q[:, :-1], act[:, :-1, None, None], -1)[..., 0]
        if value_loss == "c51":   # distributional TD, the target network's greedy action
            next_probs = jax.nn.softmax(next_q_logits, -1).mean(-3)       # heads averaged
            next_probs = jnp.take_along_axis(next_probs, best[..., None, None], -2)[..., 0, :]
            target = c51_project(next_probs, batch["rewards"][:, :-1], discount, support)
            taken = jnp.take_along_axis(out["q"][:, :-1], act[:, :-1, None, None, None],
                                        -2)[..., 0, :]
            td = -jnp.sum(target[:, :, None] * jax.nn.log_softmax(taken), -1).mean(-1)
            # CE = H(target) + KL(target || prediction): the entropy of diffuse targets keeps
            # the CE high while the KL, the part TD learning removes, falls.
            target_entropy = -jnp.sum(jax.scipy.special.xlogy(target, target), -1)
        else:                     # 'mse': scalar Q, squared TD error
            next_v = jnp.take_along_axis(next_q.mean(-2), best[..., None], -1)[..., 0]
            target = batch["rewards"][:, :-1] + discount * next_v
            td = jnp.mean(jnp.square(taken_q - target[..., None]), -1)
        td_mask = mask[:, :-1] * jnp.maximum(dones[:, :-1], mask[:, 1:])
        td_loss = jnp.sum(td * td_mask) / jnp.maximum(td_mask.sum(), 1.0)
        if value_loss == "c51":
            extra["value_kl"] = td_loss - jnp.sum(target_entropy * td_mask) / jnp.maximum(
                td_mask.sum(), 1.0)
    # CQL(H) on the Q values of every head, over the valid steps.
    cql = jnp.sum(cql_gap(q, act[:, :, None]).mean(-1) * mask) / denom
    loss = wm_weight * wm_loss + td_loss + cql_weight * cql
    metrics = {"loss": loss, "obs_loss": obs_loss, "reward_loss": reward_loss,
               "done_loss": done_loss, "value_loss": td_loss, "cql": cql,
               "q_data": jnp.sum(jnp.take_along_axis(q.mean(-2), act[..., None], -1)[..., 0]
                                 * mask) / denom, **extra}
    return loss, metrics
