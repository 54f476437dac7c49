r"""CertifiedAccuracy: the certified robust accuracy of a joint model, per epoch."""

from __future__ import annotations

import numpy as np

from deel_ebm import certificates
from deel_ebm._backend import keras
from deel_ebm._checks import check_positive

__all__ = ["CertifiedAccuracy"]


class CertifiedAccuracy(keras.callbacks.Callback):
    r"""Accuracy and certified robust accuracy of a classifier-energy model.

    At the end of every ``every_n_epochs``-th epoch, on held-out ``(x, y)``,
    writes into the logs ``{prefix}accuracy`` and, for each radius ε,
    ``{prefix}certified_accuracy_{ε}``: the share of points classified correctly
    whose logit margin ``m`` certifies the prediction for every
    ``‖δ‖₂ ≤ ε`` (``m / (c k) > ε``,
    :meth:`~deel_ebm.JointEnergyModel.certified_radius`; a guarantee only for
    a Lipschitz network). List it before ``History``, ``CSVLogger`` or
    ``TensorBoard`` readers of the logs. It holds its data, so
    it is not serialised with the model.

    Args:
        x: inputs ``(n, *sample_shape)``.
        y: integer labels ``(n,)``.
        radii: the ℓ2 radii ε (default 0.1, 0.25, 0.5).
        every_n_epochs: how often to measure (>= 1).
        prefix: prefix of the log keys (default ``"val_"``).
        batch_size: evaluation batch size.

    Example:
        >>> net = deel_ebm.nets.lipschitz_classifier((2,), 2, units=(8, 8))
        >>> joint = deel_ebm.JointEnergyModel(net, k_coef_lip=5.0)
        >>> joint.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> y = (x[:, 0] > 0).astype("int64")
        >>> cb = CertifiedAccuracy(x, y, radii=(0.1,))
        >>> history = joint.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
        >>> sorted(k for k in history.history if "certified" in k)
        ['val_certified_accuracy_0.1']
    """

    def __init__(
        self,
        x,
        y,
        radii=certificates.DEFAULT_ROBUST_RADII,
        every_n_epochs: int = 1,
        prefix: str = "val_",
        batch_size: int = 1024,
    ):
        super().__init__()
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y).reshape(-1)
        if len(self.x) != len(self.y) or len(self.x) == 0:
            raise ValueError(
                f"x and y must hold the same positive number of samples, got "
                f"{len(self.x)} and {len(self.y)}"
            )
        self.radii = tuple(float(r) for r in radii)
        if any(not (np.isfinite(r) and r >= 0) for r in self.radii):
            raise ValueError(f"radii must be finite and >= 0, got {self.radii}")
        self.every_n_epochs = check_positive("every_n_epochs", every_n_epochs, True)
        self.prefix = str(prefix)
        self.batch_size = check_positive("batch_size", batch_size, True)
        #: ``[(epoch, {radius: accuracy})]`` of every measurement
        self.history = []

    def measure(self) -> dict:
        """``{0.0: accuracy, ε: certified accuracy, ...}`` of the model now."""
        model = self.model
        if not hasattr(model, "certified_radius"):
            raise TypeError(
                "CertifiedAccuracy needs a classifier-energy model "
                f"(JointEnergyModel), got {type(model).__name__}"
            )
        logits = model.logits(self.x, batch_size=self.batch_size).numpy()
        return certificates.certified_robust_accuracy(
            logits, self.y, model.k_coef_lip, self.radii, model.margin_factor
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        result = self.measure()
        self.history.append((epoch, result))
        if logs is not None:
            logs[f"{self.prefix}accuracy"] = result[0.0]
            for r in self.radii:
                logs[f"{self.prefix}certified_accuracy_{r:g}"] = result[r]
