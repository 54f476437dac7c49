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
    "maximum_likelihood",
    "negative_weights",
    "ContrastiveDivergenceLoss",
    "HingeKRLoss",
    "MaximumLikelihoodLoss",
    "get",
]

DEFAULT_L2_WEIGHT = 0.1
DEFAULT_HKR_ALPHA = 10.0
DEFAULT_MARGIN = 1.0
DEFAULT_ANCHOR = 0.01


def negative_weights(e_neg, log_q=None):
    r"""Self-normalised importance weights of negatives, summing to 1 (no gradient).

    Chain samples (``log_q=None``) stand for draws of the model itself: equal
    weights. Draws of a proposal with log-density ``log_q`` (any additive
    constant) get :math:`w = \operatorname{softmax}(-E(x^-) - \log q(x^-))`, so
    :math:`\sum_i w_i\, g(x^-_i)` estimates :math:`\mathbb E_{p}[g]`.
    """
    if log_q is None:
        m = tf.shape(e_neg)[0]
        return tf.fill([m], 1.0 / tf.cast(m, e_neg.dtype))
    return tf.nn.softmax(tf.stop_gradient(-e_neg - log_q))


def _neg_mean(values, weights):
    return tf.reduce_sum(weights * values)


def contrastive_divergence(e_pos, e_neg, l2_weight=DEFAULT_L2_WEIGHT, log_q=None):
    r"""Maximum-likelihood surrogate with an L2 energy regulariser (IGEBM).

    .. math:: \mathcal L = \overline{E(x^+)} - \overline{E(x^-)}
       + \lambda\,(\overline{E(x^+)^2} + \overline{E(x^-)^2})

    Args:
        e_pos: energies of data, shape ``(n,)``.
        e_neg: energies of chain samples, shape ``(m,)``.
        l2_weight: :math:`\lambda \ge 0`.
        log_q: log-density of the proposal the negatives were drawn from (the
            means over negatives are then weighted, :func:`negative_weights`);
            ``None`` for chain samples.

    Returns:
        A scalar.
    """
    w = negative_weights(e_neg, log_q)
    cd = tf.reduce_mean(e_pos) - _neg_mean(e_neg, w)
    reg = tf.reduce_mean(tf.square(e_pos)) + _neg_mean(tf.square(e_neg), w)
    return cd + l2_weight * reg


def hinge_kr(e_pos, e_neg, alpha=DEFAULT_HKR_ALPHA, margin=DEFAULT_MARGIN, log_q=None):
    r"""Hinge-Kantorovich-Rubinstein loss written on energies.

    .. math:: \mathcal L = \overline{E(x^+)} - \overline{E(x^-)}
       + \alpha\,\big(\overline{(m + E(x^+))_+} + \overline{(m - E(x^-))_+}\big)

    The KR term estimates :math:`-k\,W_1(p_{data}, p_{neg})`; the hinge keeps data
    below :math:`-m` and negatives above :math:`+m`, which bounds the energies
    without an L2 term. With ``log_q`` the means over negatives are weighted
    (:func:`negative_weights`).
    """
    w = negative_weights(e_neg, log_q)
    kr = tf.reduce_mean(e_pos) - _neg_mean(e_neg, w)
    hinge = tf.reduce_mean(tf.nn.relu(margin + e_pos)) + _neg_mean(
        tf.nn.relu(margin - e_neg), w
    )
    return kr + alpha * hinge


def maximum_likelihood(e_pos, e_neg, log_q=None, anchor=DEFAULT_ANCHOR):
    r"""Negative log-likelihood with an importance-sampled :math:`\log Z`.

    .. math:: \mathcal L = \overline{E(x^+)} + \log \hat Z
       + a\,\overline{E(x^+)}^2,\qquad \log\hat Z = \log\frac1M\sum_i
       e^{-E(x^-_i) - \log q(x^-_i)}.

    Its gradient is :math:`\overline{\nabla E(x^+)} - \sum_i w_i \nabla
    E(x^-_i)` with the weights of :func:`negative_weights`: the
    self-normalised importance estimate of the likelihood's gradient. With a
    normalised ``q`` its value estimates the batch's NLL (a log worth reading).
    For chain samples (``log_q=None``, :math:`q \approx p`) the gradient is the
    contrastive-divergence one and the value is :math:`\overline{E(x^+)}`.
    The small ``anchor`` term pins the energy's free additive constant.
    """
    if log_q is None:  # q = p: log w = 0 in value, −∇E in gradient
        log_w = -e_neg + tf.stop_gradient(e_neg)
    else:
        log_w = -e_neg - log_q
    m = tf.cast(tf.shape(e_neg)[0], e_neg.dtype)
    log_z = tf.reduce_logsumexp(log_w) - tf.math.log(m)
    mean_pos = tf.reduce_mean(e_pos)
    return mean_pos + log_z + anchor * tf.square(mean_pos)


class _EnergyLoss(keras.layers.Layer):
    """Base: a loss of ``(e_pos, e_neg)`` whose weights live in variables."""

    def _weight(self, name, value):
        return hyper_parameter(self, name, value)

    def call(self, e_pos, e_neg, log_q=None):
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

    def call(self, e_pos, e_neg, log_q=None):
        return contrastive_divergence(e_pos, e_neg, self.l2_weight, log_q)

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

    def call(self, e_pos, e_neg, log_q=None):
        return hinge_kr(e_pos, e_neg, self.alpha, self.margin, log_q)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=float(self.alpha.numpy()), margin=float(self.margin.numpy())
        )
        return config


@keras.utils.register_keras_serializable(package="deel_ebm")
class MaximumLikelihoodLoss(_EnergyLoss):
    """:func:`maximum_likelihood` as a serialisable object (the default loss).

    Args:
        anchor: weight of the term that pins the energy's additive constant.

    Example:
        >>> loss = MaximumLikelihoodLoss()
        >>> value = loss(tf.constant([-1.0, -2.0]), tf.constant([1.0, 0.5]),
        ...              log_q=tf.constant([-2.0, -2.0]))
    """

    def __init__(self, anchor: float = DEFAULT_ANCHOR, **kwargs):
        super().__init__(**kwargs)
        self.anchor = self._weight("anchor", check_non_negative("anchor", anchor))

    def call(self, e_pos, e_neg, log_q=None):
        return maximum_likelihood(e_pos, e_neg, log_q, self.anchor)

    def get_config(self):
        config = super().get_config()
        config.update(anchor=float(self.anchor.numpy()))
        return config


_ALIASES = {
    "ml": MaximumLikelihoodLoss,
    "cd": ContrastiveDivergenceLoss,
    "hkr": HingeKRLoss,
}


def get(identifier):
    """A loss object from ``None`` (maximum likelihood), ``"ml"``, ``"cd"``,
    ``"hkr"`` or an instance."""
    if identifier is None:
        return MaximumLikelihoodLoss()
    if isinstance(identifier, _EnergyLoss):
        return identifier
    if isinstance(identifier, str) and identifier in _ALIASES:
        return _ALIASES[identifier]()
    raise ValueError(
        f"loss must be one of {sorted(_ALIASES)} or a deel_ebm loss object, "
        f"got {identifier!r}"
    )
