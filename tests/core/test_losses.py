import numpy as np
import pytest

from deel_ebm._backend import tf
from deel_ebm.core import losses

E_POS = tf.constant([-1.0, -3.0])
E_NEG = tf.constant([2.0, 0.5])


def test_contrastive_divergence_value():
    # cd = -2 - 1.25 = -3.25; reg = (1 + 9)/2 + (4 + 0.25)/2 = 7.125
    assert float(losses.contrastive_divergence(E_POS, E_NEG, 0.0)) == -3.25
    assert float(losses.contrastive_divergence(E_POS, E_NEG, 0.1)) == pytest.approx(
        -3.25 + 0.7125
    )


def test_hinge_kr_value():
    # kr = -3.25; hinge(m=1): pos relu(1 + e) = [0, 0]; neg relu(1 - e) = [0, 0.5]
    value = losses.hinge_kr(E_POS, E_NEG, alpha=10.0, margin=1.0)
    assert float(value) == pytest.approx(-3.25 + 10.0 * 0.25)


def test_gradient_pushes_data_down_and_negatives_up():
    e_pos, e_neg = tf.Variable([0.0, 0.0]), tf.Variable([0.0, 0.0])
    for loss in (
        losses.ContrastiveDivergenceLoss(),
        losses.HingeKRLoss(),
        losses.MaximumLikelihoodLoss(),
    ):
        with tf.GradientTape() as tape:
            value = loss(e_pos, e_neg)
        g_pos, g_neg = tape.gradient(value, [e_pos, e_neg])
        assert float(tf.reduce_max(g_pos)) > 0 and float(tf.reduce_min(g_neg)) < 0


@pytest.mark.parametrize(
    "cls",
    [
        losses.ContrastiveDivergenceLoss,
        losses.HingeKRLoss,
        losses.MaximumLikelihoodLoss,
    ],
)
def test_config_round_trip(cls):
    loss = cls()
    clone = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(loss)
    )
    assert type(clone) is cls and clone.get_config() == loss.get_config()


def test_get_and_errors():
    assert isinstance(losses.get(None), losses.MaximumLikelihoodLoss)
    assert isinstance(losses.get("cd"), losses.ContrastiveDivergenceLoss)
    assert isinstance(losses.get("hkr"), losses.HingeKRLoss)
    with pytest.raises(ValueError, match="loss must be"):
        losses.get("mse")
    with pytest.raises(ValueError, match="l2_weight"):
        losses.ContrastiveDivergenceLoss(l2_weight=-1.0)


def test_negative_weights():
    w = losses.negative_weights(E_NEG)  # chain samples: equal weights
    np.testing.assert_allclose(w.numpy(), [0.5, 0.5])
    log_q = tf.constant([-1.0, -2.0])
    # w ∝ exp(-E - log q) = exp([-1, 1.5])
    expected = np.exp([-1.0, 1.5]) / np.exp([-1.0, 1.5]).sum()
    np.testing.assert_allclose(
        losses.negative_weights(E_NEG, log_q).numpy(), expected, rtol=1e-6
    )


def test_maximum_likelihood_is_the_exact_nll_with_exact_draws():
    """With q uniform on a box and a constant energy c, log Z = c' exactly: the
    loss is the NLL, and its value does not depend on the draws."""
    e_pos = tf.constant([0.5, 1.5])
    e_neg = tf.fill([64], 2.0)
    log_q = tf.fill([64], float(-np.log(4.0)))  # uniform on a box of volume 4
    value = losses.maximum_likelihood(e_pos, e_neg, log_q, anchor=0.0)
    # NLL = mean E + log Z, Z = 4 e^-2
    assert float(value) == pytest.approx(1.0 + np.log(4.0) - 2.0, rel=1e-6)


def test_maximum_likelihood_gradient_is_the_weighted_contrast():
    e_pos = tf.Variable([0.2, -0.4, 0.1])
    e_neg = tf.Variable([1.0, 0.3, -0.2, 2.0])
    log_q = tf.constant([-1.0, -0.5, -2.0, -1.5])
    with tf.GradientTape() as tape:
        value = losses.maximum_likelihood(e_pos, e_neg, log_q, anchor=0.0)
    g_pos, g_neg = tape.gradient(value, [e_pos, e_neg])
    w = losses.negative_weights(e_neg, log_q).numpy()
    np.testing.assert_allclose(g_pos.numpy(), np.full(3, 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(g_neg.numpy(), -w, rtol=1e-6)
    # chain samples: the contrastive-divergence gradient, value mean E(x+)
    with tf.GradientTape() as tape:
        value = losses.maximum_likelihood(e_pos, e_neg, anchor=0.0)
    g_neg = tape.gradient(value, e_neg)
    np.testing.assert_allclose(g_neg.numpy(), np.full(4, -0.25), rtol=1e-6)
    assert float(value) == pytest.approx(float(tf.reduce_mean(e_pos)), abs=1e-6)


def test_weighted_cd_and_hkr_use_the_weights():
    log_q = tf.constant([0.0, -50.0])  # the second negative carries all the weight
    cd = losses.contrastive_divergence(E_POS, E_NEG, 0.0, log_q=log_q)
    assert float(cd) == pytest.approx(-2.0 - 0.5, abs=1e-5)
    hkr = losses.hinge_kr(E_POS, E_NEG, alpha=1.0, margin=1.0, log_q=log_q)
    assert float(hkr) == pytest.approx(-2.5 + 0.5, abs=1e-5)
