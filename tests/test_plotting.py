"""Tests of deel_ebm.plotting: each function returns a Figure with the right artists."""

# deel_ebm first: it sets the Keras-2 environment before anything loads TensorFlow
import deel_ebm  # noqa: F401, I001
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deel_ebm import plotting  # noqa: E402
from deel_ebm.plotting import (  # noqa: E402
    plot_image_grid,
    plot_landscape,
    plot_samples,
    plot_training_curves,
    plot_trajectories,
    save_figure,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _quadratic(points):
    return 0.5 * np.sum(points**2, axis=1)


# --- landscape ----------------------------------------------------------------------


def test_landscape_density_is_normalised_on_the_grid():
    fig = plot_landscape(_quadratic, domain=(-6, 6), resolution=120)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    density = np.asarray(fig.axes[0].images[0].get_array())
    assert density.shape == (120, 120)
    cell = (12 / 120) ** 2
    assert density.sum() * cell == pytest.approx(1.0)
    # standard Gaussian: peak density 1 / (2 pi)
    assert density.max() == pytest.approx(1 / (2 * np.pi), rel=1e-2)


def test_landscape_energy_kind_orientation_and_extent():
    def tilted(points):  # energy grows with x, so -E decreases along columns
        return points[:, 0]

    fig = plot_landscape(tilted, domain=((0, 2), (-1, 1)), resolution=10, kind="energy")
    image = fig.axes[0].images[0]
    values = np.asarray(image.get_array())
    assert np.all(np.diff(values, axis=1) < 0) and np.allclose(
        np.diff(values, axis=0), 0
    )
    assert tuple(image.get_extent()) == (0, 2, -1, 1)


def test_landscape_overlay_colorbar_and_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    samples = np.random.default_rng(0).normal(size=(50, 2))
    out = plot_landscape(
        _quadratic, resolution=20, samples=samples, ax=right, colorbar=True, title="t"
    )
    assert out is fig
    assert len(right.collections) == 1
    assert right.collections[0].get_offsets().shape == (50, 2)
    assert right.get_title() == "t"
    assert len(fig.axes) == 3  # two panels and the colour bar


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"samples": np.zeros((5, 3))}, r"\(5, 3\)"),
        ({"kind": "logits"}, "logits"),
        ({"resolution": 1}, "resolution"),
        ({"domain": (1, -1)}, r"\(1, -1\)"),
    ],
)
def test_landscape_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_landscape(_quadratic, **kwargs)


def test_landscape_rejects_bad_energy_shape():
    with pytest.raises(ValueError, match=r"\(100, 2\)"):
        plot_landscape(lambda x: x, resolution=10)


# --- samples, images, trajectories --------------------------------------------------


def test_plot_samples_scatter():
    samples = np.random.default_rng(0).normal(size=(30, 2))
    fig = plot_samples(samples, domain=(-3, 3), title="s")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), samples)
    assert ax.get_xlim() == (-3, 3) and ax.get_title() == "s"


def test_plot_samples_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(30,\)"):
        plot_samples(np.zeros(30))


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_shape_and_scaling(channels):
    images = np.linspace(-2, 2, 7 * 4 * 5 * channels).reshape(7, 4, 5, channels)
    fig = plot_image_grid(images, nrow=3)
    grid = np.asarray(fig.axes[0].images[0].get_array())
    rows = 3  # ceil(7 / 3)
    expected = (rows * 5 + 1, 3 * 6 + 1) + ((3,) if channels == 3 else ())
    assert grid.shape == expected
    assert grid.min() == 0.0 and grid.max() == 1.0  # clipped from [-2, 2] to [-1, 1]
    np.testing.assert_allclose(
        grid[1:5, 1:6].reshape(4, 5, -1), (np.clip(images[0], -1, 1) + 1) / 2
    )


def test_image_grid_default_is_square():
    fig = plot_image_grid(np.zeros((9, 8, 8, 1)), value_range=(0, 1), padding=0)
    assert np.asarray(fig.axes[0].images[0].get_array()).shape == (24, 24)


@pytest.mark.parametrize("shape", [(4, 8, 8, 2), (8, 8), (0, 8, 8, 1)])
def test_image_grid_rejects_bad_shape(shape):
    with pytest.raises(
        ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")
    ):
        plot_image_grid(np.zeros(shape))


def test_trajectories_draw_requested_chains():
    trajectory = np.cumsum(np.random.default_rng(0).normal(size=(11, 40, 2)), axis=0)
    fig = plot_trajectories(trajectory, num_chains=5, domain=(-10, 10))
    ax = fig.axes[0]
    assert len(ax.lines) == 5
    np.testing.assert_allclose(ax.lines[2].get_xydata(), trajectory[:, 2])
    starts, ends = ax.collections
    np.testing.assert_allclose(starts.get_offsets(), trajectory[0, :5])
    np.testing.assert_allclose(ends.get_offsets(), trajectory[-1, :5])
    assert ax.get_title() == "5 chains, 10 steps"


def test_trajectories_reject_bad_shape():
    with pytest.raises(ValueError, match=r"\(11, 40\)"):
        plot_trajectories(np.zeros((11, 40)))


# --- training curves ----------------------------------------------------------------


def test_training_curves_one_panel_per_metric_with_validation():
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0], "gap": [0, 1, 2]}
    fig = plot_training_curves(history, ncols=2, log_scale=("loss",))
    assert len(fig.axes) == 2
    loss_ax, gap_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["training", "validation"]
    assert loss_ax.get_yscale() == "log" and len(gap_ax.lines) == 1


def test_training_curves_accept_keras_history():
    class History:  # duck type of keras.callbacks.History
        history = {"loss": [1.0, 0.5], "energy_gap": [0.1, 0.2]}

    fig = plot_training_curves(History(), keys=["energy_gap"])
    assert [ax.get_title() for ax in fig.axes] == ["energy_gap"]


def test_training_curves_reject_unknown_key():
    with pytest.raises(ValueError, match="'acc'"):
        plot_training_curves({"loss": [1.0]}, keys=["acc"])
    with pytest.raises(TypeError, match="list"):
        plot_training_curves([1.0, 2.0])


# --- saving -------------------------------------------------------------------------


def test_save_figure_writes_png_and_closes(tmp_path):
    fig = plot_samples(np.zeros((3, 2)))
    path = save_figure(fig, tmp_path / "a" / "b" / "samples.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 0
    assert not plt.fignum_exists(fig.number)


def test_save_figure_rejects_missing_suffix(tmp_path):
    with pytest.raises(ValueError, match="samples"):
        save_figure(plot_samples(np.zeros((3, 2))), tmp_path / "samples")


# ------------------------------------------------ figures that explain themselves
def test_landscape_names_its_axes_colours_and_points():
    pts = np.random.default_rng(0).normal(size=(50, 2))
    fig = plotting.plot_landscape(
        lambda x: 0.5 * (x**2).sum(axis=1), resolution=20, samples=pts, data=pts,
        colorbar=True,
    )  # fmt: skip
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["data (50)", "model samples (50)"]
    assert "density" in fig.axes[1].get_ylabel()  # the colour bar says what it is
    plt.close(fig)


def test_samples_over_data_have_a_legend():
    pts = np.random.default_rng(0).normal(size=(30, 2))
    fig = plotting.plot_samples(pts, data=pts[:10])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["data (10)", "model samples (30)"]
    assert fig.axes[0].get_xlabel() == "$x_1$"
    plt.close(fig)


def test_curves_label_y_and_place_sparse_validation_at_its_steps():
    history = {"loss": [3.0, 2.5, 2.0, 1.8], "val_loss": [None, 2.6, None, 1.9]}
    fig = plotting.plot_training_curves(history, x=[10, 20, 30, 40], xlabel="step")
    ax = fig.axes[0]
    assert "NLL" in ax.get_ylabel() and ax.get_xlabel() == "step"
    val = [line for line in ax.get_lines() if line.get_label() == "validation"][0]
    np.testing.assert_array_equal(val.get_xdata(), [20, 40])
    plt.close(fig)
