r"""Tractable proposals for importance-sampled maximum likelihood.

The gradient of the negative log-likelihood of :math:`p_\theta \propto e^{-E_\theta}`
is :math:`\mathbb E_{data}[\nabla E] - \mathbb E_{p_\theta}[\nabla E]`. Persistent
chains estimate the second term with approximate samples of :math:`p_\theta`;
an importance sampler estimates it exactly in the limit with draws of a fixed,
tractable :math:`q`:

.. math:: \mathbb E_{p_\theta}[\nabla E] \approx \sum_i w_i \nabla E(x_i),\qquad
   w = \operatorname{softmax}(-E(x_i) - \log q(x_i)),\quad x_i \sim q.

No chain, no step size, no mode can be lost: every region ``q`` covers is
reweighted at every step. :class:`MixtureProposal` is ``q = (1 − u) · GMM + u ·
Uniform(box)``: a Gaussian mixture fitted once to the training data (covariances
inflated, so ``q`` is wider than the data) plus a uniform share on the data's
box (so mass the model puts away from the data is seen and pushed down).

Where it stops working: the effective sample size of the weights falls with the
dimension. With 4096 draws it is 0.5–0.9 of the draws up to about 8 dimensions,
0.1–0.2 at 16 and a handful of draws from 32 on (``research/r1_2d_schemes``,
``dimlimit.py``): beyond about 8 dimensions train with chains.
"""

from __future__ import annotations

import math

import numpy as np

from deel_ebm import nets
from deel_ebm._backend import keras, tf
from deel_ebm._checks import (
    check_count,
    check_domain,
    check_positive,
    check_probability,
)
from deel_ebm.core._random import categorical

__all__ = [
    "MixtureProposal",
    "fit_gaussian_mixture",
    "MAX_PROPOSAL_DIM",
    "DEFAULT_N_COMPONENTS",
    "DEFAULT_NUM_NEGATIVES",
]

#: Above this many dimensions (flattened) the default model trains with chains.
MAX_PROPOSAL_DIM = nets.LOW_DIM
DEFAULT_N_COMPONENTS = 50
DEFAULT_INFLATE = 1.2
DEFAULT_UNIFORM = 0.1
DEFAULT_REG_COVAR = 1e-4
#: the default box: the data's range per coordinate, widened by this share of it
#: on each side
DEFAULT_BOX_MARGIN = 0.25
#: Proposal draws per training step.
DEFAULT_NUM_NEGATIVES = 4096
#: Data points the mixture is fitted on (a random subset of larger data).
MAX_FIT_POINTS = 20_000
_LOG_2PI = math.log(2.0 * math.pi)


def _kmeans_plus_plus(x, n, rng):
    """``n`` initial centres spread over ``x`` (k-means++ seeding)."""
    centres = [x[rng.integers(len(x))]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, n):
        total = d2.sum()
        i = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[i])
        d2 = np.minimum(d2, np.sum((x - x[i]) ** 2, axis=1))
    return np.stack(centres)


def _component_log_density(x, means, chol):
    """``(n, C)`` log N(x; μ_c, L_c L_cᵀ)."""
    n, d = x.shape
    out = np.empty((n, len(means)))
    for c, (mu, lower) in enumerate(zip(means, chol)):
        z = np.linalg.solve(lower, (x - mu).T)  # (d, n)
        log_det = 2.0 * np.sum(np.log(np.diag(lower)))
        out[:, c] = -0.5 * (np.sum(z * z, axis=0) + log_det + d * _LOG_2PI)
    return out


def fit_gaussian_mixture(
    x,
    n_components: int = DEFAULT_N_COMPONENTS,
    reg_covar: float = DEFAULT_REG_COVAR,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
):
    """Full-covariance Gaussian mixture by EM (k-means++ start), in NumPy.

    Args:
        x: ``(n, d)`` points.
        n_components: mixture size (at most ``n``).
        reg_covar: added to every covariance's diagonal.
        max_iter, tol: EM stops after ``max_iter`` iterations or when the mean
            log-likelihood gains less than ``tol``.
        seed: seed of the initialisation.

    Returns:
        ``(weights (C,), means (C, d), covariances (C, d, d))`` in float64.
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    c = min(int(n_components), n)
    rng = np.random.default_rng(seed)
    means = _kmeans_plus_plus(x, c, rng)
    # hard assignment to the nearest centre starts the covariances
    labels = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    resp = np.eye(c)[labels]
    previous = -np.inf
    for _ in range(max_iter):
        counts = resp.sum(axis=0) + 10 * np.finfo(float).eps
        weights = counts / n
        means = resp.T @ x / counts[:, None]
        covs = np.empty((c, d, d))
        for j in range(c):
            diff = x - means[j]
            covs[j] = (resp[:, j, None] * diff).T @ diff / counts[j]
            covs[j].flat[:: d + 1] += reg_covar
        chol = np.linalg.cholesky(covs)
        log_joint = _component_log_density(x, means, chol) + np.log(weights)
        log_norm = np.logaddexp.reduce(log_joint, axis=1)
        resp = np.exp(log_joint - log_norm[:, None])
        current = float(np.mean(log_norm))
        if abs(current - previous) < tol:
            break
        previous = current
    return weights, means, covs


@keras.utils.register_keras_serializable(package="deel_ebm")
class MixtureProposal(keras.layers.Layer):
    r"""``q = (1 − u) · GMM + u · Uniform(box)``, fitted to the training data.

    The mixture is fitted once (:meth:`fit`, called by ``EnergyModel.fit`` when
    it is not fitted yet) with EM on at most 20 000 training points; its
    covariances are then multiplied by ``inflate²`` (q must be wider than the
    data, where the model's tails are). A fixed share ``round(u m)`` of every
    ``m`` draws is uniform on the box (stratified: the weights of the two parts
    have lower variance than with a random share). The fitted parameters are
    variables: the proposal is saved and restored with the model.

    Args:
        n_components: Gaussian components.
        inflate: factor on the components' standard deviations (≥ 1).
        uniform: share ``u`` of uniform draws, in [0, 1).
        reg_covar: added to every covariance's diagonal in the fit.
        domain: the box ``(low, high)`` of the uniform part (every coordinate);
            by default the data's range per coordinate, widened by a quarter of
            it on each side. Outside the box only the Gaussians' thin tails
            draw points, so the likelihood barely sees the model there: train
            and use the density on the box (a k-Lipschitz energy need not be
            normalisable on the whole space).
        seed: seed of the fit's initialisation.

    Example:
        >>> q = deel_ebm.core.proposals.MixtureProposal(n_components=8)
        >>> x_data, _ = deel_ebm.datasets.load_2d("8gaussians", 2000, 10)
        >>> q = q.fit(x_data)
        >>> x = q.sample(1000, seed=[0, 1])
        >>> q.log_prob(x).shape
        TensorShape([1000])
    """

    def __init__(
        self,
        n_components: int = DEFAULT_N_COMPONENTS,
        inflate: float = DEFAULT_INFLATE,
        uniform: float = DEFAULT_UNIFORM,
        reg_covar: float = DEFAULT_REG_COVAR,
        domain=None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_components = check_count("n_components", n_components)
        self.inflate = check_positive("inflate", inflate)
        if self.inflate < 1.0:
            raise ValueError(f"inflate must be at least 1, got {inflate}")
        self.uniform = check_probability("uniform", uniform)
        if self.uniform >= 1.0:
            raise ValueError(f"uniform must be below 1, got {uniform}")
        self.reg_covar = check_positive("reg_covar", reg_covar)
        self.domain = None if domain is None else check_domain(domain)
        self.seed = int(seed)
        self.sample_shape = None

    def build(self, input_shape):
        shape = tuple(int(s) for s in input_shape[1:])
        self.sample_shape = shape
        d, c = int(np.prod(shape)), self.n_components
        self.dim = d
        shapes = {  # the fitted parameters (set by fit), in variables
            "means": (c, d),
            "scale_tril": (c, d, d),
            "precision_tril": (c, d, d),  # P with P Pᵀ = Σ⁻¹
            "log_weights": (c,),
            "log_norm": (c,),  # log weight − log-normaliser of each component
            "low": (d,),
            "high": (d,),
            "fitted": (),
        }
        for name, var_shape in shapes.items():
            weight = self.add_weight(
                name=name,
                shape=var_shape,
                initializer=keras.initializers.Zeros(),
                trainable=False,
            )
            setattr(self, name, weight)
        super().build(input_shape)

    @property
    def is_fitted(self) -> bool:
        return self.built and bool(self.fitted.numpy() > 0)

    def fit(self, x) -> MixtureProposal:
        """Fit the mixture and the box to training points ``x`` ``(n, *shape)``."""
        x = np.asarray(x)
        if x.ndim < 2 or len(x) < 2:
            raise ValueError(f"fit needs at least 2 samples, got shape {x.shape}")
        if not self.built:
            self.build((None, *x.shape[1:]))
        elif tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"samples have shape {tuple(x.shape[1:])}, the proposal was built "
                f"for {self.sample_shape}"
            )
        rng = np.random.default_rng(self.seed)
        if len(x) > MAX_FIT_POINTS:  # pick the rows first: no copy of all the data
            x = x[np.sort(rng.choice(len(x), MAX_FIT_POINTS, replace=False))]
        flat = x.reshape(len(x), -1).astype(np.float64)
        if not np.all(np.isfinite(flat)):
            raise ValueError("the proposal's fit data contain NaN or Inf values")
        weights, means, covs = fit_gaussian_mixture(
            flat, self.n_components, self.reg_covar, seed=self.seed
        )
        c = len(weights)  # fewer components than asked when there are few points
        if c < self.n_components:  # unused components: zero weight, unit covariance
            pad = self.n_components - c
            weights = np.concatenate([weights, np.zeros(pad)])
            means = np.concatenate([means, np.zeros((pad, self.dim))])
            covs = np.concatenate([covs, np.tile(np.eye(self.dim), (pad, 1, 1))])
        covs = covs * self.inflate**2
        chol = np.linalg.cholesky(covs)
        prec = np.linalg.cholesky(np.linalg.inv(covs))  # P Pᵀ = Σ⁻¹
        log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        with np.errstate(divide="ignore"):
            log_w = np.log(weights)
        log_norm = log_w - 0.5 * log_det - 0.5 * self.dim * _LOG_2PI
        if self.domain is not None:
            low = np.full(self.dim, self.domain[0])
            high = np.full(self.dim, self.domain[1])
        else:
            lo, hi = flat.min(axis=0), flat.max(axis=0)
            margin = np.maximum(DEFAULT_BOX_MARGIN * (hi - lo), 1e-3)
            low, high = lo - margin, hi + margin
        for var, value in (
            (self.means, means),
            (self.scale_tril, chol),
            (self.precision_tril, prec),
            (self.log_weights, np.maximum(log_w, -1e30)),
            (self.log_norm, np.maximum(log_norm, -1e30)),
            (self.low, low),
            (self.high, high),
            (self.fitted, 1.0),
        ):
            var.assign(np.asarray(value, np.float32))
        return self

    def _check_built(self):
        if not self.built:
            raise ValueError("the proposal is not fitted: call fit(x_train) first")

    def sample(self, m, seed) -> tf.Tensor:
        """``m`` draws ``(m, *sample_shape)``; a pure function of ``seed``.

        ``m`` is an int, or a scalar integer tensor (a batch size known only
        when a traced step runs)."""
        self._check_built()
        if isinstance(m, (tf.Tensor, tf.Variable)):
            m = tf.cast(m, tf.int32)
            m_uniform = tf.cast(
                tf.round(self.uniform * tf.cast(m, tf.float64)), tf.int32
            )
        else:
            m = int(m)
            m_uniform = int(round(self.uniform * m))
        m_gauss = m - m_uniform
        s_comp, s_normal, s_uniform = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        )
        comp = categorical(self.log_weights, m_gauss, s_comp)
        z = tf.random.stateless_normal([m_gauss, self.dim], s_normal)
        x_gauss = tf.gather(self.means, comp) + tf.einsum(
            "nij,nj->ni", tf.gather(self.scale_tril, comp), z
        )
        u = tf.random.stateless_uniform([m_uniform, self.dim], s_uniform)
        x_uniform = self.low + u * (self.high - self.low)
        x = tf.concat([x_gauss, x_uniform], axis=0)
        return tf.reshape(x, [m, *self.sample_shape])

    def uniform_share(self, draws: int | None = None) -> float:
        """The uniform part's weight: ``uniform``, or the share ``round(u m) / m``
        that :meth:`sample` realises in ``m = draws`` draws."""
        if draws is None:
            return self.uniform
        return round(self.uniform * int(draws)) / int(draws)

    def log_prob(self, x, draws: int | None = None) -> tf.Tensor:
        """``log q(x)``, shape ``(n,)``.

        With ``draws=m``, the density of the stratified mixture that
        :meth:`sample` draws ``m`` points from: the weights of its two parts
        are the realised shares (the importance weights of a fixed number of
        draws per part are then exact, whatever ``m``).
        """
        self._check_built()
        x = tf.reshape(tf.cast(x, tf.float32), [-1, self.dim])
        diff = x[:, None, :] - self.means[None]  # (n, C, d)
        y = tf.einsum("cji,ncj->nci", self.precision_tril, diff)  # Pᵀ (x − μ)
        log_gauss = tf.reduce_logsumexp(
            self.log_norm[None] - 0.5 * tf.reduce_sum(tf.square(y), axis=-1), axis=1
        )
        u = self.uniform_share(draws)
        inside = tf.reduce_all((x >= self.low) & (x <= self.high), axis=1)
        log_box = tf.reduce_sum(tf.math.log(self.high - self.low))
        log_uniform = tf.where(inside, -log_box, -np.inf)
        if u == 0.0:
            return log_gauss
        if u == 1.0:
            return log_uniform
        return tf.reduce_logsumexp(
            tf.stack(
                [math.log(1.0 - u) + log_gauss, math.log(u) + log_uniform], axis=1
            ),
            axis=1,
        )

    def call(self, x):
        return self.log_prob(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            n_components=self.n_components,
            inflate=self.inflate,
            uniform=self.uniform,
            reg_covar=self.reg_covar,
            domain=None if self.domain is None else list(self.domain),
            seed=self.seed,
        )
        return config

    def build_from_config(self, config):  # rebuilt by the model, not by Keras
        pass
