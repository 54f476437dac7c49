"""Tests of deel_ebm.datasets: exact toy densities, samplers, loaders."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

import deel_ebm  # noqa: F401  (sets up the Keras-2 backend before TensorFlow)
from deel_ebm import datasets

RESOLUTION = 512
# Grid integral of each density over its domain: the midpoint rule is exact to
# ~1e-12 for these smooth densities; what remains is the mass outside the box
# (1.1e-5 for the pinwheel, whose arms reach radius 5.6, 6e-7 for 8gaussians).
MASS_TOLERANCE = 2e-5
N_SAMPLES = 20_000


def _grid(density, resolution=RESOLUTION):
    lo, hi = density.domain
    h = (hi - lo) / resolution
    axis = lo + (np.arange(resolution) + 0.5) * h
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], 1), h


@pytest.fixture(scope="module")
def grid_log_probs():
    """log p on the grid of each density, computed once (about 4 s in total)."""
    return {
        name: datasets.get_density(name).log_prob(_grid(datasets.get_density(name))[0])
        for name in datasets.DENSITIES
    }


def test_names_and_errors():
    assert datasets.DENSITIES == (
        "8gaussians",
        "rings",
        "checkerboard",
        "2spirals",
        "pinwheel",
        "moons",
    )
    with pytest.raises(ValueError, match="8gaussians, rings"):
        datasets.get_density("swissroll")
    assert datasets.get_density("rings") is datasets.get_density("rings")


@pytest.mark.parametrize("name", datasets.DENSITIES)
def test_log_prob_integrates_to_one(name, grid_log_probs):
    density = datasets.get_density(name)
    _, h = _grid(density)
    log_p = grid_log_probs[name]
    assert log_p.dtype == np.float64 and np.all(np.isfinite(log_p))
    assert abs(np.exp(log_p).sum() * h * h - 1.0) < MASS_TOLERANCE


@pytest.mark.parametrize("name", datasets.DENSITIES)
def test_samples_follow_log_prob(name, grid_log_probs):
    """Mean log p of samples matches -entropy, and a 30x30 histogram passes chi2."""
    density = datasets.get_density(name)
    x = density.sample(N_SAMPLES, seed=123)
    assert x.shape == (N_SAMPLES, 2) and x.dtype == np.float32
    lo, hi = density.domain
    _, h = _grid(density)
    log_p = grid_log_probs[name]
    neg_entropy = np.sum(np.exp(log_p) * log_p) * h * h
    lp = density.log_prob(x)
    stderr = lp.std() / math.sqrt(N_SAMPLES)
    assert abs(lp.mean() - neg_entropy) < 4.0 * stderr

    bins = 32  # 512 = 32 x 16 cells: exact bin probabilities from the grid
    probs = np.exp(log_p).reshape(bins, 16, bins, 16).sum(axis=(1, 3)) * h * h
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=[(lo, hi)] * 2)
    expected = N_SAMPLES * probs
    keep = expected > 5.0
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    p_value = stats.chi2.sf(chi2, keep.sum() - 1)
    assert p_value > 1e-3, (chi2, keep.sum())
    assert counts[~keep].sum() < 5.0 * max(1.0, expected[~keep].sum()) + 20


def test_wrong_sampler_fails_the_checks():
    """The statistics above do catch a sampler that is slightly off."""
    density = datasets.get_density("8gaussians")
    x = density.sample(N_SAMPLES, seed=123) * 1.05
    lp = density.log_prob(x)
    neg_entropy = -2.8316  # measured on the grid
    assert abs(lp.mean() - neg_entropy) > 4.0 * lp.std() / math.sqrt(N_SAMPLES)


def test_quadrature_matches_closed_form_circle():
    noise, radius = 0.08, 3.0
    exact = datasets.BlurredCircles2D("circle", [radius], noise)
    quad = datasets.BlurredCurves2D(
        "circle",
        [lambda t: radius * np.stack([np.cos(t), np.sin(t)], 1)],
        (0.0, 2.0 * np.pi),
        lambda t: np.full_like(t, 0.5 / np.pi),
        None,
        noise,
    )
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-4.5, 4.5, (20_000, 2)), exact.sample(5000, 1)])
    assert np.max(np.abs(quad.log_prob(x) - exact.log_prob(x))) < 1e-8


def _adaptive_log_prob(density, x):
    """log p(x) by scipy's adaptive quadrature, relative tolerance 1e-12."""
    s2 = density.noise**2
    t0, t1 = density.t_range
    fine = np.linspace(t0, t1, 100_001)
    logs = []
    for curve in density.curves:
        d2 = np.sum((curve(fine) - x) ** 2, 1)
        shift = d2.min()

        def f(t, curve=curve, shift=shift):
            d = np.sum((curve(np.array([t]))[0] - x) ** 2) - shift
            return density.t_pdf(np.array([t]))[0] * math.exp(-d / (2 * s2))

        val, _ = integrate.quad(
            f, t0, t1, points=[fine[np.argmin(d2)]], limit=500, epsabs=0.0, epsrel=1e-12
        )
        logs.append(math.log(val) - shift / (2 * s2))
    return np.logaddexp.reduce(logs) - math.log(len(logs)) - math.log(2 * math.pi * s2)


@pytest.mark.parametrize("name", ["2spirals", "pinwheel", "moons"])
def test_curve_log_prob_matches_adaptive_quadrature(name):
    """Quadrature error < 1e-6 in log p on the whole box, far tails included."""
    density = datasets.get_density(name)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-4.5, 4.5, (8, 2)), density.sample(4, seed=2)])
    ours = density.log_prob(x)
    reference = np.array([_adaptive_log_prob(density, point) for point in x])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_mixture_log_prob_pruning_is_exact():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, 2))
    log_w = np.log(rng.dirichlet(np.ones(500)))
    x = np.concatenate([rng.uniform(-6, 6, (3000, 2)), [[1e8, 0.0], [np.inf, 0.0]]])
    ours = datasets.isotropic_mixture_log_prob(x, centres, log_w, 0.05)
    d2 = np.sum((x[:-1, None] - centres[None]) ** 2, 2)
    brute = np.logaddexp.reduce(log_w - d2 / (2 * 0.05**2), axis=1) - math.log(
        2 * math.pi * 0.05**2
    )
    np.testing.assert_allclose(ours[:-1], brute, rtol=1e-13)
    assert ours[-1] == -np.inf


def test_mixture_log_prob_any_dimension():
    rng = np.random.default_rng(0)
    centres, x = rng.normal(size=(3, 5)), rng.normal(size=(10, 5))
    log_w = np.log([0.2, 0.3, 0.5])
    ours = datasets.isotropic_mixture_log_prob(x, centres, log_w, 0.7)
    ref = np.log(
        sum(
            w * stats.multivariate_normal(c, 0.49 * np.eye(5)).pdf(x)
            for w, c in zip(np.exp(log_w), centres)
        )
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_eight_gaussians_conventions():
    density = datasets.get_density("8gaussians")
    np.testing.assert_allclose(np.linalg.norm(density.modes, axis=1), 2 * math.sqrt(2))
    assert density.mode_std == pytest.approx(0.5 / math.sqrt(2))
    assert density.domain == (-4.5, 4.5)
    assert datasets.get_density("rings").modes is None


def test_sample_is_seeded():
    density = datasets.get_density("moons")
    np.testing.assert_array_equal(
        density.sample(50, seed=3), density.sample(50, seed=3)
    )
    assert not np.array_equal(density.sample(50, seed=3), density.sample(50, seed=4))
    assert density.sample(0).shape == (0, 2)
    with pytest.raises(ValueError, match="-1"):
        density.sample(-1)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        density.log_prob(np.zeros((3, 3)))


def test_load_2d():
    x_train, x_test = datasets.load_2d("checkerboard", n_train=300, n_test=100, seed=5)
    assert x_train.shape == (300, 2) and x_test.shape == (100, 2)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    again, _ = datasets.load_2d("checkerboard", n_train=300, n_test=7, seed=5)
    np.testing.assert_array_equal(x_train, again)
    assert not np.array_equal(x_train[:100], x_test)


def _collect(ds):
    return np.concatenate([np.asarray(batch) for batch in ds])


@pytest.mark.parametrize("inline", [True, False])
def test_as_dataset(inline, monkeypatch):
    if not inline:
        monkeypatch.setattr(datasets.loaders, "MAX_INLINE_BYTES", 0)
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    ds = datasets.as_dataset(x, batch_size=4, shuffle=False)
    batches = [np.asarray(b) for b in ds]
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    shuffled = _collect(datasets.as_dataset(x, 4, shuffle=True, seed=1))
    assert sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()
    np.testing.assert_array_equal(
        shuffled, _collect(datasets.as_dataset(x, 4, shuffle=True, seed=1))
    )
    repeated = datasets.as_dataset(x, 4, repeat=True)
    assert len(list(repeated.take(7))) == 7
    xy = datasets.as_dataset(x, 5, shuffle=True, y=np.arange(10))
    for bx, by in xy:
        np.testing.assert_array_equal(np.asarray(bx)[:, 0] / 2, np.asarray(by))


def test_as_dataset_errors():
    with pytest.raises(ValueError, match="0"):
        datasets.as_dataset(np.zeros((4, 2)), 0)
    with pytest.raises(TypeError, match="2.5"):
        datasets.as_dataset(np.zeros((4, 2)), 2.5)
    with pytest.raises(ValueError, match="as many rows as x"):
        datasets.as_dataset(np.zeros((4, 2)), 2, y=np.zeros(3))


def test_load_digits():
    data = datasets.load_digits()
    assert data.x_train.shape == (1257, 8, 8, 1) and data.x_test.shape == (540, 8, 8, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() == -1.0 and data.x_train.max() == 1.0
    # stratified: every class holds 30 % (+- 1 image) of its images in the test set
    train_counts = np.bincount(data.y_train, minlength=10)
    test_counts = np.bincount(data.y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.3 * (train_counts + test_counts)) <= 1)
    # the split is fixed by the seed
    again = datasets.load_digits(domain=(0.0, 1.0))
    np.testing.assert_array_equal(again.y_test, data.y_test)
    np.testing.assert_allclose(2.0 * again.x_test - 1.0, data.x_test, atol=1e-6)
    assert data.y_test[:10].tolist() == datasets.load_digits().y_test[:10].tolist()
    other = datasets.load_digits(seed=1)
    assert not np.array_equal(other.y_test, data.y_test)
    with pytest.raises(ValueError, match=r"\(1.0, 0.0\)"):
        datasets.load_digits(domain=(1.0, 0.0))
    with pytest.raises(ValueError, match="1.5"):
        datasets.load_digits(test_size=1.5)
