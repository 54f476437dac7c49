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
    for loss in (losses.ContrastiveDivergenceLoss(), losses.HingeKRLoss()):
        with tf.GradientTape() as tape:
            value = loss(e_pos, e_neg)
        g_pos, g_neg = tape.gradient(value, [e_pos, e_neg])
        assert float(tf.reduce_max(g_pos)) > 0 and float(tf.reduce_min(g_neg)) < 0


@pytest.mark.parametrize("cls", [losses.ContrastiveDivergenceLoss, losses.HingeKRLoss])
def test_config_round_trip(cls):
    loss = cls()
    clone = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(loss)
    )
    assert type(clone) is cls and clone.get_config() == loss.get_config()


def test_get_and_errors():
    assert isinstance(losses.get(None), losses.ContrastiveDivergenceLoss)
    assert isinstance(losses.get("hkr"), losses.HingeKRLoss)
    with pytest.raises(ValueError, match="loss must be"):
        losses.get("mse")
    with pytest.raises(ValueError, match="l2_weight"):
        losses.ContrastiveDivergenceLoss(l2_weight=-1.0)
