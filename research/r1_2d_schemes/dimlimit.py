"""Where does a data-fitted mixture proposal stop being a usable IS proposal?

Proxy (no EBM training): the target p is a known density of realistic shape in
dimension d -- a Gaussian KDE of the sklearn digits projected on their first d
principal components (bandwidth: Scott's rule) -- which is what a well-trained
model near the data looks like. The proposal q is what the IS scheme would use:
sklearn GaussianMixture (C components, full covariances inflated by 1.2) fitted
to 20 000 draws of p, plus a 10 % uniform share on the bounding box.
We report the relative effective sample size ESS/M of w = p/q for M = 4096 draws
of q (ESS/M = 1 is perfect; < 1/M means one sample carries everything).
Also 2D reference: the same numbers for the six toy densities (exact log p).
"""

import json
import math
import sys

import numpy as np
from scipy import special
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture


def ess_rel(log_w):
    w = np.exp(log_w - special.logsumexp(log_w))
    return float(1.0 / np.sum(w**2) / len(w))


def proposal(x, c, inflate=1.2, uniform=0.1, seed=0):
    gm = GaussianMixture(c, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(x)
    gm.covariances_ = gm.covariances_ * inflate**2
    gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(gm.covariances_))
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    log_box = np.sum(np.log(hi - lo))

    def sample(m, rng):
        mu = int(round(uniform * m))
        xg, _ = gm.sample(m - mu)
        xu = rng.uniform(lo, hi, size=(mu, x.shape[1]))
        return np.concatenate([xg, xu])

    def log_q(z):
        inside = np.all((z >= lo) & (z <= hi), 1)
        lu = np.where(inside, -log_box, -np.inf)
        return np.logaddexp(math.log(1 - uniform) + gm.score_samples(z), math.log(uniform) + lu)

    return sample, log_q


def kde_log_prob(centres, h):
    d = centres.shape[1]

    def f(z):
        out = []
        for i in range(0, len(z), 512):
            d2 = ((z[i : i + 512, None, :] - centres[None]) ** 2).sum(-1)
            out.append(special.logsumexp(-0.5 * d2 / h**2, 1))
        return np.concatenate(out) - math.log(len(centres)) - 0.5 * d * math.log(2 * math.pi * h * h)

    return f


def main():
    rng = np.random.default_rng(0)
    rows = []
    digits = load_digits().data / 16.0 * 2 - 1
    for d in (2, 4, 8, 16, 32, 64):
        z = PCA(d, random_state=0).fit_transform(digits) if d < 64 else digits - digits.mean(0)
        h = float(np.mean(z.std(0)) * len(z) ** (-1.0 / (d + 4)))
        log_p = kde_log_prob(z, h)
        x = z[rng.integers(len(z), size=20000)] + h * rng.standard_normal((20000, d))
        for c in (20, 100):
            sample, log_q = proposal(x, c)
            xs = sample(4096, rng)
            r = {"target": "digits_pca_kde", "d": d, "components": c, "bandwidth": h,
                 "ess_rel": ess_rel(log_p(xs) - log_q(xs)),
                 "ess_rel_gauss_only": None}
            rows.append(r)
            print(json.dumps(r), flush=True)
    sys.path.insert(0, "/work/wt-r1")
    from deel_ebm import datasets

    for name in datasets.DENSITIES:
        x, _ = datasets.load_2d(name, n_train=20000, n_test=10, seed=0)
        dens = datasets.get_density(name)
        for c in (20, 50, 100):
            sample, log_q = proposal(x.astype(np.float64), c)
            xs = sample(4096, rng)
            r = {"target": name, "d": 2, "components": c, "ess_rel": ess_rel(dens.log_prob(xs) - log_q(xs))}
            rows.append(r)
            print(json.dumps(r), flush=True)
    with open("/work/research/r1/dimlimit.json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
