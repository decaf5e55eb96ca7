"""Real vs open-loop imagined rollouts of a Dreamer world model: `write_openloop` picks
`jaxwm.runtime.videos.openloop_video` for image observations and `openloop_figure` (below) for
vector observations.

The model observes the first `context` steps of a replay sequence, then predicts the rest from
the recorded actions alone (DreamerV2 Fig. 2 protocol). For MiniGrid's symbolic 7x7 view
(`minigrid_vector`, 980 dims) the decoded views are rendered and written as a GIF (rows labelled
truth / model); for other vector observations a PNG plots truth vs model values of the first dims.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.models import rssm
from jaxwm.runtime import videos

MINIGRID_VECTOR = 7 * 7 * 20


def openloop_vectors(wm, params, batch, key, context: int = 5):
    """(real, imagined) float32 [T, B, D] of the 'vector' observation; steps < context are
    reconstructions of observed steps, later ones open-loop predictions (jittable)."""
    key_obs, key_img = jax.random.split(key)
    posts, _ = wm.observe(params, jax.tree.map(lambda x: x[:context], batch), key_obs)
    last = jax.tree.map(lambda x: x[-1], posts)
    states = wm.rollout(params, last, batch["action"][context - 1:-1], key_img)
    recon = wm.decode(params, rssm.features(posts))["vector"]
    imagined = wm.decode(params, rssm.features(states))["vector"]
    return batch["vector"].astype(jnp.float32), jnp.concatenate([recon, imagined], 0)


def _minigrid_views(vec: np.ndarray) -> np.ndarray:
    """Inverse of `minigrid_vector` by argmax per one-hot group: [..., 980] -> uint8 [..., 7, 7, 3]
    indexed [x, y, (object, color, state)]."""
    cells = vec.reshape(vec.shape[:-1] + (7, 7, 20))                   # [..., y, x, 20]
    parts = [cells[..., :11].argmax(-1), cells[..., 11:17].argmax(-1), cells[..., 17:].argmax(-1)]
    view = np.stack(parts, -1).astype(np.uint8)
    return np.swapaxes(view, -3, -2)                                   # [..., x, y, 3]


def openloop_figure(wm, params, batch, key, path: str, context: int = 5,
                    num: int = 4) -> str | None:
    """Write the open-loop figure for the first `num` sequences; returns its path (None if the
    model has no 'vector' observation). MiniGrid views -> `<path>.gif`, others -> `<path>.png`."""
    if "vector" not in dict(wm.obs_shapes):
        return None
    batch = jax.tree.map(lambda x: x[:, :num], batch)
    fn = jax.jit(lambda p, b, k: openloop_vectors(wm, p, b, k, context))
    real, imagined = (np.asarray(x) for x in fn(params, batch, key))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if real.shape[-1] == MINIGRID_VECTOR:
        from jaxwm.envs.envpool_envs import render_minigrid
        t, b = real.shape[:2]
        frames = [render_minigrid(_minigrid_views(x.reshape(t * b, -1))).reshape(
            t, b, 64, 64, 3) for x in (real, imagined)]
        frames = np.concatenate(frames, 2)                            # [T, B, 128, 64, 3]
        frames = np.concatenate(list(np.moveaxis(frames, 1, 0)), 2)   # [T, 128, B * 64, 3]
        return videos.save_gif(videos.label_rows(frames, ("truth", "model")), path + ".gif", fps=4)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    dims = min(real.shape[-1], 6)
    fig, axes = plt.subplots(1, dims, figsize=(3 * dims, 2.6), squeeze=False)
    for d, ax in enumerate(axes[0]):
        ax.plot(real[:, 0, d], "k-", label="truth")
        ax.plot(imagined[:, 0, d], "r--", label="model")
        ax.axvline(context - 0.5, color="grey", lw=0.8)
        ax.set_title(f"vector[{d}]")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"open-loop prediction after {context} observed steps")
    fig.tight_layout()
    out = path + ".png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def write_openloop(wm, params, batch, key, stem: str, context: int = 5) -> str | None:
    """Real vs open-loop imagined rollout of `batch` [T, B]: `<stem>.gif` of frames for image
    models (`videos.openloop_video`), else `openloop_figure`. Returns the written path."""
    if "image" in dict(wm.obs_shapes):
        return videos.openloop_video(wm, params, batch, key, stem + ".gif", context)
    return openloop_figure(wm, params, batch, key, stem, context)
