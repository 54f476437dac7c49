"""SampleSnapshot: samples as PNG files and TensorBoard images, every N epochs."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deel_ebm import plotting
from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_count, check_domain, check_path, check_positive
from deel_ebm.callbacks._base import ConfigMixin

__all__ = ["SampleSnapshot"]

DEFAULT_NUM_SAMPLES = 256
SNAPSHOT_RESOLUTION = 100


@keras.utils.register_keras_serializable(package="deel_ebm")
class SampleSnapshot(ConfigMixin, keras.callbacks.Callback):
    """Draws samples every few epochs and saves a picture of them.

    For 2-D data the picture is the model's density on a grid over ``domain``
    with the samples on top (:func:`~deel_ebm.plotting.plot_landscape`); for images
    ``(h, w, 1 or 3)`` it is a grid of samples
    (:func:`~deel_ebm.plotting.plot_image_grid`, values mapped from the buffer's
    domain). The PNG goes to ``folder/samples_epoch0001.png`` ... and, with
    ``log_dir``, into a TensorBoard image summary ``samples`` under
    ``log_dir/samples`` (step = epoch number, from 1). The mean energy of the
    samples is logged as ``sample_energy`` on the epochs with a snapshot (like
    Keras' ``val_`` metrics with ``validation_freq``). Chains start from the
    buffer's prior with seed ``epoch + 1``: snapshots are reproducible and do not
    change the training's random stream.

    Args:
        every_n_epochs: period in epochs (>= 1).
        folder: directory for the PNG files (created if needed).
        num_samples: number of chains (>= 1).
        num_steps: chain length (>= 0; default: the model sampler's).
        domain: ``(low, high)`` plotted for 2-D data (default: the buffer's domain).
        log_dir: TensorBoard log directory.

    Raises:
        TypeError / ValueError: when neither ``folder`` nor ``log_dir`` is given,
            on a bad argument, or (at the start of training) for samples that are
            neither 2-D points nor images.

    Example:
        >>> snap = SampleSnapshot(every_n_epochs=2, folder="runs/samples",
        ...                       log_dir="runs/tb", num_steps=5)
        >>> history = model.fit(x, epochs=2, callbacks=[snap], verbose=0)
        >>> snap.paths[-1]
        PosixPath('runs/samples/samples_epoch0002.png')
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        folder=None,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        num_steps: int | None = None,
        domain=None,
        log_dir=None,
    ):
        super().__init__()
        folder, log_dir = check_path("folder", folder), check_path("log_dir", log_dir)
        if folder is None and log_dir is None:
            raise ValueError("SampleSnapshot needs a folder or a log_dir, got neither")
        self.every_n_epochs = check_positive(
            "every_n_epochs", every_n_epochs, integer=True
        )
        self.folder = None if folder is None else Path(folder)
        self.num_samples = check_positive("num_samples", num_samples, integer=True)
        self.num_steps = check_count("num_steps", num_steps, allow_none=True)
        self.domain = check_domain(domain, allow_none=True)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.paths = []
        self._writer = None
        self._kind = None

    def on_train_begin(self, logs=None):
        shape = tuple(self.model.sample_shape)
        if shape == (2,):
            self._kind = "2d"
        elif len(shape) == 3 and shape[-1] in (1, 3):
            self._kind = "image"
        else:
            raise ValueError(
                f"SampleSnapshot draws 2-D points or images (h, w, 1|3); the model's "
                f"samples have shape {shape}"
            )
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "samples"))

    def _figure(self, samples, step):
        title = f"epoch {step}"
        if self._kind == "2d":
            domain = self.domain or self.model.buffer.domain
            return plotting.plot_landscape(
                lambda x: self.model.energy(np.asarray(x, np.float32)).numpy(),
                domain=domain,
                resolution=SNAPSHOT_RESOLUTION,
                samples=samples,
                title=title,
            )
        return plotting.plot_image_grid(
            samples, value_range=self.model.buffer.domain, title=title
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        step = epoch + 1
        samples = self.model.sample(
            self.num_samples, num_steps=self.num_steps, seed=step
        )
        energy = float(tf.reduce_mean(self.model.energy(samples)))
        png = io.BytesIO()
        fig = self._figure(samples.numpy(), step)
        try:
            fig.savefig(
                png, format="png", dpi=plotting.DEFAULT_DPI, bbox_inches="tight"
            )
        finally:
            plt.close(fig)
        png = png.getvalue()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"samples_epoch{step:04d}.png"
            path.write_bytes(png)
            self.paths.append(path)
        if self._writer is not None:
            image = tf.image.decode_png(png, channels=4)[None]
            with self._writer.as_default():
                tf.summary.image("samples", image, step=step)
            self._writer.flush()
        if logs is not None:
            logs["sample_energy"] = energy

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {
            "every_n_epochs": self.every_n_epochs,
            "folder": None if self.folder is None else str(self.folder),
            "num_samples": self.num_samples,
            "num_steps": self.num_steps,
            "domain": None if self.domain is None else list(self.domain),
            "log_dir": None if self.log_dir is None else str(self.log_dir),
        }
