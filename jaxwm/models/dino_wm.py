"""DINO-WM: a world model on frozen patch features, planning to reach image goals.

Zhou, Pan, LeCun and Pinto, "DINO-WM: World Models on Pre-trained Visual Features enable
Zero-shot Planning" (2024), Sec. 3:
- observations are encoded by a frozen patch encoder (DINOv2 ViT-S/14 in the paper) into patch
  features z_t [P, D]; no pixel reconstruction loss trains the model;
- a ViT predictor reads a history of h frames: every patch token of frame t is its feature
  concatenated with the embedding of the action a_t (and of the proprioception, optional), and a
  frame-level causal mask lets the tokens of frame t attend to frames <= t only; the output at
  frame t predicts z_{t+1} (teacher forcing over the window, MSE on the next frame's features);
- an optional decoder is trained on the frozen features for visualization only;
- planning (Sec. 3.3): MPC with CEM over action sequences of horizon H from the current window,
  cost = || z_hat_H - z_goal ||^2 between the predicted last latent and the goal image's latent.

Here the predictor and the decoder are Flax modules on batch-first windows [B, T, ...]; the
callers (agents/dino_wm) sample windows time-major and transpose. The cost uses the visual
features only (the paper adds a proprio term when the predictor also predicts proprio).
"""
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.nn.vit import TransformerBlock


def frame_causal_mask(num_frames: int, tokens_per_frame: int) -> jax.Array:
    """bool [T*P, T*P]: query token i may attend key token j iff frame(j) <= frame(i)."""
    frame = jnp.arange(num_frames * tokens_per_frame) // tokens_per_frame
    return frame[None, :] <= frame[:, None]


class Predictor(nn.Module):
    """z [B, T, P, D], actions [B, T, A] (a_t taken at frame t), proprio [B, T, Q] or None
    -> predicted next-frame features [B, T, P, D] (output t predicts z_{t+1}).

    T <= history (the position embeddings cover `history` frames)."""
    history: int
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    action_emb: int = 10      # the paper's action embedding size (concatenated to every patch)
    proprio_emb: int = 10     # proprio embedding size (when proprio is given)
    residual: bool = False    # predict z_{t+1} - z_t (the paper predicts z_{t+1})

    @nn.compact
    def __call__(self, z, actions, proprio=None):
        chex.assert_rank([z, actions], [4, 3])
        b, t, p, d = z.shape
        if t > self.history:
            raise ValueError(f"window of {t} frames exceeds predictor history={self.history}")
        parts = [z, jnp.broadcast_to(nn.Dense(self.action_emb, name="action_emb")(actions)[
            :, :, None], (b, t, p, self.action_emb))]
        if proprio is not None:
            e = nn.Dense(self.proprio_emb, name="proprio_emb")(proprio)
            parts.append(jnp.broadcast_to(e[:, :, None], (b, t, p, self.proprio_emb)))
        x = nn.Dense(self.dim, name="embed")(jnp.concatenate(parts, -1))
        init = nn.initializers.normal(0.02)
        x = x + self.param("patch_pos", init, (p, self.dim))[None, None]
        x = x + self.param("frame_pos", init, (self.history, self.dim))[None, :t, None]
        x = x.reshape(b, t * p, self.dim)
        mask = frame_causal_mask(t, p)
        for i in range(self.depth):
            x = TransformerBlock(self.dim, self.heads, self.mlp_ratio, name=f"block{i}")(x, mask)
        x = nn.LayerNorm(epsilon=1e-6, name="norm")(x)
        out = nn.Dense(d, name="head")(x).reshape(b, t, p, d)
        return z + out if self.residual else out


class PatchDecoder(nn.Module):
    """Patch features [..., P, D] -> images in [0, 1] [..., H, W, 3] (H = W = grid * patch):
    a per-patch MLP to the patch's pixels (the visualization decoder; also the reconstruction
    head of the end-to-end baseline)."""
    patch_size: int
    hidden: int = 256

    @nn.compact
    def __call__(self, z):
        s = self.patch_size
        x = nn.gelu(nn.Dense(self.hidden)(z))
        x = nn.gelu(nn.Dense(self.hidden)(x))
        return unpatchify(nn.sigmoid(nn.Dense(s * s * 3)(x)), s)


def unpatchify(x: jax.Array, patch_size: int) -> jax.Array:
    """[..., P, s*s*3] (patches in row-major grid order) -> images [..., g*s, g*s, 3]."""
    *lead, p, _ = x.shape
    grid, s = int(round(p ** 0.5)), patch_size
    if grid * grid != p:
        raise ValueError(f"{p} patches do not form a square grid")
    x = x.reshape(*lead, grid, grid, s, s, 3)
    x = jnp.swapaxes(x, -4, -3)   # [..., gy, s, gx, s, 3]
    return x.reshape(*lead, grid * s, grid * s, 3)


def prediction_loss(predictor: Predictor, params: Any, z: jax.Array, actions: jax.Array,
                    proprio: jax.Array | None = None) -> jax.Array:
    """Teacher-forced MSE of the next-frame features over a window of h + 1 frames.

    z [B, h+1, P, D] (targets are not differentiated: frozen encoder, or stop-gradient in the
    end-to-end baseline), actions [B, h+1, A], proprio [B, h+1, Q] or None -> [].
    """
    pred = predictor.apply(params, z[:, :-1], actions[:, :-1],
                           None if proprio is None else proprio[:, :-1])
    return jnp.mean(jnp.square(pred - jax.lax.stop_gradient(z[:, 1:])))


# ------------------------------------------------------------------------------------------------
# Planning in the predictor: model functions for planners/cem.py and planners/mppi.py
# ------------------------------------------------------------------------------------------------
class PlanState(NamedTuple):
    """The planner's model state for one env (leaves get a leading [N] inside the planner).

    z [h, P, D]: features of the last h frames (oldest first); actions [h, A]: the actions taken
    at them (the last entry is the one being planned); goal [P, D]: the goal image's features.
    """
    z: jax.Array
    actions: jax.Array
    goal: jax.Array


def goal_cost(z: jax.Array, goal: jax.Array) -> jax.Array:
    """Mean squared distance between features: z, goal [..., P, D] -> [...]."""
    return jnp.mean(jnp.square(z - goal), axis=(-2, -1))


def rollout_step(predictor: Predictor, params: Any, state: PlanState, action: jax.Array
                 ) -> PlanState:
    """Puts a_t [N, A] at the last frame, predicts z_{t+1} and slides the window by one frame."""
    actions = state.actions.at[:, -1].set(action)
    z_next = predictor.apply(params, state.z, actions)[:, -1]
    return PlanState(z=jnp.concatenate([state.z[:, 1:], z_next[:, None]], 1),
                     actions=jnp.concatenate([actions[:, 1:], jnp.zeros_like(action)[:, None]],
                                             1),
                     goal=state.goal)


def cem_fns(predictor: Predictor):
    """planners.cem.ModelFns: no reward, terminal value = -goal_cost of the last latent."""
    from jaxwm.planners import cem
    return cem.ModelFns(
        next=lambda params, s, a, key: rollout_step(predictor, params, s, a),
        reward=lambda params, s, a: jnp.zeros(a.shape[0], a.dtype),
        terminal_value=lambda params, s: -goal_cost(s.z[:, -1], s.goal))


def flatten_state(state: PlanState) -> jax.Array:
    """PlanState (unbatched) -> one vector [L] (MPPI plans from flat latents)."""
    return jnp.concatenate([state.z.ravel(), state.actions.ravel(), state.goal.ravel()])


def unflatten_state(flat: jax.Array, like: PlanState) -> PlanState:
    """[N, L] -> PlanState with leading [N], shaped as the unbatched `like`."""
    sizes = [like.z.size, like.actions.size]
    z, a, g = jnp.split(flat, [sizes[0], sizes[0] + sizes[1]], axis=-1)
    n = flat.shape[0]
    return PlanState(z.reshape(n, *like.z.shape), a.reshape(n, *like.actions.shape),
                     g.reshape(n, *like.goal.shape))


def mppi_fns(predictor: Predictor, like: PlanState):
    """planners.mppi.ModelFns on flattened PlanStates: no reward, one 'Q' = -goal_cost of the
    last latent (the terminal value), no policy prior (use num_pi_trajs = 0)."""
    from jaxwm.planners import mppi

    def next_flat(params, flat, a):
        return jax.vmap(flatten_state)(
            rollout_step(predictor, params, unflatten_state(flat, like), a))

    def terminal(params, flat, a):
        s = unflatten_state(flat, like)
        return -goal_cost(s.z[:, -1], s.goal)[None]

    return mppi.ModelFns(next=next_flat,
                         reward=lambda params, flat, a: jnp.zeros(a.shape[0], a.dtype),
                         q_ensemble=terminal,
                         policy=lambda params, flat, key: jnp.zeros(
                             (flat.shape[0], like.actions.shape[-1]), flat.dtype))
