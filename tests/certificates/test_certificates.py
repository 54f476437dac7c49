"""Tests of deel_ebm.certificates: radii, AUROC, thresholds, Lipschitz bounds."""

# deel_ebm first: it sets the Keras-2 environment before deel-lip loads TensorFlow
import deel_ebm  # noqa: F401, I001
import numpy as np
import pytest
from deel.lip.layers import (
    FrobeniusDense,
    GroupSort2,
    ScaledL2NormPooling2D,
    SpectralConv2D,
    SpectralDense,
)
from sklearn.metrics import roc_auc_score

from deel_ebm._backend import keras, tf
from deel_ebm.certificates import (
    calibrate_threshold,
    certified_auroc,
    certified_radius,
    conv_operator_norm,
    empirical_lipschitz_lower_bound,
    layer_lipschitz_bounds,
    lipschitz_upper_bound,
    spectral_norm,
)

# Björck (eps 1e-3, 15 iterations) leaves singular values of wbar within ~1e-6 of 1
# on these nets; 1e-3 is deel-lip's own stopping tolerance.
DEEL_LIP_TOL = 1e-3
# float32 evaluation of the lower bound against float64 evaluation of the upper one.
FLOAT_SLACK = 1e-5


def _conv_as_matrix(kernel, shape, strides=1, padding="SAME"):
    """Dense matrix of x -> conv2d(x, kernel) on inputs of shape (h, w, c)."""
    size = int(np.prod(shape))
    basis = np.eye(size).reshape((size,) + tuple(shape))
    out = tf.nn.conv2d(basis, np.asarray(kernel, np.float64), strides, padding)
    return out.numpy().reshape(size, -1)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def nets():
    """Four nets, built and with deel-lip wbar refreshed by one training=True call."""
    keras.utils.set_random_seed(0)
    dense_lip = keras.Sequential(
        [keras.Input((2,))]
        + [layer for _ in range(3) for layer in (SpectralDense(32), GroupSort2())]
        + [SpectralDense(1)]
    )
    conv_lip = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            SpectralConv2D(8, 3),
            GroupSort2(),
            ScaledL2NormPooling2D(),
            keras.layers.Flatten(),
            SpectralDense(1),
        ]
    )
    dense_plain = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32),
            keras.layers.ReLU(),
            keras.layers.Dense(1),
        ]
    )
    conv_plain = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(4, 3, strides=2, padding="valid"),
            keras.layers.Activation("swish"),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    gen = np.random.default_rng(1)
    points = {
        "dense_lip": gen.uniform(-3, 3, (64, 2)).astype("float32"),
        "conv_lip": gen.uniform(-1, 1, (64, 8, 8, 1)).astype("float32"),
    }
    points["dense_plain"] = points["dense_lip"]
    points["conv_plain"] = points["conv_lip"]
    dense_lip(points["dense_lip"], training=True)
    conv_lip(points["conv_lip"], training=True)
    models = dict(
        dense_lip=dense_lip,
        conv_lip=conv_lip,
        dense_plain=dense_plain,
        conv_plain=conv_plain,
    )
    return models, points


# --- certified radius ---------------------------------------------------------------


def test_certified_radius_hand_case():
    radii = certified_radius([0.0, 1.0, 3.0, 2.0], threshold=2.0, k_coef_lip=4.0)
    np.testing.assert_allclose(radii, [0.5, 0.25, -0.25, 0.0])


@pytest.mark.parametrize("k", [0.0, -1.0, np.nan])
def test_certified_radius_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k_coef_lip"):
        certified_radius([0.0], 1.0, k)


def test_certified_radius_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        certified_radius(np.zeros((2, 3)), 1.0, 1.0)


# --- certified AUROC ----------------------------------------------------------------


def test_certified_auroc_at_zero_matches_sklearn(rng):
    e_in = rng.normal(0.0, 1.0, 300)
    e_out = np.round(rng.normal(1.0, 1.0, 200), 1)  # rounding creates ties
    e_in[:50] = e_out[:50]  # ties across classes, counted half
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[e_in, e_out])
    assert certified_auroc(e_in, e_out, 2.0, 0.0) == pytest.approx(expected, abs=1e-12)


def test_certified_auroc_non_increasing_in_epsilon(rng):
    e_in, e_out = rng.normal(0, 1, 200), rng.normal(2, 1, 150)
    values = [certified_auroc(e_in, e_out, 3.0, eps) for eps in np.linspace(0, 2, 21)]
    assert np.all(np.diff(values) <= 0)
    assert values[0] > 0.8 and values[-1] < 0.1


def test_certified_auroc_is_plain_auroc_of_shifted_scores():
    # pairs: gaps out - in = 1, 2, 3, 4 ... with k eps = 1 only gaps > 2 count
    value = certified_auroc([0.0], [1.0, 2.0, 3.0, 4.0], k_coef_lip=2.0, epsilon=0.5)
    assert value == pytest.approx((0.5 + 1 + 1) / 4)


def test_certified_auroc_rejects_negative_epsilon():
    with pytest.raises(ValueError, match="-0.1"):
        certified_auroc([0.0], [1.0], 1.0, -0.1)


# --- threshold calibration -----------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.2])
def test_calibrate_threshold_achieves_rate(rng, rate):
    energies = rng.normal(0, 1, 1000)
    t = calibrate_threshold(energies, rate)
    assert np.mean(energies >= t) == pytest.approx(np.floor(rate * 1000) / 1000)


def test_calibrate_threshold_never_exceeds_rate_with_ties():
    energies = np.array([0.0] * 5 + [1.0] * 5)
    t = calibrate_threshold(energies, 0.3)
    assert np.mean(energies >= t) <= 0.3


def test_calibrate_threshold_conformal_holds_out_of_sample(rng):
    rejected = []
    for _ in range(200):
        val, new = rng.normal(0, 1, 19), rng.normal(0, 1, 50)
        rejected.append(np.mean(new >= calibrate_threshold(val, 0.1, conformal=True)))
    assert np.mean(rejected) <= 0.1 + 0.01
    assert calibrate_threshold(rng.normal(0, 1, 5), 0.1, conformal=True) == np.inf


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_calibrate_threshold_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match=str(rate)):
        calibrate_threshold([0.0, 1.0], rate)


# --- operator norms -----------------------------------------------------------------


def test_spectral_norm_matches_svd(rng):
    matrix = rng.normal(size=(40, 30))
    assert spectral_norm(matrix) == pytest.approx(np.linalg.svd(matrix)[1][0])


@pytest.mark.parametrize(
    "strides, padding", [(1, "same"), (2, "same"), (1, "valid"), (2, "valid")]
)
def test_conv_operator_norm_matches_brute_force_svd(rng, strides, padding):
    kernel = rng.normal(size=(3, 3, 2, 3))
    shape = (6, 6, 2)
    exact = np.linalg.norm(_conv_as_matrix(kernel, shape, strides, padding.upper()), 2)
    power = conv_operator_norm(kernel, shape, strides, padding, tol=1e-7)
    assert power == pytest.approx(exact, rel=1e-5)
    assert power >= exact * (1 - 1e-9)
    certified = conv_operator_norm(kernel, shape, strides, padding, certified=True)
    assert certified >= exact * (1 - 1e-9)


def test_conv_norm_exceeds_reshaped_kernel_norm(rng):
    kernel = np.abs(rng.normal(size=(3, 3, 1, 1)))  # blur: reshaped norm underestimates
    reshaped = np.linalg.norm(kernel.reshape(-1, 1), 2)
    assert conv_operator_norm(kernel, (8, 8, 1)) > 2.0 * reshaped


def test_conv_operator_norm_rejects_mismatched_channels():
    with pytest.raises(ValueError, match=r"\(3, 3, 2, 4\)"):
        conv_operator_norm(np.zeros((3, 3, 2, 4)), (8, 8, 3))


# --- Lipschitz upper bound against lower bound ---------------------------------------


@pytest.mark.parametrize("name", ["dense_lip", "conv_lip", "dense_plain", "conv_plain"])
def test_upper_bound_dominates_empirical_lower_bound(nets, name):
    models, points = nets
    upper = lipschitz_upper_bound(models[name])
    lower = empirical_lipschitz_lower_bound(models[name], points[name], ascent_steps=5)
    assert 0 < lower <= upper * (1 + FLOAT_SLACK)
    certified = lipschitz_upper_bound(models[name], certified=True)
    assert certified >= upper * (1 - 2e-4)  # certified conv bound is the looser


def test_deel_lip_dense_net_is_one_lipschitz(nets):
    models, _ = nets
    assert lipschitz_upper_bound(models["dense_lip"]) <= 1 + DEEL_LIP_TOL


def test_deel_lip_conv_layer_bound_matches_brute_force(nets):
    """SpectralConv2D's padding coefficient is a heuristic: measure the real norm.

    On 8x8 inputs with 1 -> 8 channels, wbar's reshaped matrix has norm
    coef = 8/22 and the zero-padded conv operator has norm ~1.08 (> 1): the network
    is not 1-Lipschitz, and the bound says so.
    """
    models, _ = nets
    layer = models["conv_lip"].layers[0]
    exact = np.linalg.norm(_conv_as_matrix(layer.wbar.numpy(), (8, 8, 1)), 2)
    bounds = dict(layer_lipschitz_bounds(models["conv_lip"]))
    assert bounds[layer.name] == pytest.approx(exact, rel=2e-4)
    assert bounds[layer.name] >= exact
    reshaped = np.linalg.norm(layer.wbar.numpy().reshape(-1, 8), 2)
    assert reshaped == pytest.approx(layer._get_coef(), rel=DEEL_LIP_TOL)
    assert exact > 1.0
    # pooling (2x2, valid, stride 2), GroupSort2, Flatten: exactly 1; dense: ~1
    pooling = models["conv_lip"].layers[2]
    assert isinstance(pooling, ScaledL2NormPooling2D)
    assert bounds[pooling.name] == 1.0


def test_scaled_unconstrained_dense_bound_matches_svd():
    keras.utils.set_random_seed(3)
    layer = keras.layers.Dense(5)
    net = keras.Sequential([keras.Input((7,)), layer])
    layer.kernel.assign(3.0 * layer.kernel)
    # in float64, as the certificate computes it (a float32 SVD differs by ~1e-7)
    expected = np.linalg.svd(layer.kernel.numpy().astype(np.float64))[1][0]
    bound = lipschitz_upper_bound(net)
    assert bound > 1.0
    assert bound == pytest.approx(expected, rel=1e-12)


def test_frobenius_dense_is_bounded_by_its_matrix_norm():
    net = keras.Sequential([keras.Input((4,)), FrobeniusDense(3)])
    net(tf.zeros((1, 4)), training=True)
    expected = np.linalg.svd(net.layers[0].wbar.numpy())[1][0]
    assert lipschitz_upper_bound(net) == pytest.approx(expected)


def test_functional_chain_and_nested_models():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    chain = keras.Model(inputs, inner(hidden))
    product = np.prod([b for _, b in layer_lipschitz_bounds(chain)])
    assert lipschitz_upper_bound(chain) == pytest.approx(product)


def test_branching_graph_is_rejected():
    inputs = keras.Input((3,))
    left, right = keras.layers.Dense(2)(inputs), keras.layers.Dense(2)(inputs)
    net = keras.Model(inputs, keras.layers.Add()([left, right]))
    with pytest.raises(ValueError, match="not supported"):
        lipschitz_upper_bound(net)


def test_unknown_layer_is_named():
    net = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(tf.exp, name="my_exp")]
    )
    with pytest.raises(ValueError, match="my_exp"):
        lipschitz_upper_bound(net)


def test_unknown_activation_is_named():
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    net.layers[0].activation = tf.math.exp
    with pytest.raises(ValueError, match="'d'"):
        lipschitz_upper_bound(net)


def test_unbuilt_network_needs_shape():
    net = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="input_shape"):
        lipschitz_upper_bound(net)


# --- empirical lower bound ----------------------------------------------------------


def test_lower_bound_of_linear_callable_is_exact():
    direction = np.array([3.0, 4.0], np.float32)  # Lipschitz constant 5

    def energy(x):
        return tf.linalg.matvec(x, direction)

    points = np.random.default_rng(0).normal(size=(16, 2))
    lower = empirical_lipschitz_lower_bound(energy, points, k_coef_lip=2.0)
    assert lower == pytest.approx(10.0, rel=1e-6)


def test_lower_bound_ascent_finds_steeper_region():
    def energy(x):  # gradient norm grows away from 0: 1 + x^2 ... up to x = 1
        return tf.reduce_sum(x + x**3 / 3.0, axis=-1)

    points = np.linspace(-1.0, 1.0, 5)[:, None] * np.array([[1.0, 0.0]])
    points[:, 1] = [0.0, 0.1, 0.0, -0.1, 0.0]
    no_ascent = empirical_lipschitz_lower_bound(energy, points * 0.5, ascent_steps=0)
    ascent = empirical_lipschitz_lower_bound(
        energy, points * 0.5, ascent_steps=20, num_pairs=0
    )
    assert ascent > no_ascent


def test_lower_bound_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        empirical_lipschitz_lower_bound(lambda x: x[:, 0], np.zeros((1, 2)))
    with pytest.raises(TypeError, match="int"):
        empirical_lipschitz_lower_bound(3, np.zeros((4, 2)))


def test_bounds_meet_on_a_single_spectral_dense_layer():
    net = keras.Sequential([keras.Input((3,)), SpectralDense(1)])
    net(tf.zeros((1, 3)), training=True)
    points = np.random.default_rng(0).normal(size=(16, 3))
    upper = lipschitz_upper_bound(net)
    lower = empirical_lipschitz_lower_bound(net, points, k_coef_lip=5.0)
    assert upper == pytest.approx(1.0, abs=DEEL_LIP_TOL)
    assert lower == pytest.approx(5.0 * upper, rel=1e-5)


def test_pooling_normalisation_and_activation_layers():
    from deel.lip.layers import ScaledAveragePooling2D, ScaledGlobalAveragePooling2D

    layers = keras.layers
    net = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.MaxPooling2D(pool_size=2, strides=1, name="mp"),  # 7x7
            ScaledAveragePooling2D(name="sap"),
            layers.AveragePooling2D(name="ap"),
            layers.BatchNormalization(name="bn"),
            layers.LeakyReLU(0.3, name="lrelu"),
            ScaledGlobalAveragePooling2D(name="sgap"),
            layers.Dense(1, activation="sigmoid", name="out"),
        ]
    )
    bn = net.get_layer("bn")
    bn.moving_variance.assign([0.25, 4.0])
    bn.gamma.assign([1.5, -0.5])
    bounds = dict(layer_lipschitz_bounds(net))
    assert bounds["sap"] == pytest.approx(1.0, rel=1e-3)
    assert bounds["ap"] == pytest.approx(0.5, rel=1e-3)  # mean of 4 = 1/2 of L2
    assert bounds["bn"] == pytest.approx(1.5 / np.sqrt(0.25 + bn.epsilon))
    assert bounds["lrelu"] == 1.0
    assert bounds["mp"] == pytest.approx(2.0)  # 2x2 windows, stride 1: 4 overlaps
    assert bounds["sgap"] == pytest.approx(1.0, rel=1e-3)
    kernel = net.get_layer("out").kernel.numpy()
    assert bounds["out"] == pytest.approx(0.25 * np.linalg.norm(kernel))
    points = np.random.default_rng(0).normal(size=(32, 8, 8, 2))
    lower = empirical_lipschitz_lower_bound(net, points, ascent_steps=3)
    assert lower <= lipschitz_upper_bound(net) * (1 + FLOAT_SLACK)
