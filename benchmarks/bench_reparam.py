"""The constraint's cost as training goes: Björck iterations and the loss pass.

deel-lip recomputes every constrained kernel in the differentiated loss pass of
each train step: a power iteration (warm-started from the last step's vector)
and Björck's orthonormalisation of ``W / σ`` from scratch, until two iterates
differ by less than ``eps_bjorck`` (at most ``maxiter_bjorck``). At
initialisation the kernels are orthogonal and Björck stops after 2 iterations;
as training spreads the singular values of ``W / σ``, it needs more. The speed
benchmarks time train steps at initialisation; this script trains the default
recipe of ``EnergyModel`` and measures, after 0, 100, ... steps:

- per constrained layer: Björck's iterations (deel-lip's loop, rerun eagerly
  with the layer's own settings) and the smallest singular value of ``W / σ``;
- the loss pass (forward and gradient of the mean energy on 2 × batch points),
  with the reparametrisation (``training=True``) and reading the cached kernels.

    python benchmarks/bench_reparam.py --data digits --steps 0 100 500 1000 2000 \\
        --json benchmarks/results/reparam_digits.json
    python benchmarks/bench_reparam.py --data 8gaussians --steps 0 100 500 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import deel_ebm  # first: it selects the Keras 2 API

# isort: split
import tensorflow as tf
from deel.lip import normalizers


def bjorck_iterations(layer):
    """``(iterations, smallest singular value of W / σ)`` of one layer's kernel."""
    kernel = tf.reshape(layer.kernel, [-1, layer.kernel.shape[-1]])
    w, _, _ = normalizers.spectral_normalization(
        kernel, layer.u, eps=layer.eps_spectral, maxiter=layer.maxiter_spectral
    )
    s_min = float(np.linalg.svd(w.numpy(), compute_uv=False).min())
    beta, old, n = layer.beta_bjorck, 10.0 * w, 0
    while n < layer.maxiter_bjorck and float(tf.norm(w - old)) >= layer.eps_bjorck:
        gram = tf.transpose(w) @ w if w.shape[0] > w.shape[1] else None
        wwtw = w @ gram if gram is not None else (w @ tf.transpose(w)) @ w
        old, w = w, (1 + beta) * w - beta * wwtw
        n += 1
    return n, s_min


def time_loss_pass(model, x, training, inner):
    variables = model.network.trainable_variables

    @tf.function
    def grad_pass(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=training))
        grads = tape.gradient(
            loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    grad_pass(x).numpy()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(inner):
            out = grad_pass(x)
        float(out)
        times.append((time.perf_counter() - t) / inner)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", help="digits, or a built-in 2D density")
    p.add_argument("--steps", type=int, nargs="+", default=[0, 100, 500, 1000, 2000])
    p.add_argument("--inner", type=int, default=10, help="loss passes per timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    if sorted(args.steps) != args.steps or args.steps[0] < 0:
        raise SystemExit("--steps must be non-negative and increasing")
    if args.data == "digits":
        x = deel_ebm.datasets.load_digits().x_train.reshape(-1, 64)
    else:
        x = deel_ebm.datasets.load_2d(args.data, seed=args.seed)[0]
    tf.keras.utils.set_random_seed(args.seed)
    net = deel_ebm.nets.lipschitz_mlp(x.shape[1:])
    model = deel_ebm.EnergyModel(net)  # the default recipe for the data
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    defaults = deel_ebm.core.model
    batch = (
        defaults.DEFAULT_BATCH_SIZE_PROPOSAL
        if model.uses_proposal
        else defaults.DEFAULT_BATCH_SIZE_CHAINS
    )
    probe = tf.constant(x[: 2 * batch])
    rows, done = [], 0
    for target in args.steps:
        if target > done:
            per_epoch = max(1, len(x) // batch)
            epochs = -(-(target - done) // per_epoch)
            model.fit(x, batch_size=batch, epochs=epochs, verbose=0)
            done = int(model.optimizer.iterations)
        layers = [lay for lay in net.layers if hasattr(lay, "maxiter_bjorck")]
        stats = [bjorck_iterations(lay) for lay in layers]
        recompute = time_loss_pass(model, probe, True, args.inner)
        cached = time_loss_pass(model, probe, False, args.inner)
        row = {
            "step": done,
            "bjorck_iterations": [n for n, _ in stats],
            "smallest_singular_value": [s for _, s in stats],
            "kernel_shapes": [list(lay.kernel.shape) for lay in layers],
            "loss_pass_ms": 1e3 * recompute,
            "loss_pass_cached_ms": 1e3 * cached,
            "reparametrisation_ms": 1e3 * (recompute - cached),
        }
        rows.append(row)
        print(json.dumps(row))
    res = {
        "config": vars(args),
        "tf_version": tf.__version__,
        "batch": batch,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
