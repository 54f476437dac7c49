r"""JointEnergyModel: a deel-lip classifier read as an energy model of ``(x, y)``.

A classifier ``f`` with ``C`` logits, 1-Lipschitz as a map to ``R^C``, defines
(JEM, Grathwohl et al., ICLR 2020)

.. math::

    E(x, y) = -k f_y(x), \qquad p(y \mid x) = \operatorname{softmax}(k f(x))_y,
    \qquad E(x) = -\log \sum_y e^{k f_y(x)}.

The marginal energy is k-Lipschitz: its gradient ``-k Σ_y p(y|x) ∇f_y(x)`` is
``k Jᵀp`` with ``‖J‖ ≤ 1`` and ``‖p‖₂ ≤ 1``. Everything :class:`EnergyModel`
does on ``E(x)`` (chains, replay buffer, proposals, callbacks, save/load,
export, strategies) carries over; training adds a classification term: the
loss is ``L_cls(y, f(x⁺)) + generative_weight · L_gen(E(x⁺), E(x⁻))``. With the
cross-entropy of ``p(y|x)`` as ``L_cls``, weight 1 and the maximum-likelihood
``L_gen``, it is the negative log-likelihood of ``(x, y)`` (JEM). The default
``L_cls`` is deel-lip's multiclass HKR on ``f``
(:mod:`deel_ebm.core.classifier_losses`), which asks for margins a 1-Lipschitz
``f`` turns into certified radii, and the default training chains start from a
mixture fitted to the data (``base_starts=1``).

A prediction whose top two logits ``k f`` differ by ``m`` is certified for
every perturbation ``‖δ‖₂ < m / (c k)``, where ``c = √2`` when the logit vector
is 1-Lipschitz (:func:`deel_ebm.nets.lipschitz_classifier`) and ``c = 2`` when
only each logit is (:func:`deel_ebm.nets.logit_margin_factor`):
:meth:`JointEnergyModel.certified_radius`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from deel_ebm import nets
from deel_ebm._backend import keras, tf
from deel_ebm.core import classifier_losses
from deel_ebm.core._random import categorical
from deel_ebm.core.model import EnergyModel

__all__ = [
    "JointEnergyModel",
    "as_labels",
    "DEFAULT_GENERATIVE_WEIGHT",
    "DEFAULT_CLASSIFIER_LOSS",
    "CLASSIFIER_LOSSES",
]

#: the weight of the generative term. On digits (conv classifier, k = 64, 500
#: steps, HKR, chains from the base; benchmarks/bench_joint.py, seed 0) 0.02
#: and 0.05 measured alike; 0.2 lowered the energy's OOD AUROC on blurred
#: digits (0.932 against 0.951) and the certified accuracy at radius 0.5
DEFAULT_GENERATIVE_WEIGHT = 0.05
#: the classification term (classifier_losses.get): deel-lip's multiclass HKR,
#: which beat the cross-entropy on accuracy, calibration, certified accuracy and
#: the energy's OOD AUROC on digits (benchmarks/bench_joint.py)
DEFAULT_CLASSIFIER_LOSS = "hkr"
#: the classification terms by name
CLASSIFIER_LOSSES = classifier_losses.NAMES
#: pool draws per conditional sample and class (sampling-importance-resampling:
#: the pool holds about this many draws of each class per sample asked)
RESAMPLE_FACTOR = 8


def as_labels(y, num_classes: int, n: int | None = None, name: str = "y") -> np.ndarray:
    """Integer class labels ``(n,)`` (int32) from integer labels or one-hot rows.

    Raises:
        ValueError: for labels outside ``[0, num_classes)``, rows that are not
            one-hot, a non-integer value, or a length other than ``n``.
    """
    if y is None:
        raise ValueError(f"{name}: a JointEnergyModel needs class labels")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == num_classes and y.shape[1] > 1:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"{name}: one-hot labels must be numbers, got {y.dtype}")
        ones = np.isclose(y, 1.0)
        if not (np.all(ones | np.isclose(y, 0.0)) and np.all(ones.sum(1) == 1)):
            raise ValueError(
                f"{name}: rows of (n, {num_classes}) labels must be one-hot"
            )
        y = np.argmax(y, axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be integer labels (n,) or one-hot rows (n, {num_classes}), "
            f"got shape {y.shape}"
        )
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must hold integer class labels, got {y.dtype}")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise ValueError(f"{name} must hold integer class labels")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name}: labels must lie in [0, {num_classes - 1}], got "
            f"{int(y.min())}..{int(y.max())}"
        )
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels for {n} samples")
    return y.astype(np.int32)


@keras.utils.register_keras_serializable(package="deel_ebm")
class JointEnergyModel(EnergyModel):
    r"""A classifier and an energy model in one: :math:`p(x, y) \propto e^{k f_y(x)}`.

    Args:
        network: a Keras classifier mapping ``(n, *input_shape)`` to ``C ≥ 2``
            logits ``(n, C)``; for a certified model, deel-lip layers only
            (:func:`deel_ebm.nets.lipschitz_classifier`).
        k_coef_lip: ``k``: the logits are ``k f`` (the temperature of
            ``p(y|x)``) and the marginal energy is k-Lipschitz. Default as
            :class:`EnergyModel` (``max(40, d)`` above 8 dimensions).
        generative_weight: weight of the generative term (``≥ 0``; default
            :data:`DEFAULT_GENERATIVE_WEIGHT` = 0.05; 1: the joint likelihood
            with the cross-entropy; 0: a plain classifier, though the chains
            still run).
        classifier_loss: the classification term: ``"ce"`` (the cross-entropy
            of ``p(y|x)``, JEM's), ``"hkr"`` (deel-lip's multiclass HKR on ``f``:
            margins, hence certified radii) or a
            :mod:`deel_ebm.core.classifier_losses` object; default
            :data:`DEFAULT_CLASSIFIER_LOSS` (``"hkr"``).
        **kwargs: every other argument of :class:`EnergyModel` (sampler,
            buffer, loss of the generative term, proposal, base,
            ``base_starts``, seed, ...). Unlike an EnergyModel, the training
            chains start from fresh draws of the fitted base
            (``base_starts=1``) when the model has one (9 to 64 dimensions):
            short-run chains from a mixture fitted to the data, whose blurred,
            mixed draws teach the energy to rise off the data.

    ``fit(x, y)`` takes integer labels or one-hot rows; ``predict(x)`` returns
    class probabilities ``(n, C)``; ``energy(x)`` the marginal energy;
    ``sample(n, y=c)`` class-conditional samples.

    Example:
        >>> data = deel_ebm.datasets.load_digits()
        >>> net = deel_ebm.nets.lipschitz_classifier((8, 8, 1), num_classes=10)
        >>> model = deel_ebm.JointEnergyModel(net)
        >>> model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        >>> history = model.fit(data.x_train, data.y_train, epochs=1, verbose=0)
        >>> model.predict(data.x_test[:4], verbose=0).shape
        (4, 10)
    """

    #: training chains start from fresh draws of the fitted base (the mixture
    #: fitted to the data), not from the replay buffer, when the model has one
    DEFAULT_BASE_STARTS = 1.0

    def __init__(
        self,
        network,
        k_coef_lip: float | None = None,
        generative_weight: float = DEFAULT_GENERATIVE_WEIGHT,
        classifier_loss=None,
        **kwargs,
    ):
        if isinstance(generative_weight, bool) or not isinstance(
            generative_weight, numbers.Real
        ):
            raise TypeError(
                f"generative_weight must be a number, got {generative_weight!r}"
            )
        if not (math.isfinite(generative_weight) and generative_weight >= 0):
            raise ValueError(
                f"generative_weight must be finite and >= 0, got {generative_weight}"
            )
        super().__init__(network, k_coef_lip=k_coef_lip, **kwargs)
        self.generative_weight = float(generative_weight)
        self.classifier_loss = classifier_losses.get(
            DEFAULT_CLASSIFIER_LOSS if classifier_loss is None else classifier_loss
        )
        #: the Lipschitz constant of a margin f_i − f_j (√2 or 2)
        self.margin_factor = nets.logit_margin_factor(self.network)

    # ------------------------------------------------------------ construction
    def _check_scalar_output(self):
        out = self.network(tf.zeros((2, *self.sample_shape)), training=False)
        if len(out.shape) != 2 or out.shape[1] is None or out.shape[1] < 2:
            raise ValueError(
                "a JointEnergyModel's network must return C >= 2 logits per sample, "
                f"shape (n, C); it returns {tuple(out.shape[1:])} per sample"
            )
        self.num_classes = int(out.shape[1])

    def _extra_metric_names(self):
        return ("ce", "accuracy")

    # ---------------------------------------------------------------- outputs
    def _logits(self, inputs, training=False):
        out = self._network_output(inputs, training)
        return tf.cast(self.k_tensor(), out.dtype) * out

    def call(self, inputs, training=False):
        """Marginal energies ``−logsumexp_y k f_y(x)``, shape ``(n,)``."""
        return -tf.reduce_logsumexp(self._logits(inputs, training), axis=1)

    def logits(self, x, batch_size: int | None = None) -> tf.Tensor:
        """The logits ``k f(x)``, shape ``(n, C)``; ``softmax`` gives ``p(y|x)``."""
        return self._batched(self._logits, x, batch_size)

    def predict_proba(self, x, batch_size: int | None = 1024) -> np.ndarray:
        """Class probabilities ``p(y|x)``, shape ``(n, C)`` (NumPy)."""
        return tf.nn.softmax(self.logits(x, batch_size=batch_size)).numpy()

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return tf.nn.softmax(self._logits(tf.cast(x, tf.float32)))

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``: class probabilities ``(n, C)``."""
        self._ensure_fresh()
        return super().predict(x, *args, **kwargs)

    def conditional_energy(self, x, y) -> tf.Tensor:
        """``E(x, y) = −k f_y(x)``, shape ``(n,)``; ``y``: an int or ``(n,)`` labels."""
        self._ensure_fresh()
        x = self._check_array(x, "x", allow_empty=True)
        labels = self._sample_labels(y, int(x.shape[0]))
        return self._conditional_energy(x, tf.constant(labels))

    def _conditional_energy(self, x, labels):
        logits = self._logits(x)
        return -tf.gather(logits, labels, axis=1, batch_dims=1)

    def certified_radius(self, x, batch_size: int | None = 1024) -> np.ndarray:
        r"""Radius ``m / (c k)`` within which the predicted class cannot change.

        ``m`` is the gap between the top two logits ``k f``, ``c`` is
        :attr:`margin_factor` (√2 for a logit vector that is 1-Lipschitz): every
        ``x + δ`` with ``‖δ‖₂ < m / (c k)`` gets the same prediction as ``x``
        (certified only for a Lipschitz network, :attr:`is_lipschitz`).
        """
        logits = np.sort(self.logits(x, batch_size=batch_size).numpy(), axis=1)
        margin = logits[:, -1].astype(np.float64) - logits[:, -2]
        return margin / (self.margin_factor * self.k_coef_lip)

    # ---------------------------------------------------------------- training
    def _labels(self, data):
        _, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("JointEnergyModel: training data need labels (x, y)")
        y = tf.convert_to_tensor(y)
        if y.shape.rank == 2 and y.shape[1] == self.num_classes:
            y = tf.argmax(y, axis=1)  # one-hot rows (a tf.data input)
        return tf.cast(tf.reshape(y, [-1]), tf.int32)

    def _loss_terms(self, data, x_pos, x_neg, log_q, training):
        labels = self._labels(data)
        n = tf.shape(x_pos)[0]
        logits = self._logits(tf.concat([x_pos, x_neg], axis=0), training=training)
        energies = -tf.reduce_logsumexp(logits, axis=1)
        e_pos, e_neg = energies[:n], energies[n:]
        k = tf.cast(self.k_tensor(), logits.dtype)
        f_pos = logits[:n] / k
        ce = classifier_losses.cross_entropy(labels, f_pos, k)  # also a metric
        if isinstance(self.classifier_loss, classifier_losses.CrossEntropyLoss):
            classification = ce
        else:
            classification = self.classifier_loss(labels, f_pos, k)
        generative = self.energy_loss(e_pos, e_neg, log_q=log_q)
        loss = classification + self.generative_weight * generative
        predicted = tf.argmax(logits[:n], axis=1, output_type=tf.int32)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(predicted, labels), tf.float32))
        return loss, e_pos, e_neg, {"ce": ce, "accuracy": accuracy}

    def fit(self, x=None, y=None, batch_size=None, epochs=1, **kwargs):
        """:meth:`EnergyModel.fit` on ``(x, y)``: ``y`` integer labels ``(n,)`` or
        one-hot rows ``(n, C)`` (a ``tf.data`` input yields ``(x, y)`` batches);
        ``validation_data`` is ``(x_val, y_val)``."""
        if not isinstance(x, tf.data.Dataset):
            n = None if x is None else len(x)
            y = as_labels(y, self.num_classes, n)
        val = kwargs.get("validation_data")
        if isinstance(val, (tuple, list)) and len(val) >= 2:
            if not isinstance(val[0], tf.data.Dataset):
                labels = as_labels(
                    val[1], self.num_classes, len(val[0]), "validation y"
                )
                kwargs["validation_data"] = (val[0], labels, *val[2:])
        elif isinstance(val, np.ndarray) or (
            isinstance(val, (tuple, list)) and len(val) == 1
        ):
            raise ValueError(
                "validation_data of a JointEnergyModel is (x_val, y_val), with labels"
            )
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, **kwargs)

    # ---------------------------------------------------------------- sampling
    def _sample_labels(self, y, n):
        if isinstance(y, numbers.Integral) and not isinstance(y, bool):
            y = np.full(n, int(y))
        return as_labels(y, self.num_classes, n, name="y")

    def sample(
        self,
        n: int,
        num_steps: int | None = None,
        init=None,
        return_trajectory: bool = False,
        sampler=None,
        seed=None,
        return_results: bool = False,
        y=None,
    ):
        """:meth:`EnergyModel.sample`; with ``y`` (a class, or ``(n,)`` labels) the
        chains run on ``E(x, y) = −k f_y(x)``: class-conditional samples.

        With ``init=None`` and a fitted proposal or base (a mixture fitted to the
        data), conditional chains start from its draws resampled toward
        ``p(x | y)`` (weights ``exp(k f_y(x)) / q(x)``, a pool of
        ``8 C`` draws per sample);
        otherwise as :meth:`EnergyModel.sample`.
        """
        if y is None:
            return super().sample(
                n, num_steps, init, return_trajectory, sampler, seed, return_results
            )
        sampler, seeds = self._next_sample_seeds(n, sampler, seed)
        labels = self._sample_labels(y, int(n))
        pool = self._start_pool() if init is None else None
        if pool is not None:
            x0 = self._conditional_starts(pool, labels, seeds[0])
        else:
            x0 = self._chain_starts(n, init, seeds[0])
        labels = tf.constant(labels)
        chain = self._chain(
            sampler, num_steps, return_trajectory, self._conditional_energy
        )
        out = chain(x0, seeds[1], labels)
        return self._sample_outputs(x0, out, return_trajectory, return_results)

    def _start_pool(self):
        """The fitted mixture (proposal, else base) conditional starts come from."""
        if self._proposal_ready():
            return self.proposal
        if self.base is not None and self.base.is_fitted:
            return self.base
        return None

    def _conditional_starts(self, pool, labels, seed):
        """Sampling-importance-resampling toward ``p(x | y)``: draws of ``q``
        weighted by ``exp(k f_y(x)) / q(x)``, per label, from one shared pool."""
        n = len(labels)
        draw_seed, pick_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
        )
        size = RESAMPLE_FACTOR * self.num_classes * n
        x, log_q = self._draws_of(pool, size, draw_seed)
        log_w = tf.transpose(self.logits(x, batch_size=4096)) - log_q[None]
        picks = np.zeros(n, np.int64)
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            c_seed = tf.random.experimental.stateless_fold_in(pick_seed, int(c))
            picks[rows] = categorical(log_w[c], len(rows), c_seed).numpy()
        return tf.gather(x, picks)

    # --------------------------------------------------------- serialisation
    def get_config(self):
        return {
            **super().get_config(),
            "generative_weight": self.generative_weight,
            "classifier_loss": keras.utils.serialize_keras_object(self.classifier_loss),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # saved before the classification term was a choice: cross-entropy
        loss = config.get("classifier_loss") or "ce"
        if not isinstance(loss, str):
            loss = keras.utils.deserialize_keras_object(
                loss, custom_objects=custom_objects
            )
        config["classifier_loss"] = loss
        return super().from_config(config, custom_objects)
