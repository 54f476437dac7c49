"""Tests of deel_ebm.metrics: exact 2D metrics, sample metrics, image metrics."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

import deel_ebm  # noqa: F401  (sets up the Keras-2 backend before TensorFlow)
from deel_ebm import datasets, metrics
from deel_ebm._backend import tf


def gaussian_energy(mean, cov):
    """Exact -log N(x; mean, cov) as an energy function."""
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    inv, logdet = np.linalg.inv(cov), np.linalg.slogdet(cov)[1]

    def energy(x):
        d = np.asarray(x, float) - mean
        return (
            0.5 * np.einsum("ni,ij,nj->n", d, inv, d)
            + 0.5 * logdet
            + math.log(2 * math.pi)
        )

    return energy


def gaussian_kl(m0, c0, m1, c1):
    """Closed form KL(N(m0, c0) || N(m1, c1))."""
    inv1 = np.linalg.inv(c1)
    d = np.asarray(m1, float) - np.asarray(m0, float)
    return 0.5 * (
        np.trace(inv1 @ c0)
        + d @ inv1 @ d
        - len(d)
        + np.linalg.slogdet(c1)[1]
        - np.linalg.slogdet(c0)[1]
    )


def test_grid_log_normaliser_gaussian():
    log_z = metrics.grid_log_normaliser(lambda x: 0.5 * np.sum(x**2, 1))
    inside = 1.0 - 2.0 * stats.norm.cdf(-4.5)  # mass of N(0, 1) in (-4.5, 4.5)
    assert log_z == pytest.approx(math.log(2 * math.pi * inside**2), abs=1e-8)
    shifted = metrics.grid_log_normaliser(lambda x: 0.5 * np.sum(x**2, 1) + 3.0)
    assert shifted == pytest.approx(log_z - 3.0, abs=1e-12)


def test_grid_points_layout():
    points, area = metrics.grid_points((-1.0, 1.0), 4)
    assert area == pytest.approx(0.25)
    grid = points.reshape(4, 4, 2)
    np.testing.assert_allclose(grid[:, 0, 0], [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(grid[0, :, 1], [-0.75, -0.25, 0.25, 0.75])


def test_evaluate_energy_accepts_tensors_and_checks_output():
    x = np.random.default_rng(0).normal(size=(10, 2))
    expected = np.sum(x**2, 1)
    as_tensor = metrics.evaluate_energy(
        lambda z: tf.reduce_sum(tf.square(z), axis=1, keepdims=True), x, batch_size=3
    )
    np.testing.assert_allclose(as_tensor, expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        metrics.evaluate_energy(lambda z: np.zeros(3), x[:4])
    with pytest.raises(ValueError, match="1 NaN"):
        metrics.evaluate_energy(lambda z: np.where(z[:, 0] == z[0, 0], np.nan, 0.0), x)
    with pytest.raises(TypeError, match="callable"):
        metrics.evaluate_energy("energy", x)


@pytest.mark.parametrize("name", ["8gaussians", "2spirals"])
def test_exact_metrics_of_the_data_itself(name):
    density = datasets.get_density(name)
    x_test = density.sample(2000, seed=0)
    result = metrics.exact_metrics_2d(lambda x: -density.log_prob(x), density, x_test)
    assert abs(result["kl"]) < 1e-12 and abs(result["reverse_kl"]) < 1e-12
    assert result["log_z"] == pytest.approx(result["data_log_z"], abs=1e-12)
    assert abs(result["data_log_z"]) < 2e-5
    assert result["test_nll"] == pytest.approx(result["data_test_nll"], abs=2e-5)
    if name == "8gaussians":
        # Each mode holds 1/8 of the mass, (1 - e^{-2}) of it within 2 std.
        np.testing.assert_allclose(
            result["data_mode_masses"], (1 - math.exp(-2)) / 8, atol=2e-4
        )
        np.testing.assert_allclose(result["mode_masses"], result["data_mode_masses"])
    else:
        assert result["mode_masses"] is None and result["data_mode_masses"] is None


def test_kl_between_gaussians_matches_closed_form():
    m0, c0 = [0.3, -0.2], [[0.6, 0.2], [0.2, 0.4]]
    m1, c1 = [-0.4, 0.5], [[0.9, -0.3], [-0.3, 0.7]]

    class Gaussian2D(datasets.Density2D):  # a user-defined density
        def _log_prob(self, x):
            return -gaussian_energy(m0, c0)(x)

    data = Gaussian2D("gaussian")
    # a wide box: the truncated mass is ~1e-14, the grid step 1/32 exact in float32
    result = metrics.exact_metrics_2d(gaussian_energy(m1, c1), data, domain=(-8, 8))
    assert result["kl"] == pytest.approx(gaussian_kl(m0, c0, m1, c1), rel=1e-6)
    assert result["reverse_kl"] == pytest.approx(gaussian_kl(m1, c1, m0, c0), rel=1e-6)
    assert result["log_z"] == pytest.approx(0.0, abs=1e-7)


def test_exact_metrics_mode_masses_see_a_missing_mode():
    density = datasets.get_density("8gaussians")
    modes, std = density.modes, density.mode_std
    seven = datasets.GaussianMixture2D("seven", modes, std, weights=[0] + [1] * 7)
    result = metrics.exact_metrics_2d(lambda x: -seven.log_prob(x), density)
    assert result["mode_masses"][0] < 1e-5  # tails of the neighbouring modes
    np.testing.assert_allclose(
        result["mode_masses"][1:], (1 - math.exp(-2)) / 7, atol=3e-4
    )
    assert result["kl"] > 0.1 and np.isinf(result["reverse_kl"]) is np.False_
    # KL(p || q) = E_p[log p/q]: mode 0 is missing, q is 8/7 p elsewhere.
    assert result["kl"] > math.log(8 / 7)


def test_exact_metrics_errors():
    with pytest.raises(ValueError, match="valid names"):
        metrics.exact_metrics_2d(lambda x: np.zeros(len(x)), "gaussians")
    with pytest.raises(ValueError, match="low < high"):
        metrics.exact_metrics_2d(lambda x: np.zeros(len(x)), "rings", domain=(1, 0))
    with pytest.raises(TypeError, match="resolution"):
        metrics.grid_log_normaliser(lambda x: np.zeros(len(x)), resolution=1.5)


def test_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    same = metrics.mmd(x, y)
    shifted = metrics.mmd(x, y + [1.0, 0.0])
    assert abs(same) < 2e-3 and shifted > 0.05
    assert metrics.mmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mmd(x, y, bandwidth=0.5) == pytest.approx(
        metrics.mmd(y, x, bandwidth=0.5), abs=1e-12
    )
    # closed form check of the estimator on 2 points per set, bandwidth 1
    a, b = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    k = lambda d: math.exp(-(d**2) / 2)  # noqa: E731
    expected = k(1) + k(2) - 2 * (k(0) + k(2) + k(1) + k(1)) / 4
    assert metrics.mmd(a, b, bandwidth=1.0) == pytest.approx(expected)
    with pytest.raises(ValueError, match="dimension"):
        metrics.mmd(x, np.zeros((5, 3)))


def test_sliced_wasserstein_of_a_shift():
    x = np.random.default_rng(0).normal(size=(2000, 2))
    shift = np.array([0.6, 0.8])  # norm 1
    sw2 = metrics.sliced_wasserstein(x, x + shift, num_projections=4000)
    sw1 = metrics.sliced_wasserstein(x, x + shift, num_projections=4000, p=1)
    assert sw2 == pytest.approx(1 / math.sqrt(2), rel=0.02)  # sqrt(E cos^2)
    assert sw1 == pytest.approx(2 / math.pi, rel=0.02)  # E |cos|
    assert metrics.sliced_wasserstein(x, x) == 0.0


def test_sliced_wasserstein_unequal_sizes_exact():
    # 1D: W1({0, 1}, {0, .5, 1}) = 1/6 (quantile functions differ by .5 on 1/3)
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [0.5], [1.0]])
    assert metrics.sliced_wasserstein(x, y, num_projections=3, p=1) == pytest.approx(
        1 / 6
    )
    assert metrics.sliced_wasserstein(x, y, num_projections=3, p=2) == pytest.approx(
        math.sqrt(1 / 12)
    )


def test_mode_coverage_constructed():
    modes = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array([[0.1, 0.0], [0.0, -0.2], [9.5, 0.0], [5.0, 5.0]])
    result = metrics.mode_coverage(samples, modes, radius=1.0)
    np.testing.assert_array_equal(result["counts"], [2, 1, 0])
    assert result["covered_fraction"] == pytest.approx(2 / 3)
    assert result["off_mode_fraction"] == pytest.approx(0.25)
    np.testing.assert_allclose(result["mode_shares"], [0.5, 0.25, 0.0])
    strict = metrics.mode_coverage(samples, modes, radius=1.0, min_count=2)
    assert strict["covered_fraction"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="radius"):
        metrics.mode_coverage(samples, modes, radius=0.0)


def test_mode_coverage_of_true_samples():
    density = datasets.get_density("8gaussians")
    samples = density.sample(4000, seed=0)
    result = metrics.mode_coverage(samples, density.modes, 3 * density.mode_std)
    assert result["covered_fraction"] == 1.0
    assert result["off_mode_fraction"] == pytest.approx(math.exp(-4.5), abs=0.006)
    np.testing.assert_allclose(result["mode_shares"], 1 / 8, atol=0.02)


def test_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(size=300), 1)  # rounding makes ties
    s_out = np.round(rng.normal(0.7, 1.0, size=200), 1)
    labels = np.r_[np.zeros(300), np.ones(200)]
    expected = roc_auc_score(labels, np.r_[s_in, s_out])
    assert metrics.auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)
    assert metrics.auroc([0, 1], [2, 3]) == 1.0
    assert metrics.auroc([2, 3], [0, 1]) == 0.0
    assert metrics.auroc([1, 1], [1]) == 0.5
    with pytest.raises(ValueError, match="scores_out"):
        metrics.auroc([0.0], [np.nan])


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits()


def test_digits_classifier_accuracy(digits):
    clf = metrics.digits_classifier()
    assert clf.test_accuracy > 0.95
    pred = np.argmax(clf.predict_proba(digits.x_test.reshape(-1, 64)), 1)
    assert np.mean(pred == digits.y_test) == pytest.approx(clf.test_accuracy)
    assert metrics.digits_classifier() is clf
    assert metrics.classifier_features(digits.x_test).shape == (540, 64)


def test_classifier_disk_cache(tmp_path, monkeypatch):
    clf = metrics.digits_classifier(cache_dir=tmp_path)  # in memory already: no file
    monkeypatch.setattr(metrics.digits, "_CLASSIFIERS", {})
    trained = metrics.digits_classifier(cache_dir=tmp_path)  # trains, writes the file
    (path,) = tmp_path.iterdir()
    monkeypatch.setattr(metrics.digits, "_CLASSIFIERS", {})
    monkeypatch.setattr(
        metrics.digits, "_train_classifier", lambda: pytest.fail("retrained")
    )
    loaded = metrics.digits_classifier(cache_dir=tmp_path)
    np.testing.assert_array_equal(loaded.w1, trained.w1)
    np.testing.assert_allclose(trained.w1, clf.w1)  # training is deterministic
    assert loaded.test_accuracy == trained.test_accuracy
    np.savez(path, w1=np.zeros((3, 3)))
    monkeypatch.setattr(metrics.digits, "_CLASSIFIERS", {})
    with pytest.raises(ValueError, match="Corrupt classifier cache"):
        metrics.digits_classifier(cache_dir=tmp_path)


def test_class_histogram_and_confidence(digits):
    hist = metrics.class_histogram(digits.x_test)
    true = np.bincount(digits.y_test, minlength=10) / len(digits.y_test)
    assert hist.sum() == pytest.approx(1.0) and np.abs(hist - true).max() < 0.02
    noise = np.random.default_rng(0).uniform(-1, 1, size=(540, 8, 8, 1))
    assert metrics.mean_confidence(digits.x_test) > 0.9
    assert metrics.mean_confidence(noise) < metrics.mean_confidence(digits.x_test) - 0.1
    # domain: the same images given in [0, 1]
    np.testing.assert_allclose(
        metrics.classifier_features((digits.x_test + 1) / 2, domain=(0, 1)),
        metrics.classifier_features(digits.x_test),
        atol=1e-5,
    )


def test_frechet_distance(digits):
    noise = np.random.default_rng(0).uniform(-1, 1, size=(540, 8, 8, 1))
    same = metrics.frechet_distance(digits.x_train, digits.x_train)
    train_test = metrics.frechet_distance(digits.x_train, digits.x_test)
    train_noise = metrics.frechet_distance(digits.x_train, noise)
    assert abs(same) < 1e-6
    assert train_noise > 20 * train_test
    # Gaussian features: closed form ||dm||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20_000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(20_000, 2)) * [3.0, 1.0] + [1.0, 0.0]
    expected = 1.0 + (1 + 4 + 9 + 1) - 2 * (3 + 2)
    assert metrics.frechet_distance(a, b, features=None) == pytest.approx(
        expected, abs=0.2
    )
    with pytest.raises(ValueError, match="features"):
        metrics.frechet_distance(a, b, features="inception")
