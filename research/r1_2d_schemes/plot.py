"""Landscape pictures of saved runs: data density, model density, model log-density.

    python plot.py out.png name1:weights1.npz name2:weights2.npz ...
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

import deel_ebm
import tensorflow as tf
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from deel_ebm import datasets, metrics, nets

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def load(path, units=(256, 256, 256)):
    z = np.load(path)
    net = nets.lipschitz_mlp((2,), units=units)
    arrs = [z[f"arr_{i}"] for i in range(len(net.variables))]
    for v, a in zip(net.variables, arrs):
        v.assign(a)
    return net, float(z["c"])


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    res = 256
    fig, axes = plt.subplots(len(runs), 3, figsize=(9, 3 * len(runs)))
    axes = np.atleast_2d(axes)
    for row, spec in zip(axes, runs):
        name, path = spec.split(":")
        net, c = load(path)
        dens = datasets.get_density(name)
        pts, area = metrics.grid_points(dens.domain, res)
        e = c * net(tf.constant(pts, tf.float32), training=False).numpy().reshape(-1)
        logp = -e - (np.log(np.sum(np.exp(-(e - e.min())))) - e.min() + np.log(area))
        lp_data = dens.log_prob(pts)
        lo, hi = dens.domain
        ext = [lo, hi, lo, hi]
        show = lambda a: a.reshape(res, res).T  # noqa: E731  (ij -> image rows = y)
        row[0].imshow(show(np.exp(lp_data)), origin="lower", extent=ext)
        row[0].set_title(f"{name}: data")
        row[1].imshow(show(np.exp(logp)), origin="lower", extent=ext)
        row[1].set_title(f"model density (c={c:.1f})")
        im = row[2].imshow(show(np.maximum(logp, -15)), origin="lower", extent=ext)
        row[2].set_title("model log-density (clip -15)")
        plt.colorbar(im, ax=row[2], fraction=0.046)
        for a in row:
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
