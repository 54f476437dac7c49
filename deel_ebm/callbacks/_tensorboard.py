r"""tensorboard_callbacks: the monitors and Keras' TensorBoard, in the right order."""

from __future__ import annotations

from pathlib import Path

from deel_ebm._backend import keras
from deel_ebm._checks import check_path, check_positive
from deel_ebm.callbacks._energy_gap import EnergyGapMonitor
from deel_ebm.callbacks._lipschitz import LipschitzCertificate, _as_probe_points
from deel_ebm.callbacks._snapshot import SampleSnapshot

__all__ = ["tensorboard_callbacks", "MAX_PROBE_POINTS", "TENSORBOARD_NUM_SAMPLES"]

#: at most this many ``probe_points`` go to the certificate's lower bound
MAX_PROBE_POINTS = 256
#: chains drawn for each TensorBoard sample image
TENSORBOARD_NUM_SAMPLES = 64


def tensorboard_callbacks(
    log_dir,
    probe_points=None,
    every_n_epochs: int = 1,
    num_samples: int = TENSORBOARD_NUM_SAMPLES,
    num_steps: int | None = None,
    snapshot_folder=None,
) -> list:
    r"""The callbacks that put a training run into TensorBoard, in working order.

    Returns ``[EnergyGapMonitor(), LipschitzCertificate(...), SampleSnapshot(...),
    keras.callbacks.TensorBoard(log_dir)]``: the three monitors write into
    ``logs`` before Keras' ``TensorBoard`` reads them, so ``log_dir/train`` (and
    ``log_dir/validation`` with validation data) holds the scalars
    ``epoch_loss``, ``epoch_e_pos``, ``epoch_e_neg``, ``epoch_energy_gap``,
    ``epoch_gap_status``, ``epoch_lip_upper``, ``epoch_lip_lower``,
    ``epoch_k_coef_lip``, ``epoch_lip_violation`` and ``epoch_sample_energy``;
    ``log_dir/samples`` holds the image ``samples`` (a 2-D landscape with samples,
    or a grid of images) every ``every_n_epochs`` epochs. Add other callbacks
    (e.g. :class:`~deel_ebm.callbacks.DivergenceGuard`) before the last element.
    View with ``tensorboard --logdir log_dir``.

    Args:
        log_dir: TensorBoard log directory (str or path).
        probe_points: optional array ``(m, *sample_shape)`` of data (e.g. the
            validation set) added to the certificate's lower bound; the first
            :data:`MAX_PROBE_POINTS` are used.
        every_n_epochs: period of the sample images in epochs (>= 1).
        num_samples: chains per sample image (>= 1).
        num_steps: chain length of the sample images (default: the model's).
        snapshot_folder: also write each sample image as a PNG file there.

    Returns:
        A list of four callbacks, to pass as ``fit(..., callbacks=...)``.

    Raises:
        TypeError / ValueError: on a bad argument (named in the message).

    Example:
        >>> callbacks = tensorboard_callbacks("runs/tb", probe_points=x, num_steps=5)
        >>> history = model.fit(x, epochs=2, verbose=0, callbacks=callbacks)
        >>> sorted(path.name for path in Path("runs/tb").iterdir())
        ['samples', 'train']
    """
    log_dir = check_path("log_dir", log_dir, allow_none=False)
    every_n_epochs = check_positive("every_n_epochs", every_n_epochs, integer=True)
    if probe_points is not None:
        probe_points = _as_probe_points(probe_points)[:MAX_PROBE_POINTS]
    return [
        EnergyGapMonitor(),
        LipschitzCertificate(probe_points=probe_points),
        SampleSnapshot(
            every_n_epochs=every_n_epochs,
            folder=snapshot_folder,
            num_samples=num_samples,
            num_steps=num_steps,
            log_dir=log_dir,
        ),
        keras.callbacks.TensorBoard(str(Path(log_dir))),
    ]
