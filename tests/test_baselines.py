"""Tests of deel_ebm.baselines: classical baselines behind the energy/score API."""

import math

import numpy as np
import pytest
from scipy import special

import deel_ebm  # noqa: F401  (sets up the Keras-2 backend before TensorFlow)
from deel_ebm import baselines, datasets, metrics


@pytest.fixture(scope="module")
def eight():
    return datasets.load_2d("8gaussians", n_train=5000, n_test=2000, seed=0)


def test_gmm_on_8gaussians(eight):
    x_train, x_test = eight
    gmm = baselines.GaussianMixtureBaseline(max_components=12).fit(x_train)
    assert gmm.n_components_ == 8
    assert min(gmm.bic_, key=gmm.bic_.get) == 8
    result = metrics.exact_metrics_2d(gmm.energy, "8gaussians", x_test)
    assert result["kl"] < 0.05 and result["reverse_kl"] < 0.05
    assert abs(result["log_z"]) < 1e-4  # energy is an exact, normalised -log p
    np.testing.assert_allclose(
        result["mode_masses"], result["data_mode_masses"], atol=0.01
    )


def test_kde_on_8gaussians(eight):
    x_train, x_test = eight
    kde = baselines.KernelDensityBaseline(max_cv_samples=1000).fit(x_train)
    # CV on 1000 points picks a bandwidth near the mode std / 2, rescaled to 5000
    assert kde.bandwidth_ == pytest.approx(kde.cv_bandwidth_ * 0.2 ** (1 / 6))
    assert 0.05 < kde.bandwidth_ < 0.3
    result = metrics.exact_metrics_2d(kde.energy, "8gaussians", x_test, resolution=256)
    assert abs(result["log_z"]) < 1e-4 and result["kl"] < 0.05


def test_kde_energy_is_exact():
    x = np.random.default_rng(0).normal(size=(300, 3))
    kde = baselines.KernelDensityBaseline(bandwidths=[0.4], cv=2, max_cv_samples=100)
    kde.fit(x)
    assert kde.bandwidth_ == pytest.approx(0.4 * (100 / 300) ** (1 / 7))
    query = np.random.default_rng(1).normal(size=(20, 3)) * 3
    d2 = np.sum((query[:, None] - x[None]) ** 2, -1)
    h = kde.bandwidth_
    expected = (
        special.logsumexp(-d2 / (2 * h * h), axis=1)
        - math.log(300)
        - 1.5 * math.log(2 * math.pi * h * h)
    )
    np.testing.assert_allclose(-kde.energy(query), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "make", [baselines.IsolationForestBaseline, baselines.OneClassSVMBaseline]
)
def test_anomaly_baselines_rank_outliers(make, eight):
    x_train, x_test = eight
    model = make().fit(x_train)
    rng = np.random.default_rng(0)
    outliers = rng.uniform(-4.5, 4.5, size=(4000, 2))
    far = (
        np.min(
            np.linalg.norm(
                outliers[:, None] - datasets.get_density("8gaussians").modes[None],
                axis=-1,
            ),
            axis=1,
        )
        > 1.5
    )
    score_in, score_out = model.score(x_test), model.score(outliers[far])
    assert score_in.shape == (len(x_test),)
    assert metrics.auroc(score_in, score_out) > 0.9


def test_baseline_errors():
    with pytest.raises(RuntimeError, match="fitted"):
        baselines.GaussianMixtureBaseline().energy(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="max_components"):
        baselines.GaussianMixtureBaseline(max_components=0)
    with pytest.raises(ValueError, match="bandwidths"):
        baselines.KernelDensityBaseline(bandwidths=[0.1, -1.0])
    with pytest.raises(ValueError, match="nu"):
        baselines.OneClassSVMBaseline(nu=2.0)
    model = baselines.IsolationForestBaseline(n_estimators=10).fit(np.zeros((20, 2)))
    with pytest.raises(ValueError, match="Expected 2 features, got 3"):
        model.score(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must be finite"):
        baselines.GaussianMixtureBaseline().fit(np.array([[0.0, np.nan]]))
