r"""Toy 2D densities with an exact log-density.

Every 2D density is a :class:`Density2D`: a seeded sampler and the exact
log-density of *the same* distribution, so that a model trained on its samples can
be scored exactly (see :mod:`deel_ebm.metrics.exact2d`). The shapes follow the
FFJORD toy data (Grathwohl et al., 2019) and fit in the box :math:`(-4.5, 4.5)^2`:

=============  ==============================================================
name           definition
=============  ==============================================================
8gaussians     8 equal Gaussians, centres on the circle of radius
               :math:`2\sqrt2`, std :math:`0.5/\sqrt2`
rings          4 equal blurred circles of radii 3, 2.4, 1.65, 0.75, noise 0.08
checkerboard   8 equal blurred 2x2 squares of a checkerboard on
               :math:`[-4, 4]^2`, noise 0.08
2spirals       2 blurred spiral arms :math:`\pm(-t\cos t, t\sin t)/3`,
               :math:`t = 3\pi\sqrt{u}`, noise 0.1
pinwheel       5 blurred arms :math:`2t(\cos a, -\sin a)`,
               :math:`a = 2\pi j/5 + e^t/4`, :math:`t \sim N(1, 0.3^2)`
               truncated at 6 std, noise 0.2
moons          2 blurred half circles of radius 2 (sklearn's two moons
               scaled by 2 and centred), noise 0.1
=============  ==============================================================

*Blurred* means convolved with an isotropic Gaussian: a curve :math:`c(t)` with a
parameter density :math:`q(t)` and noise :math:`\sigma` has the density

.. math::
    p(x) = \int q(t)\, \mathcal N\!\left(x;\, c(t), \sigma^2 I\right) dt,

and is sampled exactly by drawing :math:`t \sim q`, then :math:`x = c(t) + \sigma
\xi`. Closed forms are used where they exist (a blurred circle of radius
:math:`R` gives :math:`p(x) = e^{-(r^2+R^2)/2\sigma^2} I_0(rR/\sigma^2) /
(2\pi\sigma^2)` with :math:`r = \|x\|`; a blurred square is a product of normal
CDF differences); otherwise the integral is computed by composite Gauss-Legendre
quadrature with panels of arc length :math:`2\sigma` and 8 nodes each, the two
end panels of each curve split geometrically (ratio 1/4, 5 times) to resolve the
sharp end-point layers seen from far away. Measured error in log-density: below
:math:`10^{-9}` against the closed form of a blurred circle; against scipy's
adaptive quadrature, below :math:`10^{-8}` where :math:`\log p > -50` and below
:math:`10^{-7}` everywhere in the box (tested to :math:`10^{-6}` in
``tests/test_datasets.py``).

Departures from FFJORD, made so that every density is smooth, positive
everywhere (finite reverse KL) and exactly sampled: the checkerboard is blurred,
the rings draw uniform angles and equal ring weights, the spirals replace the
uniform jitter by Gaussian noise, and the pinwheel's tangential noise is
isotropic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from deel_ebm._checks import check_count, check_samples

__all__ = [
    "DENSITIES",
    "DEFAULT_DOMAIN",
    "Density2D",
    "isotropic_mixture_log_prob",
    "GaussianMixture2D",
    "BlurredCircles2D",
    "BlurredSquares2D",
    "BlurredCurves2D",
    "get_density",
    "as_points",
]

DENSITIES = ("8gaussians", "rings", "checkerboard", "2spirals", "pinwheel", "moons")
DEFAULT_DOMAIN = (-4.5, 4.5)

EIGHT_GAUSSIANS_RADIUS = 2.0 * math.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 0.5 / math.sqrt(2.0)
RINGS_RADII = (3.0, 2.4, 1.65, 0.75)
RINGS_NOISE = 0.08
CHECKERBOARD_SIDE = 2.0
CHECKERBOARD_NOISE = 0.08
SPIRALS_MAX_ANGLE = 3.0 * math.pi
SPIRALS_NOISE = 0.1
PINWHEEL_ARMS = 5
PINWHEEL_RADIAL_MEAN = 1.0
PINWHEEL_RADIAL_STD = 0.3
PINWHEEL_RATE = 0.25
PINWHEEL_TRUNCATION = 6.0
PINWHEEL_NOISE = 0.2
MOONS_RADIUS = 2.0
MOONS_NOISE = 0.1

QUADRATURE_PANEL = 2.0  # panel arc length, in units of the noise std
QUADRATURE_ORDER = 8  # Gauss-Legendre nodes per panel
QUADRATURE_GRADING = 0.25  # end panels are split geometrically with this ratio ...
QUADRATURE_GRADING_LEVELS = 5  # ... this many times (down to 2 sigma / 4**5)
PRUNE_LOG_RATIO = 40.0  # mixture terms below exp(-40) x the largest are skipped
MIXTURE_CHUNK_ELEMENTS = 1 << 22  # mixture terms evaluated at once (32 MiB)

_LOG_2PI = math.log(2.0 * math.pi)


def as_points(x, name="x") -> np.ndarray:
    """``x`` checked as finite 2D points ``(n, 2)``, float64."""
    return check_samples(x, name, (2,), allow_empty=True)


def _normalised_weights(weights, k) -> np.ndarray:
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(
            f"`weights` must be {k} non-negative numbers, got {weights!r}."
        )
    return w / w.sum()


def isotropic_mixture_log_prob(x, centres, log_weights, std) -> np.ndarray:
    r"""Exact :math:`\log \sum_j w_j \mathcal N(x; c_j, \sigma^2 I)` in any dimension.

    Computed in float64 with a log-sum-exp per point. In 2D with more than 64
    centres, points are grouped in square cells of side :math:`3\sigma` and, in
    each cell, the terms smaller than :math:`e^{-40}` times a term that is larger
    everywhere in the cell are skipped: a relative error below
    ``len(centres) * 4e-18``. A kernel density estimate is the special case
    ``centres = data``, ``log_weights = -log(n)``.

    Args:
        x: points ``(n, d)``.
        centres: component means ``(m, d)``.
        log_weights: ``(m,)`` log mixture weights (``-inf`` allowed).
        std: common component std :math:`\sigma > 0`.

    Returns:
        float64 ``(n,)``; ``-inf`` for infinite points, NaN for NaN points.
    """
    x = np.asarray(x, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    log_weights = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or centres.ndim != 2 or x.shape[1] != centres.shape[1]:
        raise ValueError(
            f"Need x (n, d) and centres (m, d): {x.shape}, {centres.shape}."
        )
    if log_weights.shape != (len(centres),):
        raise ValueError(f"`log_weights` must have shape ({len(centres)},).")
    if not std > 0:
        raise ValueError(f"`std` must be positive, got {std!r}.")
    dim = x.shape[1]
    out = np.full(len(x), np.nan)
    out[np.any(np.isinf(x), axis=1) & ~np.any(np.isnan(x), axis=1)] = -np.inf
    norm = -0.5 * dim * (_LOG_2PI + 2.0 * math.log(std))
    scale = -0.5 / std**2
    c2 = np.sum(centres**2, axis=1)
    chunk = max(1, MIXTURE_CHUNK_ELEMENTS // max(1, len(centres)))

    def fill(sel, keep=slice(None)):
        cs, lw = centres[keep], log_weights[keep]
        for start in range(0, len(sel), chunk):
            part = sel[start : start + chunk]
            pts = x[part]
            if dim <= 3:
                sq = sum((pts[:, i, None] - cs[None, :, i]) ** 2 for i in range(dim))
            else:
                sq = np.sum(pts**2, 1)[:, None] + c2[keep] - 2.0 * pts @ cs.T
                sq = np.maximum(sq, 0.0)
            a = scale * sq + lw
            top = a.max(axis=1)
            with np.errstate(invalid="ignore"):
                out[part] = top + np.log(np.exp(a - top[:, None]).sum(axis=1)) + norm

    finite = np.all(np.isfinite(x), axis=1)
    if dim != 2 or len(centres) <= 64:
        fill(np.flatnonzero(finite))
        return out
    side = 3.0 * std
    near = finite & np.all(np.abs(x) < 1e6 * side, axis=1)
    fill(np.flatnonzero(finite & ~near))
    idx = np.flatnonzero(near)
    cells = np.floor(x[idx] / side).astype(np.int64)
    keys, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    for cell, (lo_pt, hi_pt) in enumerate(zip(bounds[:-1], bounds[1:])):
        lo = keys[cell] * side
        gap = np.maximum(np.maximum(lo - centres, centres - lo - side), 0.0)
        far = np.maximum(np.abs(centres - lo), np.abs(centres - lo - side))
        upper = log_weights + scale * np.sum(gap**2, axis=1)
        lower = log_weights + scale * np.sum(far**2, axis=1)
        fill(idx[order[lo_pt:hi_pt]], upper >= lower.max() - PRUNE_LOG_RATIO)
    return out


class Density2D:
    """A 2D density with a seeded exact sampler and an exact log-density.

    Subclasses implement ``_sample(n, rng)`` and ``_log_prob(x)``. Instances are
    immutable; :func:`get_density` returns shared ones.

    Args:
        name: short name, e.g. ``"8gaussians"``.
        domain: ``(lo, hi)``: the box :math:`(lo, hi)^2` holds essentially all
            the mass (the mass outside is stated per density in the tests).
        modes: ``(K, 2)`` centres of a Gaussian mixture, else ``None``.
        mode_std: the std of each mixture component, else ``None``.
    """

    def __init__(self, name, domain=DEFAULT_DOMAIN, modes=None, mode_std=None):
        lo, hi = (float(v) for v in domain)
        if not lo < hi:
            raise ValueError(f"`domain` must be (lo, hi) with lo < hi, got {domain!r}.")
        self.name = str(name)
        self.domain = (lo, hi)
        self.modes = None if modes is None else np.asarray(modes, dtype=np.float64)
        self.mode_std = None if mode_std is None else float(mode_std)

    def sample(self, n: int, seed=None) -> np.ndarray:
        """Draw ``n`` exact samples, shape ``(n, 2)`` float32.

        Args:
            n: number of samples.
            seed: ``None``, an int or a ``numpy.random.Generator``.
        """
        n = check_count("n", n)
        rng = np.random.default_rng(seed)
        return self._sample(n, rng).astype(np.float32)

    def log_prob(self, x) -> np.ndarray:
        """Exact log-density of points ``x`` of shape ``(n, 2)``, float64 ``(n,)``."""
        return self._log_prob(as_points(x))

    def prob(self, x) -> np.ndarray:
        """Density of points ``x`` of shape ``(n, 2)``, float64 ``(n,)``."""
        return np.exp(self.log_prob(x))

    def _sample(self, n, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_prob(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, domain={self.domain})"


class GaussianMixture2D(Density2D):
    r"""Mixture of isotropic Gaussians :math:`\sum_k w_k \mathcal N(c_k, \sigma^2 I)`.

    Args:
        name: density name.
        centres: ``(K, 2)`` means (exposed as ``modes``).
        std: common std :math:`\sigma` (exposed as ``mode_std``).
        weights: ``(K,)`` mixture weights (normalised), equal by default.
        domain: see :class:`Density2D`.
    """

    def __init__(self, name, centres, std, weights=None, domain=DEFAULT_DOMAIN):
        centres = as_points(centres, "centres")
        if not std > 0:
            raise ValueError(f"`std` must be positive, got {std!r}.")
        super().__init__(name, domain, modes=centres, mode_std=std)
        self.weights = _normalised_weights(weights, len(centres))

    def _sample(self, n, rng):
        k = rng.choice(len(self.modes), size=n, p=self.weights)
        return self.modes[k] + self.mode_std * rng.standard_normal((n, 2))

    def _log_prob(self, x):
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        return isotropic_mixture_log_prob(x, self.modes, log_w, self.mode_std)


class BlurredCircles2D(Density2D):
    r"""Circles of radii :math:`R_k`, uniform angle, blurred by noise :math:`\sigma`.

    Closed form per circle, computed with the scaled Bessel function
    :math:`\mathrm{i0e}(z) = e^{-z} I_0(z)`:

    .. math::
        \log p_k(x) = -\log(2\pi\sigma^2) - \frac{(r - R_k)^2}{2\sigma^2}
        + \log \mathrm{i0e}\!\left(\frac{r R_k}{\sigma^2}\right),\quad r = \|x\|.

    Args:
        name: density name.
        radii: circle radii.
        noise: Gaussian noise std :math:`\sigma`.
        weights: circle weights (normalised), equal by default.
        domain: see :class:`Density2D`.
    """

    def __init__(self, name, radii, noise, weights=None, domain=DEFAULT_DOMAIN):
        super().__init__(name, domain)
        self.radii = np.asarray(radii, dtype=np.float64).reshape(-1)
        if not noise > 0 or np.any(self.radii < 0):
            raise ValueError(
                f"Need noise > 0 and radii >= 0, got {noise!r}, {radii!r}."
            )
        self.noise = float(noise)
        self.weights = _normalised_weights(weights, len(self.radii))

    def _sample(self, n, rng):
        k = rng.choice(len(self.radii), size=n, p=self.weights)
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        ring = self.radii[k, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return ring + self.noise * rng.standard_normal((n, 2))

    def _log_prob(self, x):
        s2 = self.noise**2
        r = np.hypot(x[:, 0], x[:, 1])[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pk = (
                -_LOG_2PI
                - math.log(s2)
                - (r - self.radii) ** 2 / (2.0 * s2)
                + np.log(special.i0e(r * self.radii / s2))
            )
            return special.logsumexp(log_pk + np.log(self.weights), axis=1)


def _log_normal_mass(u, v):
    """log(Phi(u) - Phi(v)) for u > v, stable in both tails."""
    flip = (u + v) > 0
    u, v = np.where(flip, -v, u), np.where(flip, -u, v)
    lu, lv = special.log_ndtr(u), special.log_ndtr(v)
    return lu + np.log(-np.expm1(lv - lu))


class BlurredSquares2D(Density2D):
    r"""Union of equal-weight uniform squares blurred by noise :math:`\sigma`.

    A square :math:`[a_1, a_1+s] \times [a_2, a_2+s]` gives the closed form

    .. math::
        p_k(x) = \prod_{i=1}^{2} \frac{\Phi\left(\frac{x_i - a_i}{\sigma}\right)
        - \Phi\left(\frac{x_i - a_i - s}{\sigma}\right)}{s}.

    Args:
        name: density name.
        corners: ``(K, 2)`` lower-left corners :math:`a`.
        side: square side :math:`s`.
        noise: Gaussian noise std :math:`\sigma`.
        domain: see :class:`Density2D`.
    """

    def __init__(self, name, corners, side, noise, domain=DEFAULT_DOMAIN):
        super().__init__(name, domain)
        if not side > 0 or not noise > 0:
            raise ValueError(f"Need side > 0 and noise > 0, got {side!r}, {noise!r}.")
        self.corners = as_points(corners, "corners")
        self.side, self.noise = float(side), float(noise)

    def _sample(self, n, rng):
        k = rng.integers(len(self.corners), size=n)
        uniform = self.corners[k] + self.side * rng.uniform(size=(n, 2))
        return uniform + self.noise * rng.standard_normal((n, 2))

    def _log_prob(self, x):
        z = (x[:, None, :] - self.corners[None]) / self.noise
        per_axis = _log_normal_mass(z, z - self.side / self.noise) - math.log(self.side)
        return special.logsumexp(per_axis.sum(axis=2), axis=1) - math.log(
            len(self.corners)
        )


class BlurredCurves2D(Density2D):
    r"""Equal-weight curves :math:`c_k(t)` blurred by isotropic noise :math:`\sigma`.

    .. math::
        p(x) = \frac1K \sum_{k=1}^K \int_{t_0}^{t_1} q(t)\,
        \mathcal N\!\left(x;\, c_k(t), \sigma^2 I\right) dt

    The integral is computed by composite Gauss-Legendre quadrature in :math:`t`
    (``QUADRATURE_ORDER`` nodes per panel, panels of arc length at most
    ``QUADRATURE_PANEL`` :math:`\sigma`, end panels refined geometrically), i.e.
    as a fixed Gaussian mixture: see the module docstring for its error.

    Args:
        name: density name.
        curves: callables mapping ``t`` of shape ``(m,)`` to points ``(m, 2)``.
        t_range: ``(t0, t1)`` support of the parameter density.
        t_pdf: vectorised parameter density :math:`q` on ``t_range``.
        t_sampler: ``t_sampler(rng, n)`` draws ``n`` exact samples of :math:`q`.
        noise: Gaussian noise std :math:`\sigma`.
        domain: see :class:`Density2D`.
    """

    def __init__(
        self, name, curves, t_range, t_pdf, t_sampler, noise, domain=DEFAULT_DOMAIN
    ):
        super().__init__(name, domain)
        if not noise > 0:
            raise ValueError(f"`noise` must be positive, got {noise!r}.")
        self.curves, self.noise = tuple(curves), float(noise)
        self.t_range = (float(t_range[0]), float(t_range[1]))
        self.t_pdf, self.t_sampler = t_pdf, t_sampler
        nodes, weights = [], []
        gl_t, gl_w = np.polynomial.legendre.leggauss(QUADRATURE_ORDER)
        fine = np.linspace(*self.t_range, 20001)
        for curve in self.curves:
            steps = np.linalg.norm(np.diff(curve(fine), axis=0), axis=1)
            arc = np.concatenate([[0.0], np.cumsum(steps)])
            n_panels = max(2, math.ceil(arc[-1] / (QUADRATURE_PANEL * self.noise)))
            inner = np.linspace(0.0, 1.0, n_panels + 1)[1:-1]
            ends = inner[0] * QUADRATURE_GRADING ** np.arange(
                QUADRATURE_GRADING_LEVELS, 0, -1
            )
            s = np.concatenate([[0.0], ends, inner, 1.0 - ends[::-1], [1.0]])
            edges = np.interp(s * arc[-1], arc, fine)
            half = 0.5 * np.diff(edges)[:, None]
            t = (0.5 * (edges[:-1] + edges[1:]))[:, None] + half * gl_t
            nodes.append(curve(t.reshape(-1)))
            weights.append((half * gl_w * t_pdf(t)).reshape(-1) / len(self.curves))
        self.nodes = np.concatenate(nodes)
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(np.concatenate(weights))

    def _sample(self, n, rng):
        k = rng.integers(len(self.curves), size=n)
        t = np.asarray(self.t_sampler(rng, n), dtype=np.float64)
        points = np.empty((n, 2))
        for j, curve in enumerate(self.curves):
            points[k == j] = curve(t[k == j])
        return points + self.noise * rng.standard_normal((n, 2))

    def _log_prob(self, x):
        return isotropic_mixture_log_prob(x, self.nodes, self.log_weights, self.noise)


def _spiral(sign):
    return lambda t: sign * np.stack([-t * np.cos(t), t * np.sin(t)], axis=1) / 3.0


def _pinwheel_arm(j):
    def arm(t):
        angle = 2.0 * np.pi * j / PINWHEEL_ARMS + PINWHEEL_RATE * np.exp(t)
        return 2.0 * t[:, None] * np.stack([np.cos(angle), -np.sin(angle)], axis=1)

    return arm


def _moon(outer):
    def moon(t):
        if outer:
            xy = np.stack([np.cos(t) - 0.5, np.sin(t) - 0.25], axis=1)
        else:
            xy = np.stack([0.5 - np.cos(t), 0.25 - np.sin(t)], axis=1)
        return MOONS_RADIUS * xy

    return moon


def _build(name) -> Density2D:
    if name == "8gaussians":
        angles = np.pi / 4.0 * np.arange(8)
        centres = EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], 1)
        return GaussianMixture2D(name, centres, EIGHT_GAUSSIANS_STD)
    if name == "rings":
        return BlurredCircles2D(name, RINGS_RADII, RINGS_NOISE)
    if name == "checkerboard":
        cells = [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
        corners = CHECKERBOARD_SIDE * np.asarray(cells, dtype=np.float64)
        return BlurredSquares2D(name, corners, CHECKERBOARD_SIDE, CHECKERBOARD_NOISE)
    if name == "2spirals":
        t_max = SPIRALS_MAX_ANGLE
        return BlurredCurves2D(
            name,
            [_spiral(1.0), _spiral(-1.0)],
            (0.0, t_max),
            lambda t: 2.0 * t / t_max**2,
            lambda rng, n: t_max * np.sqrt(rng.uniform(size=n)),
            SPIRALS_NOISE,
        )
    if name == "pinwheel":
        cut = PINWHEEL_TRUNCATION
        radial = stats.truncnorm(-cut, cut, PINWHEEL_RADIAL_MEAN, PINWHEEL_RADIAL_STD)
        t_range = radial.support()
        return BlurredCurves2D(
            name,
            [_pinwheel_arm(j) for j in range(PINWHEEL_ARMS)],
            t_range,
            radial.pdf,
            lambda rng, n: radial.rvs(size=n, random_state=rng),
            PINWHEEL_NOISE,
        )
    if name == "moons":
        return BlurredCurves2D(
            name,
            [_moon(True), _moon(False)],
            (0.0, np.pi),
            lambda t: np.full_like(t, 1.0 / np.pi),
            lambda rng, n: rng.uniform(0.0, np.pi, size=n),
            MOONS_NOISE,
        )
    raise ValueError(f"Unknown density {name!r}; valid names: {', '.join(DENSITIES)}.")


_DENSITY_CACHE: dict[str, Density2D] = {}


def get_density(name: str) -> Density2D:
    """Return the shared :class:`Density2D` called ``name`` (one of ``DENSITIES``).

    Example:
        >>> d = get_density("8gaussians")
        >>> x = d.sample(1000, seed=0)
        >>> d.log_prob(x).shape
        (1000,)

    Raises:
        ValueError: if ``name`` is not in ``DENSITIES``.
    """
    if not isinstance(name, str) or name not in DENSITIES:
        raise ValueError(
            f"Unknown density {name!r}; valid names: {', '.join(DENSITIES)}."
        )
    if name not in _DENSITY_CACHE:
        _DENSITY_CACHE[name] = _build(name)
    return _DENSITY_CACHE[name]
