"""The figures of a run folder, made to be read without the code.

- ``landscape.png`` (2D data): for a built-in density, the true density beside the
  model's on one colour scale, with the exact KL in the title; the model's panel
  shows its samples and the data points. For other 2D data, the model's density
  with samples and data.
- ``samples.png``: 2D samples over the data, or a grid of sampled images beside a
  grid of training images.
- ``curves.png``: each logged metric against the optimizer step, training and
  validation, with the y axis saying what the metric is.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deel_ebm import datasets, plotting

__all__ = ["write_run_figures", "SHOWN_POINTS"]

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
    fig = _curves(history_rows)
    if fig is not None:
        written.append(plotting.save_figure(fig, out / "curves.png"))
    return written
