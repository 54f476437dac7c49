"""The figures of a run folder, made to be read without the code.

- ``landscape.png`` (2D data): for a built-in density, the true density beside the
  model's on one colour scale, with the exact KL in the title; the model's panel
  shows its samples and the data points. For other 2D data, the model's density
  with samples and data.
- ``samples.png``: 2D samples over the data, or a grid of sampled images beside a
  grid of training images.
- ``class_samples.png`` (joint models): class-conditional samples, one row of
  images per class (2D data: one colour per class).
- ``curves.png``: each logged metric against the optimizer step, training and
  validation, with the y axis saying what the metric is.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex

from deel_ebm import datasets, plotting

__all__ = ["write_run_figures", "class_samples_figure", "SHOWN_POINTS"]

#: points of each kind drawn over a 2D landscape
SHOWN_POINTS = 1000
_SKIP = ("epoch", "step", "elapsed_seconds")


def _kl_text(exact) -> str:
    if not exact:
        return ""
    return f"KL(data‖model) = {exact['kl']:.3f} nats"


def _landscape_2d(energy_fn, dataset, domain, samples, x_train, exact):
    shown_s, shown_d = samples[:SHOWN_POINTS], x_train[:SHOWN_POINTS]
    if dataset not in datasets.DENSITIES:
        return plotting.plot_landscape(
            energy_fn,
            domain=domain,
            samples=shown_s,
            data=shown_d,
            colorbar=True,
            title="model density, samples and data",
        )
    density = datasets.get_density(dataset)
    fig, (ax_true, ax_model) = plt.subplots(1, 2, figsize=(11, 5))

    def true_energy(p):
        return -density.log_prob(p)

    # one colour scale: the higher of the two maxima (computed on the same grid)
    top = []
    for fn in (true_energy, energy_fn):
        probe = plotting.plot_landscape(fn, domain=domain)
        top.append(float(probe.axes[0].images[0].get_array().max()))
        plt.close(probe)
    vmax = max(top)
    plotting.plot_landscape(
        true_energy,
        domain=domain,
        ax=ax_true,
        data=shown_d,
        vmax=vmax,
        title=f"{dataset}: true density and training data",
    )
    plotting.plot_landscape(
        energy_fn,
        domain=domain,
        ax=ax_model,
        samples=shown_s,
        vmax=vmax,
        colorbar=True,
        title=f"model density and samples\n{_kl_text(exact)}",
    )
    fig.tight_layout()
    return fig


def _image_grids(samples, x_train, domain, count=64):
    nrow = int(math.sqrt(count))
    fig, (ax_s, ax_d) = plt.subplots(1, 2, figsize=(10, 5.4))
    plotting.plot_image_grid(
        samples[:count], nrow=nrow, value_range=domain, ax=ax_s,
        title=f"model samples ({min(count, len(samples))})",
    )  # fmt: skip
    plotting.plot_image_grid(
        x_train[:count], nrow=nrow, value_range=domain, ax=ax_d,
        title=f"training images ({min(count, len(x_train))})",
    )  # fmt: skip
    fig.tight_layout()
    return fig


def class_samples_figure(
    samples, labels, domain=None, per_class: int = 10, title: str | None = None
):
    """Class-conditional samples: for images, one row per class present in
    ``labels`` (its first ``per_class`` samples, the class number at the left);
    for 2D points, a scatter plot with one colour per class.

    Args:
        samples: ``(n, h, w, c)`` images or ``(n, 2)`` points.
        labels: ``(n,)`` the class each sample was drawn for.
        domain: the data's box (the images' value range, the plot's limits).
        per_class: images shown per class (a row).
        title: the figure's title.
    """
    samples, labels = np.asarray(samples), np.asarray(labels).reshape(-1)
    if len(samples) != len(labels) or len(samples) == 0:
        raise ValueError(f"{len(samples)} samples for {len(labels)} labels")
    classes = [int(c) for c in np.unique(labels)]
    if samples.ndim == 2 and samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(6, 6))
        colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            plotting.plot_samples(
                samples[labels == c],
                ax=ax,
                domain=domain,
                color=to_hex(colours(i % colours.N)),
                label=f"class {c}",
            )
        ax.legend(loc="upper right", fontsize="small", markerscale=3)
        ax.set_title(title or "class-conditional samples")
        fig.tight_layout()
        return fig
    if samples.ndim != 4:
        raise ValueError(
            f"class samples must be (n, 2) points or (n, h, w, c) images, got "
            f"{samples.shape}"
        )
    blank = np.full(samples.shape[1:], -np.inf)  # clipped to the lowest value
    rows = []
    for c in classes:
        row = list(samples[labels == c][:per_class])
        rows += row + [blank] * (per_class - len(row))
    value_range = domain if domain is not None else (samples.min(), samples.max())
    fig = plotting.plot_image_grid(
        np.stack(rows), nrow=per_class, value_range=value_range, title=title
    )
    ax = fig.axes[0]
    height = samples.shape[1]
    for r, c in enumerate(classes):  # 1 pixel of padding around each tile
        ax.text(-1.5, 1 + r * (height + 1) + (height - 1) / 2, str(c),
                ha="right", va="center", fontsize=9)  # fmt: skip
    return fig


def _curves(rows):
    if not rows:
        return None
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys and k not in _SKIP]
    history = {k: [row.get(k, np.nan) for row in rows] for k in keys}
    train = [k for k in keys if not k.startswith("val_")]
    train = [k for k in train if np.all(np.isfinite(np.asarray(history[k], float)))]
    if not train:
        return None
    steps = [row.get("step", i + 1) for i, row in enumerate(rows)]
    history = {k: v for k, v in history.items() if k in train or k[4:] in train}
    return plotting.plot_training_curves(
        history,
        keys=train,
        x=steps,
        xlabel="optimizer step",
        title="training curves (validation: the first test points)",
    )


def write_run_figures(
    out_dir,
    energy_fn,
    *,
    dataset: str,
    x_train,
    samples,
    history_rows,
    domain,
    exact=None,
    class_samples=None,
) -> list[Path]:
    """Write a run's figures into ``out_dir``; returns the paths written.

    Args:
        out_dir: the (staging) run folder.
        energy_fn: NumPy energies of NumPy points (2D data only).
        dataset: the run's dataset name (a built-in density gets its true
            density drawn beside the model's).
        x_train: the training data.
        samples: the model's samples.
        history_rows: ``history.csv``'s rows (``epoch``, ``step``, metrics).
        domain: the data's box.
        exact: the exact 2D metrics, for the title.
        class_samples: a joint model's ``(samples, labels)``: class-conditional
            samples (``class_samples.png``, images and 2D points).
    """
    out = Path(out_dir)
    written = []
    if x_train.ndim == 2 and x_train.shape[1] == 2:
        fig = _landscape_2d(energy_fn, dataset, domain, samples, x_train, exact)
        written.append(plotting.save_figure(fig, out / "landscape.png"))
        fig = plotting.plot_samples(
            samples,
            domain=domain,
            data=x_train[: len(samples)],
            title="model samples over the data",
        )
        written.append(plotting.save_figure(fig, out / "samples.png"))
    elif x_train.ndim == 4:
        fig = _image_grids(samples, x_train, domain)
        written.append(plotting.save_figure(fig, out / "samples.png"))
    if class_samples is not None and (x_train.ndim == 4 or x_train.shape[1:] == (2,)):
        x, y = class_samples
        fig = class_samples_figure(
            x,
            y,
            domain=domain,
            title="class-conditional samples, one row per class\n(chains on "
            "E(x, y) = −k f_y(x), from the model's sampler)"
            if x_train.ndim == 4
            else "class-conditional samples (chains on E(x, y) = −k f_y(x))",
        )
        written.append(plotting.save_figure(fig, out / "class_samples.png"))
    fig = _curves(history_rows)
    if fig is not None:
        written.append(plotting.save_figure(fig, out / "curves.png"))
    return written
