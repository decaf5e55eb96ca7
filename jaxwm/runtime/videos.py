"""GIFs of real vs open-loop imagined rollouts (DreamerV2 Fig. 2 style)."""
import os

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.models import rssm


def openloop_frames(wm, params, batch, key, context: int = 5, num_videos: int = 4):
    """Real, imagined and error frames for the first `num_videos` sequences of a batch.

    The model observes the first `context` frames, then predicts the rest open-loop from the
    batch's actions. batch: [T, B] with an 'image' key (uint8 [T, B, H, W, C]).
    Returns uint8 [T, 3 * H, num_videos * W, 3]: rows real / imagined / |error|.
    """
    key_obs, key_img = jax.random.split(key)
    batch = jax.tree.map(lambda x: x[:, :num_videos], batch)
    posts, _ = wm.observe(params, jax.tree.map(lambda x: x[:context], batch), key_obs)
    last = jax.tree.map(lambda x: x[-1], posts)
    # Step t >= context follows the action taken at t - 1.
    states = wm.rollout(params, last, batch["action"][context - 1:-1], key_img)
    recon = wm.decode(params, rssm.features(posts))["image"]
    imagined = wm.decode(params, rssm.features(states))["image"]
    model = jnp.concatenate([recon, imagined], 0)
    model = jnp.clip((model + 0.5) * 255.0, 0, 255)
    truth = batch["image"].astype(jnp.float32)
    error = jnp.abs(model - truth)
    frames = jnp.concatenate([truth, model, error], 2).astype(jnp.uint8)   # [T, B, 3H, W, C]
    frames = jnp.concatenate(list(jnp.moveaxis(frames, 1, 0)), 2)         # [T, 3H, B*W, C]
    if frames.shape[-1] == 1:
        frames = jnp.repeat(frames, 3, -1)
    return np.asarray(frames)


def save_gif(frames: np.ndarray, path: str, fps: int = 10, scale: int = 2) -> str:
    """Write uint8 frames [T, H, W, 3] as a looping GIF (nearest-neighbour upscaled)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames = frames.repeat(scale, 1).repeat(scale, 2)
    tmp = path + ".tmp.gif"
    imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
    os.replace(tmp, path)
    return path


def openloop_video(wm, params, batch, key, path: str, context: int = 5, num_videos: int = 4):
    """Write the real / open-loop imagined / error GIF of `openloop_frames` to `path`."""
    return save_gif(openloop_frames(wm, params, batch, key, context, num_videos), path)
