"""Out-of-distribution sets built from in-distribution images (nothing downloaded).

Each set transforms a batch of images ``(n, h, w, c)`` with pixels in ``domain``
into ``n`` images that are not digits but share their pixel range, the sets of
the joint-model benchmark (issue 12), from the easiest to the hardest for a
density:

- ``"inverted"``: ``lo + hi − x`` (bright background, dark strokes);
- ``"uniform"``: independent uniform pixels on ``domain``;
- ``"shuffled"``: each image's pixels in a random order of its own (same
  histogram, no strokes);
- ``"blurred"``: a Gaussian blur of standard deviation ``blur_sigma`` pixels
  (edge pixels repeated at the border): the strokes, smoothed;
- ``"mixture"``: the pixel-wise mean of two images of different classes
  (random pairs when no labels are given).
"""

from __future__ import annotations

import numpy as np

from deel_ebm._checks import check_domain, check_number
from deel_ebm.datasets.loaders import DIGITS_DOMAIN

__all__ = ["OOD_KINDS", "ood_set", "ood_sets", "gaussian_blur"]

OOD_KINDS = ("inverted", "uniform", "shuffled", "blurred", "mixture")


def _images(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"x must be images (n >= 2, h, w, c), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    return x


def gaussian_blur(x, sigma: float) -> np.ndarray:
    """Images ``(n, h, w, c)`` blurred by a Gaussian of ``sigma`` pixels (separable,
    kernel radius ``ceil(3 sigma)``, edge pixels repeated)."""
    x = _images(x)
    sigma = check_number("blur_sigma", sigma)
    if not sigma > 0:
        raise ValueError(f"blur_sigma must be positive, got {sigma}")
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = x
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        size = out.shape[axis]
        out = sum(
            w * np.take(padded, np.arange(i, i + size), axis=axis)
            for i, w in enumerate(taps)
        )
    return out.astype(np.float32)


def ood_set(
    kind: str,
    x,
    y=None,
    domain=DIGITS_DOMAIN,
    seed: int = 0,
    blur_sigma: float = 1.0,
) -> np.ndarray:
    """One out-of-distribution set of ``len(x)`` images (see the module).

    Args:
        kind: one of :data:`OOD_KINDS`.
        x: in-distribution images ``(n, h, w, c)``, pixels in ``domain``.
        y: their labels ``(n,)`` (``"mixture"`` pairs different classes).
        domain: ``(lo, hi)`` pixel range.
        seed: seed of the random draws.
        blur_sigma: the blur's standard deviation in pixels.

    Returns:
        float32 images of the shape of ``x``, pixels in ``domain``.
    """
    x = _images(x)
    lo, hi = check_domain(domain)
    if kind not in OOD_KINDS:
        raise ValueError(f"kind must be one of {OOD_KINDS}, got {kind!r}")
    rng = np.random.default_rng([int(seed), OOD_KINDS.index(kind)])
    n = len(x)
    if kind == "inverted":
        out = lo + hi - x
    elif kind == "uniform":
        out = rng.uniform(lo, hi, x.shape)
    elif kind == "shuffled":
        flat = x.reshape(n, -1)
        order = np.argsort(rng.random(flat.shape), axis=1)
        out = np.take_along_axis(flat, order, axis=1).reshape(x.shape)
    elif kind == "blurred":
        out = gaussian_blur(x, blur_sigma)
    else:  # "mixture"
        partner = rng.permutation(n)
        if y is not None:
            y = np.asarray(y).reshape(-1)
            if len(y) != n:
                raise ValueError(f"y has {len(y)} labels for {n} images")
            for _ in range(100):  # re-draw the partners of same-class pairs
                same = np.flatnonzero(y[partner] == y)
                if not len(same):
                    break
                partner[same] = rng.integers(0, n, len(same))
        out = 0.5 * (x + x[partner])
    return np.clip(out, lo, hi).astype(np.float32)


def ood_sets(x, y=None, domain=DIGITS_DOMAIN, seed: int = 0, blur_sigma=1.0) -> dict:
    """Every set of :data:`OOD_KINDS`: ``{kind: images}``."""
    return {
        kind: ood_set(kind, x, y, domain=domain, seed=seed, blur_sigma=blur_sigma)
        for kind in OOD_KINDS
    }
