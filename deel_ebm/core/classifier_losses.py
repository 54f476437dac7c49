r"""Classification terms of a joint model: cross-entropy, or deel-lip's multiclass HKR.

A :class:`~deel_ebm.core.joint.JointEnergyModel` reads a classifier ``f`` with
``C`` logits as ``p(y|x) = softmax(k f(x))``. Its loss is a classification term
on the labelled batch plus the generative term on ``E(x)``. Two classification
terms are offered, each a function of ``(labels, f)`` wrapped in a small
serialisable class whose weights are ``tf.Variable``\ s (as
:mod:`deel_ebm.core.losses`):

- :class:`CrossEntropyLoss`: ``−log softmax(k f(x))_y``, the likelihood of the
  labels (JEM's term);
- :class:`MulticlassHKRLoss`: deel-lip's ``MulticlassHKR`` on ``f``
  (Serrurier et al., CVPR 2021): for each class ``c``, the Kantorovich-Rubinstein
  term ``E[f_c | y = c] − E[f_c | y ≠ c]`` is maximised, and a hinge asks
  ``f_y ≥ m/2`` and ``f_c ≤ −m/2`` for ``c ≠ y`` (the positive hinge weighted by
  ``C − 1``). It maximises margins, which a 1-Lipschitz ``f`` turns into
  certified radii; ``k`` is then only the temperature of ``p(y|x)`` and of the
  energy.

The KR term compares class means within a batch: under a ``tf.distribute``
strategy each replica computes it on its own share of the batch (as deel-lip's
``MulticlassHKR`` with ``multi_gpu=False``).
"""

from __future__ import annotations

from deel_ebm._backend import keras, tf
from deel_ebm._checks import check_non_negative
from deel_ebm.core._hyper import hyper_parameter

__all__ = [
    "cross_entropy",
    "multiclass_hkr",
    "CrossEntropyLoss",
    "MulticlassHKRLoss",
    "DEFAULT_HKR_ALPHA",
    "DEFAULT_HKR_MARGIN",
    "NAMES",
    "get",
    "name_of",
]

#: deel-lip's MulticlassHKR settings measured on digits (benchmarks/bench_joint.py)
DEFAULT_HKR_ALPHA = 50.0
DEFAULT_HKR_MARGIN = 0.5


def cross_entropy(labels, f, k):
    """Mean ``−log softmax(k f)_y`` over the batch; ``labels`` ``(n,)`` int32."""
    logits = tf.cast(k, f.dtype) * f
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def multiclass_hkr(labels, f, alpha=DEFAULT_HKR_ALPHA, min_margin=DEFAULT_HKR_MARGIN):
    r"""deel-lip's ``MulticlassHKR(alpha, min_margin)`` of one-hot ``labels`` and ``f``.

    .. math:: \mathcal L = -\frac1C\sum_c \big(\overline{f_c}^{\,y=c}
       - \overline{f_c}^{\,y\neq c}\big) + \alpha\,\overline{\tfrac1C\sum_c
       w_c\,\mathrm{relu}(m/2 - s_c f_c)}

    with ``s_c = +1`` for the true class (weight ``w_c = C − 1``) and ``−1``
    otherwise (``w_c = 1``). A class absent from the batch adds nothing to the
    KR term (deel-lip's ``epsilon`` guard).
    """
    num_classes = tf.shape(f)[1]
    y = tf.one_hot(labels, num_classes, dtype=f.dtype)
    n = tf.cast(tf.shape(f)[0], f.dtype)
    count = tf.reduce_sum(y, axis=0)
    eps = tf.constant(1e-7, f.dtype)
    diff = y / (count + eps) - (1.0 - y) / (n - count + eps)
    kr = tf.reduce_mean(tf.reduce_sum(f * diff, axis=0))
    sign = 2.0 * y - 1.0
    hinge = tf.nn.relu(tf.cast(min_margin, f.dtype) / 2.0 - sign * f)
    weight = tf.where(sign > 0, tf.cast(num_classes, f.dtype) - 1.0, 1.0)
    return -kr + tf.cast(alpha, f.dtype) * tf.reduce_mean(weight * hinge)


class _ClassifierLoss(keras.layers.Layer):
    """Base: a loss of ``(labels, f, k)`` whose weights live in variables."""

    def _weight(self, name, value):
        return hyper_parameter(self, name, value)

    def call(self, labels, f, k):
        raise NotImplementedError


@keras.utils.register_keras_serializable(package="deel_ebm")
class CrossEntropyLoss(_ClassifierLoss):
    """:func:`cross_entropy` as a serialisable object.

    Example:
        >>> f = tf.constant([[0.1, 0.0], [0.0, 0.1]])
        >>> value = CrossEntropyLoss()(tf.constant([0, 1]), f, 10.0)
    """

    def call(self, labels, f, k):
        return cross_entropy(labels, f, k)


@keras.utils.register_keras_serializable(package="deel_ebm")
class MulticlassHKRLoss(_ClassifierLoss):
    """:func:`multiclass_hkr` as a serialisable object (``k`` is not used).

    Args:
        alpha: weight of the hinge term.
        min_margin: the margin ``m`` asked between ``f_y`` and the other logits,
            in units of ``f`` (a margin ``m`` certifies a radius ``m / √2``
            for a 1-Lipschitz logit vector).

    Example:
        >>> loss = MulticlassHKRLoss(alpha=50.0, min_margin=0.5)
        >>> f = tf.constant([[0.1, 0.0], [0.0, 0.1]])
        >>> value = loss(tf.constant([0, 1]), f, 10.0)
    """

    def __init__(
        self, alpha=DEFAULT_HKR_ALPHA, min_margin=DEFAULT_HKR_MARGIN, **kwargs
    ):
        super().__init__(**kwargs)
        self.alpha = self._weight("alpha", check_non_negative("alpha", alpha))
        self.min_margin = self._weight(
            "min_margin", check_non_negative("min_margin", min_margin)
        )

    def call(self, labels, f, k):
        return multiclass_hkr(labels, f, self.alpha, self.min_margin)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=float(self.alpha.numpy()),
            min_margin=float(self.min_margin.numpy()),
        )
        return config


_ALIASES = {"ce": CrossEntropyLoss, "hkr": MulticlassHKRLoss}
#: the names :func:`get` knows
NAMES = tuple(_ALIASES)


def get(identifier):
    """A classification loss from ``"ce"``, ``"hkr"`` or an instance."""
    if isinstance(identifier, _ClassifierLoss):
        return identifier
    if isinstance(identifier, str) and identifier in _ALIASES:
        return _ALIASES[identifier]()
    raise ValueError(
        f"classifier_loss must be one of {sorted(_ALIASES)} or a "
        f"deel_ebm.core.classifier_losses object, got {identifier!r}"
    )


def name_of(loss) -> str:
    """The name :func:`get` knows a loss object by (``"ce"``, ``"hkr"``), or its
    class name."""
    for name, cls in _ALIASES.items():
        if type(loss) is cls:
            return name
    return type(loss).__name__
