"""Run plots: every line carries markers and coinciding lines stay distinguishable, integer x ticks,
grouped panels (CASCADE's zero-shot returns on walker); open-loop GIF rows and PNG lines labelled."""
import json
from types import SimpleNamespace

import imageio.v2 as imageio
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxwm.envs.tasks import WALKER_TASKS
from jaxwm.runtime import openloop, videos
from jaxwm.runtime.logging import read_metrics
from jaxwm.runtime.plots import metrics_figure, plot_metrics

# As CASCADE's `run` asks for them (zero-shot group added for the walker family).
CASCADE_KEYS = ("coverage", "deployment_coverage", "member_js", "model_loss", "info_gain_raw",
                "pop_diversity_raw", "popdiv_return_share", "episode/return",
                tuple(f"zero_shot/{t}" for t in WALKER_TASKS))


@pytest.fixture
def walker_run(tmp_path):
    """A hand-written CASCADE walker metrics.jsonl: 4 deployments, zero-shot at 1 and 3, where
    'stand' and 'walk' returns coincide."""
    lines = []
    for dep in range(4):
        record = {"step": dep, "deployment": dep, "coverage": 0.1 * dep, "model_loss": 1.0 / (dep + 1),
                  "episode/return": 2.0 * dep}
        if dep % 2:
            record.update({"zero_shot/stand": 5.0 * dep, "zero_shot/walk": 5.0 * dep,
                           "zero_shot/run": 1.0 * dep, "zero_shot/flip": 0.5,
                           "zero_shot_train/reward_loss": 0.3})
        lines.append(json.dumps(record))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return str(tmp_path)


def test_zero_shot_returns_are_one_panel_with_a_line_per_task(walker_run):
    assert plot_metrics(walker_run, CASCADE_KEYS, xlabel="deployment").endswith("metrics.png")
    fig = metrics_figure(read_metrics(walker_run), CASCADE_KEYS, xlabel="deployment")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["coverage", "model_loss", "episode/return",
                                               "zero_shot/*"]
    zero_shot = axes[-1]
    assert [line.get_label() for line in zero_shot.lines] == list(WALKER_TASKS)
    assert [t.get_text() for t in zero_shot.get_legend().get_texts()] == list(WALKER_TASKS)
    for line in zero_shot.lines:
        np.testing.assert_array_equal(line.get_xdata(), [1, 3])
    plt.close(fig)


def test_every_line_has_markers_and_coinciding_lines_differ(walker_run):
    fig = metrics_figure(read_metrics(walker_run), CASCADE_KEYS, xlabel="deployment")
    lines = [line for ax in fig.axes for line in ax.lines]
    assert len(lines) == 3 + len(WALKER_TASKS)
    assert all(line.get_marker() not in (None, "", "None", " ") for line in lines)
    stand, walk = fig.axes[3].lines[:2]
    np.testing.assert_array_equal(stand.get_ydata(), walk.get_ydata())   # same data ...
    assert stand.get_marker() != walk.get_marker()                      # ... drawn differently
    assert stand.get_linestyle() != walk.get_linestyle()
    assert stand.get_markersize() > walk.get_markersize()               # the later one inside
    assert stand.get_markerfacecolor() == "none"                        # hollow: both seen
    plt.close(fig)


def test_deployment_axes_have_integer_ticks(walker_run):
    # 4 deployments on a wide axis would get ticks 0, 0.5, 1, ... without the integer locator.
    fig = metrics_figure(read_metrics(walker_run), CASCADE_KEYS, xlabel="deployment")
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.get_visible():
            ticks = ax.get_xticks()
            assert len(ticks) > 1 and np.all(ticks == np.round(ticks)), ticks
            assert ax.get_xlabel() == "deployment"
    plt.close(fig)


def test_missing_keys_are_dropped_and_nothing_found_is_no_plot(walker_run):
    assert plot_metrics(walker_run, ("nope", ("zero_shot/nope",))) is None
    fig = metrics_figure(read_metrics(walker_run), (("coverage", "nope"),))
    assert [line.get_label() for line in fig.axes[0].lines] == ["coverage"]
    assert fig.axes[0].get_legend() is None
    plt.close(fig)


def test_label_rows_adds_a_text_margin():
    frames = np.full((2, 30, 20, 3), 128, np.uint8)
    labelled = videos.label_rows(frames, ("truth", "model", "error"))
    margin = labelled.shape[2] - 20
    assert labelled.shape[:2] == (2, 30) and margin > 10
    np.testing.assert_array_equal(labelled[:, :, margin:], frames)
    strip = labelled[0, :, :margin, 0]
    for row in np.split(strip, 3):            # each row has its own text on a black margin
        assert row.min() == 0 and row.max() > 200
    assert not np.array_equal(strip[:10], strip[10:20])      # different words
    np.testing.assert_array_equal(labelled[0], labelled[1])


def test_openloop_gif_rows_are_labelled(tmp_path, monkeypatch):
    shades = np.array([100, 120, 140], np.uint8)           # distinct frames (GIFs merge equal ones)
    frames = np.broadcast_to(shades[:, None, None, None], (3, 3 * 16, 2 * 16, 3))
    monkeypatch.setattr(videos, "openloop_frames", lambda *a: frames)
    path = videos.openloop_video(None, None, None, None, str(tmp_path / "o.gif"))
    gif = np.asarray(imageio.mimread(path))                # upscaled x2 by save_gif
    margin = gif.shape[2] - 2 * frames.shape[2]
    assert gif.shape[:2] == (3, 2 * frames.shape[1]) and margin > 0
    assert len(np.unique(gif[0, :, :margin])) > 1          # text drawn, not a flat strip
    for frame, shade in zip(gif, shades):
        assert np.all(frame[:, margin:] == shade)


def fake_openloop(monkeypatch, dims):
    """openloop_figure on a stand-in model: truth zeros, model ones ([T=6, B=1, dims])."""
    monkeypatch.setattr(openloop, "openloop_vectors", lambda wm, p, b, k, c: (
        jnp.zeros((6, 1, dims)), jnp.ones((6, 1, dims))))
    wm = SimpleNamespace(obs_shapes={"vector": (dims,)})
    return wm, {"vector": np.zeros((6, 1, dims), np.float32)}


def test_openloop_vector_png_legend_says_truth_and_model(tmp_path, monkeypatch):
    wm, batch = fake_openloop(monkeypatch, 3)
    closed = []
    monkeypatch.setattr(plt, "close", closed.append)        # keep the figure to inspect it
    path = openloop.openloop_figure(wm, None, batch, None, str(tmp_path / "o"))
    assert path.endswith(".png")
    legend = closed[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["truth", "model"]


def test_openloop_minigrid_gif_rows_are_labelled(tmp_path, monkeypatch):
    wm, batch = fake_openloop(monkeypatch, openloop.MINIGRID_VECTOR)
    path = openloop.openloop_figure(wm, None, batch, None, str(tmp_path / "o"))
    gif = np.asarray(imageio.mimread(path))
    margin = gif.shape[2] - 64 * 2
    assert gif.shape[1] == 128 * 2 and margin > 0
    top, bottom = gif[0, :128, :margin], gif[0, 128:, :margin]
    assert len(np.unique(top)) > 1 and not np.array_equal(top, bottom)
