"""Learning schemes for Lipschitz EBMs, as pure TF functions (research copy, r1).

Every function takes an ``energy_fn(x, training) -> (n,)`` callable, tensors and a
stateless seed (shape [2] int), and returns tensors: no model, no Python state.
The train-step functions return the scalar *surrogate loss* whose parameter
gradient is the scheme's estimate of the maximum-likelihood gradient, plus
diagnostics; the caller differentiates it (one ``training=True`` pass) and
applies the optimizer.

Conventions: ``energy_fn(x, True)`` recomputes deel-lip's constrained kernels
(use once per step, inside the parameter tape); ``energy_fn(x, False)`` reads the
cached kernels (use inside chains).
"""

from __future__ import annotations

import math

import numpy as np

import deel_ebm  # noqa: F401  (selects Keras 2 before tensorflow)
import tensorflow as tf

LOG_2PI = math.log(2.0 * math.pi)


def split(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=n))


def energy_and_grad(energy_fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = energy_fn(x, False)
    return e, tape.gradient(e, x)


def categorical(log_p, n, seed):
    """n iid draws from softmax(log_p) by inverse CDF (XLA-compilable)."""
    cdf = tf.cumsum(tf.nn.softmax(log_p))
    u = tf.random.stateless_uniform([n], seed) * cdf[-1]
    return tf.minimum(tf.searchsorted(cdf, u, side="right"), tf.shape(log_p)[0] - 1)


def systematic(log_p, n, seed):
    """Systematic resampling indices (one uniform, n evenly spaced points)."""
    cdf = tf.cumsum(tf.nn.softmax(log_p))
    u = (tf.random.stateless_uniform([], seed) + tf.range(n, dtype=tf.float32)) / tf.cast(n, tf.float32)
    return tf.minimum(tf.searchsorted(cdf, u * cdf[-1], side="right"), tf.shape(log_p)[0] - 1)


def sq_norm(v):
    return tf.reduce_sum(tf.square(v), axis=-1)


# --------------------------------------------------------------------- proposal
class MixtureProposal:
    """q = (1 - u) * GMM(data, covariances inflated) + u * Uniform(box).

    A plain container of constant tensors; ``sample`` and ``log_prob`` are pure.
    Fitted once with sklearn on the training points (tractable in low dimension:
    full covariances cost O(C d^2) parameters and O(C d^2) per evaluation).
    """

    def __init__(self, x, n_components=50, inflate=1.2, uniform=0.1, domain=(-4.5, 4.5), seed=0):
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(n_components, covariance_type="full", random_state=seed, reg_covar=1e-4)
        gm.fit(np.asarray(x, np.float64))
        cov = gm.covariances_ * inflate**2
        chol = np.linalg.cholesky(cov)
        prec_chol = np.linalg.cholesky(np.linalg.inv(cov))  # L with L L^T = Sigma^-1
        d = x.shape[1]
        self.d = d
        self.means = tf.constant(gm.means_, tf.float32)
        self.chol = tf.constant(chol, tf.float32)
        self.prec_chol = tf.constant(prec_chol, tf.float32)
        logdet = np.array([2 * np.sum(np.log(np.diag(c))) for c in chol])
        self.log_norm = tf.constant(np.log(gm.weights_) - 0.5 * logdet - 0.5 * d * LOG_2PI, tf.float32)
        self.logits = tf.constant(np.log(gm.weights_)[None], tf.float32)
        self.uniform = float(uniform)
        self.lo, self.hi = float(domain[0]), float(domain[1])
        self.log_box = d * math.log(self.hi - self.lo)


def proposal_sample(q: MixtureProposal, m, seed):
    """m draws; a fixed share round(u m) is uniform (stratified mixture sampling)."""
    s1, s2, s3 = split(seed, 3)
    m_u = int(round(q.uniform * m))
    m_g = m - m_u
    comp = categorical(q.logits[0], m_g, s1)
    z = tf.random.stateless_normal([m_g, q.d], s2)
    xg = tf.gather(q.means, comp) + tf.einsum("nij,nj->ni", tf.gather(q.chol, comp), z)
    xu = tf.random.stateless_uniform([m_u, q.d], s3, q.lo, q.hi)
    return tf.concat([xg, xu], 0)


def proposal_log_prob(q: MixtureProposal, x):
    diff = x[:, None, :] - q.means[None]  # (n, C, d)
    # Mahalanobis with Sigma^-1 = P P^T: ||P^T diff||^2
    y = tf.einsum("cji,ncj->nci", q.prec_chol, diff)
    log_g = tf.reduce_logsumexp(q.log_norm[None] - 0.5 * sq_norm(y), axis=1)
    inside = tf.reduce_all((x >= q.lo) & (x <= q.hi), axis=1)
    log_u = tf.where(inside, -q.log_box, -np.inf)
    if q.uniform <= 0:
        return log_g
    return tf.reduce_logsumexp(
        tf.stack([math.log(1 - q.uniform) + log_g, math.log(q.uniform) + log_u], 1), 1
    )


# ------------------------------------------------------- 1. importance sampling
def is_loss(energy_fn, x_pos, x_neg, log_q_neg, anchor=1e-2):
    """Self-normalised importance-sampled NLL surrogate.

    loss = mean E(x+) + log (1/M) sum exp(-E(x-) - log q(x-)) + anchor mean(E+)^2.
    Its parameter gradient is mean grad E(x+) - sum_i w_i grad E(x-_i) with
    w = softmax(-E - log q) (the self-normalised IS estimate of grad log Z); its
    value estimates the NLL of the batch. ``anchor`` pins the free additive constant.
    """
    n = tf.shape(x_pos)[0]
    e = energy_fn(tf.concat([x_pos, x_neg], 0), True)
    e_pos, e_neg = e[:n], e[n:]
    log_w = -e_neg - log_q_neg
    m = tf.cast(tf.shape(x_neg)[0], tf.float32)
    log_z = tf.reduce_logsumexp(log_w) - tf.math.log(m)
    w = tf.nn.softmax(tf.stop_gradient(log_w))
    ess = 1.0 / tf.reduce_sum(tf.square(w)) / m
    mean_pos = tf.reduce_mean(e_pos)
    loss = mean_pos + log_z + anchor * tf.square(mean_pos)
    return loss, {"nll_est": mean_pos + log_z, "ess": ess, "e_pos": mean_pos}


def mala_chain(energy_fn, x, e, g, step, num_steps, seed):
    """num_steps MALA steps (cached weights); returns x, e, g, mean acceptance."""

    def body(i, x, e, g, acc):
        s = tf.random.experimental.stateless_fold_in(seed, i)
        s1, s2 = split(s, 2)
        y = x - step * g + tf.sqrt(2.0 * step) * tf.random.stateless_normal(tf.shape(x), s1)
        e_y, g_y = energy_and_grad(energy_fn, y)
        fwd = sq_norm(y - x + step * g)
        bwd = sq_norm(x - y + step * g_y)
        log_a = e - e_y + (fwd - bwd) / (4.0 * step)
        ok = tf.math.log(tf.random.stateless_uniform(tf.shape(e), s2)) < log_a
        x = tf.where(ok[:, None], y, x)
        e = tf.where(ok, e_y, e)
        g = tf.where(ok[:, None], g_y, g)
        return i + 1, x, e, g, acc + tf.reduce_mean(tf.cast(ok, tf.float32))

    _, x, e, g, acc = tf.while_loop(
        lambda i, *_: i < num_steps, body, (tf.constant(0), x, e, g, tf.constant(0.0))
    )
    return x, e, g, acc / tf.maximum(tf.cast(num_steps, tf.float32), 1.0)


def ula_chain(energy_fn, x, g, step, num_steps, seed):
    def body(i, x, g):
        s = tf.random.experimental.stateless_fold_in(seed, i)
        x = x - step * g + tf.sqrt(2.0 * step) * tf.random.stateless_normal(tf.shape(x), s)
        _, g = energy_and_grad(energy_fn, x)
        return i + 1, x, g

    _, x, g = tf.while_loop(lambda i, *_: i < num_steps, body, (tf.constant(0), x, g))
    return x


def is_refined_negatives(energy_fn, q, m, step, num_steps, seed):
    """Draw x0 ~ q, weight log w0 = -E(x0) - log q(x0), then MALA steps (p-invariant,
    so (x_K, w0) stays properly weighted). Returns x_K and log w0 (stop-grad)."""
    s1, s2 = split(seed, 2)
    x0 = proposal_sample(q, m, s1)
    log_q = proposal_log_prob(q, x0)
    e0, g0 = energy_and_grad(energy_fn, x0)
    xk, ek, _, acc = mala_chain(energy_fn, x0, e0, g0, step, num_steps, s2)
    return tf.stop_gradient(xk), tf.stop_gradient(-e0 - log_q), acc


def weighted_loss(energy_fn, x_pos, x_neg, log_w, anchor=1e-2):
    """mean E(x+) - sum softmax(log_w) E(x-): gradient of a weighted-negatives CD."""
    n = tf.shape(x_pos)[0]
    e = energy_fn(tf.concat([x_pos, x_neg], 0), True)
    e_pos, e_neg = e[:n], e[n:]
    w = tf.nn.softmax(log_w)
    mean_pos = tf.reduce_mean(e_pos)
    m = tf.cast(tf.shape(x_neg)[0], tf.float32)
    loss = mean_pos - tf.reduce_sum(w * e_neg) + anchor * tf.square(mean_pos)
    return loss, {"ess": 1.0 / tf.reduce_sum(tf.square(w)) / m, "e_pos": mean_pos}


# ------------------------------------------------------------ 2. Jarzynski walkers
def jarzynski_alpha(e_x, g_x, x, y, step):
    """alpha_theta(x, y) = E(x) + 1/2 (y - x).grad E(x) + step/4 |grad E(x)|^2
    (Carbone et al. 2023, the ULA transition-ratio term of the weight update)."""
    return e_x + 0.5 * tf.reduce_sum((y - x) * g_x, -1) + 0.25 * step * sq_norm(g_x)


def jarzynski_step_loss(energy_fn, x_pos, walk, step, anchor=1e-2):
    """Loss pass at the current parameters theta for Jarzynski-weighted walkers.

    ``walk`` = dict(x, x_old, log_w_partial) where log_w_partial already holds
    log_w_prev + alpha_{theta_prev}(x_old, x). Here the weights are completed with
    -alpha_theta(x, x_old), using E_theta(x) and grad_x E_theta(x) from the same
    training=True pass. Returns loss, new log-weights, E_theta(x), grad.
    """
    n = tf.shape(x_pos)[0]
    x = walk["x"]
    with tf.GradientTape() as tx:
        tx.watch(x)
        e = energy_fn(tf.concat([x_pos, x], 0), True)
    g = tf.stop_gradient(tx.gradient(e, x))
    e_pos, e_w = e[:n], e[n:]
    log_w = walk["log_w"] - jarzynski_alpha(tf.stop_gradient(e_w), g, x, walk["x_old"], step)
    w = tf.nn.softmax(log_w)
    mean_pos = tf.reduce_mean(e_pos)
    m = tf.cast(tf.shape(x)[0], tf.float32)
    loss = mean_pos - tf.reduce_sum(w * e_w) + anchor * tf.square(mean_pos)
    ess = 1.0 / tf.reduce_sum(tf.square(w)) / m
    return loss, log_w, tf.stop_gradient(e_w), g, {"ess": ess, "e_pos": mean_pos}


def jarzynski_move(x, e, g, log_w, step, ess, threshold, seed):
    """Resample (multinomial) when ESS < threshold, then one ULA step; returns the
    next walker state with log_w_partial = log_w + alpha_theta(x, x_new)."""
    s1, s2 = split(seed, 2)
    m = tf.shape(x)[0]

    def resample():
        idx = systematic(log_w, m, s1)
        return tf.gather(x, idx), tf.gather(e, idx), tf.gather(g, idx), tf.zeros_like(log_w)

    x, e, g, log_w = tf.cond(ess < threshold, resample, lambda: (x, e, g, log_w))
    x_new = x - step * g + tf.sqrt(2.0 * step) * tf.random.stateless_normal(tf.shape(x), s2)
    log_w = log_w + jarzynski_alpha(e, g, x, x_new, step)
    log_w = log_w - tf.reduce_max(log_w)
    return {"x": x_new, "x_old": x, "log_w": log_w}, tf.cast(ess < threshold, tf.float32)


# --------------------------------------------------------- 4. Energy Discrepancy
def energy_discrepancy_loss(energy_fn, x_pos, t_std, m, seed, w_stable=1.0):
    """ED with Gaussian perturbation (Schroeder et al. 2023, reference notebook):
    y = x + t xi, x'_j = y + t xi'_j, loss = mean log(w + sum_j exp(E(x) - E(x'_j)))."""
    s1, s2 = split(seed, 2)
    n, d = tf.shape(x_pos)[0], tf.shape(x_pos)[1]
    y = x_pos + t_std * tf.random.stateless_normal(tf.shape(x_pos), s1)
    xp = y[:, None, :] + t_std * tf.random.stateless_normal([n, m, d], s2)
    e = energy_fn(tf.concat([x_pos, tf.reshape(xp, [-1, d])], 0), True)
    e_pos, e_neg = e[:n], tf.reshape(e[n:], [n, m])
    val = e_pos[:, None] - e_neg
    if w_stable:
        val = tf.concat([val, tf.fill([n, 1], math.log(w_stable))], 1)
    loss = tf.reduce_mean(tf.reduce_logsumexp(val, 1))
    return loss, {"e_pos": tf.reduce_mean(e_pos)}


# ------------------------------------------------------------- 3. PCD chains
def cd_loss(energy_fn, x_pos, x_neg, l2=0.1):
    n = tf.shape(x_pos)[0]
    e = energy_fn(tf.concat([x_pos, x_neg], 0), True)
    e_pos, e_neg = e[:n], e[n:]
    loss = tf.reduce_mean(e_pos) - tf.reduce_mean(e_neg) + l2 * (
        tf.reduce_mean(tf.square(e_pos)) + tf.reduce_mean(tf.square(e_neg))
    )
    return loss, {"e_pos": tf.reduce_mean(e_pos)}


def adapt_step(log_step, acc, target=0.57, rate=0.05):
    """Robbins-Monro on log step size toward a target MALA acceptance."""
    return log_step + rate * (acc - target)
