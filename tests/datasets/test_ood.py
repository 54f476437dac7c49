"""Out-of-distribution sets built from digits."""

import numpy as np
import pytest

from deel_ebm import datasets


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    return data.x_test[:200], data.y_test[:200]


def test_every_set_keeps_the_shape_and_the_pixel_range(digits):
    x, y = digits
    sets = datasets.ood_sets(x, y)
    assert tuple(sets) == datasets.OOD_KINDS
    for kind, images in sets.items():
        assert images.shape == x.shape and images.dtype == np.float32, kind
        assert images.min() >= -1.0 and images.max() <= 1.0, kind
        assert not np.allclose(images, x), kind


def test_each_transform_does_what_it_says(digits):
    x, y = digits
    np.testing.assert_allclose(datasets.ood_set("inverted", x), -x)
    shuffled = datasets.ood_set("shuffled", x)
    # the same pixels of each image, in another order
    np.testing.assert_allclose(
        np.sort(shuffled.reshape(len(x), -1), 1), np.sort(x.reshape(len(x), -1), 1)
    )
    mixed = datasets.ood_set("mixture", x, y, seed=3)
    # each mixture is the mean of its image and one image of another class
    flat, m = x.reshape(len(x), -1), mixed.reshape(len(x), -1)
    partner = 2 * m - flat
    dists = np.linalg.norm(partner[:, None] - flat[None], axis=2)
    matched = dists.argmin(1)
    assert np.all(dists.min(1) < 1e-4)
    assert np.all(y[matched] != y)
    u = datasets.ood_set("uniform", x, seed=1)
    assert abs(u.mean()) < 0.02 and abs(u.std() - 2 / np.sqrt(12)) < 0.02


def test_the_blur_is_a_normalised_gaussian():
    image = np.zeros((2, 9, 9, 1), np.float32)
    image[:, 4, 4] = 1.0
    out = datasets.gaussian_blur(image, 1.0)
    assert out.sum() == pytest.approx(2.0, rel=1e-5)  # mass kept away from the edge
    profile = out[0, 4, :, 0]
    ratio = profile[5] / profile[4]
    assert ratio == pytest.approx(np.exp(-0.5), rel=1e-3)
    # a constant image stays constant (edge padding)
    flat = np.full((2, 8, 8, 1), 0.3, np.float32)
    np.testing.assert_allclose(datasets.gaussian_blur(flat, 2.0), flat, atol=1e-6)


def test_seeded_sets_are_reproducible(digits):
    x, y = digits
    a = datasets.ood_set("shuffled", x, seed=5)
    np.testing.assert_array_equal(a, datasets.ood_set("shuffled", x, seed=5))
    assert not np.array_equal(a, datasets.ood_set("shuffled", x, seed=6))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, y: datasets.ood_set("rotated", x), "kind must be one of"),
        (lambda x, y: datasets.ood_set("inverted", x[:, :, :, 0]), "must be images"),
        (lambda x, y: datasets.ood_set("mixture", x, y[:5]), "has 5 labels"),
        (lambda x, y: datasets.gaussian_blur(x, 0.0), "blur_sigma must be positive"),
    ],
)
def test_bad_arguments_are_named(digits, call, message):
    x, y = digits
    with pytest.raises(ValueError, match=message):
        call(x, y)
