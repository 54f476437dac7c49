"""MixtureProposal: the fit, the density and its draws agree."""

import numpy as np
import pytest

import deel_ebm
from deel_ebm._backend import tf
from deel_ebm.core.proposals import MixtureProposal, fit_gaussian_mixture
from tests.conftest import mixture_2d


def test_fit_gaussian_mixture_matches_sklearn_likelihood():
    from sklearn.mixture import GaussianMixture

    x, _ = deel_ebm.datasets.load_2d("8gaussians", 4000, 10, seed=1)
    weights, means, covs = fit_gaussian_mixture(x, n_components=8, seed=0)
    assert weights.sum() == pytest.approx(1.0) and means.shape == (8, 2)
    ours = MixtureProposal(n_components=8, inflate=1.0, uniform=0.0).fit(x)
    sk = GaussianMixture(8, covariance_type="full", reg_covar=1e-4, random_state=0)
    sk.fit(x)
    # EM reaches the same likelihood as sklearn's, within 0.02 nats per point
    ll = float(tf.reduce_mean(ours.log_prob(x)))
    assert ll == pytest.approx(sk.score(x), abs=0.02)


def test_log_prob_is_normalised_on_a_grid():
    x, _ = mixture_2d(3000, seed=2)
    q = MixtureProposal(n_components=6).fit(x)
    low, high = q.low.numpy() - 2.0, q.high.numpy() + 2.0
    g0, g1 = np.linspace(low[0], high[0], 500), np.linspace(low[1], high[1], 500)
    grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2).astype(np.float32)
    mass = np.exp(q.log_prob(grid).numpy()).sum() * (g0[1] - g0[0]) * (g1[1] - g1[0])
    assert mass == pytest.approx(1.0, abs=0.01)


def test_draws_follow_log_prob():
    """Draws of q, reweighted by a test function, match grid integrals of q."""
    x, _ = mixture_2d(3000, seed=3)
    q = MixtureProposal(n_components=4, uniform=0.2).fit(x)
    draws = q.sample(40_000, seed=[0, 5]).numpy()
    assert draws.shape == (40_000, 2)
    inside = np.all((draws >= q.low.numpy()) & (draws <= q.high.numpy()), axis=1)
    # stratified: exactly round(0.2 m) uniform draws, all inside the box
    assert np.all(inside[-8000:])
    low, high = q.low.numpy() - 2.0, q.high.numpy() + 2.0
    g0, g1 = np.linspace(low[0], high[0], 400), np.linspace(low[1], high[1], 400)
    grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2).astype(np.float32)
    dens = np.exp(q.log_prob(grid).numpy()) * (g0[1] - g0[0]) * (g1[1] - g1[0])
    for f in (lambda z: z[:, 0], lambda z: z[:, 1] ** 2, lambda z: z[:, 0] > 1.0):
        exact = float(np.sum(dens * f(grid)))
        estimate = float(np.mean(f(draws)))
        assert estimate == pytest.approx(exact, abs=0.03)
    # the same seed gives the same draws
    np.testing.assert_array_equal(draws, q.sample(40_000, seed=[0, 5]).numpy())


def test_images_and_round_trip(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (300, 2, 2, 1)).astype(np.float32)
    q = MixtureProposal(n_components=3, domain=(-1.0, 1.0)).fit(x)
    assert q.sample(10, seed=[1, 2]).shape == (10, 2, 2, 1)
    assert np.all(q.low.numpy() == -1.0) and q.log_prob(x).shape == (300,)
    clone = tf.keras.utils.deserialize_keras_object(
        tf.keras.utils.serialize_keras_object(q)
    )
    assert clone.get_config() == q.get_config() and not clone.is_fitted


def test_bad_arguments():
    with pytest.raises(ValueError, match="inflate must be at least 1"):
        MixtureProposal(inflate=0.5)
    with pytest.raises(ValueError, match="uniform must be below 1"):
        MixtureProposal(uniform=1.0)
    with pytest.raises(ValueError, match="not fitted"):
        MixtureProposal().sample(3, seed=[0, 0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        MixtureProposal().fit(np.full((10, 2), np.nan))
    q = MixtureProposal(n_components=2).fit(mixture_2d(100)[0])
    with pytest.raises(ValueError, match="built for"):
        q.fit(np.zeros((10, 3)))


def test_log_prob_of_m_draws_uses_the_realised_uniform_share():
    q = MixtureProposal(n_components=2, uniform=0.1).fit(mixture_2d(500)[0])
    assert q.uniform_share() == 0.1 and q.uniform_share(4) == 0.0
    assert q.uniform_share(25) == pytest.approx(0.08)
    x = q.sample(4, seed=[0, 1])  # round(0.4) = 0 uniform draws
    gauss = MixtureProposal(n_components=2, uniform=0.0).fit(mixture_2d(500)[0])
    np.testing.assert_allclose(q.log_prob(x, draws=4), gauss.log_prob(x), rtol=1e-6)
