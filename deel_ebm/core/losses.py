r"""Contrastive-divergence losses on energies of data and of chain samples.

Pure functions of the two energy batches, each wrapped in a small serialisable
class whose weights are ``tf.Variable``\ s (a callback can schedule them without a
retrace), following deel-lip's ``losses.py``.

With :math:`E = k f` and :math:`f` 1-Lipschitz, the contrastive term
:math:`\mathbb E_{data}[f] - \mathbb E_{neg}[f]` is the Kantorovich-Rubinstein dual
of the Wasserstein-1 distance between data and negatives: the EBM critic is a
WGAN critic whose generator is the sampler. :class:`HingeKRLoss` is deel-lip's HKR
objective written for energies (data below ``-margin``, negatives above
``+margin``), as in DEEL's one-class signed-distance work.
"""

from __future__ import annotations

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_non_negative
from deel_ebm.core._hyper import hyper_parameter

__all__ = [
    "contrastive_divergence",
    "hinge_kr",
    "ContrastiveDivergenceLoss",
    "HingeKRLoss",
    "get",
]

DEFAULT_L2_WEIGHT = 0.1
DEFAULT_HKR_ALPHA = 10.0
DEFAULT_MARGIN = 1.0


def contrastive_divergence(e_pos, e_neg, l2_weight=DEFAULT_L2_WEIGHT):
    r"""Maximum-likelihood surrogate with an L2 energy regulariser (IGEBM).

    .. math:: \mathcal L = \overline{E(x^+)} - \overline{E(x^-)}
       + \lambda\,(\overline{E(x^+)^2} + \overline{E(x^-)^2})

    Args:
        e_pos: energies of data, shape ``(n,)``.
        e_neg: energies of chain samples, shape ``(m,)``.
        l2_weight: :math:`\lambda \ge 0`.

    Returns:
        A scalar.
    """
    cd = tf.reduce_mean(e_pos) - tf.reduce_mean(e_neg)
    reg = tf.reduce_mean(tf.square(e_pos)) + tf.reduce_mean(tf.square(e_neg))
    return cd + l2_weight * reg


def hinge_kr(e_pos, e_neg, alpha=DEFAULT_HKR_ALPHA, margin=DEFAULT_MARGIN):
    r"""Hinge-Kantorovich-Rubinstein loss written on energies.

    .. math:: \mathcal L = \overline{E(x^+)} - \overline{E(x^-)}
       + \alpha\,\big(\overline{(m + E(x^+))_+} + \overline{(m - E(x^-))_+}\big)

    The KR term estimates :math:`-k\,W_1(p_{data}, p_{neg})`; the hinge keeps data
    below :math:`-m` and negatives above :math:`+m`, which bounds the energies
    without an L2 term.
    """
    kr = tf.reduce_mean(e_pos) - tf.reduce_mean(e_neg)
    hinge = tf.reduce_mean(tf.nn.relu(margin + e_pos)) + tf.reduce_mean(
        tf.nn.relu(margin - e_neg)
    )
    return kr + alpha * hinge


class _EnergyLoss(keras.layers.Layer):
    """Base: a loss of ``(e_pos, e_neg)`` whose weights live in variables."""

    def _weight(self, name, value):
        return hyper_parameter(self, name, value)

    def call(self, e_pos, e_neg):
        raise NotImplementedError


@keras.utils.register_keras_serializable(package="deel_ebm")
class ContrastiveDivergenceLoss(_EnergyLoss):
    """:func:`contrastive_divergence` as a serialisable object.

    Args:
        l2_weight: weight of the L2 energy regulariser (IGEBM uses 1).

    Example:
        >>> loss = ContrastiveDivergenceLoss(l2_weight=0.1)
        >>> value = loss(tf.constant([-1.0, -2.0]), tf.constant([1.0, 0.5]))
    """

    def __init__(self, l2_weight: float = DEFAULT_L2_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        self.l2_weight = self._weight(
            "l2_weight", check_non_negative("l2_weight", l2_weight)
        )

    def call(self, e_pos, e_neg):
        return contrastive_divergence(e_pos, e_neg, self.l2_weight)

    def get_config(self):
        config = super().get_config()
        config.update(l2_weight=float(self.l2_weight.numpy()))
        return config


@keras.utils.register_keras_serializable(package="deel_ebm")
class HingeKRLoss(_EnergyLoss):
    """:func:`hinge_kr` as a serialisable object.

    Args:
        alpha: weight of the hinge term.
        margin: the hinge margin, in energy units.

    Example:
        >>> loss = HingeKRLoss(alpha=10.0, margin=1.0)
        >>> value = loss(tf.constant([-1.0, -2.0]), tf.constant([1.0, 0.5]))
    """

    def __init__(self, alpha=DEFAULT_HKR_ALPHA, margin=DEFAULT_MARGIN, **kwargs):
        super().__init__(**kwargs)
        self.alpha = self._weight("alpha", check_non_negative("alpha", alpha))
        self.margin = self._weight("margin", check_non_negative("margin", margin))

    def call(self, e_pos, e_neg):
        return hinge_kr(e_pos, e_neg, self.alpha, self.margin)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=float(self.alpha.numpy()), margin=float(self.margin.numpy())
        )
        return config


_ALIASES = {"cd": ContrastiveDivergenceLoss, "hkr": HingeKRLoss}


def get(identifier):
    """A loss object from ``None`` (CD), ``"cd"``, ``"hkr"`` or an instance."""
    if identifier is None:
        return ContrastiveDivergenceLoss()
    if isinstance(identifier, _EnergyLoss):
        return identifier
    if isinstance(identifier, str) and identifier in _ALIASES:
        return _ALIASES[identifier]()
    raise ValueError(
        f"loss must be one of {sorted(_ALIASES)} or a deel_ebm loss object, "
        f"got {identifier!r}"
    )
