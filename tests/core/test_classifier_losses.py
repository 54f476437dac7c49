"""The classification terms of a joint model: cross-entropy and deel-lip's HKR."""

import numpy as np
import pytest

from deel_ebm import keras
from deel_ebm._backend import tf
from deel_ebm.core import classifier_losses


def _batch(n=64, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    f = rng.normal(0.0, 0.7, (n, classes)).astype(np.float32)
    return tf.constant(labels), tf.constant(f)


@pytest.mark.parametrize("alpha, margin", [(50.0, 0.5), (10.0, 1.0), (0.0, 0.3)])
def test_hkr_is_deel_lips_multiclass_hkr(alpha, margin):
    from deel.lip.losses import MulticlassHKR

    labels, f = _batch()
    ours = classifier_losses.multiclass_hkr(labels, f, alpha, margin)
    theirs = MulticlassHKR(alpha=alpha, min_margin=margin)(tf.one_hot(labels, 5), f)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5, atol=1e-6)
    layer = classifier_losses.MulticlassHKRLoss(alpha=alpha, min_margin=margin)
    np.testing.assert_allclose(float(layer(labels, f, 64.0)), float(ours), rtol=1e-6)


def test_hkr_with_a_class_missing_from_the_batch_is_finite_and_matches_deel_lip():
    from deel.lip.losses import MulticlassHKR

    labels, f = _batch(n=16, classes=6)
    labels = tf.where(labels == 5, 0, labels)  # class 5 absent
    ours = classifier_losses.multiclass_hkr(labels, f)
    theirs = MulticlassHKR(alpha=50.0, min_margin=0.5)(tf.one_hot(labels, 6), f)
    assert np.isfinite(float(ours))
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5, atol=1e-6)


def test_cross_entropy_is_the_softmax_cross_entropy_of_k_f():
    labels, f = _batch()
    k = 20.0
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, k * f
    )
    ours = classifier_losses.CrossEntropyLoss()(labels, f, k)
    np.testing.assert_allclose(float(ours), float(expected), rtol=1e-5)


def test_hkr_rewards_margins_and_the_right_class():
    labels = tf.constant([0, 1], tf.int32)
    wide = tf.constant([[1.0, -1.0], [-1.0, 1.0]])
    narrow = tf.constant([[0.1, -0.1], [-0.1, 0.1]])
    wrong = tf.constant([[-1.0, 1.0], [1.0, -1.0]])
    value = [
        float(classifier_losses.multiclass_hkr(labels, f))
        for f in (wide, narrow, wrong)
    ]
    assert value[0] < value[1] < value[2]


@pytest.mark.parametrize(
    "bad, message",
    [("xent", "classifier_loss must be one of"), (3, "classifier_loss must be one of")],
)
def test_an_unknown_classification_term_gets_one_line(bad, message):
    with pytest.raises(ValueError, match=message):
        classifier_losses.get(bad)


def test_negative_hkr_weights_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        classifier_losses.MulticlassHKRLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="min_margin"):
        classifier_losses.MulticlassHKRLoss(min_margin=-0.1)
