r"""Plots of energy landscapes, samples, chains and training curves (matplotlib).

Every function draws into ``ax`` when given (its figure is returned) or into a new
figure, and returns the :class:`matplotlib.figure.Figure`. Nothing calls
``plt.show()``: in a notebook the figure displays itself, in a script pass it to
:func:`save_figure`, which also closes it. Arrays are NumPy; energies come from a
callable so no TensorFlow is needed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from deel_ebm._checks import check_box, check_samples

__all__ = [
    "plot_landscape",
    "plot_samples",
    "plot_image_grid",
    "plot_trajectories",
    "plot_training_curves",
    "save_figure",
]

DEFAULT_DOMAIN = (-4.5, 4.5)
DEFAULT_RESOLUTION = 200
DEFAULT_NUM_CHAINS = 16
DEFAULT_VALUE_RANGE = (-1.0, 1.0)
DEFAULT_DPI = 120
DEFAULT_CMAP = "viridis"
SAMPLE_STYLE = {"s": 4, "c": "white", "alpha": 0.6, "linewidths": 0}
DATA_STYLE = {"s": 4, "c": "tab:orange", "alpha": 0.5, "linewidths": 0}
#: what each logged metric is, for the y axes of :func:`plot_training_curves`
METRIC_LABELS = {
    "loss": "loss (nats; ml: estimated NLL)",
    "energy_gap": "E(negatives) − E(data)",
    "e_pos": "mean E(data)",
    "e_neg": "mean E(negatives)",
    "ess": "effective sample size / draws",
    "grad_norm": "mean ‖∇E‖ along the chains",
    "acceptance": "MALA acceptance rate",
    "k_coef_lip": "k (Lipschitz constant)",
    "lip_upper": "certified upper bound of Lip(E)",
    "lip_lower": "empirical lower bound of Lip(E)",
    "sample_energy": "mean E(samples)",
}


def _legend(ax):
    legend = ax.legend(loc="upper right", fontsize="small", markerscale=3)
    legend.get_frame().set_alpha(0.8)


LANDSCAPE_KINDS = ("density", "energy")


def _new_axes(ax, figsize=(5, 5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_landscape(
    energy_fn: Callable[[np.ndarray], np.ndarray],
    domain=DEFAULT_DOMAIN,
    resolution: int = DEFAULT_RESOLUTION,
    samples=None,
    ax=None,
    title: str | None = None,
    kind: str = "density",
    colorbar: bool = False,
    cmap: str = DEFAULT_CMAP,
    data=None,
    samples_label: str = "model samples",
    data_label: str = "data",
    vmax: float | None = None,
) -> Figure:
    r"""Image of a 2-D energy landscape, as a grid-normalised density or as :math:`-E`.

    The energy is evaluated on the centres :math:`x_{ij}` of a ``resolution`` x
    ``resolution`` grid of cells of area :math:`\Delta` over ``domain``. With
    ``kind="density"`` the image is

    .. math:: p(x_{ij}) = \frac{e^{-E(x_{ij})}}{\sum_{kl} e^{-E(x_{kl})}\,\Delta}

    (log-sum-exp, so any energy scale is safe): the model's density with :math:`Z`
    estimated on the grid, which integrates to 1 over the domain. With
    ``kind="energy"`` it is :math:`-E(x)` (bright = likely, like the density, but
    unnormalised and on a log scale, showing the tails).

    Args:
        energy_fn: callable mapping a NumPy array ``(n, 2)`` to energies ``(n,)`` or
            ``(n, 1)``, called once on all ``resolution**2`` points.
        domain: ``(lo, hi)`` for both axes or ``((x_lo, x_hi), (y_lo, y_hi))``.
        resolution: number of cells per axis (>= 2).
        samples: optional ``(m, 2)`` points drawn on top.
        ax: axes to draw into; a new figure if ``None``.
        title: axes title.
        kind: ``"density"`` or ``"energy"``.
        colorbar: add a colour bar (a second axes in the figure), labelled with
            what the colours are.
        cmap: matplotlib colour map name.
        data: optional ``(m, 2)`` data points drawn on top (orange), for
            comparison with the samples.
        samples_label, data_label: their names in the legend (a legend is drawn
            when samples or data are given).
        vmax: top of the colour scale (default: the image's maximum), to put
            two landscapes on one scale.

    Returns:
        The figure.

    Raises:
        ValueError: for a bad domain, resolution, kind, energy output shape or
            non-finite energies, or samples not of shape ``(m, 2)``.
        TypeError: if ``energy_fn`` is not callable.

    Example:
        >>> fig = plot_landscape(lambda x: 0.5 * (x**2).sum(axis=1), resolution=50)
        >>> fig.axes[0].images[0].get_array().shape
        (50, 50)
    """
    if not callable(energy_fn):
        raise TypeError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
    if kind not in LANDSCAPE_KINDS:
        raise ValueError(f"kind must be one of {LANDSCAPE_KINDS}, got {kind!r}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    resolution = int(resolution)
    (x_lo, x_hi), (y_lo, y_hi) = check_box(domain)
    if samples is not None:
        samples = check_samples(samples, "samples", (2,), allow_empty=True)
    if data is not None:
        data = check_samples(data, "data", (2,), allow_empty=True)
    dx, dy = (x_hi - x_lo) / resolution, (y_hi - y_lo) / resolution
    xs = x_lo + dx * (np.arange(resolution) + 0.5)
    ys = y_lo + dy * (np.arange(resolution) + 0.5)
    grid_x, grid_y = np.meshgrid(xs, ys)  # row = y, column = x
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    energies = np.asarray(energy_fn(points), dtype=np.float64)
    if energies.shape not in ((len(points),), (len(points), 1)):
        raise ValueError(
            f"energy_fn must return shape ({len(points)},) for ({len(points)}, 2) "
            f"points, got {energies.shape}"
        )
    if not np.all(np.isfinite(energies)):
        raise ValueError("energy_fn returned non-finite energies on the grid")
    log_values = -energies.reshape(resolution, resolution)
    if kind == "density":
        top = log_values.max()
        log_z = top + np.log(np.exp(log_values - top).sum() * dx * dy)
        values = np.exp(log_values - log_z)
        label = "density $e^{-E}/Z$ ($Z$ summed on the grid)"
    else:
        values, label = log_values, "$-E(x)$ (unnormalised log-density)"
    fig, ax = _new_axes(ax)
    image = ax.imshow(
        values,
        origin="lower",
        extent=(x_lo, x_hi, y_lo, y_hi),
        cmap=cmap,
        aspect="equal",
        interpolation="nearest",
        vmax=vmax,
    )
    if data is not None and len(data):
        ax.scatter(
            data[:, 0], data[:, 1], label=f"{data_label} ({len(data)})", **DATA_STYLE
        )
    if samples is not None and len(samples):
        ax.scatter(
            samples[:, 0],
            samples[:, 1],
            label=f"{samples_label} ({len(samples)})",
            **SAMPLE_STYLE,
        )
    if (samples is not None and len(samples)) or (data is not None and len(data)):
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        _legend(ax)
    if colorbar:
        fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(label if title is None else title)
    return fig


def plot_samples(
    samples,
    ax=None,
    domain=None,
    title: str | None = None,
    color: str = "tab:blue",
    size: float = 4.0,
    alpha: float = 0.5,
    data=None,
    label: str = "model samples",
    data_label: str = "data",
) -> Figure:
    """Scatter plot of 2-D samples, optionally over the data.

    Args:
        samples: array ``(n, 2)``.
        ax: axes to draw into; a new figure if ``None``.
        domain: optional axis limits, ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``.
        title: axes title.
        color, size, alpha: marker colour, area (points^2) and opacity.
        data: optional ``(m, 2)`` data points drawn beneath (grey).
        label, data_label: their names in the legend (drawn with ``data``).

    Returns:
        The figure.

    Raises:
        ValueError: for samples not of shape ``(n, 2)`` or a bad domain.
    """
    samples = check_samples(samples, "samples", (2,), allow_empty=True)
    fig, ax = _new_axes(ax)
    if data is not None:
        data = check_samples(data, "data", (2,), allow_empty=True)
        ax.scatter(
            data[:, 0], data[:, 1], s=size, c="0.55", alpha=alpha, linewidths=0,
            label=f"{data_label} ({len(data)})",
        )  # fmt: skip
    ax.scatter(
        samples[:, 0], samples[:, 1], s=size, c=color, alpha=alpha, linewidths=0,
        label=f"{label} ({len(samples)})",
    )  # fmt: skip
    if data is not None:
        _legend(ax)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if domain is not None:
        (x_lo, x_hi), (y_lo, y_hi) = check_box(domain)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal", adjustable="box")
    if title is not None:
        ax.set_title(title)
    return fig


def plot_image_grid(
    images,
    nrow: int | None = None,
    value_range=DEFAULT_VALUE_RANGE,
    ax=None,
    title: str | None = None,
    padding: int = 1,
) -> Figure:
    """Tile images into one picture, torchvision ``make_grid`` style.

    Values are clipped to ``value_range`` and mapped linearly to [0, 1]; tiles are
    separated by ``padding`` pixels of the lowest value (black).

    Args:
        images: array ``(n, h, w, 1)`` (grey, drawn with the ``gray`` map) or
            ``(n, h, w, 3)`` (RGB); ``(n, h, w)`` is taken as grey.
        nrow: number of images per row (as in torchvision); default
            :math:`\\lceil\\sqrt{n}\\rceil`.
        value_range: ``(lo, hi)`` of the data, e.g. ``(-1, 1)`` or ``(0, 1)``.
        ax: axes to draw into; a new figure if ``None``.
        title: axes title.
        padding: pixels between tiles (>= 0).

    Returns:
        The figure; its image has shape ``(rows (h + p) + p, nrow (w + p) + p[, 3])``.

    Raises:
        ValueError: for images of another shape, an empty batch, a bad ``nrow``,
            ``padding`` or ``value_range``.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            "images must have shape (n, h, w, 1) or (n, h, w, 3) with n >= 1, got "
            f"{images.shape}"
        )
    count, height, width, channels = images.shape
    nrow = math.ceil(math.sqrt(count)) if nrow is None else nrow
    if isinstance(nrow, bool) or int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow must be an int >= 1, got {nrow!r}")
    if isinstance(padding, bool) or int(padding) != padding or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(
            f"value_range must be (lo, hi) with lo < hi, got {value_range}"
        )
    ncol, pad = int(nrow), int(padding)
    rows = math.ceil(count / ncol)
    grid = np.zeros((rows * (height + pad) + pad, ncol * (width + pad) + pad, channels))
    scaled = (np.clip(images, lo, hi) - lo) / (hi - lo)
    for index, image in enumerate(scaled):
        top = pad + (index // ncol) * (height + pad)
        left = pad + (index % ncol) * (width + pad)
        grid[top : top + height, left : left + width] = image
    fig, ax = _new_axes(ax, figsize=(ncol * 0.8 + 1, rows * 0.8 + 1))
    if channels == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(grid, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return fig


def plot_trajectories(
    trajectory,
    domain=None,
    num_chains: int = DEFAULT_NUM_CHAINS,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Paths of 2-D Markov chains, one line per chain, start (o) and end (x) marked.

    Args:
        trajectory: array ``(num_steps + 1, n, 2)``: the chain states, start first.
        domain: optional axis limits, ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))``.
        num_chains: how many chains to draw (the first ones; all if fewer).
        ax: axes to draw into; a new figure if ``None``.
        title: axes title.

    Returns:
        The figure: one line per drawn chain, then the start and end scatters.

    Raises:
        ValueError: for a trajectory not of shape ``(steps + 1, n, 2)`` or a bad
            ``num_chains`` or domain.
    """
    trajectory = np.asarray(trajectory, dtype=np.float64)
    if trajectory.ndim != 3 or trajectory.shape[2] != 2 or trajectory.shape[1] == 0:
        raise ValueError(
            f"trajectory must have shape (num_steps + 1, n, 2), got {trajectory.shape}"
        )
    if isinstance(num_chains, bool) or int(num_chains) != num_chains or num_chains < 1:
        raise ValueError(f"num_chains must be an int >= 1, got {num_chains!r}")
    chains = trajectory[:, : int(num_chains)]
    fig, ax = _new_axes(ax)
    colors = plt.get_cmap("tab10")(np.arange(chains.shape[1]) % 10)
    for chain, color in zip(np.moveaxis(chains, 1, 0), colors):
        ax.plot(chain[:, 0], chain[:, 1], "-", lw=0.8, alpha=0.8, color=color)
    ax.scatter(chains[0, :, 0], chains[0, :, 1], marker="o", s=14, c=colors)
    ax.scatter(chains[-1, :, 0], chains[-1, :, 1], marker="x", s=18, c=colors)
    if domain is not None:
        (x_lo, x_hi), (y_lo, y_hi) = check_box(domain)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(
        title
        if title is not None
        else f"{chains.shape[1]} chains, {trajectory.shape[0] - 1} steps"
    )
    return fig


def plot_training_curves(
    history,
    keys: Sequence[str] | None = None,
    ncols: int = 3,
    log_scale: Sequence[str] = (),
    x=None,
    xlabel: str = "epoch",
    title: str | None = None,
) -> Figure:
    """One panel per metric of a Keras history, validation curve overlaid.

    Args:
        history: ``keras.callbacks.History`` or its ``.history`` dict, mapping metric
            names to per-epoch (or per-step) lists of floats.
        keys: metrics to draw, in order; default every key not starting with
            ``val_``. ``val_<key>``, when present, is drawn in ``<key>``'s panel.
        ncols: panels per row (>= 1).
        log_scale: keys whose panel gets a logarithmic y axis.
        x: the x value of each entry (e.g. the optimizer step at each epoch's
            end); default 1, 2, ...
        xlabel: the x axis' name.
        title: the figure's title.

    A validation series as long as its training series may hold NaN (or None)
    where no validation ran: its points are drawn at the training x values.
    The y axis of known metrics is labelled (:data:`METRIC_LABELS`).

    Returns:
        The figure, with one axes per key (unused grid cells removed).

    Raises:
        TypeError: if ``history`` is not a mapping or History.
        ValueError: for an unknown or empty key, a non-1-D series or a bad ``ncols``.
    """
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history must be a dict or keras History, got {type(history).__name__}"
        )
    if keys is None:
        keys = [key for key in history if not str(key).startswith("val_")]
    keys = list(keys)
    if not keys:
        raise ValueError(f"no metric to plot in history with keys {list(history)}")
    for key in keys + [f"val_{key}" for key in keys if f"val_{key}" in history]:
        if key not in history:
            raise ValueError(f"key {key!r} is not in history (keys: {list(history)})")
        if np.asarray(history[key], dtype=np.float64).ndim != 1:
            raise ValueError(
                f"history[{key!r}] must be a 1-D series, got shape "
                f"{np.shape(history[key])}"
            )
    if isinstance(ncols, bool) or int(ncols) != ncols or ncols < 1:
        raise ValueError(f"ncols must be an int >= 1, got {ncols!r}")
    ncols = min(int(ncols), len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False
    )
    for ax in axes.ravel()[len(keys) :]:
        ax.remove()
    for ax, key in zip(axes.ravel(), keys):
        values = np.asarray(history[key], dtype=np.float64)
        xs = np.arange(1, len(values) + 1) if x is None else np.asarray(x, float)
        if len(xs) != len(values):
            raise ValueError(f"x has {len(xs)} values, history[{key!r}] {len(values)}")
        ax.plot(xs, values, label="training")
        if f"val_{key}" in history:
            val = np.array(
                [np.nan if v is None else v for v in history[f"val_{key}"]],
                dtype=np.float64,
            )
            val_x = xs if len(val) == len(xs) else np.arange(1, len(val) + 1)
            seen = np.isfinite(val)
            ax.plot(val_x[seen], val[seen], "o-", ms=3, label="validation")
            ax.legend(fontsize="small")
        if key in log_scale:
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_ylabel(METRIC_LABELS.get(key, key), fontsize="small")
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path, dpi: int = DEFAULT_DPI) -> Path:
    """Save a figure (format from the suffix, e.g. ``.png``, ``.pdf``) and close it.

    Parent folders are created. The figure is closed even if saving fails, so loops
    that plot do not accumulate open figures.

    Args:
        fig: the figure.
        path: destination file path.
        dpi: resolution for raster formats.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        TypeError: if ``fig`` is not a matplotlib Figure.
        ValueError: for a path without a file suffix.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    if not path.suffix:
        raise ValueError(f"path needs a file suffix such as .png, got {str(path)!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
