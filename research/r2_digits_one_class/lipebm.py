"""Pure-TF pieces of the recipes tried (easy to lift into a library).

Convention: the net computes f (1-Lipschitz, deel-lip), the energy is E = k * f,
LOW on the class. Everything below works on f; k only enters ML/Langevin.
"""
import numpy as np
import deel_ebm  # noqa: F401
import tensorflow as tf

LO, HI = -1.0, 1.0


def per_sample_norm(v):
    return tf.sqrt(tf.reduce_sum(tf.reshape(v, [tf.shape(v)[0], -1]) ** 2, axis=1) + 1e-12)


def f_and_grad(net, x):
    """f(x) and d f / d x with the cached constrained kernels (training=False)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        f = net(x, training=False)[:, 0]
    return f, tape.gradient(f, x)


# ---------------------------------------------------------------- losses
def hkr_loss(f_pos, f_neg, margin, lbda):
    """Hinge-KR in the energy convention (f low on data): data pushed to f <= -m,
    negatives to f >= +m, plus the KR (= contrastive divergence) term / lbda."""
    hinge = tf.reduce_mean(tf.nn.relu(margin + f_pos)) + tf.reduce_mean(tf.nn.relu(margin - f_neg))
    kr = tf.reduce_mean(f_pos) - tf.reduce_mean(f_neg)
    return hinge + kr / lbda, hinge, kr


def cd_loss(e_pos, e_neg, reg=0.0):
    """Maximum-likelihood (contrastive divergence) surrogate on energies, optional L2."""
    return (tf.reduce_mean(e_pos) - tf.reduce_mean(e_neg)
            + reg * (tf.reduce_mean(e_pos ** 2) + tf.reduce_mean(e_neg ** 2)))


# ---------------------------------------------------------------- negative starts
def uniform_box(gen, n, shape):
    return gen.uniform([n, *shape], LO, HI)


def noisy_data(gen, x, smin, smax):
    """data + N(0, s^2), s log-uniform in [smin, smax] per sample, clipped to the box."""
    n = tf.shape(x)[0]
    s = tf.exp(gen.uniform([n, 1, 1, 1], np.log(smin), np.log(smax)))
    return tf.clip_by_value(x + s * gen.normal(tf.shape(x)), LO, HI)


def mixup_pairs(gen, x, noise=0.1):
    """OCSDF-style negative augmentation: random flips/transposes of two data batches,
    mixed with t in [0.25, 0.75], plus Gaussian noise."""
    n = tf.shape(x)[0]
    def aug(z):
        z = tf.where(gen.uniform([n, 1, 1, 1]) < 0.5, tf.reverse(z, [2]), z)
        z = tf.where(gen.uniform([n, 1, 1, 1]) < 0.5, tf.reverse(z, [1]), z)
        z = tf.where(gen.uniform([n, 1, 1, 1]) < 0.5, tf.transpose(z, [0, 2, 1, 3]), z)
        return z
    other = tf.gather(x, tf.random.shuffle(tf.range(n)))
    t = gen.uniform([n, 1, 1, 1], 0.25, 0.75)
    mixed = t * aug(x) + (1 - t) * aug(other) + noise * (HI - LO) * gen.normal(tf.shape(x))
    return tf.clip_by_value(mixed, LO, HI)


# ---------------------------------------------------------------- negative refinement
def newton_to_level(net, x, gen, steps, eta, level):
    """OCSDF's Newton-Raphson walk of negatives onto the level set f = level (energy
    convention: level > 0 is outside). Random per-sample step in [0, 1]*eta/steps."""
    u = gen.uniform([tf.shape(x)[0], 1, 1, 1], 0.0, 1.0) * (eta / steps)
    for _ in range(steps):
        f, g = f_and_grad(net, x)
        gn2 = tf.reshape(per_sample_norm(g) ** 2, [-1, 1, 1, 1])
        gap = tf.reshape(f - level, [-1, 1, 1, 1])  # > 0: walk down f
        x = tf.clip_by_value(x - u * gap * g / (gn2 + 1e-8), LO, HI)
    return x


def ula(net, x, gen, steps, eta, k):
    """Unadjusted Langevin on E = k f, step eta, temperature 1, kept in the box."""
    for _ in range(steps):
        _, g = f_and_grad(net, x)
        x = x - eta * k * g + tf.sqrt(2.0 * eta) * gen.normal(tf.shape(x))
        x = tf.clip_by_value(x, LO, HI)
    return x


def mala(net, x, gen, steps, eta, k):
    """MALA on E = k f (box handled by rejecting proposals that leave it)."""
    f, g = f_and_grad(net, x)
    acc_sum = 0.0
    for _ in range(steps):
        mean_x = x - eta * k * g
        y = mean_x + tf.sqrt(2.0 * eta) * gen.normal(tf.shape(x))
        fy, gy = f_and_grad(net, y)
        mean_y = y - eta * k * gy
        lq_xy = -tf.reduce_sum(tf.reshape((y - mean_x) ** 2, [tf.shape(x)[0], -1]), 1) / (4 * eta)
        lq_yx = -tf.reduce_sum(tf.reshape((x - mean_y) ** 2, [tf.shape(x)[0], -1]), 1) / (4 * eta)
        inbox = tf.reduce_all(tf.reshape((y >= LO) & (y <= HI), [tf.shape(x)[0], -1]), 1)
        log_a = -k * fy + k * f + lq_yx - lq_xy
        acc = (tf.math.log(gen.uniform([tf.shape(x)[0]]) + 1e-30) < log_a) & inbox
        a4 = tf.reshape(acc, [-1, 1, 1, 1])
        x, g = tf.where(a4, y, x), tf.where(a4, gy, g)
        f = tf.where(acc, fy, f)
        acc_sum += tf.reduce_mean(tf.cast(acc, tf.float32))
    return x, acc_sum / steps


def gaussian_proposal(x_class, shrink=0.1):
    """Gaussian fitted to the class (flattened), covariance shrunk toward its mean variance."""
    z = x_class.reshape(len(x_class), -1).astype(np.float64)
    mu = z.mean(0)
    cov = np.cov(z, rowvar=False)
    cov = (1 - shrink) * cov + shrink * np.eye(z.shape[1]) * np.trace(cov) / z.shape[1]
    L = np.linalg.cholesky(cov)
    logdet = 2 * np.log(np.diag(L)).sum()
    return mu.astype(np.float32), L.astype(np.float32), np.linalg.inv(L).astype(np.float32), float(logdet)
