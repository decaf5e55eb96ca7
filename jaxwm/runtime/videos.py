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
    Returns uint8 [T, 3 * H, num_videos * W, 3]: rows truth / model (reconstructed, then
    imagined) / |error|.
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


def label_rows(frames: np.ndarray, labels: tuple, pad: int = 3) -> np.ndarray:
    """Prepend to uint8 frames [T, H, W, 3] a black left margin naming their len(labels)
    equal-height rows in white (PIL's default font): [T, H, margin + W, 3]."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    boxes = [ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), t, font=font)
             for t in labels]
    height, row = frames.shape[1], frames.shape[1] // len(labels)
    strip = Image.new("L", (max(b[2] for b in boxes) + 2 * pad, height), 0)
    draw = ImageDraw.Draw(strip)
    for i, (text, box) in enumerate(zip(labels, boxes)):   # vertically centred in its row
        draw.text((pad, i * row + (row - box[3] - box[1]) // 2), text, fill=255, font=font)
    strip = np.broadcast_to(np.asarray(strip)[None, :, :, None], frames.shape[:2] + (
        strip.width, 3))
    return np.concatenate([strip, frames], 2)


def openloop_video(wm, params, batch, key, path: str, context: int = 5, num_videos: int = 4):
    """Write the GIF of `openloop_frames` to `path`, rows labelled truth / model / error."""
    frames = openloop_frames(wm, params, batch, key, context, num_videos)
    return save_gif(label_rows(frames, ("truth", "model", "error")), path)
